//! The reconcile of one `ConfluenceConnector`: cheap unless a sync is due.
//!
//! Order: report a finished sync; honour `suspend`; check the spec, the site and the
//! Secret; restart a sync whose inputs changed or show a running one's progress; else
//! start a sync if one is due, or requeue for when it will be.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use rand::Rng;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{
    CLEANUP_FINALIZER, ConfluenceConnector, ConfluenceConnectorStatus,
    SYNC_REQUESTED_AT_ANNOTATION, reasons,
};
use crate::site::normalize_site;
use crate::sync::SyncError;

use super::context::{Context, RunningSync, SyncInputs, TaskState, lock};
use super::credentials::{Credentials, credentials_from_secret};
use super::error::back_off;
use super::events::{self, ready_transition};
use super::outcome::{
    access_change_of, failure_message, needs_user_change, object_counts, snapshot_ref, summary_of,
    task_failure_reason,
};
use super::schedule::{Due, DueInput, add, backoff_delay, sync_due, truncate, with_jitter};
use super::status::{Observation, SyncRun, next_status};
use super::status_patch::{apply_status, show_progress, whole_seconds};
use super::sync_task::{self, SyncJob, Synced, TaskError};
use super::{Error, snapshots};

/// The kind label of reconcile metrics.
const KIND: &str = "ConfluenceConnector";
/// How often a running sync's progress may be written to the status.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// Safety requeue for connectors that wait on a user change: watch events can be
/// missed, so nothing waits forever.
const SAFETY_REQUEUE: Duration = Duration::from_secs(30 * 60);
/// How long a reconcile waits for a cancelled sync to release its files.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// Longest status message kept from an error text.
const MAX_MESSAGE_CHARS: usize = 900;

/// Entry point for the controller: the finalizer around [`apply`] and [`cleanup`],
/// with metrics.
pub async fn reconcile(obj: Arc<ConfluenceConnector>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = Instant::now();
    let namespace = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = obj.name_any();
    let span = info_span!("reconcile", namespace = %namespace, name = %name);
    let api: Api<ConfluenceConnector> = Api::namespaced(ctx.client.clone(), &namespace);
    let (ctx_ref, api_ref) = (&ctx, &api);
    let result = finalizer(&api, CLEANUP_FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(obj) => apply(obj, ctx_ref, api_ref).await,
            FinalizerEvent::Cleanup(obj) => cleanup(obj, ctx_ref).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let outcome = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciled(KIND, outcome, timer.elapsed().as_secs_f64());
    result
}

/// After a failed reconcile: back off per connector (5 s·2ⁿ, capped, jittered).
pub fn error_policy(obj: Arc<ConfluenceConnector>, error: &Error, ctx: Arc<Context>) -> Action {
    let failures = ctx.record_failure(&ObjectRef::from_obj(&*obj));
    back_off(&ctx.metrics, KIND, &*obj, error, failures)
}

/// What the reconcile works with: the object, its API, and the status as last seen.
struct Current<'a> {
    obj: Arc<ConfluenceConnector>,
    api: &'a Api<ConfluenceConnector>,
    key: ObjectRef<ConfluenceConnector>,
    namespace: String,
    name: String,
    generation: i64,
    status: Option<ConfluenceConnectorStatus>,
    /// Whether `status` was read from the API server (or written) in this reconcile,
    /// rather than taken from the possibly lagging cache.
    fresh: bool,
}

