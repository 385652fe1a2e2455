//! Confluence API rows → snapshot records, by the reference connector's rules.

use crate::c1z::{GroupRecord, SpacePermissionRecord, SpaceRecord, SpaceRoleRecord, UserRecord};
use crate::confluence::{AccountType, Group, Space, SpacePermission, SpaceRole, SpaceType, User};

/// A user worth writing: an Atlassian account with an id. Apps and other account types
/// are skipped, as the reference connector does; no `operations` means disabled.
pub fn user_record(user: &User) -> Option<UserRecord> {
    let account_id = user.account_id.as_deref().filter(|id| !id.is_empty())?;
    if user.account_type != Some(AccountType::Atlassian) {
        return None;
    }
    let enabled = user.operations.as_ref().is_some_and(|ops| !ops.is_empty());
    Some(UserRecord {
        account_id: account_id.to_string(),
        display_name: user.display_name.clone().unwrap_or_default(),
        email: user.email.clone().filter(|e| !e.is_empty()),
        account_type: AccountType::Atlassian.as_str().to_string(),
        enabled,
    })
}

/// A group with an id (groups are keyed by id, never by their renamable name).
pub fn group_record(group: &Group) -> Option<GroupRecord> {
    let id = group.id.as_deref().filter(|id| !id.is_empty())?;
    Some(GroupRecord {
        id: id.to_string(),
        name: group.name.clone().unwrap_or_default(),
        group_type: group.kind.clone().unwrap_or_default(),
    })
}

/// A space with an id, unless it is personal and personal spaces are skipped.
pub fn space_record(space: &Space, skip_personal: bool) -> Option<SpaceRecord> {
    let id = space.id.as_deref().filter(|id| !id.is_empty())?;
    if skip_personal && space.kind == Some(SpaceType::Personal) {
        return None;
    }
    Some(SpaceRecord {
        id: id.to_string(),
        name: space.name.clone().unwrap_or_default(),
    })
}

/// A permission row as the snapshot sees it; the writer decides which ones count.
pub fn permission_record(
    space_id: &str,
    permission: &SpacePermission,
) -> Option<SpacePermissionRecord> {
    let principal = permission.principal.as_ref()?;
    let operation = permission.operation.as_ref()?;
    Some(SpacePermissionRecord {
        space_id: space_id.to_string(),
        principal_type: principal.kind.as_ref()?.as_str().to_string(),
        principal_id: principal.id.clone().filter(|id| !id.is_empty())?,
        operation_key: operation.key.as_ref()?.as_str().to_string(),
        target_type: operation.target_type.as_ref()?.as_str().to_string(),
    })
}

/// A space role with an id. Its permissions are kept as text, whatever their shape.
pub fn role_record(role: &SpaceRole) -> Option<SpaceRoleRecord> {
    let id = role.id.as_deref().filter(|id| !id.is_empty())?;
    let space_permissions = role
        .space_permissions
        .iter()
        .flatten()
        .map(|value| match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect();
    Some(SpaceRoleRecord {
        id: id.to_string(),
        name: role.name.clone().unwrap_or_default(),
        description: role.description.clone().unwrap_or_default(),
        space_permissions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(json: serde_json::Value) -> User {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn atlassian_users_with_operations_are_enabled() {
        let u = user(serde_json::json!({
            "type": "known", "accountId": "557058:abc", "accountType": "atlassian",
            "email": "a@example.com", "displayName": "Alice",
            "operations": [{"operation": "use", "targetType": "application"}]
        }));
        let r = user_record(&u).unwrap();
        assert_eq!(r.account_id, "557058:abc");
        assert!(r.enabled);
        assert_eq!(r.email.as_deref(), Some("a@example.com"));
        assert_eq!(r.account_type, "atlassian");
    }

    #[test]
    fn no_operations_means_disabled_and_hidden_email_is_none() {
        for ops in [serde_json::json!([]), serde_json::Value::Null] {
            let mut json = serde_json::json!({
                "accountId": "x", "accountType": "atlassian", "email": "", "displayName": "Bob (Deactivated)"
            });
            if !ops.is_null() {
                json["operations"] = ops;
            }
            let r = user_record(&user(json)).unwrap();
            assert!(!r.enabled);
            assert_eq!(r.email, None);
        }
    }

    #[test]
    fn apps_unknown_types_and_missing_ids_are_skipped() {
        assert!(
            user_record(&user(
                serde_json::json!({"accountId": "a", "accountType": "app"})
            ))
            .is_none()
        );
        assert!(
            user_record(&user(
                serde_json::json!({"accountId": "a", "accountType": "customer"})
            ))
            .is_none()
        );
        assert!(user_record(&user(serde_json::json!({"accountId": "a"}))).is_none());
        assert!(user_record(&user(serde_json::json!({"accountType": "atlassian"}))).is_none());
        assert!(
            user_record(&user(
                serde_json::json!({"accountId": "", "accountType": "atlassian"})
            ))
            .is_none()
        );
    }

    #[test]
    fn personal_spaces_are_skipped_only_when_asked() {
        let space: Space = serde_json::from_value(
            serde_json::json!({"id": "42", "key": "~abc", "name": "Al", "type": "personal"}),
        )
        .unwrap();
        assert_eq!(space_record(&space, false).unwrap().id, "42");
        assert!(space_record(&space, true).is_none());
        let global: Space =
            serde_json::from_value(serde_json::json!({"id": "7", "name": "Eng", "type": "global"}))
                .unwrap();
        assert!(space_record(&global, true).is_some());
    }

    #[test]
    fn permissions_keep_open_values_for_the_writer_to_judge() {
        let p: SpacePermission = serde_json::from_value(serde_json::json!({
            "id": "1", "principal": {"type": "access-class", "id": "ac"},
            "operation": {"key": "purge_version", "targetType": "space"}
        }))
        .unwrap();
        let r = permission_record("9", &p).unwrap();
        assert_eq!(
            (r.principal_type.as_str(), r.operation_key.as_str()),
            ("access-class", "purge_version")
        );
        let broken: SpacePermission =
            serde_json::from_value(serde_json::json!({"id": "2"})).unwrap();
        assert!(permission_record("9", &broken).is_none());
    }
}
