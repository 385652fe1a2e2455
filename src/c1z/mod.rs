//! Writer and reader for baton c1z v1 snapshots.
//!
//! A c1z v1 file is the 5-byte magic `C1ZF\0` followed by one zstd frame holding
//! a complete SQLite database with the baton-sdk `v1_*` tables. The content mirrors
//! what the reference Go connector (baton-confluence) writes for the same tenant,
//! so the `baton` CLI and current baton-sdk readers can read it.
//!
//! This layer knows neither HTTP nor Kubernetes: the sync engine maps Confluence
//! API data to the plain records in [`records`] and streams them into a
//! [`SnapshotWriter`]. [`Snapshot`] reads a file back for tests and checks.
//!
//! Deliberate deviations from the reference (see each item's docs):
//! - `OptInRequired` annotations are omitted from resource types (it is unknown to
//!   older readers and breaks their JSON output).
//! - Timestamps are written in UTC instead of the host's local time.
//! - Resource types are written in a fixed order (the reference order is random).

pub(crate) mod btree;
mod container;
mod directory;
mod error;
mod expand;
mod finish_expansion;
mod grant_load;
mod grant_spool;
mod ksuid;
mod members;
mod model;
pub mod proto;
mod reader;
pub mod records;
mod schema;
mod stream;
mod time;
mod writer;

#[cfg(test)]
mod tests;

pub use container::{MAGIC, MAX_DECODED_SIZE, MAX_WINDOW_LOG, remove_leftovers};
pub use directory::SnapshotDirectory;
pub use error::{C1zError, Result};
pub use ksuid::new_ksuid;
pub use reader::{
    ColumnInfo, EntitlementRow, GrantRow, IndexInfo, ResourceRow, ResourceTypeRow, Snapshot,
    SyncRunRow, TableInfo,
};
pub use records::{
    ALL_NOUNS, ALL_VERBS, GroupRecord, SpacePermissionRecord, SpaceRecord, SpaceRoleRecord,
    UserRecord,
};
pub use stream::{
    MembershipEntry, NamedEntry, Query, QueryRows, SnapshotDb, SpaceGrantEntry, UserEntry,
};
pub use time::format_go_timestamp;
pub use writer::{SnapshotInfo, SnapshotOptions, SnapshotWriter};
