//! The sync engine: one Confluence site → one c1z snapshot.
//!
//! Stages run side by side on one client (whose in-flight cap and shared 429 pause bound
//! the load on the site): groups then every group's members (each group once, many in
//! parallel), the supplementary user search, and spaces then every space's permissions,
//! plus space roles. Rows stream into the snapshot writer as pages arrive, so memory
//! stays flat as tenants grow.

mod connect;
mod engine;
mod error;
pub mod mapping;
mod progress;
mod report;
mod sink;

pub use connect::{ConnectError, client_for, client_tuned};
pub use engine::{SyncOptions, run_sync};
pub use error::SyncError;
pub use progress::{ProgressSender, Stage, SyncProgress};
pub use report::{SyncCounts, SyncReport};
