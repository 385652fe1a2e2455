//! Typed, tolerant views of Confluence objects (§3, §4, §9.4).
//!
//! Every field is optional and defaults when absent or `null`; unknown fields are
//! ignored; value sets that grow are open enums. Only the fields the operator reads are
//! modelled.

use serde::{Deserialize, Deserializer, Serialize};

use super::open_enum::open_enum;

open_enum! {
    /// `accountType` of a user.
    AccountType {
        /// A person with an Atlassian account.
        Atlassian => "atlassian",
        /// A bot or integration ("Automation for Jira", "Slack", ...).
        App => "app",
        /// A JSM portal customer (v2 only).
        Customer => "customer",
        /// Explicitly unknown.
        Unknown => "unknown",
    }
}

open_enum! {
    /// `accountStatus` of a user.
    AccountStatus {
        /// Active account.
        Active => "active",
        /// Deactivated account.
        Inactive => "inactive",
        /// Closed (deleted) account.
        Closed => "closed",
        /// Explicitly unknown.
        Unknown => "unknown",
    }
}

open_enum! {
    /// `principal.type` of a space permission.
    PrincipalType {
        /// A user, by accountId.
        User => "user",
        /// A group, by group id.
        Group => "group",
        /// A space role.
        Role => "role",
        /// An access class (anonymous, logged-in users, ...).
        AccessClass => "access-class",
    }
}

open_enum! {
    /// `operation.key` of a space permission, or `operation` of a user operation.
    OperationKey {
        /// Use (an application).
        Use => "use",
        /// Create.
        Create => "create",
        /// Read / view.
        Read => "read",
        /// Update / edit.
        Update => "update",
        /// Delete.
        Delete => "delete",
        /// Copy.
        Copy => "copy",
        /// Move.
        Move => "move",
        /// Export.
        Export => "export",
        /// Purge.
        Purge => "purge",
        /// Purge versions.
        PurgeVersion => "purge_version",
        /// Administer.
        Administer => "administer",
        /// Restore.
        Restore => "restore",
        /// Create spaces.
        CreateSpace => "create_space",
        /// Restrict content.
        RestrictContent => "restrict_content",
        /// Archive.
        Archive => "archive",
    }
}

open_enum! {
    /// `targetType` of an operation.
    TargetType {
        /// Pages.
        Page => "page",
        /// Blog posts.
        Blogpost => "blogpost",
        /// Comments.
        Comment => "comment",
        /// Attachments.
        Attachment => "attachment",
        /// Whiteboards.
        Whiteboard => "whiteboard",
        /// Databases.
        Database => "database",
        /// Smart links / embeds.
        Embed => "embed",
        /// Folders.
        Folder => "folder",
        /// The space itself.
        Space => "space",
        /// The Confluence application.
        Application => "application",
        /// User profiles.
        UserProfile => "userProfile",
    }
}

open_enum! {
    /// Space `type`.
    SpaceType {
        /// Global (site) space.
        Global => "global",
        /// Collaboration space.
        Collaboration => "collaboration",
        /// Knowledge base space.
        KnowledgeBase => "knowledge_base",
        /// A user's personal space.
        Personal => "personal",
        /// System space.
        System => "system",
        /// Onboarding space.
        Onboarding => "onboarding",
        /// Sample space.
        XflowSampleSpace => "xflow_sample_space",
    }
}

/// Reads a string where `""` means "not available" (§8: e-mail is `""` when hidden).
fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// A Confluence user as returned by v1 (`user/current`, `membersByGroupId`,
/// `search/user` results' `user`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct User {
    /// `known`, `anonymous`, ... (kept as text; only `known` is a real account).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Opaque account id; the user's key.
    pub account_id: Option<String>,
    /// `atlassian`, `app`, ...
    pub account_type: Option<AccountType>,
    /// E-mail; `None` when hidden (`""` on the wire) or absent.
    #[serde(deserialize_with = "empty_as_none")]
    pub email: Option<String>,
    /// Public name (always present in practice).
    pub public_name: Option<String>,
    /// Display name; may carry a localized "(Deactivated)" suffix: do not parse it.
    pub display_name: Option<String>,
    /// Avatar.
    pub profile_picture: Option<ProfilePicture>,
    /// Deprecated guest flag.
    pub is_external_collaborator: Option<bool>,
    /// Guest flag.
    pub is_guest: Option<bool>,
    /// `active`, `inactive`, ... (newer responses only).
    pub account_status: Option<AccountStatus>,
    /// Locale, e.g. `en_US`.
    pub locale: Option<String>,
    /// Time zone name.
    pub time_zone: Option<String>,
    /// Present only with `expand=operations`; empty for deactivated or unlicensed users.
    pub operations: Option<Vec<UserOperation>>,
}

/// A user's avatar.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProfilePicture {
    /// Path relative to the site.
    pub path: Option<String>,
    /// Width in pixels.
    pub width: Option<u32>,
    /// Height in pixels.
    pub height: Option<u32>,
    /// Whether this is the default avatar.
    pub is_default: Option<bool>,
}

/// One entry of a user's `operations` (e.g. `use` on `application`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UserOperation {
    /// The operation.
    pub operation: Option<OperationKey>,
    /// What it applies to.
    pub target_type: Option<TargetType>,
}

