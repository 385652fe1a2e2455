//! The status a connector should show, from what the operator last observed.
//!
//! One pure function, `next_status(previous, generation, observation, now)`, so every rule
//! of the status contract (phase, conditions, kstatus and GitOps behaviour) is decided in
//! one place and table-tested. The reconciler writes the result only when it differs
//! from the live status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{
    AccessChange, ConfluenceConnectorStatus, Phase, SnapshotRef, SyncSummary, duration, reasons,
};

const TRUE: &str = "True";
const FALSE: &str = "False";
const UNKNOWN: &str = "Unknown";

/// Facts about one finished sync attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncRun {
    /// When it started.
    pub started: Timestamp,
    /// When it ended.
    pub finished: Timestamp,
    /// The trigger annotation's value this sync answers, if any.
    pub sync_request: Option<String>,
    /// Fingerprint of the credentials it used.
    pub credentials_fingerprint: String,
    /// When the next sync is due (interval or back-off, jitter included, fixed once).
    pub next_sync_time: Timestamp,
}

/// What the reconciler observed this time.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// The spec or its Secret cannot work until the user changes something:
    /// `SecretNotFound`, `SecretKeyMissing`, `InvalidSite` or `InvalidSpec`.
    Invalid {
        /// One of the reasons above.
        reason: &'static str,
        /// What is wrong, without secret values.
        message: String,
    },
    /// A sync has just started.
    SyncStarted {
        /// When.
        started: Timestamp,
    },
    /// A sync finished and wrote a snapshot.
    SyncSucceeded {
        /// The attempt.
        run: SyncRun,
        /// Object counts.
        summary: SyncSummary,
        /// The snapshot written.
        snapshot: SnapshotRef,
        /// What changed against the previous snapshot, when known.
        change: Option<AccessChange>,
    },
    /// A sync failed after its retries.
    SyncFailed {
        /// The attempt.
        run: SyncRun,
        /// `AuthenticationFailed`, `PermissionDenied`, `SiteUnreachable`, `RateLimited` or
        /// `SyncFailed`.
        reason: &'static str,
        /// What failed, without secret values.
        message: String,
    },
    /// `spec.suspend` is true.
    Suspended,
}

