//! The `ConfluenceAccessGrant` kind: a request to put one user into one Confluence group
//! for a bounded time (just-in-time access), and what the operator did about it.
//!
//! The spec is immutable: a grant is an audit record of one request, so changing who or
//! what it grants would rewrite history. A different grant is a new object.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::parse_duration;

/// Longest duration the schema accepts (also a CEL rule); `--max-grant-duration` may
/// lower the operator's limit.
pub const MAX_GRANT_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shortest duration the schema accepts.
pub const MIN_GRANT_DURATION: Duration = Duration::from_secs(1);
/// Longest `spec.reason`.
pub const MAX_REASON_CHARS: usize = 1024;

/// Membership of a user in a Confluence group for a limited time. The operator adds the
/// user when the grant is created and removes them when it expires or is deleted.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "confluence-operator.io",
    version = "v1alpha1",
    kind = "ConfluenceAccessGrant",
    namespaced,
    status = "ConfluenceAccessGrantStatus",
    derive = "PartialEq",
    shortname = "cfag",
    category = "confluence",
    doc = "Membership of a user in a Confluence group for a limited time, added and removed by the operator.",
    printcolumn = r#"{"name":"User","type":"string","jsonPath":".status.user"}"#,
    printcolumn = r#"{"name":"Group","type":"string","jsonPath":".status.groupName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[x_kube(
    validation = Rule::new("self == oldSelf").message("spec is immutable: delete this grant and create a new one")
)]
#[serde(rename_all = "camelCase")]
pub struct ConfluenceAccessGrantSpec {
    /// The `ConfluenceConnector` (same namespace) whose site and administrator
    /// credentials make the change.
    pub connector_ref: ConnectorRef,

    /// The group to join: by `name` or by `id`, exactly one.
    pub group: GroupSelector,

    /// The user to add: by `accountId` or by `email`, exactly one. An email is looked up
    /// in the connector's latest snapshot, so it works only where the site shows emails.
    pub user: UserSelector,

    /// How long the membership lasts from the moment it is granted, as a Go-style
    /// duration (`30m`, `8h`). At most `168h` (7 days); the operator's
    /// `--max-grant-duration` (default 24h) may be lower.
    #[schemars(length(min = 2, max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    #[x_kube(
        validation = Rule::new("duration(self) <= duration('168h')").message("duration must be at most 168h (7 days)"),
        validation = Rule::new("duration(self) >= duration('1s')").message("duration must be at least 1s")
    )]
    pub duration: String,

    /// Why the access is needed; recorded in Events and logs.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
}

/// A connector in the grant's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorRef {
    /// Name of the `ConfluenceConnector`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,
}

/// A Confluence group, by name or by id.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.name) != has(self.id)").message("set exactly one of group.name and group.id"))]
#[serde(rename_all = "camelCase")]
pub struct GroupSelector {
    /// The group's name, looked up in the connector's latest snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub name: Option<String>,

    /// The group's id (a UUID).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub id: Option<String>,
}

/// An Atlassian user, by account id or by email.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.accountId) != has(self.email)").message("set exactly one of user.accountId and user.email"))]
#[serde(rename_all = "camelCase")]
pub struct UserSelector {
    /// The Atlassian account id.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub account_id: Option<String>,

    /// The user's email address, looked up in the connector's latest snapshot.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 320))]
    pub email: Option<String>,
}

/// Where a grant stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantPhase {
    /// Not granted yet: waiting for the connector, resolving the group and user, or
    /// adding the membership.
    Pending,
    /// The user is a member of the group until `expiresAt`.
    Active,
    /// The time ran out and the membership was removed (or left alone when it existed
    /// before the grant).
    Expired,
    /// The grant was deleted before it expired and the membership was removed.
    Revoked,
    /// The grant cannot be carried out; the Ready condition says why.
    Failed,
}

impl GrantPhase {
    /// True for phases no reconcile will leave.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Expired | Self::Revoked | Self::Failed)
    }
}

