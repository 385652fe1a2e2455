//! The `ConfluenceConnector` kind: what users write (spec) and what the operator reports
//! (status).
//!
//! Optional fields are `Option`s without schema defaults: defaults live in code (the
//! `effective_*` accessors), because defaults injected by the API server inside optional
//! objects show up as permanent drift in GitOps tools.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::duration::parse_duration;

/// Default for `spec.sync.interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Default for `spec.sync.timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Smallest accepted `spec.sync.interval` (also enforced by a CEL rule).
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Default Secret key holding the Atlassian account email.
pub const DEFAULT_USERNAME_KEY: &str = "username";
/// Default Secret key holding the API token.
pub const DEFAULT_API_TOKEN_KEY: &str = "apiToken";
/// API token key used for a `kubernetes.io/basic-auth` Secret when `apiTokenKey` is unset.
pub const BASIC_AUTH_PASSWORD_KEY: &str = "password";

/// A Confluence Cloud site whose users, groups, memberships, spaces and space permissions
/// the operator syncs into c1z snapshots.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "confluence-operator.io",
    version = "v1alpha1",
    kind = "ConfluenceConnector",
    namespaced,
    status = "ConfluenceConnectorStatus",
    derive = "PartialEq",
    shortname = "cfc",
    category = "confluence",
    doc = "A Confluence Cloud site whose users, groups, group memberships, spaces and space permissions are synced into c1z snapshots.",
    printcolumn = r#"{"name":"Site","type":"string","jsonPath":".spec.site"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Users","type":"integer","jsonPath":".status.summary.users"}"#,
    printcolumn = r#"{"name":"Groups","type":"integer","jsonPath":".status.summary.groups"}"#,
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSyncTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConfluenceConnectorSpec {
    /// The Confluence Cloud site: `acme`, `acme.atlassian.net` or
    /// `https://acme.atlassian.net` (a trailing `/wiki` is accepted). The operator accepts
    /// only `https://<name>.atlassian.net` unless it was started with
    /// `--allowed-site-suffix`/`--allow-insecure-http`.
    #[schemars(
        length(min = 1, max = 300),
        regex(
            pattern = r"^(https?://)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?(/wiki)?/?$"
        )
    )]
    pub site: String,

    /// Where the administrator's email and API token are read from.
    pub credentials: CredentialsSpec,

    /// How and how often the site is synced. Every field has a default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncSpec>,

    /// Stop scheduling syncs and cancel a running one. The last snapshot and status are
    /// kept. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Credentials of a Confluence site administrator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// A Secret in the connector's own namespace.
    pub secret_ref: SecretRef,
}

/// A reference to keys of a Secret in the connector's namespace. Only these keys are read.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret (same namespace as the connector).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Key holding the Atlassian account email. Default `username`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub username_key: Option<String>,

    /// Key holding the API token. Default `apiToken`, or `password` for a
    /// `kubernetes.io/basic-auth` Secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub api_token_key: Option<String>,
}

/// Sync settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncSpec {
    /// Time between the end of one sync and the start of the next, as a Go-style duration
    /// (`30m`, `1h`, `1h30m`). Default `1h`, minimum `1m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("interval must be at least 1m"))]
    pub interval: Option<String>,

    /// Longest time one sync may take before it is cancelled and reported failed.
    /// Go-style duration, default `30m`, minimum `1m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("timeout must be at least 1m"))]
    pub timeout: Option<String>,

    /// Sync spaces and space permissions. Default true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spaces: Option<bool>,

    /// Leave personal spaces out of the snapshot. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_personal_spaces: Option<bool>,
}

impl ConfluenceConnectorSpec {
    /// `spec.suspend` with its default.
    pub fn suspended(&self) -> bool {
        self.suspend.unwrap_or(false)
    }

