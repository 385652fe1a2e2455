//! State shared by every reconcile: clients, settings, the running syncs and the
//! per-connector error back-off.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::ConfluenceConnector;
use crate::confluence::{ConfluenceClient, RequestObserver};
use crate::metrics::Metrics;
use crate::site::{SiteOrigin, SitePolicy};
use crate::sync::{ConnectError, SyncProgress, client_tuned};

use super::credentials::Credentials;
use super::sync_task::{Synced, TaskError};

/// Operator-wide settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Root of the snapshot directories.
    pub data_dir: PathBuf,
    /// Snapshots kept per connector.
    pub snapshot_retention: usize,
    /// Which sites are allowed.
    pub site_policy: SitePolicy,
    /// Requests in flight per sync.
    pub requests_in_flight: usize,
    /// Syncs running at once (the size of the slot semaphore).
    pub concurrency: usize,
    /// Longest duration a grant may ask for.
    pub max_grant_duration: std::time::Duration,
    /// `--request-timeout`: deadline of one Confluence request (`None`: the client's).
    pub request_timeout: Option<std::time::Duration>,
}

impl Settings {
    /// A Confluence client for `origin` with these settings, `in_flight` requests at
    /// once and `observer` feeding the metrics.
    pub fn confluence_client(
        &self,
        origin: &SiteOrigin,
        credentials: &Credentials,
        in_flight: usize,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Result<ConfluenceClient, ConnectError> {
        client_tuned(
            origin,
            &credentials.username,
            credentials.api_token.clone(),
            |config| {
                config.max_in_flight = in_flight.max(1);
                config.observer = observer;
                if let Some(deadline) = self.request_timeout {
                    config.request_timeout = deadline;
                }
            },
        )
    }
}

/// Where a sync task is.
#[derive(Debug)]
pub enum TaskState {
    /// Waiting for a free `--concurrency` slot.
    Waiting,
    /// Syncing.
    Running,
    /// Done; the reconciler reports the outcome and forgets the task.
    Finished(Box<Finished>),
}

/// The outcome of a sync task.
#[derive(Debug)]
pub struct Finished {
    /// When it ended.
    pub at: Timestamp,
    /// What the sync produced, or why not.
    pub result: Result<Synced, TaskError>,
}

/// One sync task of one connector.
#[derive(Debug)]
pub struct RunningSync {
    /// What the sync was started for; a connector whose inputs differ now restarts it.
    pub inputs: SyncInputs,
    /// When it was started (whole seconds).
    pub started: Timestamp,
    /// The trigger annotation's value it answers.
    pub sync_request: Option<String>,
    /// Cancels this sync only.
    pub cancel: CancellationToken,
    /// Where it is.
    pub state: Arc<Mutex<TaskState>>,
    /// The engine's progress.
    pub progress: watch::Receiver<SyncProgress>,
    /// When a progress message was last written to the status.
    pub progress_written: Option<Instant>,
    /// The task.
    pub handle: tokio::task::JoinHandle<()>,
}

/// The inputs a sync depends on: a change of any of them makes a running sync stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncInputs {
    /// `metadata.generation`.
    pub generation: i64,
    /// Credentials fingerprint.
    pub fingerprint: String,
    /// The vetted site origin.
    pub site: String,
}

/// Shared state of the controller.
pub struct Context {
    /// Kubernetes client.
    pub client: kube::Client,
    /// Settings.
    pub settings: Settings,
    /// The one Event recorder (it aggregates repeats).
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// `--concurrency` slots.
    pub slots: Arc<Semaphore>,
    /// Cancelled on shutdown; every sync's token is a child of it.
    pub shutdown: CancellationToken,
    syncs: Mutex<HashMap<ObjectRef<ConfluenceConnector>, RunningSync>>,
    failures: Mutex<HashMap<ObjectRef<ConfluenceConnector>, u32>>,
    triggers: Mutex<Vec<Trigger>>,
}

/// Where requests to reconcile connectors of one namespace (`None`: any) go.
type Trigger = (
    Option<String>,
    mpsc::UnboundedSender<ObjectRef<ConfluenceConnector>>,
);

/// Locks a mutex even if a panicking holder poisoned it: the maps stay consistent
/// because every update is a single insert or remove.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Context {
    /// A context with no syncs running.
    pub fn new(
        client: kube::Client,
        settings: Settings,
        recorder: Recorder,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            client,
            slots: Arc::new(Semaphore::new(settings.concurrency.max(1))),
            settings,
            recorder,
            metrics,
            shutdown,
            syncs: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            triggers: Mutex::new(Vec::new()),
        }
    }

    /// The running syncs.
    pub fn syncs(&self) -> MutexGuard<'_, HashMap<ObjectRef<ConfluenceConnector>, RunningSync>> {
        lock(&self.syncs)
    }

    /// Counts a failed sync; returns the failures in a row.
    pub fn record_failure(&self, key: &ObjectRef<ConfluenceConnector>) -> u32 {
        let mut failures = lock(&self.failures);
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets failures after a success or a change by the user.
    pub fn reset_failures(&self, key: &ObjectRef<ConfluenceConnector>) {
        lock(&self.failures).remove(key);
    }

    /// A stream of connectors to reconcile now, for the controller watching
    /// `namespace` (`None`: all namespaces).
    pub fn trigger_stream(
        &self,
        namespace: Option<String>,
    ) -> mpsc::UnboundedReceiver<ObjectRef<ConfluenceConnector>> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.triggers).push((namespace, tx));
        rx
    }

    /// Asks the controller that watches `key`'s namespace to reconcile it.
    pub fn trigger(&self, key: &ObjectRef<ConfluenceConnector>) {
        let triggers = lock(&self.triggers);
        let target = triggers
            .iter()
            .find(|(ns, _)| ns.is_some() && *ns == key.namespace)
            .or_else(|| triggers.iter().find(|(ns, _)| ns.is_none()));
        if let Some((_, tx)) = target {
            // A closed channel means that controller is shutting down.
            let _ = tx.send(key.clone());
        }
    }

    /// Cancels every sync and waits for their tasks, so no work file outlives the
    /// process. Called on shutdown.
    pub async fn stop_all_syncs(&self) {
        let handles: Vec<_> = {
            let mut syncs = self.syncs();
            syncs
                .drain()
                .map(|(_, sync)| {
                    sync.cancel.cancel();
                    sync.handle
                })
                .collect()
        };
        for handle in handles {
            let _ = handle.await;
        }
    }
}