impl Current<'_> {
    /// Writes `next` if it differs; publishes the `Ready` transition Event and refreshes
    /// the condition metrics.
    async fn write(&mut self, ctx: &Context, next: ConfluenceConnectorStatus) -> Result<(), Error> {
        let transition = ready_transition(self.status.as_ref(), &next);
        self.write_quietly(ctx, next).await?;
        if let Some((type_, reason, message)) = transition {
            events::publish(ctx, &self.obj, type_, &reason, &message).await;
        }
        Ok(())
    }

    /// [`Current::write`] without the transition Event (for callers that publish their
    /// own).
    async fn write_quietly(
        &mut self,
        ctx: &Context,
        next: ConfluenceConnectorStatus,
    ) -> Result<(), Error> {
        if apply_status(self.api, &self.name, self.status.as_ref(), &next)
            .await?
            .is_some()
        {
            self.fresh = true;
        }
        self.status = Some(next);
        self.observe_metrics(ctx);
        Ok(())
    }

    fn observe_metrics(&self, ctx: &Context) {
        let Some(status) = &self.status else { return };
        ctx.metrics
            .set_conditions(&self.namespace, &self.name, &status.conditions);
        if let Some(summary) = &status.summary {
            ctx.metrics
                .set_objects(&self.namespace, &self.name, &object_counts(summary));
        }
        if let Some(time) = &status.last_successful_sync_time {
            ctx.metrics.set_last_success(
                &self.namespace,
                &self.name,
                time.0.as_millisecond() as f64 / 1000.0,
            );
        }
    }

    fn next(&self, observation: &Observation, now: Timestamp) -> ConfluenceConnectorStatus {
        let mut next = next_status(self.status.as_ref(), self.generation, observation, now);
        whole_seconds(&mut next);
        next
    }
}

async fn apply(
    obj: Arc<ConfluenceConnector>,
    ctx: &Arc<Context>,
    api: &Api<ConfluenceConnector>,
) -> Result<Action, Error> {
    let namespace = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let mut cur = Current {
        key: ObjectRef::from_obj(&*obj),
        name: obj.name_any(),
        generation: obj.meta().generation.unwrap_or(0),
        status: obj.status.clone(),
        obj,
        api,
        namespace,
        fresh: false,
    };

    report_finished_sync(ctx, &mut cur).await?;

    if cur.obj.spec.suspended() {
        let cancelled = cancel_sync(ctx, &cur.key).await;
        let next = cur.next(&Observation::Suspended, truncate(Timestamp::now()));
        let changed = cur.status.as_ref() != Some(&next);
        cur.write(ctx, next).await?;
        if changed || cancelled {
            info!(cancelled_sync = cancelled, "suspended");
            events::publish(
                ctx,
                &cur.obj,
                EventType::Normal,
                reasons::SUSPENDED,
                "Syncing is suspended",
            )
            .await;
        }
        return Ok(Action::requeue(SAFETY_REQUEUE));
    }

    let checked = match check_inputs(ctx, &cur).await? {
        Ok(checked) => checked,
        Err(observation) => {
            if cancel_sync(ctx, &cur.key).await {
                info!("sync cancelled: its inputs are no longer usable");
            }
            let next = cur.next(&observation, truncate(Timestamp::now()));
            cur.write(ctx, next).await?;
            return Ok(Action::requeue(SAFETY_REQUEUE));
        }
    };
    let inputs = SyncInputs {
        generation: cur.generation,
        fingerprint: checked.credentials.fingerprint(),
        site: checked.origin.to_string(),
    };

    // A running sync: keep it if it still matches the inputs, else restart it.
    let running_inputs = ctx.syncs().get(&cur.key).map(|s| s.inputs.clone());
    if let Some(running_inputs) = running_inputs {
        if running_inputs == inputs {
            return show_running_progress(ctx, &mut cur).await;
        }
        info!("spec or credentials changed during the sync: restarting it");
        cancel_sync(ctx, &cur.key).await;
        ctx.reset_failures(&cur.key);
        return start_sync(ctx, &mut cur, checked, inputs).await;
    }

    let sync_request = sync_request(&cur.obj);
    let mut due = due_now(&cur, &inputs.fingerprint, sync_request.as_deref());
    if matches!(due, Due::Now(_)) && !cur.fresh {
        // The cache may lag behind a status this operator just wrote; a sync is costly
        // enough to confirm against the API server first.
        let live = api.get_status(&cur.name).await.map_err(Error::Kube)?;
        cur.status = live.status;
        cur.fresh = true;
        due = due_now(&cur, &inputs.fingerprint, sync_request.as_deref());
    }
    match due {
        Due::Now(reason) => {
            info!(why = reason.as_str(), "sync due");
            if reason.resets_backoff() {
                ctx.reset_failures(&cur.key);
            }
            start_sync(ctx, &mut cur, checked, inputs).await
        }
        Due::At(time) => {
            cur.observe_metrics(ctx);
            let wait = time.duration_since(Timestamp::now());
            let wait = Duration::try_from(wait).unwrap_or_default();
            debug!(wait_s = wait.as_secs(), "next sync scheduled");
            Ok(Action::requeue(
                wait.clamp(Duration::from_secs(1), SAFETY_REQUEUE),
            ))
        }
    }
}

