//! Hand-written protobuf messages: the subset of baton-sdk's `c1.connector.v2`
//! package that c1z rows contain.
//!
//! Field numbers and types follow `proto/c1/connector/v2/*.proto`; fields the
//! reference never sets are left out (decoders skip unknown fields). prost
//! encodes fields in number order, like Go's deterministic marshal, and maps are
//! `BTreeMap`s so their entries are sorted by key.

use std::collections::BTreeMap;

pub use prost_types::{Any, ListValue, Struct, Timestamp, Value};

/// Package of the messages, used in `Any` type URLs.
pub const PACKAGE: &str = "c1.connector.v2";

/// Builds an `Any` for `msg` with type URL `type.googleapis.com/c1.connector.v2.<Name>`.
///
/// prost's default `Name::type_url()` has no domain, so the URL is built here.
pub fn to_any<M: prost::Name>(msg: &M) -> Any {
    Any {
        type_url: type_url::<M>(),
        value: prost::Message::encode_to_vec(msg),
    }
}

/// The type URL the Go SDK uses for `M`.
pub fn type_url<M: prost::Name>() -> String {
    format!("type.googleapis.com/{}", M::full_name())
}

/// Decodes `any` as `M` if its type URL names `M`.
pub fn from_any<M: prost::Name + Default>(any: &Any) -> Option<Result<M, prost::DecodeError>> {
    (any.type_url == type_url::<M>()).then(|| M::decode(any.value.as_slice()))
}

macro_rules! named {
    ($($name:ident),* $(,)?) => {$(
        impl prost::Name for $name {
            const NAME: &'static str = stringify!($name);
            const PACKAGE: &'static str = PACKAGE;
            fn type_url() -> String {
                type_url::<Self>()
            }
        }
    )*};
}

named!(
    UserTrait,
    GroupTrait,
    RoleTrait,
    ScopeBindingTrait,
    ChildResourceType,
    SkipEntitlementsAndGrants,
    SkipEntitlements,
    SkipGrants,
    GrantExpandable,
    GrantImmutable,
);

/// `ResourceType`: a kind of resource the connector syncs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceType {
    /// Type id (`user`, `group`, …).
    #[prost(string, tag = "1")]
    pub id: String,
    /// Human name.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Traits, values of [`Trait`] (packed).
    #[prost(enumeration = "Trait", repeated, tag = "3")]
    pub traits: Vec<i32>,
    /// Annotations as `Any`s.
    #[prost(message, repeated, tag = "4")]
    pub annotations: Vec<Any>,
    /// Description (unset by the reference).
    #[prost(string, tag = "5")]
    pub description: String,
    /// Whether the type is sourced externally (unset by the reference).
    #[prost(bool, tag = "6")]
    pub sourced_externally: bool,
}

/// `ResourceType.Trait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Trait {
    /// No trait.
    Unspecified = 0,
    /// A user.
    User = 1,
    /// A group.
    Group = 2,
    /// A role.
    Role = 3,
    /// An application.
    App = 4,
    /// A secret.
    Secret = 5,
    /// A security insight.
    SecurityInsight = 6,
    /// A role bound to a scope.
    ScopeBinding = 7,
}

/// `ResourceId`: type and id of a resource.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct ResourceId {
    /// Resource type id.
    #[prost(string, tag = "1")]
    pub resource_type: String,
    /// Resource id within the type.
    #[prost(string, tag = "2")]
    pub resource: String,
    /// Baton-internal flag (unset).
    #[prost(bool, tag = "3")]
    pub baton_resource: bool,
}

/// `Resource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Identity.
    #[prost(message, optional, tag = "1")]
    pub id: Option<ResourceId>,
    /// Parent resource, if any.
    #[prost(message, optional, tag = "2")]
    pub parent_resource_id: Option<ResourceId>,
    /// Human name.
    #[prost(string, tag = "3")]
    pub display_name: String,
    /// Annotations (traits etc.).
    #[prost(message, repeated, tag = "4")]
    pub annotations: Vec<Any>,
    /// Description.
    #[prost(string, tag = "5")]
    pub description: String,
    /// Baton-internal flag (unset).
    #[prost(bool, tag = "6")]
    pub baton_resource: bool,
    /// Deprecated external id (unset).
    #[prost(message, optional, tag = "7")]
    pub external_id: Option<ExternalId>,
    /// Deprecated creation source (unset).
    #[prost(int32, tag = "8")]
    pub creation_source: i32,
    /// Free-form profile.
    #[prost(message, optional, tag = "9")]
    pub profile: Option<Struct>,
    /// Icon reference (unset).
    #[prost(message, optional, tag = "10")]
    pub icon: Option<AssetRef>,
    /// Resource status.
    #[prost(message, optional, tag = "11")]
    pub status: Option<Status>,
    /// Creation time (unset).
    #[prost(message, optional, tag = "12")]
    pub created_at: Option<Timestamp>,
}

/// `Status` of a resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// A [`ResourceStatus`] value.
    #[prost(enumeration = "ResourceStatus", tag = "1")]
    pub status: i32,
    /// Free text.
    #[prost(string, tag = "2")]
    pub details: String,
}

