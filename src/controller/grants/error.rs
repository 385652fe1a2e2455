//! Why a grant reconcile failed and will be retried with back-off.

use crate::c1z::C1zError;
use crate::confluence::ConfluenceError;

/// A failure of one grant reconcile. What the user can fix is reported in the status
/// instead; these are the failures retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// Adding or removing the finalizer, or the revoke behind it, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<GrantError>>),
    /// Confluence failed in a way worth retrying (network, 5xx, rate limit).
    #[error("Confluence: {0}")]
    Confluence(#[source] ConfluenceError),
    /// The connector's latest snapshot could not be read for a name or email look-up.
    #[error("reading the connector's snapshot: {0}")]
    Snapshot(#[source] C1zError),
    /// The membership cannot be removed now (for example the connector or its Secret
    /// is gone); the revoke is retried until it succeeds.
    #[error("cannot remove the membership: {0}")]
    RevokeBlocked(String),
    /// The object lacks a field the API server always sets.
    #[error("the object has no {0}")]
    MissingMetadata(&'static str),
}

impl GrantError {
    /// A stable label for the `reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube_api",
            Self::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Self::Confluence(e) => e.class().as_str(),
            Self::Snapshot(_) => "snapshot",
            Self::RevokeBlocked(_) => "revoke_blocked",
            Self::MissingMetadata(_) => "metadata",
        }
    }

    /// How long Confluence asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Confluence(e) => e.retry_after(),
            Self::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.retry_after(),
                _ => None,
            },
            _ => None,
        }
    }
}