/// The account behind the credentials, as accepted by `current_user()`.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentUser {
    /// The non-empty account id (validated).
    pub account_id: String,
    /// The full answer.
    pub user: User,
}

/// A v1 group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Group {
    /// Always `group`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Stable UUID; the group's key (names are renamable).
    pub id: Option<String>,
    /// Current name.
    pub name: Option<String>,
    /// `ari:cloud:identity::group/<id>`.
    pub resource_ari: Option<String>,
    /// `USERBASE_GROUP`, `TEAM_COLLABORATION`, ...
    pub usage_type: Option<String>,
    /// `ADMINS`, `EXTERNAL`, `TEAM_MEMBERS`, `OPEN`, ...
    pub managed_by: Option<String>,
}

/// One `search/user` result; the user is inside.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SearchResult {
    /// The user.
    pub user: Option<User>,
    /// Result title (display name).
    pub title: Option<String>,
    /// `user`.
    pub entity_type: Option<String>,
}

/// A v2 space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Space {
    /// Numeric string id; the space's key for the operator.
    pub id: Option<String>,
    /// Space key (`~...` for personal spaces).
    pub key: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Type.
    #[serde(rename = "type")]
    pub kind: Option<SpaceType>,
    /// `current` or `archived`.
    pub status: Option<String>,
    /// Creator's account id.
    pub author_id: Option<String>,
    /// Creation time (ISO 8601 text).
    pub created_at: Option<String>,
    /// Home page id.
    pub homepage_id: Option<String>,
    /// Owner's account id (newer responses).
    pub space_owner_id: Option<String>,
    /// Current alias (newer responses).
    pub current_active_alias: Option<String>,
}

/// A v2 space permission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SpacePermission {
    /// Numeric string id.
    pub id: Option<String>,
    /// Who holds it.
    pub principal: Option<Principal>,
    /// What it allows.
    pub operation: Option<SpaceOperation>,
}

/// The holder of a space permission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Principal {
    /// `user`, `group`, `role`, `access-class`, ...
    #[serde(rename = "type")]
    pub kind: Option<PrincipalType>,
    /// accountId, group id, role id, ...
    pub id: Option<String>,
}

/// The operation of a space permission.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SpaceOperation {
    /// The verb.
    pub key: Option<OperationKey>,
    /// The noun.
    pub target_type: Option<TargetType>,
}

/// A v2 space role (RBAC sites).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SpaceRole {
    /// Role id.
    pub id: Option<String>,
    /// Role type (system, custom, ...).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// The permissions the role grants, kept as raw JSON: their shape is undocumented.
    pub space_permissions: Option<Vec<serde_json::Value>>,
}

/// `/_edge/tenant_info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TenantInfo {
    /// The site's cloud id.
    pub cloud_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parses_tolerantly() -> Result<(), serde_json::Error> {
        let u: User = serde_json::from_str(
            r#"{"type":"known","accountId":"608a","accountType":"app","email":"",
                "publicName":"alice","displayName":null,"accountStatus":"suspended-ish",
                "operations":[{"operation":"use","targetType":"application"}],
                "brandNewField":{"x":1},"_expandable":{"personalSpace":""}}"#,
        )?;
        assert_eq!(u.kind.as_deref(), Some("known"));
        assert_eq!(u.account_type, Some(AccountType::App));
        assert_eq!(u.email, None);
        assert_eq!(u.display_name, None);
        assert_eq!(
            u.account_status,
            Some(AccountStatus::Other("suspended-ish".into()))
        );
        let ops = u.operations.unwrap_or_default();
        assert_eq!(ops[0].operation, Some(OperationKey::Use));
        assert_eq!(ops[0].target_type, Some(TargetType::Application));

        let empty: User = serde_json::from_str("{}")?;
        assert_eq!(empty, User::default());
        Ok(())
    }

    #[test]
    fn space_permission_open_enums_keep_unknown_values() -> Result<(), serde_json::Error> {
        let p: SpacePermission = serde_json::from_str(
            r#"{"id":"7","principal":{"type":"access-class","id":"anonymous"},
                "operation":{"key":"teleport","targetType":"userProfile"}}"#,
        )?;
        let principal = p.principal.unwrap_or_default();
        assert_eq!(principal.kind, Some(PrincipalType::AccessClass));
        let op = p.operation.unwrap_or_default();
        assert_eq!(op.key, Some(OperationKey::Other("teleport".into())));
        assert_eq!(op.target_type, Some(TargetType::UserProfile));
        assert_eq!(serde_json::to_string(&op.key)?, r#""teleport""#);
        Ok(())
    }

    #[test]
    fn space_type_round_trips() -> Result<(), serde_json::Error> {
        let s: Space = serde_json::from_str(
            r#"{"id":"123","key":"~608a","type":"personal","description":null,"icon":null}"#,
        )?;
        assert_eq!(s.kind, Some(SpaceType::Personal));
        let t: SpaceType = serde_json::from_str(r#""knowledge_base""#)?;
        assert_eq!(t, SpaceType::KnowledgeBase);
        assert_eq!(SpaceType::from("odd").as_str(), "odd");
        Ok(())
    }
}
