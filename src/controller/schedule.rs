//! When a connector's next sync is due, and how long to wait after a failure. Pure:
//! `now` and the random draws are passed in, so every rule is table-tested.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::{ConfluenceConnectorStatus, Phase, reasons};

/// First wait after a failed sync.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait after failed syncs.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5 * 60);
/// Share of a wait added at random (0–10 %), so connectors that failed or synced
/// together drift apart instead of hitting the site at the same moment again.
pub const JITTER_SHARE: f64 = 0.10;

/// What the reconciler knows right now.
#[derive(Clone, Copy, Debug)]
pub struct DueInput<'a> {
    /// The live status, if any.
    pub status: Option<&'a ConfluenceConnectorStatus>,
    /// `metadata.generation`.
    pub generation: i64,
    /// Fingerprint of the credentials in the Secret now.
    pub credentials_fingerprint: &'a str,
    /// The trigger annotation's value now.
    pub sync_request: Option<&'a str>,
    /// The time.
    pub now: Timestamp,
}

/// Why a sync starts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DueReason {
    /// The connector has never finished a sync.
    FirstSync,
    /// The operator stopped while a sync ran (status says `Syncing`, no task runs).
    Interrupted,
    /// The spec changed since the last sync.
    SpecChanged,
    /// The credentials changed since the last sync.
    CredentialsChanged,
    /// The Secret or spec was unusable and is usable now.
    InputsFixed,
    /// A new value of the trigger annotation.
    Requested,
    /// `nextSyncTime` has passed.
    Scheduled,
}

impl DueReason {
    /// Words for the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstSync => "first sync",
            Self::Interrupted => "resuming an interrupted sync",
            Self::SpecChanged => "spec changed",
            Self::CredentialsChanged => "credentials changed",
            Self::InputsFixed => "secret or spec usable again",
            Self::Requested => "sync requested",
            Self::Scheduled => "interval elapsed",
        }
    }

    /// A change by the user: the error back-off starts over.
    pub fn resets_backoff(self) -> bool {
        matches!(
            self,
            Self::SpecChanged | Self::CredentialsChanged | Self::InputsFixed | Self::Requested
        )
    }
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Start a sync now.
    Now(DueReason),
    /// Nothing to do until then.
    At(Timestamp),
}

/// Reasons the reconciler reports without syncing: the inputs were unusable.
const INPUT_REASONS: [&str; 4] = [
    reasons::SECRET_NOT_FOUND,
    reasons::SECRET_KEY_MISSING,
    reasons::INVALID_SITE,
    reasons::INVALID_SPEC,
];

fn condition<'a>(status: &'a ConfluenceConnectorStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Whether a sync is due for a connector that has no sync running.
pub fn sync_due(input: DueInput<'_>) -> Due {
    let Some(status) = input.status else {
        return Due::Now(DueReason::FirstSync);
    };
    let synced = condition(status, reasons::SYNCED);
    let Some(synced) = synced.filter(|_| status.last_sync_time.is_some()) else {
        return Due::Now(DueReason::FirstSync);
    };
    if status.phase == Some(Phase::Syncing) {
        return Due::Now(DueReason::Interrupted);
    }
    if synced.observed_generation != Some(input.generation) {
        return Due::Now(DueReason::SpecChanged);
    }
    if status.credentials_fingerprint.as_deref() != Some(input.credentials_fingerprint) {
        return Due::Now(DueReason::CredentialsChanged);
    }
    // Ready names an input problem that no sync reported (Synced says something else):
    // it came from checking the Secret or spec, which pass now.
    if let Some(ready) = condition(status, reasons::READY)
        && ready.status == "False"
        && INPUT_REASONS.contains(&ready.reason.as_str())
        && ready.reason != synced.reason
    {
        return Due::Now(DueReason::InputsFixed);
    }
    let next = status.next_sync_time.as_ref().map(|t| t.0);
    let rate_limited_until = next.filter(|_| synced.reason == reasons::RATE_LIMITED);
    if let Some(request) = input.sync_request
        && status.last_handled_sync_request.as_deref() != Some(request)
    {
        // A request skips the interval and the back-off, never Confluence's own
        // Retry-After.
        return match rate_limited_until {
            Some(until) if until > input.now => Due::At(until),
            _ => Due::Now(DueReason::Requested),
        };
    }
    match next {
        Some(next) if next > input.now => Due::At(next),
        _ => Due::Now(DueReason::Scheduled),
    }
}

/// `base` plus `jitter` (a draw in `[0, 1)`) times [`JITTER_SHARE`] of it.
pub fn with_jitter(base: Duration, jitter: f64) -> Duration {
    base + base.mul_f64(JITTER_SHARE * jitter.clamp(0.0, 1.0))
}

/// The wait after `failures` failed syncs in a row (1 for the first failure):
/// 5 s·2ⁿ⁻¹, capped at 5 minutes, jittered.
pub fn backoff_delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let delay = BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_CAP);
    with_jitter(delay, jitter)
}

