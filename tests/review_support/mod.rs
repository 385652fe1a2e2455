//! Hand-built tenants for the review tests: a small description written as a real
//! snapshot through the operator's writer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use confluence_operator::c1z::{
    GroupRecord, SnapshotOptions, SnapshotWriter, SpacePermissionRecord, SpaceRecord, UserRecord,
};

/// A tenant: users (id, name, enabled), groups (id, name, members), spaces (id, name),
/// and permissions (space, principal type, principal id, verb, noun).
#[derive(Clone, Default)]
pub struct Tenant {
    pub users: Vec<(String, String, bool)>,
    pub groups: Vec<(String, String, Vec<String>)>,
    pub spaces: Vec<(String, String)>,
    pub permissions: Vec<(String, String, String, String, String)>,
}

impl Tenant {
    pub fn user(mut self, id: &str, enabled: bool) -> Self {
        self.users.push((id.into(), format!("User {id}"), enabled));
        self
    }
    pub fn group(mut self, id: &str, members: &[&str]) -> Self {
        self.groups.push((
            id.into(),
            format!("Group {id}"),
            members.iter().map(|m| m.to_string()).collect(),
        ));
        self
    }
    pub fn space(mut self, id: &str) -> Self {
        self.spaces.push((id.into(), format!("Space {id}")));
        self
    }
    pub fn permission(
        mut self,
        space: &str,
        ptype: &str,
        pid: &str,
        verb: &str,
        noun: &str,
    ) -> Self {
        self.permissions.push((
            space.into(),
            ptype.into(),
            pid.into(),
            verb.into(),
            noun.into(),
        ));
        self
    }
    pub fn without_user(mut self, id: &str) -> Self {
        self.users.retain(|u| u.0 != id);
        for g in &mut self.groups {
            g.2.retain(|m| m != id);
        }
        self.permissions.retain(|p| !(p.1 == "user" && p.2 == id));
        self
    }
    pub fn set_enabled(mut self, id: &str, enabled: bool) -> Self {
        for u in &mut self.users {
            if u.0 == id {
                u.2 = enabled;
            }
        }
        self
    }
    pub fn add_member(mut self, group: &str, user: &str) -> Self {
        for g in &mut self.groups {
            if g.0 == group {
                g.2.push(user.into());
            }
        }
        self
    }
    pub fn remove_member(mut self, group: &str, user: &str) -> Self {
        for g in &mut self.groups {
            if g.0 == group {
                g.2.retain(|m| m != user);
            }
        }
        self
    }
    pub fn without_permission(
        mut self,
        space: &str,
        ptype: &str,
        pid: &str,
        verb: &str,
        noun: &str,
    ) -> Self {
        self.permissions.retain(|p| {
            !(p.0 == space && p.1 == ptype && p.2 == pid && p.3 == verb && p.4 == noun)
        });
        self
    }

    /// Writes the tenant as `dir/<file>` and returns the path.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        let mut w = SnapshotWriter::create(&path, SnapshotOptions::default()).unwrap();
        for (id, name, enabled) in &self.users {
            w.put_user(&UserRecord {
                account_id: id.clone(),
                display_name: name.clone(),
                email: Some(format!("{id}@example.com")),
                account_type: "atlassian".into(),
                enabled: *enabled,
            })
            .unwrap();
        }
        for (id, name, members) in &self.groups {
            w.put_group(&GroupRecord {
                id: id.clone(),
                name: name.clone(),
                group_type: "group".into(),
            })
            .unwrap();
            for m in members {
                w.put_membership(id, m).unwrap();
            }
        }
        for (id, name) in &self.spaces {
            w.put_space(&SpaceRecord {
                id: id.clone(),
                name: name.clone(),
            })
            .unwrap();
        }
        for (space, ptype, pid, verb, noun) in &self.permissions {
            w.put_space_permission(&SpacePermissionRecord {
                space_id: space.clone(),
                principal_type: ptype.clone(),
                principal_id: pid.clone(),
                operation_key: verb.clone(),
                target_type: noun.clone(),
            })
            .unwrap();
        }
        w.finish().unwrap();
        path
    }
}

/// A small tenant: four users (u4 disabled), two groups, two spaces, a direct user
/// permission, a group permission and an administer permission.
pub fn base() -> Tenant {
    Tenant::default()
        .user("u1", true)
        .user("u2", true)
        .user("u3", true)
        .user("u4", false)
        .group("g1", &["u1", "u2"])
        .group("g2", &["u3", "u4"])
        .space("100")
        .space("200")
        .permission("100", "user", "u1", "read", "space")
        .permission("100", "group", "g1", "read", "space")
        .permission("200", "group", "g2", "administer", "space")
        .permission("200", "user", "u3", "create", "page")
}
