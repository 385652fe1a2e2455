//! The snapshot diff against hand-built pairs of snapshots: each kind of change, no
//! change, empty tenants; the `diff` command's text and JSON output and its errors.

mod review_support;

use std::process::Command;

use confluence_operator::review::output::{DiffFormat, write_diff};
use confluence_operator::review::{self, Change, ChangeCounts, diff_snapshots};
use review_support::{Tenant, base};

/// Diffs `old` against `new`, returning the counts and every change.
fn diff(old: &Tenant, new: &Tenant) -> (ChangeCounts, Vec<Change>) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        old.write(dir.path(), "old.c1z"),
        new.write(dir.path(), "new.c1z"),
    );
    let (a, b) = (review::open(&a).unwrap(), review::open(&b).unwrap());
    let mut changes = Vec::new();
    let counts = diff_snapshots(&a, &b, &mut |c| {
        changes.push(c);
        Ok(())
    })
    .unwrap();
    // The counts-only path must agree with the detailed one.
    assert_eq!(review::count_changes(&a, &b).unwrap(), counts);
    (counts, changes)
}

#[test]
fn no_change_and_empty_tenants() {
    let (counts, changes) = diff(&base(), &base());
    assert!(counts.is_empty(), "{counts:?}");
    assert!(changes.is_empty());
    let (counts, changes) = diff(&Tenant::default(), &Tenant::default());
    assert!(counts.is_empty() && changes.is_empty());
}

#[test]
fn from_and_to_an_empty_tenant() {
    // base: 4 users, 4 memberships, 7 space grants (u1 direct+via g1, g1, u2 via g1 on
    // 100; g2, u3 and u4 via g2 on 200 administer; u3 direct create-page on 200).
    let (counts, changes) = diff(&Tenant::default(), &base());
    assert_eq!(
        counts,
        ChangeCounts {
            users_added: 4,
            memberships_added: 4,
            permissions_added: 7,
            ..ChangeCounts::default()
        }
    );
    assert_eq!(changes.len(), 15);
    let (counts, _) = diff(&base(), &Tenant::default());
    assert_eq!(
        counts,
        ChangeCounts {
            users_removed: 4,
            memberships_removed: 4,
            permissions_removed: 7,
            ..ChangeCounts::default()
        }
    );
}

#[test]
fn user_added() {
    let (counts, changes) = diff(&base(), &base().user("u5", true));
    assert_eq!(
        counts,
        ChangeCounts {
            users_added: 1,
            ..ChangeCounts::default()
        }
    );
    let [Change::UserAdded { user }] = changes.as_slice() else {
        panic!("{changes:?}")
    };
    assert_eq!(user.id, "u5");
    assert_eq!(user.name, "User u5");
    assert_eq!(user.email.as_deref(), Some("u5@example.com"));
}

#[test]
fn user_removed_takes_memberships_and_permissions_with_it() {
    let (counts, changes) = diff(&base(), &base().without_user("u2"));
    assert_eq!(
        counts,
        ChangeCounts {
            users_removed: 1,
            memberships_removed: 1,
            permissions_removed: 1,
            ..ChangeCounts::default()
        }
    );
    assert!(matches!(&changes[0], Change::UserRemoved { user } if user.id == "u2"));
    assert!(
        matches!(&changes[1], Change::MembershipRemoved { group, user } if group.id == "g1" && group.name == "Group g1" && user.id == "u2" && user.name == "User u2")
    );
    let Change::PermissionRemoved {
        space,
        permission,
        principal,
        direct,
        via_groups,
    } = &changes[2]
    else {
        panic!("{changes:?}")
    };
    assert_eq!(
        (space.id.as_str(), space.name.as_str()),
        ("100", "Space 100")
    );
    assert_eq!(permission, "read-space");
    assert_eq!(
        (principal.principal_type.as_str(), principal.id.as_str()),
        ("user", "u2")
    );
    assert!(!direct);
    assert_eq!(via_groups.len(), 1);
    assert_eq!(via_groups[0].id, "g1");
}

#[test]
fn users_disabled_and_enabled() {
    let (counts, changes) = diff(
        &base(),
        &base().set_enabled("u1", false).set_enabled("u4", true),
    );
    assert_eq!(
        counts,
        ChangeCounts {
            users_disabled: 1,
            users_enabled: 1,
            ..ChangeCounts::default()
        }
    );
    assert!(matches!(&changes[0], Change::UserDisabled { user } if user.id == "u1"));
    assert!(matches!(&changes[1], Change::UserEnabled { user } if user.id == "u4"));
    // A user that arrives disabled is added, not disabled.
    let (counts, _) = diff(&base(), &base().user("u9", false));
    assert_eq!((counts.users_added, counts.users_disabled), (1, 0));
}

#[test]
fn membership_added_brings_the_groups_permissions() {
    let (counts, changes) = diff(&base(), &base().add_member("g1", "u3"));
    assert_eq!(
        counts,
        ChangeCounts {
            memberships_added: 1,
            permissions_added: 1,
            ..ChangeCounts::default()
        }
    );
    assert!(
        matches!(&changes[0], Change::MembershipAdded { group, user } if group.id == "g1" && user.id == "u3")
    );
    assert!(
        matches!(&changes[1], Change::PermissionAdded { space, permission, principal, direct: false, via_groups } if space.id == "100" && permission == "read-space" && principal.id == "u3" && via_groups[0].id == "g1")
    );
}