/// `time + by`, saturating at the end of time rather than failing.
pub fn add(time: Timestamp, by: Duration) -> Timestamp {
    SignedDuration::try_from(by)
        .ok()
        .and_then(|d| time.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Whole seconds: the API server stores times to the second, so anything finer would
/// make the status written differ from the status read back.
pub fn truncate(time: Timestamp) -> Timestamp {
    Timestamp::from_second(time.as_second()).unwrap_or(time)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn cond(type_: &str, status: &str, reason: &str, generation: i64) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: Some(generation),
            last_transition_time: Time(t(0)),
        }
    }

    /// A connector that synced successfully at t=100, generation 2, next sync at t=3700.
    fn synced() -> ConfluenceConnectorStatus {
        ConfluenceConnectorStatus {
            observed_generation: Some(2),
            phase: Some(Phase::Connected),
            conditions: vec![
                cond(reasons::READY, "True", reasons::CONNECTED, 2),
                cond(reasons::SYNCED, "True", reasons::SYNC_SUCCEEDED, 2),
            ],
            last_sync_time: Some(Time(t(100))),
            next_sync_time: Some(Time(t(3700))),
            credentials_fingerprint: Some("fp".into()),
            last_handled_sync_request: Some("r1".into()),
            ..ConfluenceConnectorStatus::default()
        }
    }

    fn due(
        status: Option<&ConfluenceConnectorStatus>,
        fp: &str,
        req: Option<&str>,
        now: i64,
    ) -> Due {
        sync_due(DueInput {
            status,
            generation: 2,
            credentials_fingerprint: fp,
            sync_request: req,
            now: t(now),
        })
    }

    #[test]
    fn the_rules_in_order() {
        let s = synced();
        assert_eq!(due(None, "fp", None, 0), Due::Now(DueReason::FirstSync));
        assert_eq!(
            due(Some(&ConfluenceConnectorStatus::default()), "fp", None, 0),
            Due::Now(DueReason::FirstSync)
        );
        assert_eq!(due(Some(&s), "fp", None, 200), Due::At(t(3700)));
        assert_eq!(
            due(Some(&s), "fp", None, 3700),
            Due::Now(DueReason::Scheduled)
        );
        assert_eq!(
            due(Some(&s), "other", None, 200),
            Due::Now(DueReason::CredentialsChanged)
        );
        assert_eq!(due(Some(&s), "fp", Some("r1"), 200), Due::At(t(3700)));
        assert_eq!(
            due(Some(&s), "fp", Some("r2"), 200),
            Due::Now(DueReason::Requested)
        );

        let mut syncing = synced();
        syncing.phase = Some(Phase::Syncing);
        assert_eq!(
            due(Some(&syncing), "fp", None, 200),
            Due::Now(DueReason::Interrupted)
        );

        let mut old = synced();
        old.conditions[1].observed_generation = Some(1);
        assert_eq!(
            due(Some(&old), "fp", None, 200),
            Due::Now(DueReason::SpecChanged)
        );
    }

    #[test]
    fn an_input_problem_reported_without_a_sync_is_retried_once_fixed() {
        let mut s = synced();
        s.conditions[0] = cond(reasons::READY, "False", reasons::SECRET_NOT_FOUND, 2);
        assert_eq!(
            due(Some(&s), "fp", None, 200),
            Due::Now(DueReason::InputsFixed)
        );

        // A sync that failed with InvalidSite waits for its back-off instead.
        s.conditions[0] = cond(reasons::READY, "False", reasons::INVALID_SITE, 2);
        s.conditions[1] = cond(reasons::SYNCED, "False", reasons::INVALID_SITE, 2);
        assert_eq!(due(Some(&s), "fp", None, 200), Due::At(t(3700)));
    }

    #[test]
    fn a_request_never_cuts_short_a_rate_limit_wait() {
        let mut s = synced();
        s.conditions[1] = cond(reasons::SYNCED, "False", reasons::RATE_LIMITED, 2);
        assert_eq!(due(Some(&s), "fp", Some("r2"), 200), Due::At(t(3700)));
        assert_eq!(
            due(Some(&s), "fp", Some("r2"), 3701),
            Due::Now(DueReason::Requested)
        );
    }

    #[test]
    fn backoff_doubles_from_five_seconds_up_to_five_minutes() {
        let secs: Vec<u64> = (1..=9).map(|n| backoff_delay(n, 0.0).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(backoff_delay(u32::MAX, 0.0), BACKOFF_CAP);
        assert_eq!(backoff_delay(1, 0.999).as_millis(), 5499);
        assert_eq!(with_jitter(Duration::from_secs(3600), 0.5).as_secs(), 3780);
    }

    #[test]
    fn times_are_whole_seconds_and_adding_saturates() {
        let fine = Timestamp::from_millisecond(1_800_000_000_123).unwrap();
        assert_eq!(truncate(fine), t(0));
        assert_eq!(add(t(0), Duration::from_secs(5)), t(5));
        assert_eq!(add(Timestamp::MAX, Duration::from_secs(5)), Timestamp::MAX);
        assert!(DueReason::Requested.resets_backoff());
        assert!(!DueReason::Scheduled.resets_backoff());
    }
}