/// A membership change the operator has decided on but not yet seen confirmed. It is
/// written before Confluence is called, so that a restart finishes (or re-checks) the
/// change instead of forgetting it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Adding the user to the group.
    Add,
    /// Removing the user from the group.
    Remove,
}

/// What the operator did. Written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfluenceAccessGrantStatus {
    /// The generation this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Pending`, `Active`, `Expired`, `Revoked` or `Failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<GrantPhase>,

    /// `Ready` (always), `Reconciling` and `Stalled` (only while true).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The user as the spec names them (email or account id), for display.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,

    /// The resolved Atlassian account id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,

    /// The resolved group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,

    /// The group's name as Confluence reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,

    /// When the membership was granted (or found already in place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub granted_at: Option<Time>,

    /// When the membership ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,

    /// When the membership was removed (or the grant ended without removal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,

    /// True when the user was already a member before this grant: the operator then
    /// never removes the membership.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preexisting_membership: Option<bool>,

    /// A membership change started but not yet confirmed (see `MembershipChange`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<MembershipChange>,
}

impl ConfluenceAccessGrantSpec {
    /// `spec.duration` parsed and re-checked against the schema's bounds (objects may
    /// predate the schema).
    pub fn duration(&self) -> Result<Duration, InvalidGrantDuration> {
        let invalid = || InvalidGrantDuration(self.duration.clone());
        let parsed = parse_duration(&self.duration).map_err(|_| invalid())?;
        if !(MIN_GRANT_DURATION..=MAX_GRANT_DURATION).contains(&parsed) {
            return Err(invalid());
        }
        Ok(parsed)
    }

    /// The user as written in the spec, for display and messages.
    pub fn user_label(&self) -> &str {
        self.user
            .email
            .as_deref()
            .or(self.user.account_id.as_deref())
            .unwrap_or_default()
    }

    /// The group as written in the spec, for display and messages.
    pub fn group_label(&self) -> &str {
        self.group
            .name
            .as_deref()
            .or(self.group.id.as_deref())
            .unwrap_or_default()
    }
}

/// A `spec.duration` outside what the schema allows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spec.duration {0:?} is not a duration between 1s and 168h such as 30m or 8h")]
pub struct InvalidGrantDuration(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(duration: &str) -> ConfluenceAccessGrantSpec {
        ConfluenceAccessGrantSpec {
            connector_ref: ConnectorRef {
                name: "acme".into(),
            },
            group: GroupSelector {
                name: Some("confluence-users".into()),
                id: None,
            },
            user: UserSelector {
                account_id: None,
                email: Some("ann@example.com".into()),
            },
            duration: duration.into(),
            reason: "incident 42".into(),
        }
    }

    #[test]
    fn duration_is_rechecked_in_code() {
        assert_eq!(spec("8h").duration(), Ok(Duration::from_secs(8 * 3600)));
        assert_eq!(spec("168h").duration(), Ok(MAX_GRANT_DURATION));
        assert!(spec("169h").duration().is_err());
        assert!(spec("0s").duration().is_err());
        assert!(spec("soon").duration().is_err());
    }

    #[test]
    fn labels_follow_the_spec() {
        let s = spec("1h");
        assert_eq!(s.user_label(), "ann@example.com");
        assert_eq!(s.group_label(), "confluence-users");
    }

    #[test]
    fn phases_that_end_a_grant() {
        assert!(GrantPhase::Expired.is_final());
        assert!(GrantPhase::Revoked.is_final());
        assert!(GrantPhase::Failed.is_final());
        assert!(!GrantPhase::Active.is_final());
        assert!(!GrantPhase::Pending.is_final());
    }

    #[test]
    fn unset_fields_are_not_serialised() {
        let status = serde_json::to_value(ConfluenceAccessGrantStatus::default()).unwrap();
        assert_eq!(status, serde_json::json!({}));
    }
}
