//! The tenant: users, groups, spaces and space permissions as the fake stores them.
//!
//! Principals refer to users and groups by index so that the large preset stays small in
//! memory; indices never change because the fake never deletes users or groups.

use std::collections::HashMap;

/// `accountType` of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountType {
    Atlassian,
    App,
    Customer,
}

impl AccountType {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Atlassian => "atlassian",
            AccountType::App => "app",
            AccountType::Customer => "customer",
        }
    }
}

/// `accountStatus` of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Inactive,
    Closed,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Inactive => "inactive",
            AccountStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub account_id: String,
    pub account_type: AccountType,
    pub status: AccountStatus,
    /// The name without any "(Deactivated)" suffix.
    pub name: String,
    pub public_name: String,
    pub email: String,
    pub email_visible: bool,
    pub is_guest: bool,
    pub locale: &'static str,
    pub time_zone: &'static str,
    pub personal_space: Option<u64>,
}

impl User {
    /// Deactivated accounts list `operations: []` and carry the display-name suffix.
    pub fn deactivated(&self) -> bool {
        self.status != AccountStatus::Active
    }

    /// Closed accounts stand in for suspended ones, which are said to vanish from member
    /// lists (toggle `Quirks::hide_suspended_members`).
    pub fn suspended(&self) -> bool {
        self.status == AccountStatus::Closed
    }

    /// Licensed = counted by `search/user`'s default `sitePermissionTypeFilter=none`.
    pub fn licensed(&self) -> bool {
        !self.deactivated() && !self.is_guest
    }

    pub fn display_name(&self) -> String {
        if self.deactivated() {
            format!("{} (Deactivated)", self.name)
        } else {
            self.name.clone()
        }
    }

    pub fn visible_email(&self) -> &str {
        if self.email_visible { &self.email } else { "" }
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub managed_by: &'static str,
    pub usage_type: &'static str,
    /// User indices, ascending: the order `membersByGroupId` pages through.
    pub members: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Group,
    Role,
    AccessClass,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Group => "group",
            PrincipalKind::Role => "role",
            PrincipalKind::AccessClass => "access-class",
        }
    }
}

/// Role ids and access-class names that permissions may name besides users and groups.
pub const ROLE_PRINCIPALS: [&str; 3] = [
    "c3bd1bd6-63f9-4e5c-8e8b-0b2c5f6a1d01",
    "c3bd1bd6-63f9-4e5c-8e8b-0b2c5f6a1d02",
    "c3bd1bd6-63f9-4e5c-8e8b-0b2c5f6a1d03",
];
pub const ACCESS_CLASSES: [&str; 3] = [
    "anonymous-users",
    "all-licensed-users",
    "all-product-admins",
];

#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub id: u64,
    pub kind: PrincipalKind,
    /// User or group index; index into `ROLE_PRINCIPALS`/`ACCESS_CLASSES` otherwise.
    pub principal: u32,
    /// Index into `OPERATIONS`.
    pub operation: u8,
}

/// `(operation.key, operation.targetType)` pairs the generator draws from. The first
/// `OPERATIONS_IN_MATRIX` lie inside the reference connector's verb × noun matrix.
pub const OPERATIONS: [(&str, &str); 28] = [
    ("read", "space"),
    ("administer", "space"),
    ("export", "space"),
    ("restrict_content", "space"),
    ("delete", "space"),
    ("archive", "space"),
    ("create", "page"),
    ("delete", "page"),
    ("archive", "page"),
    ("update", "page"),
    ("create", "blogpost"),
    ("delete", "blogpost"),
    ("create", "comment"),
    ("delete", "comment"),
    ("create", "attachment"),
    ("delete", "attachment"),
    ("create", "whiteboard"),
    ("create", "database"),
    ("create", "embed"),
    ("create", "folder"),
    ("delete", "folder"),
    ("copy", "page"),
    ("move", "page"),
    ("purge", "page"),
    ("purge_version", "page"),
    ("restore", "page"),
    ("read", "userProfile"),
    ("use", "application"),
];
pub const OPERATIONS_IN_MATRIX: usize = 16;

/// The reference connector's default nouns and verbs (c1z-format §4.3).
pub const NOUNS: [&str; 5] = ["attachment", "blogpost", "comment", "page", "space"];
pub const VERBS: [&str; 8] = [
    "administer",
    "archive",
    "create",
    "delete",
    "export",
    "read",
    "restrict_content",
    "update",
];

pub fn in_matrix(key: &str, target: &str) -> bool {
    VERBS.contains(&key) && NOUNS.contains(&target)
}

#[derive(Debug, Clone)]
pub struct Space {
    pub id: u64,
    pub key: String,
    pub name: String,
    pub kind: &'static str,
    pub status: &'static str,
    pub author: u32,
    pub owner: u32,
    pub homepage_id: u64,
    pub created_at: String,
    /// Ascending by id: the order `spaces/{id}/permissions` pages through.
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub cloud_id: String,
    pub users: Vec<User>,
    /// Sorted by name, the order `GET /group` lists them in.
    pub groups: Vec<Group>,
    /// Sorted by id.
    pub spaces: Vec<Space>,
    pub user_index: HashMap<String, u32>,
    pub group_index: HashMap<String, u32>,
}

impl Tenant {
    pub fn user(&self, account_id: &str) -> Option<&User> {
        self.user_index
            .get(account_id)
            .and_then(|&i| self.users.get(i as usize))
    }

    pub fn group_position(&self, id: &str) -> Option<usize> {
        self.group_index.get(id).map(|&i| i as usize)
    }

    pub fn space(&self, id: u64) -> Option<&Space> {
        self.spaces
            .binary_search_by_key(&id, |s| s.id)
            .ok()
            .and_then(|i| self.spaces.get(i))
    }

    /// The id a permission's principal carries on the wire.
    pub fn principal_id(&self, p: &Permission) -> String {
        let i = p.principal as usize;
        match p.kind {
            PrincipalKind::User => self
                .users
                .get(i)
                .map(|u| u.account_id.clone())
                .unwrap_or_default(),
            PrincipalKind::Group => self.groups.get(i).map(|g| g.id.clone()).unwrap_or_default(),
            PrincipalKind::Role => ROLE_PRINCIPALS.get(i).copied().unwrap_or("").to_owned(),
            PrincipalKind::AccessClass => ACCESS_CLASSES.get(i).copied().unwrap_or("").to_owned(),
        }
    }

    pub fn rebuild_indices(&mut self) {
        self.user_index = self
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.account_id.clone(), i as u32))
            .collect();
        self.group_index = self
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i as u32))
            .collect();
    }
}
