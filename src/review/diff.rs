//! What changed between two snapshots of one tenant: users added, removed, enabled and
//! disabled; memberships added and removed; space permissions (direct and through
//! groups) added and removed.
//!
//! Each kind is one merge-join of two key-ordered row streams (see
//! [`crate::c1z::SnapshotDb`]), so memory does not grow with the tenant. Names are
//! looked up (by index) only for rows that changed, and only when the caller wants
//! the changes themselves rather than their counts.

use serde::Serialize;

use super::ReviewError;
use super::merge::{Side, merge_join};
use crate::c1z::{SnapshotDb, SpaceGrantEntry, UserEntry};

/// Counts of each kind of change. `usersDisabled` counts users present in both
/// snapshots who lost product access; a user that arrives disabled counts as added.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChangeCounts {
    /// Users in the new snapshot only.
    pub users_added: u64,
    /// Users in the old snapshot only.
    pub users_removed: u64,
    /// Users disabled before, enabled now.
    pub users_enabled: u64,
    /// Users enabled before, disabled now.
    pub users_disabled: u64,
    /// Group memberships in the new snapshot only.
    pub memberships_added: u64,
    /// Group memberships in the old snapshot only.
    pub memberships_removed: u64,
    /// Space permissions (of users and groups, direct or through groups) new only.
    pub permissions_added: u64,
    /// Space permissions old only.
    pub permissions_removed: u64,
}

impl ChangeCounts {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A user in a change.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    /// The accountId.
    pub id: String,
    /// The display name.
    pub name: String,
    /// The email, when the site shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A group or space in a change: id and name (empty when the snapshot lacks it).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// The resource id.
    pub id: String,
    /// The display name.
    pub name: String,
}

/// Who holds a space permission.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    /// `user` or `group`.
    #[serde(rename = "type")]
    pub principal_type: String,
    /// The accountId or group id.
    pub id: String,
    /// The display name (empty when the snapshot lacks it).
    pub name: String,
}

/// One change.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Change {
    /// A user appeared.
    UserAdded {
        /// Who.
        user: UserRef,
    },
    /// A user is gone.
    UserRemoved {
        /// Who.
        user: UserRef,
    },
    /// A disabled user has product access again.
    UserEnabled {
        /// Who.
        user: UserRef,
    },
    /// A user lost product access.
    UserDisabled {
        /// Who.
        user: UserRef,
    },
    /// A user joined a group.
    MembershipAdded {
        /// The group.
        group: Named,
        /// The member.
        user: UserRef,
    },
    /// A user left a group.
    MembershipRemoved {
        /// The group.
        group: Named,
        /// The former member.
        user: UserRef,
    },
    /// A user or group gained a space permission.
    #[serde(rename_all = "camelCase")]
    PermissionAdded {
        /// The space.
        space: Named,
        /// `<verb>-<noun>`.
        permission: String,
        /// Who.
        principal: Principal,
        /// Granted to the principal itself.
        direct: bool,
        /// The groups it comes through (for users).
        via_groups: Vec<Named>,
    },
    /// A user or group lost a space permission.
    #[serde(rename_all = "camelCase")]
    PermissionRemoved {
        /// The space.
        space: Named,
        /// `<verb>-<noun>`.
        permission: String,
        /// Who.
        principal: Principal,
        /// It was granted to the principal itself.
        direct: bool,
        /// The groups it came through.
        via_groups: Vec<Named>,
    },
}

/// Receives each change as it is found.
pub type Sink<'a> = &'a mut dyn FnMut(Change) -> Result<(), ReviewError>;

/// Compares two opened snapshots, handing every change to `sink` (in the order users,
/// memberships, permissions; each by id) and returning the counts.
pub fn diff_snapshots(
    old: &SnapshotDb,
    new: &SnapshotDb,
    sink: Sink<'_>,
) -> Result<ChangeCounts, ReviewError> {
    diff(old, new, Some(sink))
}

/// The counts alone: no names are looked up.
pub fn count_changes(old: &SnapshotDb, new: &SnapshotDb) -> Result<ChangeCounts, ReviewError> {
    diff(old, new, None)
}

fn diff(
    old: &SnapshotDb,
    new: &SnapshotDb,
    mut sink: Option<Sink<'_>>,
) -> Result<ChangeCounts, ReviewError> {
    let mut counts = ChangeCounts::default();
    let detail = sink.is_some();
    let mut emit = |change: Change| match sink.as_mut() {
        Some(sink) => sink(change),
        None => Ok(()),
    };
    users(old, new, &mut counts, &mut emit)?;
    memberships(old, new, &mut counts, detail, &mut emit)?;
    permissions(old, new, &mut counts, detail, &mut emit)?;
    Ok(counts)
}

fn user_ref(user: UserEntry) -> UserRef {
    UserRef {
        id: user.id,
        name: user.name,
        email: user.email,
    }
}

