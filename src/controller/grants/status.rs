//! A grant's conditions from its phase (pure): `Ready` always, `Reconciling` while the
//! operator still works towards the membership, `Stalled` when only a new grant helps.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::reasons;
use crate::api::{ConfluenceAccessGrantStatus, GrantPhase};

use super::super::schedule::truncate;

/// Ready=True: the membership is in place.
pub const GRANTED: &str = "Granted";
/// Ready=True: the user already was a member; the grant will not remove them.
pub const PREEXISTING_MEMBERSHIP: &str = "PreexistingMembership";
/// Ready=False: the grant's time ran out and the membership ended.
pub const EXPIRED: &str = "Expired";
/// Ready=False: the grant was deleted and the membership removed.
pub const REVOKED: &str = "Revoked";
/// Pending: the connector does not exist.
pub const CONNECTOR_NOT_FOUND: &str = "ConnectorNotFound";
/// Pending: the connector exists but is not Ready.
pub const CONNECTOR_NOT_READY: &str = "ConnectorNotReady";
/// Pending: adding the membership.
pub const GRANTING: &str = "Granting";
/// Active, ending: removing the membership.
pub const REVOKING: &str = "Revoking";
/// Failed: no group with that name or id.
pub const GROUP_NOT_FOUND: &str = "GroupNotFound";
/// Failed: no user with that account id or email (or the email is hidden).
pub const USER_NOT_FOUND: &str = "UserNotFound";
/// Failed: the account is not a person (an app) or cannot be granted.
pub const USER_NOT_GRANTABLE: &str = "UserNotGrantable";
/// Failed: `spec.duration` exceeds the operator's `--max-grant-duration`.
pub const DURATION_TOO_LONG: &str = "DurationTooLong";

/// What the reconcile decided; [`next_status`] turns it into conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The phase to report.
    pub phase: GrantPhase,
    /// The Ready reason.
    pub reason: &'static str,
    /// A sentence for people.
    pub message: String,
}

impl Verdict {
    /// A verdict in `phase` with `reason` and `message`.
    pub fn new(phase: GrantPhase, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            phase,
            reason,
            message: message.into(),
        }
    }
}

/// `previous` with `verdict`'s phase and conditions for `generation`. Transition times
/// move only when a condition's status changes.
pub fn next_status(
    previous: &ConfluenceAccessGrantStatus,
    verdict: &Verdict,
    generation: i64,
    now: Timestamp,
) -> ConfluenceAccessGrantStatus {
    let ready = match verdict.phase {
        GrantPhase::Active => "True",
        GrantPhase::Pending => "Unknown",
        GrantPhase::Expired | GrantPhase::Revoked | GrantPhase::Failed => "False",
    };
    let mut conditions = vec![condition(
        previous,
        reasons::READY,
        ready,
        verdict,
        generation,
        now,
    )];
    if verdict.phase == GrantPhase::Pending
        || (verdict.phase == GrantPhase::Active && verdict.reason == REVOKING)
    {
        conditions.push(condition(
            previous,
            reasons::RECONCILING,
            "True",
            verdict,
            generation,
            now,
        ));
    }
    if verdict.phase == GrantPhase::Failed {
        conditions.push(condition(
            previous,
            reasons::STALLED,
            "True",
            verdict,
            generation,
            now,
        ));
    }
    ConfluenceAccessGrantStatus {
        observed_generation: Some(generation),
        phase: Some(verdict.phase),
        conditions,
        ..previous.clone()
    }
}

fn condition(
    previous: &ConfluenceAccessGrantStatus,
    type_: &str,
    status: &str,
    verdict: &Verdict,
    generation: i64,
    now: Timestamp,
) -> Condition {
    let since = previous
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| Time(truncate(now)), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: verdict.reason.to_string(),
        message: verdict.message.clone(),
        observed_generation: Some(generation),
        last_transition_time: since,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: &ConfluenceAccessGrantStatus) -> (&str, &str) {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == reasons::READY)
            .expect("Ready is always present");
        (c.status.as_str(), c.reason.as_str())
    }

    fn types(status: &ConfluenceAccessGrantStatus) -> Vec<&str> {
        status.conditions.iter().map(|c| c.type_.as_str()).collect()
    }

    #[test]
    fn each_phase_maps_to_kstatus_friendly_conditions() {
        let now = Timestamp::from_second(1_000).unwrap();
        let empty = ConfluenceAccessGrantStatus::default();
        let pending = next_status(
            &empty,
            &Verdict::new(GrantPhase::Pending, CONNECTOR_NOT_READY, "waiting"),
            1,
            now,
        );
        assert_eq!(ready(&pending), ("Unknown", CONNECTOR_NOT_READY));
        assert_eq!(types(&pending), ["Ready", "Reconciling"]);

        let active = next_status(
            &pending,
            &Verdict::new(GrantPhase::Active, GRANTED, "member until …"),
            1,
            now,
        );
        assert_eq!(ready(&active), ("True", GRANTED));
        assert_eq!(types(&active), ["Ready"]);

        let failed = next_status(
            &empty,
            &Verdict::new(GrantPhase::Failed, GROUP_NOT_FOUND, "no group"),
            1,
            now,
        );
        assert_eq!(ready(&failed), ("False", GROUP_NOT_FOUND));
        assert_eq!(types(&failed), ["Ready", "Stalled"]);

        let expired = next_status(
            &active,
            &Verdict::new(GrantPhase::Expired, EXPIRED, "ended"),
            1,
            now,
        );
        assert_eq!(ready(&expired), ("False", EXPIRED));
        assert_eq!(types(&expired), ["Ready"]);
        assert_eq!(expired.observed_generation, Some(1));
    }

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t1 = Timestamp::from_second(1_000).unwrap();
        let t2 = Timestamp::from_second(2_000).unwrap();
        let a = next_status(
            &ConfluenceAccessGrantStatus::default(),
            &Verdict::new(GrantPhase::Pending, CONNECTOR_NOT_FOUND, "no connector"),
            1,
            t1,
        );
        let b = next_status(
            &a,
            &Verdict::new(GrantPhase::Pending, GRANTING, "adding"),
            1,
            t2,
        );
        assert_eq!(b.conditions[0].last_transition_time, Time(t1));
        let c = next_status(
            &b,
            &Verdict::new(GrantPhase::Active, GRANTED, "added"),
            1,
            t2,
        );
        assert_eq!(c.conditions[0].last_transition_time, Time(t2));
    }
}