/// `Status.ResourceStatus`, also used for `UserTrait.Status.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResourceStatus {
    /// Unknown.
    Unspecified = 0,
    /// Enabled.
    Enabled = 1,
    /// Disabled.
    Disabled = 2,
    /// Deleted.
    Deleted = 3,
}

/// `ExternalId` (deprecated, unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExternalId {
    /// Id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Link.
    #[prost(string, tag = "2")]
    pub link: String,
    /// Description.
    #[prost(string, tag = "3")]
    pub description: String,
}

/// `AssetRef` (unused: the reference emits no icons).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AssetRef {
    /// Asset id.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `Entitlement`: something a principal can be granted on a resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entitlement {
    /// The full resource the entitlement belongs to.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// `<resource_type>:<resource>:<slug>`.
    #[prost(string, tag = "2")]
    pub id: String,
    /// Human name.
    #[prost(string, tag = "3")]
    pub display_name: String,
    /// Description.
    #[prost(string, tag = "4")]
    pub description: String,
    /// Resource types that may receive it (whole messages).
    #[prost(message, repeated, tag = "5")]
    pub grantable_to: Vec<ResourceType>,
    /// Annotations.
    #[prost(message, repeated, tag = "6")]
    pub annotations: Vec<Any>,
    /// A [`Purpose`] value.
    #[prost(enumeration = "Purpose", tag = "7")]
    pub purpose: i32,
    /// Short name.
    #[prost(string, tag = "8")]
    pub slug: String,
}

/// `Entitlement.PurposeValue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Purpose {
    /// Unknown.
    Unspecified = 0,
    /// Membership-like assignment.
    Assignment = 1,
    /// A permission.
    Permission = 2,
    /// Ownership.
    Ownership = 3,
}

/// `Grant`: a principal holding an entitlement.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Grant {
    /// The entitlement (only `{id, resource}` for connector grants).
    #[prost(message, optional, tag = "1")]
    pub entitlement: Option<Entitlement>,
    /// The principal (only `{id}`).
    #[prost(message, optional, tag = "2")]
    pub principal: Option<Resource>,
    /// `<entitlement id>:<principal type>:<principal id>`.
    #[prost(string, tag = "3")]
    pub id: String,
    /// Annotations.
    #[prost(message, repeated, tag = "4")]
    pub annotations: Vec<Any>,
    /// Where an expanded grant comes from.
    #[prost(message, optional, tag = "5")]
    pub sources: Option<GrantSources>,
}

/// `GrantSources`: entitlement id → source.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantSources {
    /// Sources keyed by entitlement id.
    #[prost(btree_map = "string, message", tag = "1")]
    pub sources: BTreeMap<String, GrantSource>,
}

/// `GrantSources.GrantSource`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantSource {
    /// Whether the source grants directly.
    #[prost(bool, tag = "1")]
    pub is_direct: bool,
}

/// `UserTrait` annotation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserTrait {
    /// E-mail addresses.
    #[prost(message, repeated, tag = "1")]
    pub emails: Vec<user_trait::Email>,
    /// Deprecated status (the reference always writes ENABLED).
    #[prost(message, optional, tag = "2")]
    pub status: Option<user_trait::Status>,
    /// Deprecated profile (unset).
    #[prost(message, optional, tag = "3")]
    pub profile: Option<Struct>,
    /// Deprecated icon (unset).
    #[prost(message, optional, tag = "4")]
    pub icon: Option<AssetRef>,
    /// A [`user_trait::AccountType`] value.
    #[prost(enumeration = "user_trait::AccountType", tag = "5")]
    pub account_type: i32,
    /// Login (unset).
    #[prost(string, tag = "6")]
    pub login: String,
    /// Login aliases (unset).
    #[prost(string, repeated, tag = "7")]
    pub login_aliases: Vec<String>,
    /// Deprecated creation time (unset).
    #[prost(message, optional, tag = "8")]
    pub created_at: Option<Timestamp>,
    /// Last login (unset).
    #[prost(message, optional, tag = "9")]
    pub last_login: Option<Timestamp>,
    /// Employee ids (unset).
    #[prost(string, repeated, tag = "13")]
    pub employee_ids: Vec<String>,
}

/// Nested messages and enums of [`UserTrait`].
pub mod user_trait {
    /// `UserTrait.Email`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Email {
        /// Address.
        #[prost(string, tag = "1")]
        pub address: String,
        /// Whether it is the primary address.
        #[prost(bool, tag = "2")]
        pub is_primary: bool,
    }

    /// `UserTrait.Status`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        /// A [`super::ResourceStatus`] value (same numbers).
        #[prost(enumeration = "super::ResourceStatus", tag = "1")]
        pub status: i32,
        /// Free text.
        #[prost(string, tag = "2")]
        pub details: String,
    }

    /// `UserTrait.AccountType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum AccountType {
        /// Unknown.
        Unspecified = 0,
        /// A person.
        Human = 1,
        /// A service account.
        Service = 2,
        /// A system account.
        System = 3,
    }
}