fn due_now(cur: &Current<'_>, fingerprint: &str, sync_request: Option<&str>) -> Due {
    sync_due(DueInput {
        status: cur.status.as_ref(),
        generation: cur.generation,
        credentials_fingerprint: fingerprint,
        sync_request,
        now: Timestamp::now(),
    })
}

fn sync_request(obj: &ConfluenceConnector) -> Option<String> {
    obj.annotations()
        .get(SYNC_REQUESTED_AT_ANNOTATION)
        .filter(|v| !v.is_empty())
        .cloned()
}

/// The usable inputs of a sync.
struct Checked {
    origin: crate::site::SiteOrigin,
    credentials: Credentials,
    sync: crate::api::connector::EffectiveSync,
}

/// Checks spec, site and Secret. The outer error is a failed API call; the inner one
/// the observation to report when the inputs are unusable.
async fn check_inputs(
    ctx: &Context,
    cur: &Current<'_>,
) -> Result<Result<Checked, Observation>, Error> {
    let spec = &cur.obj.spec;
    let sync = match spec.sync_settings() {
        Ok(sync) => sync,
        Err(e) => {
            return Ok(Err(Observation::Invalid {
                reason: reasons::INVALID_SPEC,
                message: e.to_string(),
            }));
        }
    };
    let origin = match normalize_site(&spec.site, &ctx.settings.site_policy) {
        Ok(origin) => origin,
        Err(e) => {
            return Ok(Err(Observation::Invalid {
                reason: reasons::INVALID_SITE,
                message: e.to_string(),
            }));
        }
    };
    // The only place Secret values are read: a GET of the one referenced Secret.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &cur.namespace);
    let secret_ref = &spec.credentials.secret_ref;
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(Error::Kube)?;
    match credentials_from_secret(secret_ref, secret.as_ref()) {
        Ok(credentials) => Ok(Ok(Checked {
            origin,
            credentials,
            sync,
        })),
        Err(e) => Ok(Err(Observation::Invalid {
            reason: e.reason(),
            message: e.to_string(),
        })),
    }
}

async fn start_sync(
    ctx: &Arc<Context>,
    cur: &mut Current<'_>,
    checked: Checked,
    inputs: SyncInputs,
) -> Result<Action, Error> {
    let started = Timestamp::now();
    let job = SyncJob {
        key: cur.key.clone(),
        namespace: cur.namespace.clone(),
        name: cur.name.clone(),
        origin: checked.origin,
        credentials: checked.credentials,
        sync: checked.sync,
        // The snapshot this sync will be compared with: the last successful one, by the
        // status rather than by file name (two syncs within a second have KSUIDs whose
        // order is random). Only the file name is taken, so a hand-edited status cannot
        // point the comparison outside the connector's directory.
        previous: cur
            .status
            .as_ref()
            .and_then(|s| s.snapshot.as_ref())
            .and_then(|s| std::path::Path::new(&s.file).file_name().map(PathBuf::from)),
    };
    let running = sync_task::start(ctx, job, inputs, sync_request(&cur.obj), started);
    let mut next = cur.next(&Observation::SyncStarted { started }, started);
    show_progress(&mut next, &progress_message(ctx, &running));
    ctx.syncs().insert(cur.key.clone(), running);
    cur.write(ctx, next).await?;
    if let Some(sync) = ctx.syncs().get_mut(&cur.key) {
        sync.progress_written = Some(Instant::now());
    }
    Ok(Action::requeue(PROGRESS_EVERY))
}

