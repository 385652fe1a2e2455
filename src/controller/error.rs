//! The controller's error type, for connectors and grants alike.

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use rand::Rng;
use tracing::warn;

use crate::c1z::C1zError;
use crate::confluence::ConfluenceError;
use crate::metrics::Metrics;

use super::schedule::backoff_delay;
use super::snapshots::SnapshotDirError;

/// Why a reconcile failed. Sync failures and what the user can fix are not here: they
/// are outcomes reported in the status; these are failures of the reconcile itself,
/// retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// Adding or removing the finalizer, or the cleanup behind it, failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A deleted connector's snapshots could not be removed.
    #[error("removing snapshots: {0}")]
    Cleanup(#[source] SnapshotDirError),
    /// Confluence failed, during a grant's change, in a way worth retrying (network,
    /// 5xx, rate limit).
    #[error("Confluence: {0}")]
    Confluence(#[source] ConfluenceError),
    /// A connector's latest snapshot could not be read for a name or email look-up.
    #[error("reading the connector's snapshot: {0}")]
    Snapshot(#[source] C1zError),
    /// A grant's membership cannot be removed now (for example its connector or Secret
    /// is gone); the removal is retried until it succeeds.
    #[error("cannot remove the membership: {0}")]
    RevokeBlocked(String),
    /// The object lacks a field the API server always sets.
    #[error("the object has no {0}")]
    MissingMetadata(&'static str),
}

impl Error {
    /// A stable label for the `reconcile_errors_total` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube_api",
            Self::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Self::Cleanup(_) => "cleanup",
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

/// The requeue after the `failures`-th failed reconcile in a row of `obj` (a `kind`):
/// Confluence's `Retry-After` when it gave one, else 5 s·2ⁿ capped at 5 min with
/// jitter (kube has no per-object back-off). Counts and logs the failure.
pub fn back_off<K: Resource>(
    metrics: &Metrics,
    kind: &str,
    obj: &K,
    error: &Error,
    failures: u32,
) -> Action {
    metrics.reconcile_error(kind, error.metric_label());
    let delay = error
        .retry_after()
        .unwrap_or_else(|| backoff_delay(failures, rand::rng().random()));
    warn!(
        kind,
        namespace = obj.namespace().unwrap_or_default(),
        name = %obj.name_any(),
        error = %error,
        retry_in_ms = delay.as_millis() as u64,
        "reconcile failed"
    );
    Action::requeue(delay)
}