/// `GroupTrait` annotation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupTrait {
    /// Deprecated icon (unset).
    #[prost(message, optional, tag = "1")]
    pub icon: Option<AssetRef>,
    /// Deprecated profile (unset).
    #[prost(message, optional, tag = "2")]
    pub profile: Option<Struct>,
    /// Group source type (unset).
    #[prost(string, tag = "3")]
    pub group_source_type: String,
    /// Raw group source type (unset).
    #[prost(string, tag = "4")]
    pub raw_group_source_type: String,
}

/// `RoleTrait` annotation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RoleTrait {
    /// Deprecated profile (unset).
    #[prost(message, optional, tag = "1")]
    pub profile: Option<Struct>,
}

/// `ScopeBindingTrait` annotation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeBindingTrait {
    /// The bound role.
    #[prost(message, optional, tag = "1")]
    pub role_id: Option<ResourceId>,
    /// The scope it is bound to.
    #[prost(message, optional, tag = "2")]
    pub scope_resource_id: Option<ResourceId>,
}

/// `GrantExpandable` annotation: the grant extends to the principals of these entitlements.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantExpandable {
    /// Entitlements whose grantees receive the grant too.
    #[prost(string, repeated, tag = "1")]
    pub entitlement_ids: Vec<String>,
    /// Expand one level only.
    #[prost(bool, tag = "2")]
    pub shallow: bool,
    /// Restrict expansion to these principal types.
    #[prost(string, repeated, tag = "3")]
    pub resource_type_ids: Vec<String>,
}

/// `GrantImmutable` annotation, set on grants created by expansion.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantImmutable {
    /// Source id (unset).
    #[prost(string, tag = "1")]
    pub source_id: String,
    /// Metadata (unset).
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<Struct>,
}

/// `ChildResourceType` annotation.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChildResourceType {
    /// The child type id.
    #[prost(string, tag = "1")]
    pub resource_type_id: String,
}

/// `SkipEntitlementsAndGrants` annotation (no fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SkipEntitlementsAndGrants {}

/// `SkipEntitlements` annotation (no fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SkipEntitlements {}

/// `SkipGrants` annotation (no fields).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SkipGrants {}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn empty_annotation_is_type_url_only() {
        let any = to_any(&GroupTrait::default());
        let url = b"type.googleapis.com/c1.connector.v2.GroupTrait";
        let mut expected = vec![0x0a, url.len() as u8];
        expected.extend_from_slice(url);
        assert_eq!(any.encode_to_vec(), expected);
    }

    #[test]
    fn resource_type_bytes() {
        // user type: id, display_name, packed traits [USER], one annotation.
        let rt = ResourceType {
            id: "user".into(),
            display_name: "User".into(),
            traits: vec![Trait::User as i32],
            annotations: vec![to_any(&SkipEntitlementsAndGrants {})],
            ..Default::default()
        };
        let url = b"type.googleapis.com/c1.connector.v2.SkipEntitlementsAndGrants";
        let mut expected = vec![0x0a, 4];
        expected.extend_from_slice(b"user");
        expected.extend_from_slice(&[0x12, 4]);
        expected.extend_from_slice(b"User");
        expected.extend_from_slice(&[0x1a, 1, 1]);
        expected.extend_from_slice(&[0x22, url.len() as u8 + 2, 0x0a, url.len() as u8]);
        expected.extend_from_slice(url);
        assert_eq!(rt.encode_to_vec(), expected);
    }

    #[test]
    fn grant_bytes_with_sources() {
        // Field 5 (sources) after field 3 (id); map entry key 1, value message 2.
        let mut sources = BTreeMap::new();
        sources.insert("b".to_string(), GrantSource { is_direct: true });
        sources.insert("a".to_string(), GrantSource { is_direct: true });
        let grant = Grant {
            principal: Some(Resource {
                id: Some(ResourceId {
                    resource_type: "user".into(),
                    resource: "u".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            id: "g".into(),
            sources: Some(GrantSources { sources }),
            ..Default::default()
        };
        let principal_id = [0x0a, 4, b'u', b's', b'e', b'r', 0x12, 1, b'u'];
        let mut expected = vec![0x12, 11, 0x0a, 9];
        expected.extend_from_slice(&principal_id);
        expected.extend_from_slice(&[0x1a, 1, b'g']);
        // GrantSources{ entry a, entry b } with entry = 0a 01 <k> 12 02 08 01.
        expected.extend_from_slice(&[0x2a, 18]);
        for key in [b'a', b'b'] {
            expected.extend_from_slice(&[0x0a, 7, 0x0a, 1, key, 0x12, 2, 0x08, 1]);
        }
        assert_eq!(grant.encode_to_vec(), expected);
    }

    #[test]
    fn expandable_bytes() {
        let exp = GrantExpandable {
            entitlement_ids: vec!["group:g1:member".into()],
            ..Default::default()
        };
        let mut expected = vec![0x0a, 15];
        expected.extend_from_slice(b"group:g1:member");
        assert_eq!(exp.encode_to_vec(), expected);
        let back = from_any::<GrantExpandable>(&to_any(&exp)).unwrap().unwrap();
        assert_eq!(back, exp);
        assert!(from_any::<GrantImmutable>(&to_any(&exp)).is_none());
    }
}
