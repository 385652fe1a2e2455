//! Row contents: sync run, resource types, resources, entitlements, plain grants.

use std::collections::BTreeMap;

use prost_types::value::Kind;

use super::support::{build, build_with, group, options, perm, space, user};
use crate::c1z::proto::{
    self, GroupTrait, Purpose, ResourceStatus, RoleTrait, SkipEntitlements,
    SkipEntitlementsAndGrants, Trait, UserTrait, user_trait,
};
use crate::c1z::{
    C1zError, SnapshotOptions, SnapshotWriter, SpaceRoleRecord, UserRecord, format_go_timestamp,
};

fn strings(profile: &Option<proto::Struct>) -> BTreeMap<String, String> {
    profile
        .as_ref()
        .map(|p| {
            p.fields
                .iter()
                .filter_map(|(k, v)| match &v.kind {
                    Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn sync_run_row_is_a_finished_full_sync() {
    let (_dir, info, snap) = build(|_| Ok(()));
    assert_eq!(snap.sync_runs.len(), 1);
    let run = &snap.sync_runs[0];
    assert_eq!(run.sync_id, info.sync_id);
    assert_eq!(run.started_at, "2026-08-22 10:00:00");
    assert_eq!(run.ended_at.as_deref(), Some("2026-08-22 10:15:03.1234"));
    assert_eq!(run.sync_token, "");
    assert_eq!(run.sync_type, "full");
    assert_eq!(
        (run.parent_sync_id.as_str(), run.linked_sync_id.as_str()),
        ("", "")
    );
    assert_eq!((run.supports_diff, run.grants_backfilled), (1, 1));
    assert_eq!(run.stats, None);
    assert_eq!(run.ingest_invariant_generation, "");
    assert_eq!(run.ingest_invariant_coverage, "");
    assert_eq!(run.ingest_invariant_mode, "");
    // The KSUID carries the start time.
    assert_eq!(info.sync_id.len(), 27);
    assert!(info.sync_id.bytes().all(|b| b.is_ascii_alphanumeric()));
}

#[test]
fn resource_types_are_the_five_reference_types_without_opt_in() {
    let (_dir, info, snap) = build(|_| Ok(()));
    let got: BTreeMap<_, _> = snap
        .resource_types
        .iter()
        .map(|r| (r.external_id.clone(), r))
        .collect();
    assert_eq!(got.len(), 5);
    let expect = |id: &str, name: &str, traits: Vec<Trait>, annos: Vec<proto::Any>| {
        let row = got.get(id).unwrap_or_else(|| panic!("type {id}"));
        assert_eq!(row.data.id, id);
        assert_eq!(row.data.display_name, name);
        assert_eq!(
            row.data.traits,
            traits.iter().map(|t| *t as i32).collect::<Vec<_>>()
        );
        assert_eq!(row.data.annotations, annos, "annotations of {id}");
        assert_eq!(row.data.description, "");
        assert_eq!(row.sync_id, info.sync_id);
        assert_eq!(row.discovered_at, "2026-08-22 10:15:03.1234");
    };
    let skip_all = || proto::to_any(&SkipEntitlementsAndGrants {});
    expect("user", "User", vec![Trait::User], vec![skip_all()]);
    expect("group", "Group", vec![Trait::Group], vec![]);
    expect("space", "Space", vec![], vec![]);
    expect(
        "space_role",
        "Space Role",
        vec![Trait::Role],
        vec![skip_all()],
    );
    expect(
        "space_role_assignment",
        "Space Role Assignment",
        vec![Trait::ScopeBinding],
        vec![proto::to_any(&SkipEntitlements {})],
    );
}

#[test]
fn user_profile_status_and_trait() {
    let (_dir, info, snap) = build(|w| {
        w.put_user(&user("u1", "Ann", Some("ann@example.com"), true))?;
        w.put_user(&user("u2", "Bob", None, false))?;
        w.put_user(&UserRecord {
            account_type: "app".into(),
            ..user("app1", "Bot", None, true)
        })
    });
    assert_eq!(info.skipped_users, 1);
    assert_eq!(info.resources.get("user"), Some(&2));
    let by_id: BTreeMap<_, _> = snap
        .resources
        .iter()
        .map(|r| (r.external_id.as_str(), r))
        .collect();
    let ann = by_id["user:u1"];
    assert_eq!(ann.resource_type_id, "user");
    assert_eq!(
        (
            ann.parent_resource_type_id.as_deref(),
            ann.parent_resource_id.as_deref()
        ),
        (None, None)
    );
    assert_eq!(ann.data.display_name, "Ann");
    assert_eq!(ann.data.description, "");
    assert_eq!(
        strings(&ann.data.profile),
        map(&[
            ("account_type", "atlassian"),
            ("email", "ann@example.com"),
            ("id", "u1"),
            ("user_name", "Ann")
        ])
    );
    assert_eq!(
        ann.data.status.as_ref().map(|s| s.status),
        Some(ResourceStatus::Enabled as i32)
    );
    let expected_trait = UserTrait {
        emails: vec![user_trait::Email {
            address: "ann@example.com".into(),
            is_primary: true,
        }],
        status: Some(user_trait::Status {
            status: ResourceStatus::Enabled as i32,
            details: String::new(),
        }),
        account_type: user_trait::AccountType::Human as i32,
        ..Default::default()
    };
    assert_eq!(ann.data.annotations, vec![proto::to_any(&expected_trait)]);

    let bob = by_id["user:u2"];
    // Absent e-mail: still in the profile as "", no e-mail in the trait, trait status ENABLED (Q3).
    assert_eq!(
        strings(&bob.data.profile).get("email").map(String::as_str),
        Some("")
    );
    assert_eq!(
        bob.data.status.as_ref().map(|s| s.status),
        Some(ResourceStatus::Disabled as i32)
    );
    let trait_ = proto::from_any::<UserTrait>(&bob.data.annotations[0]).and_then(Result::ok);
    let trait_ = trait_.expect("user trait");
    assert!(trait_.emails.is_empty());
    assert_eq!(
        trait_.status.map(|s| s.status),
        Some(ResourceStatus::Enabled as i32)
    );
    assert!(!by_id.contains_key("user:app1"));
}

#[test]
fn duplicate_users_collapse_keeping_first_id_and_time() {
    let (_dir, info, snap) = build(|w| {
        w.put_user(&user("u1", "Old Name", None, true))?;
        w.put_user(&user("u2", "Other", None, true))?;
        w.put_user(&user("u1", "New Name", Some("n@example.com"), false))
    });
    assert_eq!(info.resources.get("user"), Some(&2));
    let users: Vec<_> = snap
        .resources
        .iter()
        .filter(|r| r.resource_type_id == "user")
        .collect();
    assert_eq!(users.len(), 2);
    assert_eq!(
        users[0].external_id, "user:u1",
        "first row keeps its id (order)"
    );
    assert_eq!(
        users[0].data.display_name, "New Name",
        "last observation wins"
    );
    assert_eq!(
        users[0].data.status.as_ref().map(|s| s.status),
        Some(ResourceStatus::Disabled as i32)
    );
    assert!(users[0].id < users[1].id);
}

#[test]
fn group_resource_and_member_entitlement() {
    let (_dir, info, snap) = build(|w| w.put_group(&group("g1", "Admins")));
    assert_eq!(info.entitlements, 1);
    let res = &snap.resources[0];
    assert_eq!(res.external_id, "group:g1");
    assert_eq!(res.data.display_name, "Admins");
    assert_eq!(
        strings(&res.data.profile),
        map(&[
            ("group_id", "g1"),
            ("group_name", "Admins"),
            ("group_type", "group")
        ])
    );
    assert_eq!(
        res.data.annotations,
        vec![proto::to_any(&GroupTrait::default())]
    );
    let ent = &snap.entitlements[0];
    assert_eq!(
        (ent.resource_type_id.as_str(), ent.resource_id.as_str()),
        ("group", "g1")
    );
    assert_eq!(ent.external_id, "group:g1:member");
    assert_eq!(ent.data.id, "group:g1:member");
    assert_eq!(
        ent.data.resource.as_ref(),
        Some(&res.data),
        "embeds the full stored resource"
    );
    assert_eq!(ent.data.display_name, "Admins Group Member");
    assert_eq!(
        ent.data.description,
        "Is member of the Admins group in Confluence"
    );
    assert_eq!(ent.data.purpose, Purpose::Assignment as i32);
    assert_eq!(ent.data.slug, "member");
    let user_type = snap
        .resource_types
        .iter()
        .find(|t| t.external_id == "user")
        .map(|t| t.data.clone());
    assert_eq!(
        ent.data.grantable_to,
        user_type.into_iter().collect::<Vec<_>>()
    );
}

#[test]
fn space_entitlements_full_matrix_in_reference_order() {
    let (_dir, info, snap) = build(|w| w.put_space(&space("100", "Eng")));
    assert_eq!(info.entitlements, 40);
    let ids: Vec<_> = snap
        .entitlements
        .iter()
        .map(|e| e.external_id.as_str())
        .collect();
    assert_eq!(ids[0], "space:100:administer-attachment");
    assert_eq!(ids[1], "space:100:archive-attachment");
    assert_eq!(ids[7], "space:100:update-attachment");
    assert_eq!(ids[8], "space:100:administer-blogpost");
    assert_eq!(ids[39], "space:100:update-space");
    let res = &snap.resources[0];
    assert_eq!(res.external_id, "space:100");
    assert!(res.data.annotations.is_empty() && res.data.profile.is_none());
    let group_type = snap
        .resource_types
        .iter()
        .find(|t| t.external_id == "group")
        .map(|t| t.data.clone());
    let e = &snap.entitlements[6];
    assert_eq!(e.data.id, "space:100:restrict_content-attachment");
    assert_eq!(e.data.display_name, "Can restrict_content-attachment Eng");
    assert_eq!(
        e.data.description,
        "Has permission to restrict_content attachment the Eng space in Confluence"
    );
    assert_eq!(e.data.purpose, Purpose::Permission as i32);
    assert_eq!(e.data.slug, "restrict_content-attachment");
    assert_eq!(
        e.data.grantable_to,
        group_type.into_iter().collect::<Vec<_>>(),
        "Q1: group only"
    );
    assert_eq!(e.data.resource.as_ref(), Some(&res.data));
}

#[test]
fn noun_and_verb_selection_keeps_reference_order_and_rejects_unknowns() {
    let opts = SnapshotOptions {
        nouns: vec!["space".into(), "page".into()],
        verbs: vec!["update".into(), "read".into()],
        ..options()
    };
    let (_dir, info, snap) = build_with(opts, |w| {
        w.put_space(&space("1", "S"))?;
        w.put_space_permission(&perm("1", "user", "u1", "read", "page"))?;
        w.put_space_permission(&perm("1", "user", "u1", "create", "page"))?;
        w.put_space_permission(&perm("1", "user", "u1", "read", "blogpost"))
    });
    let ids: Vec<_> = snap
        .entitlements
        .iter()
        .map(|e| e.external_id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "space:1:read-page",
            "space:1:update-page",
            "space:1:read-space",
            "space:1:update-space"
        ]
    );
    assert_eq!((info.grants, info.skipped_permissions), (1, 2));

    let dir = tempfile::tempdir().expect("tempdir");
    let bad = SnapshotOptions {
        nouns: vec!["wiki".into()],
        ..options()
    };
    let err = SnapshotWriter::create(&dir.path().join("x.c1z"), bad).err();
    assert!(matches!(err, Some(C1zError::UnknownNoun(n)) if n == "wiki"));
    let bad = SnapshotOptions {
        verbs: vec!["read".into(), "own".into()],
        ..options()
    };
    let err = SnapshotWriter::create(&dir.path().join("x.c1z"), bad).err();
    assert!(matches!(err, Some(C1zError::UnknownVerb(v)) if v == "own"));
    assert_eq!(
        std::fs::read_dir(dir.path()).map(|d| d.count()).ok(),
        Some(0)
    );
}

#[test]
fn space_role_resource() {
    let (_dir, info, snap) = build(|w| {
        w.put_space_role(&SpaceRoleRecord {
            id: "r1".into(),
            name: "Viewer".into(),
            description: "Can view".into(),
            space_permissions: vec!["p1".into(), "p2".into()],
        })?;
        w.put_space_role(&SpaceRoleRecord {
            id: "r2".into(),
            name: "Empty".into(),
            ..Default::default()
        })
    });
    assert_eq!(info.resources.get("space_role"), Some(&2));
    assert_eq!(info.entitlements, 0);
    let r = &snap.resources[0].data;
    assert_eq!(snap.resources[0].external_id, "space_role:r1");
    assert_eq!(
        (r.display_name.as_str(), r.description.as_str()),
        ("Viewer", "Can view")
    );
    assert_eq!(r.annotations, vec![proto::to_any(&RoleTrait::default())]);
    let profile = r.profile.as_ref().expect("profile");
    let list = |p: &proto::Struct| match p
        .fields
        .get("space_permissions")
        .and_then(|v| v.kind.clone())
    {
        Some(Kind::ListValue(l)) => l
            .values
            .into_iter()
            .filter_map(|v| match v.kind {
                Some(Kind::StringValue(s)) => Some(s),
                _ => None,
            })
            .collect::<Vec<_>>(),
        other => panic!("space_permissions is {other:?}"),
    };
    assert_eq!(list(profile), ["p1", "p2"]);
    assert_eq!(
        strings(&r.profile).get("description").map(String::as_str),
        Some("Can view")
    );
    let empty = snap.resources[1].data.profile.as_ref().expect("profile");
    assert!(list(empty).is_empty(), "an empty list, still present");
}

#[test]
fn membership_and_permission_grants() {
    let (_dir, info, snap) = build(|w| {
        w.put_group(&group("g1", "Admins"))?;
        w.put_membership("g1", "u1")?;
        w.put_space(&space("100", "Eng"))?;
        w.put_space_permission(&perm("100", "user", "u2", "read", "space"))?;
        w.put_space_permission(&perm("100", "role", "r1", "read", "space"))?;
        w.put_space_permission(&perm("100", "User", "u3", "read", "space"))?;
        w.put_space_permission(&perm("100", "user", "u2", "read", "whiteboard"))?;
        w.put_space_permission(&perm("100", "user", "u2", "manage", "space"))
    });
    assert_eq!(info.skipped_permissions, 4);
    assert_eq!(info.grants, 2);
    let group_res = snap
        .resources
        .iter()
        .find(|r| r.external_id == "group:g1")
        .map(|r| r.data.clone());
    let space_res = snap
        .resources
        .iter()
        .find(|r| r.external_id == "space:100")
        .map(|r| r.data.clone());

    let m = &snap.grants[0];
    assert_eq!(m.external_id, "group:g1:member:user:u1");
    assert_eq!(
        (m.resource_type_id.as_str(), m.resource_id.as_str()),
        ("group", "g1")
    );
    assert_eq!(m.entitlement_id, "group:g1:member");
    assert_eq!(
        (
            m.principal_resource_type_id.as_str(),
            m.principal_resource_id.as_str()
        ),
        ("user", "u1")
    );
    assert_eq!((m.expansion.as_ref(), m.needs_expansion), (None, false));
    let ent = m.data.entitlement.as_ref().expect("entitlement");
    assert_eq!(ent.id, "group:g1:member");
    assert_eq!(ent.resource, group_res, "the full stored group resource");
    assert_eq!(
        ent.display_name, "",
        "connector grants carry only {{id, resource}}"
    );
    let principal = m.data.principal.as_ref().expect("principal");
    assert_eq!(
        principal
            .id
            .as_ref()
            .map(|i| (i.resource_type.as_str(), i.resource.as_str())),
        Some(("user", "u1"))
    );
    assert_eq!(principal.display_name, "");
    assert!(m.data.annotations.is_empty() && m.data.sources.is_none());

    let p = &snap.grants[1];
    assert_eq!(p.external_id, "space:100:read-space:user:u2");
    assert_eq!(
        p.data.entitlement.as_ref().and_then(|e| e.resource.clone()),
        space_res
    );
    assert_eq!((p.expansion.as_ref(), p.needs_expansion), (None, false));
}

#[test]
fn unknown_group_or_space_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = SnapshotWriter::create(&dir.path().join("x.c1z"), options()).expect("create");
    assert!(
        matches!(w.put_membership("nope", "u1"), Err(C1zError::UnknownGroup(g)) if g == "nope")
    );
    assert!(matches!(
        w.put_space_permission(&perm("9", "user", "u1", "read", "space")),
        Err(C1zError::UnknownSpace(s)) if s == "9"
    ));
}

#[test]
fn discovered_at_uses_the_go_layout() {
    let (_dir, _info, snap) = build(|w| w.put_user(&user("u1", "A", None, true)));
    assert_eq!(
        snap.resources[0].discovered_at,
        format_go_timestamp(super::support::fixed_now())
    );
    assert_eq!(snap.resources[0].discovered_at, "2026-08-22 10:15:03.1234");
}

#[test]
fn writer_can_move_to_a_blocking_thread() {
    // The sync engine drives the writer from `spawn_blocking`.
    fn assert_send<T: Send + 'static>() {}
    assert_send::<SnapshotWriter>();
    assert_send::<crate::c1z::SnapshotInfo>();
}