fn users(
    old: &SnapshotDb,
    new: &SnapshotDb,
    counts: &mut ChangeCounts,
    emit: &mut dyn FnMut(Change) -> Result<(), ReviewError>,
) -> Result<(), ReviewError> {
    let (mut a, mut b) = (old.users()?, new.users()?);
    merge_join(
        a.iter()?,
        b.iter()?,
        |u| u.id.as_str(),
        |side| match side {
            Side::Old(u) => {
                counts.users_removed += 1;
                emit(Change::UserRemoved { user: user_ref(u) })
            }
            Side::New(u) => {
                counts.users_added += 1;
                emit(Change::UserAdded { user: user_ref(u) })
            }
            Side::Both(before, now) => match (before.disabled, now.disabled) {
                (false, true) => {
                    counts.users_disabled += 1;
                    emit(Change::UserDisabled {
                        user: user_ref(now),
                    })
                }
                (true, false) => {
                    counts.users_enabled += 1;
                    emit(Change::UserEnabled {
                        user: user_ref(now),
                    })
                }
                _ => Ok(()),
            },
        },
    )
}

/// Counts a key found in one snapshot only, and hands it back with the snapshot to
/// describe it from and whether it was added; `None` for a key in both (not a change
/// of access, whatever else changed about it) or when only counts are wanted.
fn tally<'d, T>(
    side: Side<T>,
    old: &'d SnapshotDb,
    new: &'d SnapshotDb,
    (added_count, removed_count): (&mut u64, &mut u64),
    detail: bool,
) -> Option<(&'d SnapshotDb, T, bool)> {
    let (row, added) = side.one_sided()?;
    *if added { added_count } else { removed_count } += 1;
    detail.then_some((if added { new } else { old }, row, added))
}

fn memberships(
    old: &SnapshotDb,
    new: &SnapshotDb,
    counts: &mut ChangeCounts,
    detail: bool,
    emit: &mut dyn FnMut(Change) -> Result<(), ReviewError>,
) -> Result<(), ReviewError> {
    let (mut a, mut b) = (old.memberships()?, new.memberships()?);
    merge_join(
        a.iter()?,
        b.iter()?,
        |m| m.key.as_str(),
        |side| {
            let counters = (
                &mut counts.memberships_added,
                &mut counts.memberships_removed,
            );
            let Some((db, m, added)) = tally(side, old, new, counters, detail) else {
                return Ok(());
            };
            let group = named(db.group_name(&m.group_id)?, m.group_id);
            let user = lookup_user(db, m.account_id)?;
            emit(if added {
                Change::MembershipAdded { group, user }
            } else {
                Change::MembershipRemoved { group, user }
            })
        },
    )
}

fn permissions(
    old: &SnapshotDb,
    new: &SnapshotDb,
    counts: &mut ChangeCounts,
    detail: bool,
    emit: &mut dyn FnMut(Change) -> Result<(), ReviewError>,
) -> Result<(), ReviewError> {
    let (mut a, mut b) = (old.space_grants()?, new.space_grants()?);
    merge_join(
        a.iter()?,
        b.iter()?,
        |g| g.key.as_str(),
        |side| {
            // A permission still held, perhaps through other groups now, is not a change
            // of access: only what appears or disappears counts.
            let counters = (
                &mut counts.permissions_added,
                &mut counts.permissions_removed,
            );
            let Some((db, g, added)) = tally(side, old, new, counters, detail) else {
                return Ok(());
            };
            let (space, permission, principal, direct, via_groups) = permission_parts(db, g)?;
            emit(if added {
                Change::PermissionAdded {
                    space,
                    permission,
                    principal,
                    direct,
                    via_groups,
                }
            } else {
                Change::PermissionRemoved {
                    space,
                    permission,
                    principal,
                    direct,
                    via_groups,
                }
            })
        },
    )
}

type PermissionParts = (Named, String, Principal, bool, Vec<Named>);

fn permission_parts(db: &SnapshotDb, g: SpaceGrantEntry) -> Result<PermissionParts, ReviewError> {
    let name = match g.principal_type.as_str() {
        "user" => db.user(&g.principal_id)?.map(|u| u.name),
        _ => db.group_name(&g.principal_id)?,
    };
    let principal = Principal {
        principal_type: g.principal_type,
        name: name.unwrap_or_default(),
        id: g.principal_id,
    };
    let mut via = Vec::with_capacity(g.via_groups.len());
    for id in g.via_groups {
        via.push(named(db.group_name(&id)?, id));
    }
    let space = Named {
        id: g.space_id,
        name: g.space_name,
    };
    Ok((space, g.permission, principal, g.direct, via))
}

fn named(name: Option<String>, id: String) -> Named {
    Named {
        name: name.unwrap_or_default(),
        id,
    }
}

fn lookup_user(db: &SnapshotDb, account_id: String) -> Result<UserRef, ReviewError> {
    Ok(match db.user(&account_id)? {
        Some(u) => user_ref(u),
        None => UserRef {
            id: account_id,
            name: String::new(),
            email: None,
        },
    })
}
