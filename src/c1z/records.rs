//! Plain input records: what the sync engine hands to the writer.
//!
//! They carry exactly the Confluence fields the snapshot needs and nothing of
//! the HTTP layer, so the writer can be tested without a server.

/// Space permission nouns (Confluence `targetType`s) in the reference order.
pub const ALL_NOUNS: [&str; 5] = ["attachment", "blogpost", "comment", "page", "space"];

/// Space permission verbs (Confluence operation keys) in the reference order.
pub const ALL_VERBS: [&str; 8] = [
    "administer",
    "archive",
    "create",
    "delete",
    "export",
    "read",
    "restrict_content",
    "update",
];

/// A Confluence user (CQL search hit or group member).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserRecord {
    /// Atlassian `accountId`.
    pub account_id: String,
    /// `displayName`.
    pub display_name: String,
    /// `email`, often hidden by the user's privacy settings.
    pub email: Option<String>,
    /// `accountType`; only `atlassian` accounts are written.
    pub account_type: String,
    /// Whether the user has any `operations` (the reference's notion of enabled).
    pub enabled: bool,
}

/// A Confluence group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupRecord {
    /// Group `id`.
    pub id: String,
    /// Group `name`.
    pub name: String,
    /// Group `type`.
    pub group_type: String,
}

/// A Confluence space (v2 API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceRecord {
    /// Numeric v2 space `id` as a string (not the key).
    pub id: String,
    /// Space `name`.
    pub name: String,
}

/// One entry of a space's v2 permission list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpacePermissionRecord {
    /// The space the permission belongs to.
    pub space_id: String,
    /// `principal.type` (`user`, `group`, `role`, …).
    pub principal_type: String,
    /// `principal.id`.
    pub principal_id: String,
    /// `operation.key` (the verb).
    pub operation_key: String,
    /// `operation.targetType` (the noun).
    pub target_type: String,
}

/// A Confluence space role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceRoleRecord {
    /// Role `id`.
    pub id: String,
    /// Role `name`.
    pub name: String,
    /// Role `description`.
    pub description: String,
    /// The role's space permission ids.
    pub space_permissions: Vec<String>,
}
