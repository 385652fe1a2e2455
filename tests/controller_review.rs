//! Access changes end to end on the real control plane: the operator syncs the fake
//! Confluence, the tenant changes (a member added through the REST API, a deactivated
//! user removed from every group so that no sync can find them any more, a group
//! granted on a space), a second sync runs, and the snapshot diff, `status.lastChange`,
//! the `AccessChanged` Event and the `diff` command all say exactly that change.

mod common;
mod operator_support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use confluence_operator::api::AccessChange;
use confluence_operator::c1z::SnapshotDb;
use confluence_operator::confluence::{ClientConfig, ConfluenceClient, RetryPolicy};
use confluence_operator::review::{self, Change};
use fake_confluence::{FakeConfig, Preset, RunningFake};
use secrecy::SecretString;

use operator_support::{Fixture, connected_fixture};

const SECRET: &str = "confluence-credentials";

fn admin(fake: &RunningFake) -> ConfluenceClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let c = fake.credential().clone();
    let url = url::Url::parse(fake.base_url()).expect("fake base url");
    let mut config = ClientConfig::new(url, &c.email, SecretString::from(c.token));
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_elapsed: Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    ConfluenceClient::new(config).expect("client")
}

/// A membership (group, user) or a space permission (space, permission, type, id).
type Membership = (String, String);
type Permission = (String, String, String, String);

/// What the first snapshot says, loaded for choosing the changes (the small preset fits
/// in memory; the code under test never does this).
struct Before {
    users: BTreeMap<String, bool>,
    members: BTreeMap<String, BTreeSet<String>>,
    groups_of: BTreeMap<String, BTreeSet<String>>,
    grants: BTreeMap<Permission, bool>,
    spaces: Vec<String>,
}

fn load(db: &SnapshotDb) -> Before {
    let mut before = Before {
        users: BTreeMap::new(),
        members: BTreeMap::new(),
        groups_of: BTreeMap::new(),
        grants: BTreeMap::new(),
        spaces: Vec::new(),
    };
    for u in db.users().unwrap().iter().unwrap() {
        let u = u.unwrap();
        before.users.insert(u.id, u.disabled);
    }
    for g in db.groups().unwrap().iter().unwrap() {
        before.members.entry(g.unwrap().id).or_default();
    }
    for m in db.memberships().unwrap().iter().unwrap() {
        let m = m.unwrap();
        before
            .members
            .entry(m.group_id.clone())
            .or_default()
            .insert(m.account_id.clone());
        before
            .groups_of
            .entry(m.account_id)
            .or_default()
            .insert(m.group_id);
    }
    for g in db.space_grants().unwrap().iter().unwrap() {
        let g = g.unwrap();
        before.grants.insert(
            (g.space_id, g.permission, g.principal_type, g.principal_id),
            g.direct,
        );
    }
    for s in db.spaces().unwrap().iter().unwrap() {
        before.spaces.push(s.unwrap().id);
    }
    before
}

