//! What a complete sync (design §6) of the tenant must find, as the reference connector's
//! ids (c1z-format §4), so tests can compare a snapshot against it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{AccountType, OPERATIONS, PrincipalKind, Tenant, User, in_matrix};

/// Ids sorted ascending, with their count.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdSet {
    pub count: usize,
    pub ids: Vec<String>,
}

impl IdSet {
    fn from(mut ids: Vec<String>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        IdSet {
            count: ids.len(),
            ids,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserTruth {
    /// accountIds of every Atlassian account found through group member lists or
    /// `search/user?cql=type=user`.
    pub count: usize,
    pub ids: Vec<String>,
    /// The subset listed without `operations` (deactivated).
    pub disabled_count: usize,
    pub disabled_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceTruth {
    /// v2 numeric space ids (as strings) of every viewable space.
    pub count: usize,
    pub ids: Vec<String>,
    /// The subset with `type == "personal"` (what `skipPersonalSpaces` drops).
    pub personal_count: usize,
    pub personal_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionTruth {
    /// Grant ids `space:<sid>:<verb>-<noun>:user:<accountId>` / `…:group:<groupId>`.
    pub count: usize,
    pub ids: Vec<String>,
    /// How many of them remain when personal spaces are skipped.
    pub count_excluding_personal: usize,
}

/// Ground truth of a complete sync. JSON (`GET /__fake/truth`):
///
/// ```json
/// { "users": { "count": 2, "ids": ["557058:…", "608a…"], "disabledCount": 1, "disabledIds": ["608a…"] },
///   "groups": { "count": 1, "ids": ["35e417ad-…"] },
///   "memberships": { "count": 2, "ids": ["group:35e417ad-…:member:user:557058:…", "…"] },
///   "spaces": { "count": 2, "ids": ["163841", "163842"], "personalCount": 1, "personalIds": ["163842"] },
///   "spacePermissions": { "count": 3, "ids": ["space:163841:read-space:group:35e417ad-…", "…"],
///                          "countExcludingPersonal": 2 },
///   "digest": "<sha256 hex of the fields above>" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Truth {
    pub users: UserTruth,
    /// Group ids.
    pub groups: IdSet,
    /// Membership grant ids `group:<groupId>:member:user:<accountId>` (Atlassian members only).
    pub memberships: IdSet,
    pub spaces: SpaceTruth,
    pub space_permissions: PermissionTruth,
    pub digest: String,
}

/// Whether `search/user` lists the user under `sitePermissionTypeFilter`.
pub fn searchable(u: &User, filter: &str) -> bool {
    if u.deactivated() || u.account_type == AccountType::Customer {
        return false;
    }
    match filter {
        "all" => true,
        "externalCollaborator" => u.is_guest,
        _ => !u.is_guest,
    }
}

/// `hide_suspended`: suspended accounts are missing from member lists, so a sync cannot
/// see them there.
pub fn compute(
    t: &Tenant,
    search_ceiling: usize,
    hide_suspended: bool,
    space_visible: &dyn Fn(&str) -> bool,
) -> Truth {
    let mut found = vec![false; t.users.len()];
    let mut memberships = Vec::new();
    for g in &t.groups {
        for &m in &g.members {
            let Some(u) = t.users.get(m as usize) else {
                continue;
            };
            if u.account_type == AccountType::Atlassian && !(hide_suspended && u.suspended()) {
                found[m as usize] = true;
                memberships.push(format!("group:{}:member:user:{}", g.id, u.account_id));
            }
        }
    }
    t.users
        .iter()
        .enumerate()
        .filter(|(_, u)| searchable(u, "none"))
        .take(search_ceiling)
        .filter(|(_, u)| u.account_type == AccountType::Atlassian)
        .for_each(|(i, _)| found[i] = true);
    let mut ids = Vec::new();
    let mut disabled = Vec::new();
    for (i, u) in t.users.iter().enumerate() {
        if found[i] {
            ids.push(u.account_id.clone());
            if u.deactivated() {
                disabled.push(u.account_id.clone());
            }
        }
    }
    let ids = IdSet::from(ids);
    let disabled = IdSet::from(disabled);

    let mut space_ids = Vec::new();
    let mut personal_ids = Vec::new();
    let mut grants = Vec::new();
    let mut personal_grants = 0usize;
    for s in t.spaces.iter().filter(|s| space_visible(&s.key)) {
        let sid = s.id.to_string();
        let personal = s.kind == "personal";
        if personal {
            personal_ids.push(sid.clone());
        }
        for p in &s.permissions {
            let kind = match p.kind {
                PrincipalKind::User | PrincipalKind::Group => p.kind.as_str(),
                _ => continue,
            };
            let Some(&(key, target)) = OPERATIONS.get(p.operation as usize) else {
                continue;
            };
            if !in_matrix(key, target) {
                continue;
            }
            grants.push(format!(
                "space:{sid}:{key}-{target}:{kind}:{}",
                t.principal_id(p)
            ));
            if personal {
                personal_grants += 1;
            }
        }
        space_ids.push(sid);
    }
    let space_ids = IdSet::from(space_ids);
    let personal_ids = IdSet::from(personal_ids);
    let grants = IdSet::from(grants);
    let mut truth = Truth {
        users: UserTruth {
            count: ids.count,
            ids: ids.ids,
            disabled_count: disabled.count,
            disabled_ids: disabled.ids,
        },
        groups: IdSet::from(t.groups.iter().map(|g| g.id.clone()).collect()),
        memberships: IdSet::from(memberships),
        spaces: SpaceTruth {
            count: space_ids.count,
            ids: space_ids.ids,
            personal_count: personal_ids.count,
            personal_ids: personal_ids.ids,
        },
        space_permissions: PermissionTruth {
            count: grants.count,
            ids: grants.ids,
            count_excluding_personal: grants.count - personal_grants,
        },
        digest: String::new(),
    };
    truth.digest = digest(&truth);
    truth
}

fn digest(t: &Truth) -> String {
    let mut h = Sha256::new();
    // Serializing these plain structs cannot fail; an empty digest would only weaken a
    // determinism check, never break a sync.
    if let Ok(bytes) = serde_json::to_vec(&(
        &t.users,
        &t.groups,
        &t.memberships,
        &t.spaces,
        &t.space_permissions,
    )) {
        h.update(bytes);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
