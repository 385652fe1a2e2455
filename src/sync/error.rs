//! Errors of the sync layer. Which condition reason each one becomes is the
//! controller's business; this layer only says what happened.

use std::time::Duration;

use crate::c1z::C1zError;
use crate::confluence::ConfluenceError;

/// Why a sync failed. No variant carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Confluence refused or failed a request after the client's retries.
    #[error(transparent)]
    Confluence(#[from] ConfluenceError),
    /// The snapshot could not be written.
    #[error("snapshot: {0}")]
    Snapshot(C1zError),
    /// The caller cancelled the sync (connector deleted, changed, suspended, shutdown).
    #[error("the sync was cancelled")]
    Cancelled,
    /// The sync ran past its timeout.
    #[error("the sync did not finish within {}s", .0.as_secs())]
    TimedOut(Duration),
    /// The writer thread ended early; its own error is reported instead where known.
    #[error("the snapshot writer stopped early")]
    WriterStopped,
    /// The writer thread panicked.
    #[error("the snapshot writer failed: {0}")]
    WriterPanicked(String),
    /// Fetching stopped without finishing the snapshot.
    #[error("the sync was aborted before the snapshot was complete")]
    Aborted,
}

impl From<C1zError> for SyncError {
    fn from(error: C1zError) -> Self {
        match error {
            C1zError::Cancelled => Self::Cancelled,
            other => Self::Snapshot(other),
        }
    }
}

impl SyncError {
    /// A finer label for logs, metrics and the CLI: the client's error class, or the
    /// sync's own failure kind.
    pub fn class(&self) -> &'static str {
        match self {
            Self::Confluence(e) => e.class().as_str(),
            Self::Snapshot(_) => "snapshot",
            Self::Cancelled => "cancelled",
            Self::TimedOut(_) => "timeout",
            Self::WriterStopped | Self::WriterPanicked(_) | Self::Aborted => "internal",
        }
    }

    /// How long Confluence asked to wait, for a sync that ran out of rate-limit budget.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Confluence(e) => e.retry_after(),
            _ => None,
        }
    }
}
