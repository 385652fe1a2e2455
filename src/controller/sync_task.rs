//! One connector's sync as a task: wait for a `--concurrency` slot, prepare the
//! snapshot directory, run the engine, keep the newest snapshots, and hand the outcome
//! back to the reconciler (which alone writes status).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::api::ConfluenceConnector;
use crate::api::connector::EffectiveSync;
use crate::c1z::{self, SnapshotOptions};
use crate::confluence::RequestObserver;
use crate::metrics::Metrics;
use crate::review::{self, ChangeCounts};
use crate::site::SiteOrigin;
use crate::sync::{ConnectError, ProgressSender, SyncError, SyncOptions, run_sync};

use super::context::{Context, Finished, RunningSync, SyncInputs, TaskState, lock};
use super::credentials::Credentials;
use super::snapshots::{self, SnapshotDirError};

/// Group-member and space-permission walks running at once within one sync (the
/// client's in-flight cap bounds the requests themselves).
const WALKS_PER_SYNC: usize = 8;

/// Why a sync task failed before or around the engine.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The engine failed (or was cancelled).
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The snapshot directory could not be prepared.
    #[error("snapshot directory: {0}")]
    Storage(#[from] SnapshotDirError),
    /// No client could be built for the site.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// No sync id could be drawn.
    #[error("sync id: {0}")]
    SyncId(#[source] c1z::C1zError),
}

/// What a successful sync hands back to the reconciler.
#[derive(Debug)]
pub struct Synced {
    /// The engine's report.
    pub report: crate::sync::SyncReport,
    /// The snapshot's path relative to the data directory.
    pub relative: PathBuf,
    /// Access changes against the previous snapshot; `None` for the first snapshot or
    /// when the comparison failed.
    pub change: Option<ChangeCounts>,
}

/// What a sync needs, all checked by the reconciler.
pub struct SyncJob {
    /// The connector.
    pub key: ObjectRef<ConfluenceConnector>,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The vetted site.
    pub origin: SiteOrigin,
    /// The administrator's credentials.
    pub credentials: Credentials,
    /// `spec.sync` with defaults.
    pub sync: EffectiveSync,
    /// File name of the last successful snapshot (in the connector's directory), to
    /// compare the new one with.
    pub previous: Option<PathBuf>,
}

/// Feeds the Confluence client's per-request observations into the metrics.
pub(crate) struct ApiMetrics(pub(crate) Arc<Metrics>);

impl RequestObserver for ApiMetrics {
    fn request(&self, route: &'static str, status: Option<u16>, elapsed: Duration) {
        self.0.api_request(route, status, elapsed.as_secs_f64());
    }
    fn retry(&self, reason: &'static str) {
        self.0.api_retry(reason);
    }
}

/// Starts the task; the caller keeps the returned handle in the context.
pub fn start(
    ctx: &Arc<Context>,
    job: SyncJob,
    inputs: SyncInputs,
    sync_request: Option<String>,
    started: Timestamp,
) -> RunningSync {
    let cancel = ctx.shutdown.child_token();
    let state = Arc::new(Mutex::new(TaskState::Waiting));
    let (progress_tx, progress) = ProgressSender::channel();
    // A root span: the sync outlives the reconcile that started it.
    let span = info_span!(parent: None, "sync", namespace = %job.namespace, name = %job.name);
    let task = {
        let ctx = ctx.clone();
        let cancel = cancel.clone();
        let state = state.clone();
        async move {
            let key = job.key.clone();
            let result = tokio::select! {
                permit = ctx.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => {
                        *lock(&state) = TaskState::Running;
                        let result = sync(&ctx, job, progress_tx, &cancel).await;
                        drop(permit);
                        result
                    }
                    // The semaphore is never closed; treat it like a shutdown.
                    Err(_) => Err(TaskError::Sync(SyncError::Cancelled)),
                },
                () = cancel.cancelled() => Err(TaskError::Sync(SyncError::Cancelled)),
            };
            let at = Timestamp::now();
            *lock(&state) = TaskState::Finished(Box::new(Finished { at, result }));
            // A cancelled sync was cancelled by a reconcile (delete, change, suspend) or
            // by shutdown, which already handle it: nothing to report.
            if !cancel.is_cancelled() {
                ctx.trigger(&key);
            }
        }
        .instrument(span)
    };
    RunningSync {
        inputs,
        started,
        sync_request,
        cancel,
        state,
        progress,
        progress_written: None,
        handle: tokio::spawn(task),
    }
}

async fn sync(
    ctx: &Context,
    job: SyncJob,
    progress: ProgressSender,
    cancel: &CancellationToken,
) -> Result<Synced, TaskError> {
    let settings = &ctx.settings;
    let dir = snapshots::connector_dir(&settings.data_dir, &job.namespace, &job.name);
    let removed = snapshots::off_thread("prepare", dir.clone(), snapshots::prepare).await?;
    if removed > 0 {
        info!(removed, "removed what an interrupted sync left behind");
    }
    let started_at = chrono::Utc::now();
    let sync_id = c1z::new_ksuid(started_at).map_err(TaskError::SyncId)?;
    let relative = snapshots::relative_file(&job.namespace, &job.name, &sync_id);
    let output = settings.data_dir.join(&relative);

    let observer: Arc<dyn RequestObserver> = Arc::new(ApiMetrics(ctx.metrics.clone()));
    let client = settings.confluence_client(
        &job.origin,
        &job.credentials,
        settings.requests_in_flight,
        Some(observer),
    )?;
    let options = SyncOptions {
        spaces: job.sync.spaces,
        skip_personal_spaces: job.sync.skip_personal_spaces,
        concurrency: WALKS_PER_SYNC,
        timeout: job.sync.timeout,
        snapshot: SnapshotOptions {
            sync_id: Some(sync_id),
            started_at: Some(started_at),
            ..SnapshotOptions::default()
        },
        progress: Some(progress),
    };
    info!(site = %job.origin, "sync started");
    let report = run_sync(&client, &options, &output, cancel).await?;

    // Before pruning: with a retention of 1 the previous snapshot goes next.
    let previous = job.previous.map(|name| dir.join(name));
    let change = compare_with_previous(dir.clone(), previous, output.clone()).await;

    let retention = settings.snapshot_retention;
    let pruned = snapshots::off_thread("prune", dir, move |d| {
        snapshots::prune(d, retention, &output)
    })
    .await;
    match pruned {
        Ok(0) => {}
        Ok(n) => info!(removed = n, "removed old snapshots"),
        // The new snapshot is safe; an old one lingering is worth a warning, not a
        // failed sync.
        Err(e) => warn!(error = %e, "cannot remove old snapshots"),
    }
    Ok(Synced {
        report,
        relative,
        change,
    })
}

/// Counts what changed between the previous snapshot (if any) and `new`. The sync has
/// already succeeded: a comparison that fails is logged and skipped, never fatal.
async fn compare_with_previous(
    dir: PathBuf,
    previous: Option<PathBuf>,
    new: PathBuf,
) -> Option<ChangeCounts> {
    let previous = previous.filter(|p| *p != new)?;
    let result = snapshots::off_thread("compare", dir, move |_| {
        Ok(review::count_file_changes(&previous, &new))
    })
    .await;
    match result {
        Ok(Ok(counts)) => Some(counts),
        Ok(Err(e)) => {
            warn!(error = %e, "cannot compare with the previous snapshot");
            None
        }
        Err(e) => {
            warn!(error = %e, "cannot compare with the previous snapshot");
            None
        }
    }
}