    /// `spec.sync` with every default applied.
    pub fn sync_settings(&self) -> Result<EffectiveSync, InvalidDuration> {
        let sync = self.sync.clone().unwrap_or_default();
        let interval = match &sync.interval {
            Some(text) => parse_duration(text).map_err(|_| InvalidDuration::interval(text))?,
            None => DEFAULT_INTERVAL,
        };
        if interval < MIN_INTERVAL {
            return Err(InvalidDuration::interval(
                sync.interval.as_deref().unwrap_or_default(),
            ));
        }
        let timeout = match &sync.timeout {
            Some(text) => parse_duration(text).map_err(|_| InvalidDuration::timeout(text))?,
            None => DEFAULT_TIMEOUT,
        };
        if timeout < MIN_INTERVAL {
            return Err(InvalidDuration::timeout(
                sync.timeout.as_deref().unwrap_or_default(),
            ));
        }
        Ok(EffectiveSync {
            interval,
            timeout,
            spaces: sync.spaces.unwrap_or(true),
            skip_personal_spaces: sync.skip_personal_spaces.unwrap_or(false),
        })
    }
}

impl SecretRef {
    /// The key holding the username.
    pub fn username_key(&self) -> &str {
        self.username_key.as_deref().unwrap_or(DEFAULT_USERNAME_KEY)
    }
}

/// `spec.sync` after defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveSync {
    /// Time between syncs.
    pub interval: Duration,
    /// Longest time one sync may take.
    pub timeout: Duration,
    /// Whether spaces and their permissions are synced.
    pub spaces: bool,
    /// Whether personal spaces are skipped.
    pub skip_personal_spaces: bool,
}

/// A duration field the schema should have rejected (the operator re-checks in code, since
/// objects may predate the schema or bypass it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spec.sync.{field} {value:?} is not a duration of at least 1m such as 30m or 1h")]
pub struct InvalidDuration {
    /// The field: `interval` or `timeout`.
    pub field: &'static str,
    /// The text that was rejected.
    pub value: String,
}

impl InvalidDuration {
    fn interval(value: &str) -> Self {
        Self {
            field: "interval",
            value: value.to_string(),
        }
    }
    fn timeout(value: &str) -> Self {
        Self {
            field: "timeout",
            value: value.to_string(),
        }
    }
}

/// Human-readable state of a connector.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No usable credentials: Secret or key missing, site invalid, authentication or
    /// permission failed.
    NotConnected,
    /// A sync is running now.
    Syncing,
    /// The last sync succeeded.
    Connected,
    /// The last sync failed for another reason; the previous snapshot is kept.
    Error,
}

/// What the operator observed. Written only by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfluenceConnectorStatus {
    /// The generation this status describes; -1 until the operator first reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `NotConnected`, `Syncing`, `Connected` or `Error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// `Ready` (always), `Reconciling` and `Stalled` (only while true), `CredentialsValid`
    /// and `Synced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// When the last (or current) sync started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_start_time: Option<Time>,

    /// When the last sync ended, successfully or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// When the last successful sync ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_successful_sync_time: Option<Time>,

    /// When the next sync is scheduled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,

    /// How long the last sync took, e.g. `12.4s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_duration: Option<String>,

    /// The value of the `confluence-operator.io/sync-requested-at` annotation that the
    /// last finished sync answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_handled_sync_request: Option<String>,

    /// A fingerprint of the credentials the last sync used (never the credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_fingerprint: Option<String>,

    /// Object counts of the last successful sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<SyncSummary>,

    /// The snapshot file of the last successful sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRef>,

    /// What the last successful sync changed against the snapshot before it (counts
    /// only). Absent after the first sync, or when the comparison could not be made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_change: Option<AccessChange>,
}

