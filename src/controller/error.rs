//! The controller's error type.

use super::snapshots::SnapshotDirError;

/// Why a reconcile failed. Sync failures are not here: they are outcomes reported in
/// the status; these are failures of the reconcile itself, retried with back-off.
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
                kube::runtime::finalizer::Error::AddFinalizer(_)
                | kube::runtime::finalizer::Error::RemoveFinalizer(_) => "finalizer",
                _ => "finalizer",
            },
            Self::Cleanup(_) => "cleanup",
            Self::MissingMetadata(_) => "metadata",
        }
    }
}