/// The status to write after `observation`, for an object at `generation`.
pub fn next_status(
    previous: Option<&ConfluenceConnectorStatus>,
    generation: i64,
    observation: &Observation,
    now: Timestamp,
) -> ConfluenceConnectorStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let mut conditions = Conditions {
        list: std::mem::take(&mut status.conditions),
        generation,
        now,
    };

    match observation {
        Observation::Invalid { reason, message } => {
            status.phase = Some(Phase::NotConnected);
            conditions.set(reasons::READY, FALSE, reason, message);
            conditions.set(reasons::STALLED, TRUE, reason, message);
            conditions.set(reasons::CREDENTIALS_VALID, FALSE, reason, message);
            conditions.remove(reasons::RECONCILING);
            status.observed_generation = Some(generation);
        }
        Observation::SyncStarted { started } => {
            status.phase = Some(Phase::Syncing);
            status.last_sync_start_time = Some(Time(*started));
            let ready = conditions.get(reasons::READY).cloned();
            let same_generation =
                ready.as_ref().and_then(|c| c.observed_generation) == Some(generation);
            match ready {
                // A routine sync of a healthy connector: Ready stays as it is, so GitOps
                // tools do not see the object progressing every interval.
                Some(ready) if ready.status == TRUE && same_generation => {
                    conditions.remove(reasons::RECONCILING);
                }
                Some(ready) if ready.status == FALSE && same_generation => {
                    conditions.remove(reasons::STALLED);
                    conditions.set(
                        reasons::RECONCILING,
                        TRUE,
                        reasons::PROGRESSING_WITH_RETRY,
                        "Retrying the sync after a failure",
                    );
                }
                _ => {
                    let message = "Syncing users, groups and spaces";
                    conditions.remove(reasons::STALLED);
                    conditions.set(reasons::READY, UNKNOWN, reasons::SYNCING, message);
                    conditions.set(reasons::RECONCILING, TRUE, reasons::SYNCING, message);
                }
            }
        }
        Observation::SyncSucceeded {
            run,
            summary,
            snapshot,
            change,
        } => {
            record_run(&mut status, run);
            status.phase = Some(Phase::Connected);
            status.last_successful_sync_time = Some(Time(run.finished));
            let message = format!(
                "Synced {} users, {} groups and {} spaces",
                summary.users, summary.groups, summary.spaces
            );
            conditions.set(reasons::READY, TRUE, reasons::CONNECTED, &message);
            conditions.set(reasons::SYNCED, TRUE, reasons::SYNC_SUCCEEDED, &message);
            conditions.set(
                reasons::CREDENTIALS_VALID,
                TRUE,
                reasons::AUTHENTICATED,
                "Confluence accepted the credentials",
            );
            conditions.remove(reasons::RECONCILING);
            conditions.remove(reasons::STALLED);
            status.summary = Some(summary.clone());
            status.snapshot = Some(snapshot.clone());
            // Replaced, never kept: a stale count would describe another sync.
            status.last_change = change.clone();
            status.observed_generation = Some(generation);
        }
        Observation::SyncFailed {
            run,
            reason,
            message,
        } => {
            record_run(&mut status, run);
            // Only the user can fix these: wrong credentials, or a site that answers
            // but is not Confluence.
            let credentials_problem = *reason == reasons::AUTHENTICATION_FAILED
                || *reason == reasons::PERMISSION_DENIED
                || *reason == reasons::INVALID_SITE;
            conditions.set(reasons::READY, FALSE, reason, message);
            conditions.set(reasons::SYNCED, FALSE, reason, message);
            conditions.remove(reasons::RECONCILING);
            if credentials_problem {
                status.phase = Some(Phase::NotConnected);
                conditions.set(reasons::CREDENTIALS_VALID, FALSE, reason, message);
                conditions.set(reasons::STALLED, TRUE, reason, message);
            } else {
                status.phase = Some(Phase::Error);
                conditions.remove(reasons::STALLED);
            }
            status.observed_generation = Some(generation);
        }
        Observation::Suspended => {
            conditions.remove(reasons::RECONCILING);
            let ready_status = conditions.get(reasons::READY).map(|c| c.status.clone());
            match ready_status.as_deref() {
                Some(TRUE) | Some(FALSE) => {}
                _ => conditions.set(
                    reasons::READY,
                    FALSE,
                    reasons::SUSPENDED,
                    "Syncing is suspended",
                ),
            }
            if status.phase == Some(Phase::Syncing) || status.phase.is_none() {
                status.phase = Some(if ready_status.as_deref() == Some(TRUE) {
                    Phase::Connected
                } else {
                    Phase::NotConnected
                });
            }
            status.observed_generation = Some(generation);
        }
    }

    status.conditions = conditions.list;
    status
}

fn record_run(status: &mut ConfluenceConnectorStatus, run: &SyncRun) {
    status.last_sync_start_time = Some(Time(run.started));
    status.last_sync_time = Some(Time(run.finished));
    status.next_sync_time = Some(Time(run.next_sync_time));
    let elapsed = run.finished.duration_since(run.started);
    let elapsed = std::time::Duration::try_from(elapsed).unwrap_or_default();
    status.last_sync_duration = Some(duration::format_duration(elapsed));
    status.credentials_fingerprint = Some(run.credentials_fingerprint.clone());
    if run.sync_request.is_some() {
        status.last_handled_sync_request = run.sync_request.clone();
    }
}

struct Conditions {
    list: Vec<Condition>,
    generation: i64,
    now: Timestamp,
}

impl Conditions {
    fn get(&self, type_: &str) -> Option<&Condition> {
        self.list.iter().find(|c| c.type_ == type_)
    }

    /// `lastTransitionTime` moves only when `status` flips (a new reason or message alone
    /// is not a transition).
    fn set(&mut self, type_: &str, status: &str, reason: &str, message: &str) {
        let transition = match self.get(type_) {
            Some(existing) if existing.status == status => existing.last_transition_time.clone(),
            _ => Time(self.now),
        };
        let condition = Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message: message.to_string(),
            observed_generation: Some(self.generation),
            last_transition_time: transition,
        };
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(slot) => *slot = condition,
            None => self.list.push(condition),
        }
    }

    /// `Reconciling` and `Stalled` exist only while true: removed, never written False.
    fn remove(&mut self, type_: &str) {
        self.list.retain(|c| c.type_ != type_);
    }
}

#[cfg(test)]
mod tests;