/// Access changes between two consecutive snapshots.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AccessChange {
    /// Users that appeared.
    pub users_added: i64,
    /// Users that are gone.
    pub users_removed: i64,
    /// Users that regained product access.
    pub users_enabled: i64,
    /// Users that lost product access.
    pub users_disabled: i64,
    /// Group memberships added.
    pub memberships_added: i64,
    /// Group memberships removed.
    pub memberships_removed: i64,
    /// Space permissions of users and groups added (direct and through groups).
    pub permissions_added: i64,
    /// Space permissions of users and groups removed (direct and through groups).
    pub permissions_removed: i64,
}

impl AccessChange {
    /// The counts with their field names, in field order.
    pub fn counts(&self) -> [(&'static str, i64); 8] {
        [
            ("usersAdded", self.users_added),
            ("usersRemoved", self.users_removed),
            ("usersEnabled", self.users_enabled),
            ("usersDisabled", self.users_disabled),
            ("membershipsAdded", self.memberships_added),
            ("membershipsRemoved", self.memberships_removed),
            ("permissionsAdded", self.permissions_added),
            ("permissionsRemoved", self.permissions_removed),
        ]
    }

    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, n)| *n == 0)
    }
}

/// Object counts of a sync.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncSummary {
    /// Atlassian user accounts.
    pub users: i64,
    /// Users without product access (deactivated or unlicensed).
    pub disabled_users: i64,
    /// Groups.
    pub groups: i64,
    /// Group memberships of users.
    pub memberships: i64,
    /// Spaces.
    pub spaces: i64,
    /// Space permissions granted to users and groups.
    pub space_permissions: i64,
}

/// Where a snapshot was written.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRef {
    /// The sync id (a KSUID) inside the snapshot.
    pub sync_id: String,
    /// Path relative to the operator's data directory: `<namespace>/<name>/<syncId>.c1z`.
    pub file: String,
    /// Size of the file in bytes.
    pub size_bytes: i64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sync: Option<SyncSpec>) -> ConfluenceConnectorSpec {
        ConfluenceConnectorSpec {
            site: "acme".into(),
            credentials: CredentialsSpec {
                secret_ref: SecretRef {
                    name: "creds".into(),
                    username_key: None,
                    api_token_key: None,
                },
            },
            sync,
            suspend: None,
        }
    }

    #[test]
    fn defaults_are_applied_in_code() {
        let settings = spec(None).sync_settings().unwrap();
        assert_eq!(
            settings,
            EffectiveSync {
                interval: DEFAULT_INTERVAL,
                timeout: DEFAULT_TIMEOUT,
                spaces: true,
                skip_personal_spaces: false
            }
        );
        assert!(!spec(None).suspended());
        assert_eq!(spec(None).credentials.secret_ref.username_key(), "username");
    }

    #[test]
    fn explicit_values_win_and_minimums_are_rechecked() {
        let s = spec(Some(SyncSpec {
            interval: Some("15m".into()),
            timeout: Some("1h30m".into()),
            spaces: Some(false),
            skip_personal_spaces: Some(true),
        }));
        let settings = s.sync_settings().unwrap();
        assert_eq!(settings.interval, Duration::from_secs(900));
        assert_eq!(settings.timeout, Duration::from_secs(5400));
        assert!(!settings.spaces && settings.skip_personal_spaces);

        let short = spec(Some(SyncSpec {
            interval: Some("30s".into()),
            ..SyncSpec::default()
        }));
        assert_eq!(short.sync_settings().unwrap_err().field, "interval");
        let bad = spec(Some(SyncSpec {
            timeout: Some("soon".into()),
            ..SyncSpec::default()
        }));
        let err = bad.sync_settings().unwrap_err();
        assert_eq!(err.field, "timeout");
        assert!(err.to_string().contains("\"soon\""));
    }

    #[test]
    fn unset_fields_are_not_serialised() {
        let json = serde_json::to_value(spec(Some(SyncSpec::default()))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"site": "acme", "credentials": {"secretRef": {"name": "creds"}}, "sync": {}})
        );
        let status = serde_json::to_value(ConfluenceConnectorStatus::default()).unwrap();
        assert_eq!(status, serde_json::json!({}));
    }
}
