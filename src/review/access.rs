//! One user's access in a snapshot (groups and effective space permissions), and the
//! changes of a previous comparison indexed by user, for the report and the CSV.

use std::collections::{HashMap, HashSet};

use super::ReviewError;
use super::diff::{Change, ChangeCounts, Named, diff_snapshots};
use crate::c1z::{SnapshotDb, SpaceGrantEntry, UserEntry};

/// The space permission Confluence calls "Admin" on a space.
pub const SPACE_ADMIN: &str = "administer-space";

/// Groups whose name marks site or product administrators (`site-admins`,
/// `org-admins`, `confluence-administrators`, …): membership is called out as admin
/// access. A name heuristic, as Confluence's API does not flag such groups.
pub fn is_admin_group(name: &str) -> bool {
    name.to_ascii_lowercase().contains("admin")
}

/// Group names by id, loaded once (groups are few next to users and grants).
pub fn group_names(db: &SnapshotDb) -> Result<HashMap<String, String>, ReviewError> {
    let mut names = HashMap::new();
    for g in db.groups()?.iter()? {
        let g = g?;
        names.insert(g.id, g.name);
    }
    Ok(names)
}

/// A user with their groups and effective space permissions.
pub struct UserAccess {
    /// The user.
    pub user: UserEntry,
    /// Groups (id, name) in id order.
    pub groups: Vec<Named>,
    /// Space permissions in (space, permission) order.
    pub grants: Vec<SpaceGrantEntry>,
}

impl UserAccess {
    /// Loads `user`'s groups and grants by index.
    pub fn load(
        db: &SnapshotDb,
        names: &HashMap<String, String>,
        user: UserEntry,
    ) -> Result<Self, ReviewError> {
        let groups = db
            .groups_of(&user.id)?
            .into_iter()
            .map(|id| Named {
                name: names.get(&id).cloned().unwrap_or_default(),
                id,
            })
            .collect();
        let grants = db.space_grants_of("user", &user.id)?;
        Ok(Self {
            user,
            groups,
            grants,
        })
    }

    /// Holds Space Admin anywhere, or belongs to an admin-style group.
    pub fn is_admin(&self) -> bool {
        self.admin_spaces() > 0 || self.groups.iter().any(|g| is_admin_group(&g.name))
    }

    /// Spaces where the user holds Space Admin.
    pub fn admin_spaces(&self) -> usize {
        self.grants
            .iter()
            .filter(|g| g.permission == SPACE_ADMIN)
            .count()
    }

    /// Any membership or space permission at all.
    pub fn has_access(&self) -> bool {
        !self.groups.is_empty() || !self.grants.is_empty()
    }
}

/// The changes since a previous snapshot, indexed by user for highlighting. Memory is
/// proportional to the number of changes, not to the tenant.
#[derive(Default)]
pub struct ChangeIndex {
    /// The counts.
    pub counts: ChangeCounts,
    /// Every change, in diff order (the report shows the first few).
    pub changes: Vec<Change>,
    added_users: HashSet<String>,
    touched: HashSet<String>,
    status_changed: HashSet<String>,
    added_memberships: HashSet<(String, String)>,
    removed_memberships: HashMap<String, Vec<Named>>,
    added_grants: HashSet<(String, String)>,
    removed_grants: HashMap<String, Vec<(Named, String)>>,
}

impl ChangeIndex {
    /// Diffs `old` against `new` and indexes the result.
    pub fn build(old: &SnapshotDb, new: &SnapshotDb) -> Result<Self, ReviewError> {
        let mut index = Self::default();
        let mut changes = Vec::new();
        index.counts = diff_snapshots(old, new, &mut |c| {
            changes.push(c);
            Ok(())
        })?;
        for change in &changes {
            index.add(change);
        }
        index.changes = changes;
        Ok(index)
    }

    fn add(&mut self, change: &Change) {
        if let Some(user) = touched_user(change) {
            self.touched.insert(user.to_string());
        }
        match change {
            Change::UserAdded { user } => {
                self.added_users.insert(user.id.clone());
            }
            Change::UserEnabled { user } | Change::UserDisabled { user } => {
                self.status_changed.insert(user.id.clone());
            }
            Change::UserRemoved { .. } => {}
            Change::MembershipAdded { group, user } => {
                self.added_memberships
                    .insert((user.id.clone(), group.id.clone()));
            }
            Change::MembershipRemoved { group, user } => self
                .removed_memberships
                .entry(user.id.clone())
                .or_default()
                .push(group.clone()),
            Change::PermissionAdded {
                space,
                permission,
                principal,
                ..
            } if principal.principal_type == "user" => {
                self.added_grants
                    .insert((principal.id.clone(), grant_key(&space.id, permission)));
            }
            Change::PermissionRemoved {
                space,
                permission,
                principal,
                ..
            } if principal.principal_type == "user" => self
                .removed_grants
                .entry(principal.id.clone())
                .or_default()
                .push((space.clone(), permission.clone())),
            Change::PermissionAdded { .. } | Change::PermissionRemoved { .. } => {}
        }
    }

    /// The user is new since the previous snapshot.
    pub fn user_added(&self, user: &str) -> bool {
        self.added_users.contains(user)
    }

    /// The user was enabled or disabled since.
    pub fn status_changed(&self, user: &str) -> bool {
        self.status_changed.contains(user)
    }

    /// The membership is new.
    pub fn membership_added(&self, user: &str, group: &str) -> bool {
        self.added_memberships
            .contains(&(user.to_string(), group.to_string()))
    }

    /// Groups the user left.
    pub fn memberships_removed(&self, user: &str) -> &[Named] {
        self.removed_memberships
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The permission is new for the user.
    pub fn grant_added(&self, user: &str, space: &str, permission: &str) -> bool {
        self.added_grants
            .contains(&(user.to_string(), grant_key(space, permission)))
    }

    /// Permissions the user lost: (space, permission).
    pub fn grants_removed(&self, user: &str) -> &[(Named, String)] {
        self.removed_grants
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Anything changed for the user.
    pub fn touches(&self, user: &str) -> bool {
        self.touched.contains(user)
    }
}

fn touched_user(change: &Change) -> Option<&str> {
    match change {
        Change::UserAdded { user }
        | Change::UserRemoved { user }
        | Change::UserEnabled { user }
        | Change::UserDisabled { user }
        | Change::MembershipAdded { user, .. }
        | Change::MembershipRemoved { user, .. } => Some(&user.id),
        Change::PermissionAdded { principal, .. } | Change::PermissionRemoved { principal, .. } => {
            (principal.principal_type == "user").then_some(principal.id.as_str())
        }
    }
}

fn grant_key(space: &str, permission: &str) -> String {
    format!("{space}\u{0}{permission}")
}
