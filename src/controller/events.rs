//! Kubernetes Events for connectors: reasons are the condition reasons, failures are
//! Warnings, and notes never carry credentials (they come from status messages and
//! error texts, which are built without them).

use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use crate::api::{AccessChange, ConfluenceConnector, ConfluenceConnectorStatus, reasons};

use super::context::Context;

/// Events notes are limited to 1 KiB by the API.
const MAX_NOTE_BYTES: usize = 1000;

/// Publishes one Event about `obj`. A failure to publish is logged, never fatal:
/// Events are a courtesy, the status is the record.
pub async fn publish(
    ctx: &Context,
    obj: &ConfluenceConnector,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note)),
        action: action_of(reason).to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        warn!(error = %e, reason, "cannot publish an Event");
    }
}

/// The Event for a change of the `Ready` reason, if it changed: how a person following
/// `kubectl get events` learns of transitions.
pub fn ready_transition(
    previous: Option<&ConfluenceConnectorStatus>,
    next: &ConfluenceConnectorStatus,
) -> Option<(EventType, String, String)> {
    let ready = |s: &ConfluenceConnectorStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == reasons::READY)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (status, reason, message) = ready(next)?;
    let before = previous.and_then(ready).map(|(_, reason, _)| reason);
    if before.as_deref() == Some(reason.as_str()) {
        return None;
    }
    let type_ = if status == "False" && reason != reasons::SUSPENDED {
        EventType::Warning
    } else {
        EventType::Normal
    };
    Some((type_, reason, message))
}

fn action_of(reason: &str) -> &'static str {
    match reason {
        reasons::SYNCING
        | reasons::SYNC_SUCCEEDED
        | reasons::CONNECTED
        | reasons::ACCESS_CHANGED => "Sync",
        reasons::SUSPENDED => "Suspend",
        _ => "Reconcile",
    }
}

/// The note of an `AccessChanged` Event: the non-zero counts, never who or what (Events
/// are widely readable; names stay in the snapshots).
pub fn access_change_note(change: &AccessChange) -> String {
    let parts: Vec<String> = change
        .counts()
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(kind, n)| format!("{kind}={n}"))
        .collect();
    format!(
        "Access changed since the previous snapshot: {}",
        parts.join(", ")
    )
}

fn truncate(note: &str) -> String {
    if note.len() <= MAX_NOTE_BYTES {
        return note.to_string();
    }
    let mut end = MAX_NOTE_BYTES;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn with_ready(status: &str, reason: &str) -> ConfluenceConnectorStatus {
        ConfluenceConnectorStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: reason.into(),
                message: format!("{reason} message"),
                observed_generation: Some(1),
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_a_new_ready_reason_is_an_event() {
        let syncing = with_ready("Unknown", reasons::SYNCING);
        let failed = with_ready("False", reasons::SECRET_NOT_FOUND);
        assert_eq!(
            ready_transition(None, &syncing).map(|e| (e.0, e.1)),
            Some((EventType::Normal, reasons::SYNCING.to_string()))
        );
        assert_eq!(
            ready_transition(Some(&syncing), &failed).map(|e| (e.0, e.1)),
            Some((EventType::Warning, reasons::SECRET_NOT_FOUND.to_string()))
        );
        assert_eq!(ready_transition(Some(&failed), &failed), None);
        assert_eq!(truncate(&"é".repeat(600)).len(), 1000 + "…".len());
    }

    #[test]
    fn access_change_note_lists_non_zero_counts_only() {
        let change = AccessChange {
            users_added: 2,
            memberships_removed: 1,
            permissions_added: 3,
            ..AccessChange::default()
        };
        assert_eq!(
            access_change_note(&change),
            "Access changed since the previous snapshot: usersAdded=2, membershipsRemoved=1, permissionsAdded=3"
        );
    }
}
