//! What a finished sync reports: counts, the file, and how hard the site was worked.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// Object counts of one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCounts {
    /// Atlassian user accounts.
    pub users: u64,
    /// Of those, without product access.
    pub disabled_users: u64,
    /// Groups.
    pub groups: u64,
    /// Group membership grants.
    pub memberships: u64,
    /// Spaces.
    pub spaces: u64,
    /// Direct space permission grants to users and groups.
    pub space_permissions: u64,
    /// Space roles.
    pub space_roles: u64,
    /// Entitlements.
    pub entitlements: u64,
    /// Grants, expanded ones included.
    pub grants: u64,
    /// User grants derived from group grants of spaces.
    pub expanded_grants: u64,
}

/// The result of a successful sync.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// The snapshot's sync id (a KSUID).
    pub sync_id: String,
    /// Where the snapshot was written.
    pub file: PathBuf,
    /// Its size.
    pub size_bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// What it holds.
    pub counts: SyncCounts,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Requests per route template.
    pub requests_by_route: BTreeMap<String, u64>,
    /// Requests repeated after a failure.
    pub retries: u64,
    /// 429 answers (and 503s with Retry-After).
    pub rate_limited: u64,
    /// Wall time in seconds.
    pub duration_seconds: f64,
    /// Of that, the time until every page was fetched; the rest is finishing the
    /// snapshot (grant expansion, compression, publishing).
    pub fetch_seconds: f64,
}
