//! Helpers shared by the sync tests: a client for a fake site, and the snapshot seen as
//! the fake's ground-truth id sets.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use confluence_operator::c1z::Snapshot;
use confluence_operator::confluence::{ClientConfig, ConfluenceClient, RetryPolicy};
use fake_confluence::{Credential, RunningFake, Truth};
use secrecy::SecretString;

/// ResourceStatus DISABLED in the c1z protobuf.
const DISABLED: i32 = 2;

/// Installs the process-wide rustls provider (once).
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for the fake with its default credential.
pub fn client(fake: &RunningFake) -> ConfluenceClient {
    let cred = fake.credential().clone();
    client_with(fake, &cred.email, &cred.token, |_| {})
}

/// A client with explicit credentials and config tweaks. Retry waits are kept short so
/// failure tests end quickly; `Retry-After` is still honoured as sent.
pub fn client_with(
    fake: &RunningFake,
    email: &str,
    token: &str,
    tweak: impl FnOnce(&mut ClientConfig),
) -> ConfluenceClient {
    init();
    let url = url::Url::parse(fake.base_url()).expect("fake base URL");
    let mut config = ClientConfig::new(url, email, SecretString::from(token.to_string()));
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        ..config.retry
    };
    tweak(&mut config);
    ConfluenceClient::new(config).expect("client builds")
}

/// The default credential of a fake.
pub fn default_credential() -> Credential {
    Credential::default_admin()
}

/// A snapshot's content as the fake's truth describes it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SnapshotIds {
    pub users: BTreeSet<String>,
    pub disabled_users: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub memberships: BTreeSet<String>,
    pub spaces: BTreeSet<String>,
    /// Direct (not expanded) space permission grants.
    pub space_permissions: BTreeSet<String>,
}

impl SnapshotIds {
    pub fn read(path: &Path) -> Self {
        let snapshot = Snapshot::open(path).expect("snapshot opens");
        let mut ids = SnapshotIds::default();
        for row in &snapshot.resources {
            let id = row
                .data
                .id
                .as_ref()
                .map(|i| i.resource.clone())
                .unwrap_or_default();
            match row.resource_type_id.as_str() {
                "user" => {
                    if row.data.status.as_ref().map(|s| s.status) == Some(DISABLED) {
                        ids.disabled_users.insert(id.clone());
                    }
                    ids.users.insert(id);
                }
                "group" => {
                    ids.groups.insert(id);
                }
                "space" => {
                    ids.spaces.insert(id);
                }
                _ => {}
            }
        }
        for grant in &snapshot.grants {
            match grant.resource_type_id.as_str() {
                "group" => {
                    ids.memberships.insert(grant.external_id.clone());
                }
                // Grants made by expansion carry GrantImmutable; direct ones never do.
                "space"
                    if !grant
                        .data
                        .annotations
                        .iter()
                        .any(|a| a.type_url.ends_with(".GrantImmutable")) =>
                {
                    ids.space_permissions.insert(grant.external_id.clone());
                }
                _ => {}
            }
        }
        ids
    }

    /// The same sets from the fake's truth.
    pub fn from_truth(truth: &Truth) -> Self {
        let set = |ids: &[String]| ids.iter().cloned().collect::<BTreeSet<_>>();
        SnapshotIds {
            users: set(&truth.users.ids),
            disabled_users: set(&truth.users.disabled_ids),
            groups: set(&truth.groups.ids),
            memberships: set(&truth.memberships.ids),
            spaces: set(&truth.spaces.ids),
            space_permissions: set(&truth.space_permissions.ids),
        }
    }

    /// Fails with the first differences of each set, not a wall of ids.
    pub fn assert_eq(&self, expected: &SnapshotIds) {
        let mut problems = Vec::new();
        let mut check = |name: &str, got: &BTreeSet<String>, want: &BTreeSet<String>| {
            if got != want {
                let missing: Vec<_> = want.difference(got).take(3).collect();
                let extra: Vec<_> = got.difference(want).take(3).collect();
                problems.push(format!(
                    "{name}: got {} want {}; missing e.g. {missing:?}; extra e.g. {extra:?}",
                    got.len(),
                    want.len()
                ));
            }
        };
        check("users", &self.users, &expected.users);
        check(
            "disabled users",
            &self.disabled_users,
            &expected.disabled_users,
        );
        check("groups", &self.groups, &expected.groups);
        check("memberships", &self.memberships, &expected.memberships);
        check("spaces", &self.spaces, &expected.spaces);
        check(
            "space permissions",
            &self.space_permissions,
            &expected.space_permissions,
        );
        assert!(
            problems.is_empty(),
            "snapshot differs from the truth:\n{}",
            problems.join("\n")
        );
    }
}

/// Files in a directory (to prove a failed sync left nothing behind).
pub fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
