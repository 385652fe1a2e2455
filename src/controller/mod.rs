//! Reconciliation of `ConfluenceConnector` objects (and, in [`grants`], of
//! `ConfluenceAccessGrant`s).
//!
//! The reconciler ([`reconciler`]) is short: read the Secret, decide whether a sync is
//! due ([`schedule`]), start or cancel a sync task ([`sync_task`]), compute the status
//! ([`status`], pure) and write it when it changed ([`status_patch`]). Sync results come
//! back through the shared [`context::Context`], so the reconciler stays the only writer
//! of status.

pub mod context;
pub mod credentials;
mod error;
pub mod events;
pub mod grants;
pub mod outcome;
pub mod reconciler;
pub mod run;
pub mod schedule;
pub mod snapshots;
pub mod status;
pub mod status_patch;
pub mod sync_task;

pub use error::Error;