#[test]
fn membership_removed_keeps_a_direct_permission() {
    // u1 holds read-space on 100 directly and through g1: leaving g1 changes the
    // route, not the access.
    let (counts, changes) = diff(&base(), &base().remove_member("g1", "u1"));
    assert_eq!(
        counts,
        ChangeCounts {
            memberships_removed: 1,
            ..ChangeCounts::default()
        }
    );
    assert_eq!(changes.len(), 1);
}

#[test]
fn group_granted_on_a_space_reaches_its_members() {
    let (counts, changes) = diff(
        &base(),
        &base().permission("100", "group", "g2", "read", "space"),
    );
    // The group itself and both of its members (disabled u4 included: the grant exists).
    assert_eq!(
        counts,
        ChangeCounts {
            permissions_added: 3,
            ..ChangeCounts::default()
        }
    );
    let principals: Vec<(String, String, bool)> = changes
        .iter()
        .map(|c| match c {
            Change::PermissionAdded {
                principal, direct, ..
            } => (
                principal.principal_type.clone(),
                principal.id.clone(),
                *direct,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        principals,
        [
            ("group".to_string(), "g2".to_string(), true),
            ("user".to_string(), "u3".to_string(), false),
            ("user".to_string(), "u4".to_string(), false),
        ]
    );
}

#[test]
fn direct_permission_removed() {
    let (counts, changes) = diff(
        &base(),
        &base().without_permission("200", "user", "u3", "create", "page"),
    );
    assert_eq!(
        counts,
        ChangeCounts {
            permissions_removed: 1,
            ..ChangeCounts::default()
        }
    );
    assert!(
        matches!(&changes[0], Change::PermissionRemoved { permission, direct: true, via_groups, .. } if permission == "create-page" && via_groups.is_empty())
    );
}

#[test]
fn json_output_is_one_document_with_changes_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let a = base().write(dir.path(), "a.c1z");
    let b = base().add_member("g1", "u3").write(dir.path(), "b.c1z");
    let mut out = Vec::new();
    write_diff(&a, &b, DiffFormat::Json, &mut out).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["counts"]["membershipsAdded"], 1);
    assert_eq!(doc["counts"]["permissionsAdded"], 1);
    assert_eq!(doc["counts"]["usersAdded"], 0);
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["kind"], "membershipAdded");
    assert_eq!(changes[0]["user"]["id"], "u3");
    assert_eq!(changes[1]["kind"], "permissionAdded");
    assert_eq!(changes[1]["viaGroups"][0]["name"], "Group g1");
    assert_eq!(changes[1]["principal"]["type"], "user");
    assert!(doc["old"]["syncId"].as_str().unwrap().len() == 27);
}

#[test]
fn cli_text_output_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let a = base().write(dir.path(), "a.c1z");
    let b = base()
        .user("u5", true)
        .add_member("g2", "u5")
        .write(dir.path(), "b.c1z");
    let out = Command::new(env!("CARGO_BIN_EXE_confluence-operator"))
        .args(["diff".as_ref(), a.as_os_str(), b.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Changes from sync "), "{text}");
    assert_eq!(lines[1], "+ user \"User u5\" <u5@example.com> (u5)");
    assert_eq!(
        lines[2],
        "+ member of group \"Group g2\" (g2): \"User u5\" <u5@example.com> (u5)"
    );
    assert_eq!(
        lines[3],
        "+ permission \"administer-space\" on space \"Space 200\" (200): user \"User u5\" (u5) (via \"Group g2\" (g2))"
    );
    assert_eq!(
        lines[4],
        "Summary: 1 users added, 0 removed, 0 enabled, 0 disabled; 1 memberships added, 0 removed; 1 space permissions added, 0 removed"
    );
    assert_eq!(lines.len(), 5);

    // Not a snapshot, a missing file, a c1z whose payload is not a database: clear
    // errors and a non-zero exit, never a panic.
    let junk = dir.path().join("junk.c1z");
    std::fs::write(&junk, b"hello, not a snapshot").unwrap();
    let bad_db = dir.path().join("bad-db.c1z");
    let mut bytes = b"C1ZF\0".to_vec();
    bytes.extend(zstd::encode_all(&b"definitely not sqlite"[..], 3).unwrap());
    std::fs::write(&bad_db, bytes).unwrap();
    let missing = dir.path().join("missing.c1z");
    for (file, expect) in [
        (&junk, "not a c1z v1 file"),
        (&missing, "missing.c1z"),
        (&bad_db, "bad-db.c1z"),
    ] {
        for format in ["text", "json"] {
            let out = Command::new(env!("CARGO_BIN_EXE_confluence-operator"))
                .args(["diff".as_ref(), a.as_os_str(), file.as_os_str()])
                .args(["--format", format])
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.starts_with("error: cannot read snapshot"), "{err}");
            assert!(err.contains(expect), "{err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}