async fn show_running_progress(ctx: &Context, cur: &mut Current<'_>) -> Result<Action, Error> {
    let message = {
        let syncs = ctx.syncs();
        let Some(sync) = syncs.get(&cur.key) else {
            return Ok(Action::requeue(PROGRESS_EVERY));
        };
        if let Some(at) = sync.progress_written
            && at.elapsed() < PROGRESS_EVERY
        {
            let left = PROGRESS_EVERY.saturating_sub(at.elapsed());
            return Ok(Action::requeue(left.max(Duration::from_secs(1))));
        }
        progress_message(ctx, sync)
    };
    if let Some(mut next) = cur.status.clone() {
        show_progress(&mut next, &message);
        cur.write(ctx, next).await?;
    }
    if let Some(sync) = ctx.syncs().get_mut(&cur.key) {
        sync.progress_written = Some(Instant::now());
    }
    Ok(Action::requeue(PROGRESS_EVERY))
}

fn progress_message(ctx: &Context, sync: &RunningSync) -> String {
    match &*lock(&sync.state) {
        // A task just spawned has not taken its free slot yet: it is starting, not
        // waiting.
        TaskState::Waiting if ctx.slots.available_permits() == 0 => format!(
            "Waiting for a free sync slot ({} syncs run at once)",
            ctx.settings.concurrency
        ),
        TaskState::Waiting | TaskState::Running | TaskState::Finished(_) => {
            format!("Syncing: {}", sync.progress.borrow().describe())
        }
    }
}

/// Cancels the connector's sync, if any, and waits until it has let go of its files.
/// Returns whether there was one.
async fn cancel_sync(ctx: &Context, key: &ObjectRef<ConfluenceConnector>) -> bool {
    let Some(sync) = ctx.syncs().remove(key) else {
        return false;
    };
    sync.cancel.cancel();
    if tokio::time::timeout(CANCEL_WAIT, sync.handle)
        .await
        .is_err()
    {
        warn!("a cancelled sync did not stop within {CANCEL_WAIT:?}");
    }
    true
}

