//! Group grants expand to group members (§4.4).

use std::collections::BTreeMap;

use prost::Message;

use super::support::{build, group, perm, space};
use crate::c1z::proto::{self, GrantExpandable, GrantImmutable, GrantSource};
use crate::c1z::{GrantRow, Snapshot};

fn grant<'a>(snap: &'a Snapshot, id: &str) -> &'a GrantRow {
    snap.grants
        .iter()
        .find(|g| g.external_id == id)
        .unwrap_or_else(|| panic!("grant {id} missing"))
}

fn sources(row: &GrantRow) -> BTreeMap<String, bool> {
    row.data
        .sources
        .as_ref()
        .map(|s| {
            s.sources
                .iter()
                .map(|(k, GrantSource { is_direct })| (k.clone(), *is_direct))
                .collect()
        })
        .unwrap_or_default()
}

fn direct(keys: &[&str]) -> BTreeMap<String, bool> {
    keys.iter().map(|k| (k.to_string(), true)).collect()
}

const D: &str = "space:100:read-space";

#[test]
fn group_grant_is_stored_expandable_and_expands_to_members() {
    let (_dir, info, snap) = build(|w| {
        w.put_group(&group("g1", "Admins"))?;
        w.put_membership("g1", "u1")?;
        w.put_space(&space("100", "Eng"))?;
        w.put_space_permission(&perm("100", "group", "g1", "read", "space"))
    });
    assert_eq!((info.grants, info.expanded_grants), (3, 1));

    let g = grant(&snap, "space:100:read-space:group:g1");
    let expected = GrantExpandable {
        entitlement_ids: vec!["group:g1:member".into()],
        ..Default::default()
    };
    let mut bytes = vec![0x0a, 15];
    bytes.extend_from_slice(b"group:g1:member");
    assert_eq!(
        g.expansion.as_deref(),
        Some(bytes.as_slice()),
        "bare message, not an Any"
    );
    assert_eq!(g.expandable.as_ref(), Some(&expected));
    assert!(g.needs_expansion);
    assert!(
        g.data.annotations.is_empty(),
        "annotation stripped from data"
    );
    assert!(g.data.sources.is_none(), "the group grant stays unchanged");

    let e = grant(&snap, "space:100:read-space:user:u1");
    assert!(e.id > g.id, "expanded grants come last");
    let full = snap
        .entitlements
        .iter()
        .find(|x| x.external_id == D)
        .map(|x| x.data.clone());
    assert_eq!(
        e.data.entitlement, full,
        "embeds the full stored entitlement"
    );
    assert_eq!(e.entitlement_id, D);
    assert_eq!(
        (e.resource_type_id.as_str(), e.resource_id.as_str()),
        ("space", "100")
    );
    assert_eq!(
        (
            e.principal_resource_type_id.as_str(),
            e.principal_resource_id.as_str()
        ),
        ("user", "u1")
    );
    let principal = e.data.principal.as_ref().expect("principal");
    // Resource{id: ResourceId{"user", "u1"}}: 2 + (2 + 4) + (2 + 2) bytes, nothing else.
    assert_eq!(principal.encoded_len(), 12, "{{id}} only");
    assert_eq!(
        e.data.annotations,
        vec![proto::to_any(&GrantImmutable::default())]
    );
    assert_eq!(sources(e), direct(&["group:g1:member"]));
    assert_eq!((e.expansion.as_ref(), e.needs_expansion), (None, false));
}

#[test]
fn direct_user_grant_gets_sources_added() {
    let (_dir, info, snap) = build(|w| {
        w.put_group(&group("g1", "Admins"))?;
        w.put_membership("g1", "u1")?;
        w.put_space(&space("100", "Eng"))?;
        w.put_space_permission(&perm("100", "user", "u1", "read", "space"))?;
        w.put_space_permission(&perm("100", "group", "g1", "read", "space"))
    });
    assert_eq!((info.grants, info.expanded_grants), (3, 0));
    let u = grant(&snap, "space:100:read-space:user:u1");
    assert_eq!(sources(u), direct(&[D, "group:g1:member"]));
    assert!(
        u.data.annotations.is_empty(),
        "annotations kept as they were"
    );
    let ent = u.data.entitlement.as_ref().expect("entitlement");
    assert_eq!(
        ent.display_name, "",
        "still the connector's {{id, resource}} entitlement"
    );
    assert_eq!((u.expansion.as_ref(), u.needs_expansion), (None, false));
}

#[test]
fn two_groups_granting_the_same_user() {
    let (_dir, info, snap) = build(|w| {
        w.put_group(&group("g1", "A"))?;
        w.put_group(&group("g2", "B"))?;
        w.put_membership("g1", "u1")?;
        w.put_membership("g2", "u1")?;
        w.put_membership("g2", "u2")?;
        w.put_space(&space("100", "Eng"))?;
        w.put_space_permission(&perm("100", "group", "g1", "read", "space"))?;
        w.put_space_permission(&perm("100", "group", "g2", "read", "space"))
    });
    assert_eq!(info.expanded_grants, 2);
    assert_eq!(info.grants, 3 + 2 + 2);
    let u1 = grant(&snap, "space:100:read-space:user:u1");
    assert_eq!(sources(u1), direct(&["group:g1:member", "group:g2:member"]));
    assert_eq!(
        u1.data.annotations,
        vec![proto::to_any(&GrantImmutable::default())]
    );
    let u2 = grant(&snap, "space:100:read-space:user:u2");
    assert_eq!(sources(u2), direct(&["group:g2:member"]));
    let ids: Vec<_> = snap.grants.iter().map(|g| g.external_id.as_str()).collect();
    assert_eq!(
        ids.iter()
            .filter(|i| i.starts_with("space:100:read-space:user:"))
            .count(),
        2
    );
}

#[test]
fn edges_to_a_missing_or_empty_group_are_skipped() {
    let (_dir, info, snap) = build(|w| {
        w.put_group(&group("g1", "Empty"))?;
        w.put_space(&space("100", "Eng"))?;
        w.put_space_permission(&perm("100", "group", "g1", "read", "space"))?;
        w.put_space_permission(&perm("100", "group", "gone", "read", "space"))
    });
    assert_eq!((info.grants, info.expanded_grants), (2, 0));
    assert!(snap.grants.iter().all(|g| g.needs_expansion));
}
