//! Errors of the sync layer and how they map to condition reasons.

use std::time::Duration;

use crate::api::reasons;
use crate::c1z::C1zError;
use crate::confluence::{ConfluenceError, ErrorClass};

/// Why a sync failed. No variant carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Confluence refused or failed a request after the client's retries.
    #[error(transparent)]
    Confluence(#[from] ConfluenceError),
    /// The snapshot could not be written.
    #[error("snapshot: {0}")]
    Snapshot(#[from] C1zError),
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

impl SyncError {
    /// The condition and Event reason: what a user reads on the connector.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Confluence(e) => match e.class() {
                ErrorClass::Authentication => reasons::AUTHENTICATION_FAILED,
                ErrorClass::PermissionDenied => reasons::PERMISSION_DENIED,
                ErrorClass::RateLimited => reasons::RATE_LIMITED,
                ErrorClass::Transient | ErrorClass::Configuration => reasons::SITE_UNREACHABLE,
                ErrorClass::NotFound
                | ErrorClass::MalformedResponse
                | ErrorClass::BadRequest
                | ErrorClass::Other => reasons::SYNC_FAILED,
            },
            Self::Snapshot(_)
            | Self::Cancelled
            | Self::TimedOut(_)
            | Self::WriterStopped
            | Self::WriterPanicked(_)
            | Self::Aborted => reasons::SYNC_FAILED,
        }
    }

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
}