/// Reports the connector's finished sync, if its task has ended.
async fn report_finished_sync(ctx: &Context, cur: &mut Current<'_>) -> Result<(), Error> {
    let finished = {
        let mut syncs = ctx.syncs();
        let done = syncs
            .get(&cur.key)
            .is_some_and(|s| matches!(&*lock(&s.state), TaskState::Finished(_)));
        if !done {
            return Ok(());
        }
        let Some(sync) = syncs.remove(&cur.key) else {
            return Ok(());
        };
        let state = std::mem::replace(&mut *lock(&sync.state), TaskState::Running);
        match state {
            TaskState::Finished(finished) => (sync, finished),
            _ => return Ok(()),
        }
    };
    let (sync, finished) = finished;
    let seconds = finished
        .at
        .duration_since(sync.started)
        .as_secs_f64()
        .max(0.0);
    let interval = cur
        .obj
        .spec
        .sync_settings()
        .map(|s| s.interval)
        .unwrap_or(crate::api::connector::DEFAULT_INTERVAL);
    let mut run = SyncRun {
        started: sync.started,
        finished: finished.at,
        sync_request: sync.sync_request.clone(),
        credentials_fingerprint: sync.inputs.fingerprint.clone(),
        next_sync_time: finished.at,
    };
    // Drawn up front: the thread-local generator cannot be held across an await.
    let jitter: f64 = rand::rng().random();
    match finished.result {
        Ok(Synced {
            report,
            relative,
            change,
        }) => {
            ctx.reset_failures(&cur.key);
            run.next_sync_time = add(finished.at, with_jitter(interval, jitter));
            let summary = summary_of(&report.counts);
            let change = change.as_ref().map(access_change_of);
            let observation = Observation::SyncSucceeded {
                run,
                summary: summary.clone(),
                snapshot: snapshot_ref(&report, &relative),
                change: change.clone(),
            };
            let next = cur.next(&observation, finished.at);
            info!(
                users = summary.users,
                groups = summary.groups,
                memberships = summary.memberships,
                spaces = summary.spaces,
                space_permissions = summary.space_permissions,
                requests = report.requests,
                seconds = format!("{seconds:.1}"),
                file = %relative.display(),
                "sync succeeded"
            );
            cur.write(ctx, next).await?;
            ctx.metrics
                .sync_finished(&cur.namespace, &cur.name, "success", seconds);
            let note = format!(
                "Synced {} users ({} disabled), {} groups, {} memberships, {} spaces and {} space permissions in {seconds:.1}s",
                summary.users,
                summary.disabled_users,
                summary.groups,
                summary.memberships,
                summary.spaces,
                summary.space_permissions
            );
            events::publish(
                ctx,
                &cur.obj,
                EventType::Normal,
                reasons::SYNC_SUCCEEDED,
                &note,
            )
            .await;
            if let Some(change) = change {
                let counts = change
                    .counts()
                    .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)));
                ctx.metrics
                    .access_changed(&cur.namespace, &cur.name, &counts);
                if !change.is_empty() {
                    let note = events::access_change_note(&change);
                    info!(%note, "access changed");
                    events::publish(
                        ctx,
                        &cur.obj,
                        EventType::Normal,
                        reasons::ACCESS_CHANGED,
                        &note,
                    )
                    .await;
                }
            }
        }
        // Cancelled by a change this reconcile handles next, or by shutdown.
        Err(TaskError::Sync(SyncError::Cancelled)) => {
            debug!("the sync was cancelled");
        }
        Err(error) => {
            let failures = ctx.record_failure(&cur.key);
            let reason = task_failure_reason(&error);
            let wait = match (reason, &error) {
                (reasons::RATE_LIMITED, TaskError::Sync(e)) => e
                    .retry_after()
                    .unwrap_or_else(|| backoff_delay(failures, jitter)),
                // Presenting a rejected token again and again helps nobody (and can
                // lock the account): only a change or a sync request retries soon.
                _ if needs_user_change(reason) => with_jitter(SAFETY_REQUEUE, jitter),
                _ => backoff_delay(failures, jitter),
            };
            run.next_sync_time = add(finished.at, wait);
            // The status and Event say what a person can act on; the full error text,
            // which may quote Confluence's answer, goes to the log only.
            let message = short(&failure_message(&error));
            warn!(
                reason,
                error = %error,
                failures,
                retry_in_s = wait.as_secs(),
                "sync failed"
            );
            let observation = Observation::SyncFailed {
                run,
                reason,
                message: message.clone(),
            };
            let next = cur.next(&observation, finished.at);
            // The Warning below says it; the transition Event would repeat it.
            cur.write_quietly(ctx, next).await?;
            ctx.metrics
                .sync_finished(&cur.namespace, &cur.name, reason, seconds);
            events::publish(ctx, &cur.obj, EventType::Warning, reason, &message).await;
        }
    }
    Ok(())
}

fn short(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_string();
    }
    let cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{cut}…")
}

/// The finalizer's cleanup: stop the sync, remove the snapshots, forget the
/// connector. Idempotent; nothing in Confluence is touched.
async fn cleanup(obj: Arc<ConfluenceConnector>, ctx: &Context) -> Result<Action, Error> {
    let key = ObjectRef::from_obj(&*obj);
    let namespace = obj.namespace().ok_or(Error::MissingMetadata("namespace"))?;
    let name = obj.name_any();
    if cancel_sync(ctx, &key).await {
        info!("sync cancelled: the connector is being deleted");
    }
    let dir = snapshots::connector_dir(&ctx.settings.data_dir, &namespace, &name);
    snapshots::off_thread("remove", dir, snapshots::remove)
        .await
        .map_err(Error::Cleanup)?;
    ctx.metrics.forget_connector(&namespace, &name);
    ctx.reset_failures(&key);
    info!("snapshots removed; connector released");
    Ok(Action::await_change())
}
