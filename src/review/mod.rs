//! Access reviews from snapshots: what changed between two snapshots ([`diff`]) and
//! who can reach what in one ([`report`]). Reads c1z files only; knows nothing of
//! Kubernetes or HTTP.

pub mod access;
pub mod csv_report;
pub mod diff;
mod error;
pub mod html;
mod merge;
pub mod output;

pub use diff::{Change, ChangeCounts, Named, Principal, UserRef, count_changes, diff_snapshots};
pub use error::ReviewError;

use std::path::Path;

use crate::c1z::SnapshotDb;

/// Opens a snapshot for review, naming the file in the error.
pub fn open(path: &Path) -> Result<SnapshotDb, ReviewError> {
    SnapshotDb::open(path).map_err(|source| ReviewError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// Counts the changes between two snapshot files (what the controller records).
pub fn count_file_changes(old: &Path, new: &Path) -> Result<ChangeCounts, ReviewError> {
    count_changes(&open(old)?, &open(new)?)
}
