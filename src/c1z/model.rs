//! The baton-confluence object model: records → protobuf messages.
//!
//! Ids, names and texts reproduce the reference connector byte for byte; the
//! functions here are pure so the writer only deals with storage.

use std::collections::BTreeMap;

use prost_types::value::Kind;

use super::proto::{
    self, Any, Entitlement, Grant, GroupTrait, ListValue, Purpose, Resource, ResourceId,
    ResourceStatus, ResourceType, RoleTrait, SkipEntitlements, SkipEntitlementsAndGrants, Struct,
    Trait, UserTrait, Value, user_trait,
};
use super::records::{GroupRecord, SpaceRecord, SpaceRoleRecord, UserRecord};

/// Resource type ids.
pub(crate) const USER: &str = "user";
pub(crate) const GROUP: &str = "group";
pub(crate) const SPACE: &str = "space";
pub(crate) const SPACE_ROLE: &str = "space_role";
pub(crate) const SPACE_ROLE_ASSIGNMENT: &str = "space_role_assignment";

/// The only `accountType` the reference keeps.
pub(crate) const ATLASSIAN_ACCOUNT: &str = "atlassian";

fn resource_type(id: &str, name: &str, traits: &[Trait], annotations: Vec<Any>) -> ResourceType {
    ResourceType {
        id: id.into(),
        display_name: name.into(),
        traits: traits.iter().map(|t| *t as i32).collect(),
        annotations,
        ..Default::default()
    }
}

/// The `user` resource type.
pub(crate) fn user_type() -> ResourceType {
    resource_type(
        USER,
        "User",
        &[Trait::User],
        vec![proto::to_any(&SkipEntitlementsAndGrants {})],
    )
}

/// The `group` resource type.
pub(crate) fn group_type() -> ResourceType {
    resource_type(GROUP, "Group", &[Trait::Group], vec![])
}

/// All five resource types, in a fixed order (the reference's order is random).
///
/// `OptInRequired` is omitted on purpose: sdk v0.7.27 cannot resolve it, which
/// breaks `baton … -o json`, and no reader uses it from a file.
pub(crate) fn resource_types() -> [ResourceType; 5] {
    [
        user_type(),
        group_type(),
        resource_type(SPACE, "Space", &[], vec![]),
        resource_type(
            SPACE_ROLE,
            "Space Role",
            &[Trait::Role],
            vec![proto::to_any(&SkipEntitlementsAndGrants {})],
        ),
        resource_type(
            SPACE_ROLE_ASSIGNMENT,
            "Space Role Assignment",
            &[Trait::ScopeBinding],
            vec![proto::to_any(&SkipEntitlements {})],
        ),
    ]
}

/// A `ResourceId`.
pub(crate) fn rid(resource_type: &str, resource: &str) -> ResourceId {
    ResourceId {
        resource_type: resource_type.into(),
        resource: resource.into(),
        ..Default::default()
    }
}