async fn wait_event(fx: &Fixture, name: &str, reason: &str) -> k8s_openapi::api::events::v1::Event {
    common::wait_for(&format!("an Event {reason} about {name}"), || async {
        fx.events(name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_change_shows_in_the_diff_last_change_and_an_event() {
    let Some((fx, op, first)) = connected_fixture(
        "ctl-review",
        FakeConfig::preset(Preset::Small),
        "acme",
        SECRET,
    )
    .await
    else {
        return;
    };
    let status = first.status.clone().expect("status");
    assert_eq!(status.last_change, None, "the first sync has no lastChange");
    let old_path = fx.snapshot_path(status.snapshot.as_ref().expect("snapshot"));
    let before = load(&SnapshotDb::open(&old_path).unwrap());

    // R: a deactivated user in some groups; removed from all of them, no sync finds them.
    let removed = before
        .users
        .iter()
        .find(|(id, disabled)| **disabled && before.groups_of.contains_key(*id))
        .map(|(id, _)| id.clone())
        .expect("a deactivated member");
    // H and U: a group holding space permissions and an enabled user outside it.
    let (joined_group, joiner) = before
        .members
        .iter()
        .filter(|(g, _)| before.grants.keys().any(|k| k.2 == "group" && &k.3 == *g))
        .find_map(|(g, members)| {
            before
                .users
                .iter()
                .find(|(u, disabled)| !**disabled && !members.contains(*u) && **u != removed)
                .map(|(u, _)| (g.clone(), u.clone()))
        })
        .expect("a group with permissions and an outsider");
    // G on S: a group without R, other than H, with members, not yet holding read-space.
    let (granted_group, space) = before
        .members
        .iter()
        .filter(|(g, m)| **g != joined_group && !m.contains(&removed) && !m.is_empty())
        .find_map(|(g, _)| {
            before
                .spaces
                .iter()
                .find(|s| {
                    !before.grants.contains_key(&(
                        s.to_string(),
                        "read-space".to_string(),
                        "group".to_string(),
                        g.clone(),
                    ))
                })
                .map(|s| (g.clone(), s.clone()))
        })
        .expect("a group and a space to grant");

    // The change.
    let client = admin(&fx.fake);
    for group in &before.groups_of[&removed] {
        client.remove_group_member(group, &removed).await.unwrap();
    }
    client
        .add_group_member(&joined_group, &joiner)
        .await
        .unwrap();
    assert!(fx.fake.grant_space_permission(
        space.parse().unwrap(),
        &granted_group,
        "read",
        "space"
    ));

    // What the diff must be, derived from the first snapshot and the change alone.
    let expected_memberships_removed: BTreeSet<Membership> = before.groups_of[&removed]
        .iter()
        .map(|g| (g.clone(), removed.clone()))
        .collect();
    let expected_memberships_added: BTreeSet<Membership> =
        [(joined_group.clone(), joiner.clone())].into();
    // R's grants through groups go; grants naming R directly stay (the permission still
    // names the account).
    let expected_permissions_removed: BTreeSet<Permission> = before
        .grants
        .iter()
        .filter(|(k, direct)| k.2 == "user" && k.3 == removed && !**direct)
        .map(|(k, _)| k.clone())
        .collect();
    let mut candidates: BTreeSet<Permission> = BTreeSet::new();
    let read_space = |who: (&str, &str)| {
        (
            space.clone(),
            "read-space".to_string(),
            who.0.to_string(),
            who.1.to_string(),
        )
    };
    candidates.insert(read_space(("group", &granted_group)));
    for m in &before.members[&granted_group] {
        candidates.insert(read_space(("user", m)));
    }
    for k in before
        .grants
        .keys()
        .filter(|k| k.2 == "group" && k.3 == joined_group)
    {
        candidates.insert((k.0.clone(), k.1.clone(), "user".into(), joiner.clone()));
    }
    let expected_permissions_added: BTreeSet<Permission> = candidates
        .into_iter()
        .filter(|k| !before.grants.contains_key(k))
        .collect();
    assert!(!expected_permissions_added.is_empty());

    fx.request_sync("acme", "after-change").await;
    let second = fx
        .wait_request_handled("acme", "after-change", "the second sync", Some(&op))
        .await;
    let status = second.status.clone().expect("status");
    let new_path = fx.snapshot_path(status.snapshot.as_ref().expect("snapshot"));
    assert_ne!(old_path, new_path);

    // The diff, change by change.
    let (a, b) = (
        review::open(&old_path).unwrap(),
        review::open(&new_path).unwrap(),
    );
    let mut changes = Vec::new();
    let counts = review::diff_snapshots(&a, &b, &mut |c| {
        changes.push(c);
        Ok(())
    })
    .unwrap();
    let mut users_removed = BTreeSet::new();
    let (mut m_added, mut m_removed) = (BTreeSet::new(), BTreeSet::new());
    let (mut p_added, mut p_removed) = (BTreeSet::new(), BTreeSet::new());
    for c in &changes {
        match c {
            Change::UserRemoved { user } => {
                users_removed.insert(user.id.clone());
            }
            Change::MembershipAdded { group, user } => {
                m_added.insert((group.id.clone(), user.id.clone()));
            }
            Change::MembershipRemoved { group, user } => {
                m_removed.insert((group.id.clone(), user.id.clone()));
            }
            Change::PermissionAdded {
                space,
                permission,
                principal,
                ..
            } => {
                p_added.insert((
                    space.id.clone(),
                    permission.clone(),
                    principal.principal_type.clone(),
                    principal.id.clone(),
                ));
            }
            Change::PermissionRemoved {
                space,
                permission,
                principal,
                ..
            } => {
                p_removed.insert((
                    space.id.clone(),
                    permission.clone(),
                    principal.principal_type.clone(),
                    principal.id.clone(),
                ));
            }
            other => panic!("unexpected change {other:?}"),
        }
    }
    assert_eq!(users_removed, BTreeSet::from([removed.clone()]));
    assert_eq!(m_added, expected_memberships_added);
    assert_eq!(m_removed, expected_memberships_removed);
    assert_eq!(p_added, expected_permissions_added);
    assert_eq!(p_removed, expected_permissions_removed);

    // status.lastChange and the Event carry the same counts.
    let expected = AccessChange {
        users_removed: 1,
        memberships_added: 1,
        memberships_removed: expected_memberships_removed.len() as i64,
        permissions_added: expected_permissions_added.len() as i64,
        permissions_removed: expected_permissions_removed.len() as i64,
        ..AccessChange::default()
    };
    assert_eq!(counts.permissions_added, expected.permissions_added as u64);
    assert_eq!(status.last_change, Some(expected.clone()));
    let event = wait_event(&fx, "acme", "AccessChanged").await;
    let note = event.note.unwrap_or_default();
    for (kind, n) in expected.counts() {
        let part = format!("{kind}={n}");
        assert_eq!(note.contains(&part), n != 0, "{part} in {note:?}");
    }
    // Counts only: no account id, group id or name in the Event.
    assert!(!note.contains(&removed) && !note.contains(&joiner) && !note.contains(&joined_group));

    // The command says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_confluence-operator"))
        .args(["diff".as_ref(), old_path.as_os_str(), new_path.as_os_str()])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["counts"]["usersRemoved"], 1);
    assert_eq!(
        doc["counts"]["permissionsAdded"],
        expected.permissions_added
    );
    assert_eq!(doc["changes"].as_array().unwrap().len(), changes.len());

    // A sync with nothing changed records zero counts and no new AccessChanged Event.
    fx.request_sync("acme", "unchanged").await;
    let third = fx
        .wait_request_handled("acme", "unchanged", "the third sync", Some(&op))
        .await;
    assert_eq!(
        third.status.expect("status").last_change,
        Some(AccessChange::default())
    );
    let access_events = fx
        .events("acme")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("AccessChanged"))
        .count();
    assert_eq!(access_events, 1);
}