fn string_value(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn profile<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Struct {
    Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// A `user` resource. The trait's status is always ENABLED (reference quirk Q3);
/// the real state is in `Resource.status`.
pub(crate) fn user_resource(user: &UserRecord) -> Resource {
    let email = user.email.as_deref().unwrap_or("");
    let emails = if email.is_empty() {
        vec![]
    } else {
        vec![user_trait::Email {
            address: email.into(),
            is_primary: true,
        }]
    };
    let user_trait = UserTrait {
        emails,
        status: Some(user_trait::Status {
            status: ResourceStatus::Enabled as i32,
            details: String::new(),
        }),
        account_type: user_trait::AccountType::Human as i32,
        ..Default::default()
    };
    let status = if user.enabled {
        ResourceStatus::Enabled
    } else {
        ResourceStatus::Disabled
    };
    Resource {
        id: Some(rid(USER, &user.account_id)),
        display_name: user.display_name.clone(),
        annotations: vec![proto::to_any(&user_trait)],
        profile: Some(profile([
            ("account_type", string_value(&user.account_type)),
            ("email", string_value(email)),
            ("id", string_value(&user.account_id)),
            ("user_name", string_value(&user.display_name)),
        ])),
        status: Some(proto::Status {
            status: status as i32,
            details: String::new(),
        }),
        ..Default::default()
    }
}

/// A `group` resource.
pub(crate) fn group_resource(group: &GroupRecord) -> Resource {
    Resource {
        id: Some(rid(GROUP, &group.id)),
        display_name: group.name.clone(),
        annotations: vec![proto::to_any(&GroupTrait::default())],
        profile: Some(profile([
            ("group_id", string_value(&group.id)),
            ("group_name", string_value(&group.name)),
            ("group_type", string_value(&group.group_type)),
        ])),
        ..Default::default()
    }
}

/// A `space` resource (default mode: no annotations).
pub(crate) fn space_resource(space: &SpaceRecord) -> Resource {
    Resource {
        id: Some(rid(SPACE, &space.id)),
        display_name: space.name.clone(),
        ..Default::default()
    }
}

/// A `space_role` resource.
pub(crate) fn space_role_resource(role: &SpaceRoleRecord) -> Resource {
    let permissions = role
        .space_permissions
        .iter()
        .map(|p| string_value(p))
        .collect();
    Resource {
        id: Some(rid(SPACE_ROLE, &role.id)),
        display_name: role.name.clone(),
        description: role.description.clone(),
        annotations: vec![proto::to_any(&RoleTrait::default())],
        profile: Some(profile([
            ("description", string_value(&role.description)),
            (
                "space_permissions",
                Value {
                    kind: Some(Kind::ListValue(ListValue {
                        values: permissions,
                    })),
                },
            ),
        ])),
        ..Default::default()
    }
}

/// `<resource_type>:<resource>:<slug>`.
pub(crate) fn entitlement_id(resource: &ResourceId, slug: &str) -> String {
    format!("{}:{}:{}", resource.resource_type, resource.resource, slug)
}

/// `<entitlement id>:<principal type>:<principal id>`.
pub(crate) fn grant_id(entitlement_id: &str, principal: &ResourceId) -> String {
    format!(
        "{entitlement_id}:{}:{}",
        principal.resource_type, principal.resource
    )
}

/// The `member` entitlement of a group resource.
pub(crate) fn group_member_entitlement(group: &Resource, id: &ResourceId) -> Entitlement {
    let name = &group.display_name;
    Entitlement {
        resource: Some(group.clone()),
        id: entitlement_id(id, "member"),
        display_name: format!("{name} Group Member"),
        description: format!("Is member of the {name} group in Confluence"),
        grantable_to: vec![user_type()],
        purpose: Purpose::Assignment as i32,
        slug: "member".into(),
        ..Default::default()
    }
}

/// A `<verb>-<noun>` permission entitlement of a space resource.
///
/// `grantable_to` is `[group]` only, as in the reference (quirk Q1: each option
/// replaced the list). Pairs Confluence lacks are emitted too (Q2).
pub(crate) fn space_entitlement(
    space: &Resource,
    id: &ResourceId,
    verb: &str,
    noun: &str,
) -> Entitlement {
    let slug = format!("{verb}-{noun}");
    let name = &space.display_name;
    Entitlement {
        resource: Some(space.clone()),
        id: entitlement_id(id, &slug),
        display_name: format!("Can {slug} {name}"),
        description: format!("Has permission to {verb} {noun} the {name} space in Confluence"),
        grantable_to: vec![group_type()],
        purpose: Purpose::Permission as i32,
        slug,
        ..Default::default()
    }
}

/// A connector grant: the entitlement carries only `{id, resource}`, the principal only `{id}`.
pub(crate) fn grant(
    resource: &Resource,
    entitlement_id: String,
    principal: ResourceId,
    annotations: Vec<Any>,
) -> Grant {
    Grant {
        id: grant_id(&entitlement_id, &principal),
        entitlement: Some(Entitlement {
            resource: Some(resource.clone()),
            id: entitlement_id,
            ..Default::default()
        }),
        principal: Some(Resource {
            id: Some(principal),
            ..Default::default()
        }),
        annotations,
        sources: None,
    }
}
