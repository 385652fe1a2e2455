//! ConfluenceAccessGrant end to end: the real operator process against the local
//! control plane and the fake Confluence. Each test owns its namespace, fake and
//! operator.

mod common;
mod operator_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use confluence_operator::api::{
    ConfluenceAccessGrant, ConfluenceAccessGrantSpec, ConfluenceConnector, ConnectorRef,
    GrantPhase, GroupSelector, UserSelector,
};
use confluence_operator::c1z::Snapshot;
use confluence_operator::c1z::proto::{UserTrait, from_any};
use fake_confluence::{Credential, FakeConfig, FaultKind, FaultRule, Preset};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use operator_support::{Fixture, Operator, SYNC_DEADLINE, fixture};

const MEMBERSHIP_ROUTE: &str = "/wiki/rest/api/group/userByGroupId";
/// Time for a grant to reach a phase on a busy machine.
const GRANT_DEADLINE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Who and what the tests grant, read from the connector's first snapshot and the
/// fake's truth.
struct Tenant {
    /// Group id → name, for groups whose name is unique.
    groups: BTreeMap<String, String>,
    /// Active Atlassian accounts → email, when the site shows one.
    users: BTreeMap<String, Option<String>>,
    /// (group id, account id) memberships.
    memberships: BTreeSet<(String, String)>,
}

impl Tenant {
    fn read(fx: &Fixture, connector: &ConfluenceConnector) -> Tenant {
        let snapshot_ref = connector
            .status
            .as_ref()
            .and_then(|s| s.snapshot.clone())
            .expect("a connected connector has a snapshot");
        let snapshot = Snapshot::open(&fx.snapshot_path(&snapshot_ref)).expect("snapshot opens");
        let truth = fx.fake.truth();
        let disabled: BTreeSet<&String> = truth.users.disabled_ids.iter().collect();
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut users = BTreeMap::new();
        for row in &snapshot.resources {
            let Some(id) = row.data.id.as_ref().map(|id| id.resource.clone()) else {
                continue;
            };
            match row.resource_type_id.as_str() {
                "group" => names
                    .entry(row.data.display_name.clone())
                    .or_default()
                    .push(id),
                "user" if !disabled.contains(&id) => {
                    let email = row
                        .data
                        .annotations
                        .iter()
                        .filter_map(|a| from_any::<UserTrait>(a).and_then(Result::ok))
                        .flat_map(|t| t.emails)
                        .map(|e| e.address)
                        .next();
                    users.insert(id, email);
                }
                _ => {}
            }
        }
        let groups = names
            .into_iter()
            .filter(|(_, ids)| ids.len() == 1)
            .map(|(name, ids)| (ids[0].clone(), name))
            .collect();
        let memberships = truth
            .memberships
            .ids
            .iter()
            .filter_map(|id| {
                let rest = id.strip_prefix("group:")?;
                let (group, account) = rest.split_once(":member:user:")?;
                Some((group.to_string(), account.to_string()))
            })
            .collect();
        Tenant {
            groups,
            users,
            memberships,
        }
    }

    /// Up to `n` distinct (group id, account id) pairs where the user is not a member.
    fn outsiders(&self, n: usize) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for group in self.groups.keys() {
            for account in self.users.keys() {
                if !self.memberships.contains(&(group.clone(), account.clone())) {
                    pairs.push((group.clone(), account.clone()));
                    if pairs.len() == n {
                        return pairs;
                    }
                }
            }
        }
        pairs
    }

    /// A group (unique name) and a user with a visible email who is not its member.
    fn outsider_with_email(&self) -> (String, String, String) {
        for group in self.groups.keys() {
            for (account, email) in &self.users {
                if let Some(email) = email
                    && !self.memberships.contains(&(group.clone(), account.clone()))
                {
                    return (group.clone(), account.clone(), email.clone());
                }
            }
        }
        panic!("the small tenant has no user with a visible email outside a group");
    }

    /// An active member of a group with a unique name.
    fn member(&self) -> (String, String) {
        self.memberships
            .iter()
            .find(|(g, a)| self.groups.contains_key(g) && self.users.contains_key(a))
            .cloned()
            .expect("the small tenant has an active member of some group")
    }
}

fn grants(fx: &Fixture) -> Api<ConfluenceAccessGrant> {
    fx.env.api()
}

fn by_ids(
    connector: &str,
    group: &str,
    account: &str,
    duration: &str,
) -> ConfluenceAccessGrantSpec {
    ConfluenceAccessGrantSpec {
        connector_ref: ConnectorRef {
            name: connector.into(),
        },
        group: GroupSelector {
            name: None,
            id: Some(group.into()),
        },
        user: UserSelector {
            account_id: Some(account.into()),
            email: None,
        },
        duration: duration.into(),
        reason: "on-call for incident 4711".into(),
    }
}

async fn create_grant(fx: &Fixture, name: &str, spec: ConfluenceAccessGrantSpec) {
    grants(fx)
        .create(
            &PostParams::default(),
            &ConfluenceAccessGrant::new(name, spec),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot create grant {name}: {e}"));
}

fn phase(g: &ConfluenceAccessGrant) -> Option<GrantPhase> {
    g.status.as_ref().and_then(|s| s.phase)
}

fn ready_reason(g: &ConfluenceAccessGrant) -> String {
    g.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| format!("{}: {}", c.reason, c.message))
        .unwrap_or_default()
}

/// Polls grant `name` until it is in `want`; on timeout shows the status and the log.
async fn wait_phase(
    fx: &Fixture,
    name: &str,
    want: GrantPhase,
    deadline: Duration,
    op: Option<&Operator>,
) -> ConfluenceAccessGrant {
    let api = grants(fx);
    let start = tokio::time::Instant::now();
    loop {
        let grant = api.get_opt(name).await.ok().flatten();
        if let Some(g) = &grant
            && phase(g) == Some(want)
        {
            return g.clone();
        }
        if start.elapsed() > deadline {
            let status = grant
                .and_then(|g| g.status)
                .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default());
            let log = op.map(|o| o.log_tail(40)).unwrap_or_default();
            panic!("grant {name} not {want:?} within {deadline:?}; status {status:?}\nlog:\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_member(fx: &Fixture, group: &str, account: &str, member: bool) {
    common::wait_for_within(
        &format!("membership of {account} in {group} to be {member}"),
        GRANT_DEADLINE,
        || async { (fx.fake.is_member(group, account) == member).then_some(()) },
    )
    .await;
}

async fn wait_gone(fx: &Fixture, name: &str) {
    let api = grants(fx);
    common::wait_for_within(&format!("grant {name} to be gone"), GRANT_DEADLINE, || {
        let api = api.clone();
        async move {
            api.get_opt(name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        }
    })
    .await;
}

async fn event_reasons(fx: &Fixture, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = fx.env.api();
    events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

fn adds(fx: &Fixture) -> u64 {
    fx.fake.stats().route_total("POST", MEMBERSHIP_ROUTE)
}

async fn connected(prefix: &str, config: FakeConfig) -> Option<(Fixture, Operator, Tenant)> {
    let fx = fixture(prefix, config).await?;
    let op = fx.start_operator().await;
    let connector = fx.create_connected("site", "creds", &op).await;
    let tenant = Tenant::read(&fx, &connector);
    Some((fx, op, tenant))
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

/// By name and email: added, Active with the resolved ids, Events and metrics; a 5 s
/// grant is removed at expiry and reads Expired.
#[tokio::test]
async fn grant_by_name_and_email_is_added_then_removed_at_expiry() {
    let Some((fx, op, tenant)) = connected("grant-expiry", FakeConfig::preset(Preset::Small)).await
    else {
        return;
    };
    let (group, account, email) = tenant.outsider_with_email();
    let group_name = tenant.groups[&group].clone();
    assert!(!fx.fake.is_member(&group, &account));
    let spec = ConfluenceAccessGrantSpec {
        connector_ref: ConnectorRef {
            name: "site".into(),
        },
        group: GroupSelector {
            name: Some(group_name.clone()),
            id: None,
        },
        user: UserSelector {
            account_id: None,
            email: Some(email.to_uppercase()),
        },
        duration: "8s".into(),
        reason: "debugging a space permission problem".into(),
    };
    create_grant(&fx, "jit", spec).await;

    let active = wait_phase(&fx, "jit", GrantPhase::Active, GRANT_DEADLINE, Some(&op)).await;
    assert!(
        fx.fake.is_member(&group, &account),
        "the fake shows the membership"
    );
    let status = active.status.clone().expect("status");
    assert_eq!(status.group_id.as_deref(), Some(group.as_str()));
    assert_eq!(status.group_name.as_deref(), Some(group_name.as_str()));
    assert_eq!(status.account_id.as_deref(), Some(account.as_str()));
    assert_eq!(status.preexisting_membership, Some(false));
    assert_eq!(status.pending_change, None);
    let granted = status.granted_at.expect("grantedAt").0;
    let expires = status.expires_at.expect("expiresAt").0;
    assert_eq!(expires.as_second() - granted.as_second(), 8);
    assert!(
        ready_reason(&active).starts_with("Granted"),
        "{}",
        ready_reason(&active)
    );
    let metrics = op.metrics().await;
    assert!(
        metrics.contains("confluence_operator_access_grants_granted_total 1"),
        "{metrics}"
    );

    let expired = wait_phase(&fx, "jit", GrantPhase::Expired, GRANT_DEADLINE, Some(&op)).await;
    assert!(!fx.fake.is_member(&group, &account), "removed at expiry");
    let ended = expired
        .status
        .as_ref()
        .and_then(|s| s.ended_at.clone())
        .expect("endedAt")
        .0;
    assert!(ended >= expires, "not removed before {expires}: {ended}");
    assert_eq!(adds(&fx), 1, "exactly one add");
    // Events follow the status write that they announce.
    common::wait_for_within("Granted and Expired Events", GRANT_DEADLINE, || async {
        let reasons = event_reasons(&fx, "jit").await;
        (reasons.contains(&"Granted".to_string()) && reasons.contains(&"Expired".to_string()))
            .then_some(())
    })
    .await;
    let lines = op.log_messages_containing("access granted");
    assert!(
        lines.iter().any(|l| l
            .to_string()
            .contains("debugging a space permission problem")),
        "the grant is logged with its reason"
    );

    // An ended grant goes without touching Confluence again.
    let removes_before = fx.fake.stats().route_total("DELETE", MEMBERSHIP_ROUTE);
    grants(&fx)
        .delete("jit", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&fx, "jit").await;
    assert_eq!(
        fx.fake.stats().route_total("DELETE", MEMBERSHIP_ROUTE),
        removes_before
    );
}

/// Deleting an Active grant removes the membership (finalizer) before the object goes;
/// a user who was a member before keeps the membership when the grant expires.
#[tokio::test]
async fn deletion_revokes_and_a_preexisting_membership_survives() {
    let Some((fx, op, tenant)) = connected("grant-revoke", FakeConfig::preset(Preset::Small)).await
    else {
        return;
    };
    let (group, account) = tenant.outsiders(1).remove(0);
    create_grant(&fx, "revoke-me", by_ids("site", &group, &account, "1h")).await;
    wait_phase(
        &fx,
        "revoke-me",
        GrantPhase::Active,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(fx.fake.is_member(&group, &account));
    grants(&fx)
        .delete("revoke-me", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&fx, "revoke-me").await;
    assert!(!fx.fake.is_member(&group, &account), "revoked on deletion");
    let metrics = op.metrics().await;
    assert!(
        metrics.contains("confluence_operator_access_grants_revoked_total{cause=\"deleted\"} 1"),
        "{metrics}"
    );

    let (member_group, member) = tenant.member();
    create_grant(&fx, "already", by_ids("site", &member_group, &member, "3s")).await;
    let active = wait_phase(
        &fx,
        "already",
        GrantPhase::Active,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert_eq!(
        active
            .status
            .as_ref()
            .and_then(|s| s.preexisting_membership),
        Some(true)
    );
    assert!(ready_reason(&active).starts_with("PreexistingMembership"));
    wait_phase(
        &fx,
        "already",
        GrantPhase::Expired,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        fx.fake.is_member(&member_group, &member),
        "a membership the grant did not create stays"
    );
    assert_eq!(adds(&fx), 1, "no add for the pre-existing member");
}

/// The operator is down when a grant expires: the new process revokes it right after
/// it starts. A process killed between Confluence's answer to the add and the status
/// write leaves exactly one add, and the grant is still revoked later.
#[tokio::test]
async fn expiry_while_down_and_a_crash_after_the_add() {
    let Some((fx, mut op, tenant)) =
        connected("grant-crash", FakeConfig::preset(Preset::Small)).await
    else {
        return;
    };
    let pairs = tenant.outsiders(2);
    let (group, account) = pairs[0].clone();
    create_grant(&fx, "outlives", by_ids("site", &group, &account, "4s")).await;
    let active = wait_phase(
        &fx,
        "outlives",
        GrantPhase::Active,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    op.sigkill().await;
    let expires = active
        .status
        .and_then(|s| s.expires_at)
        .expect("expiresAt")
        .0;
    common::wait_for_within("the grant's expiry to pass", GRANT_DEADLINE, || async {
        (k8s_openapi::jiff::Timestamp::now() > expires).then_some(())
    })
    .await;
    assert!(fx.fake.is_member(&group, &account), "nobody removed it yet");
    let op = fx.start_operator().await;
    wait_phase(
        &fx,
        "outlives",
        GrantPhase::Expired,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        !fx.fake.is_member(&group, &account),
        "revoked after the restart"
    );
    op.wait_log("the start-up sweep", GRANT_DEADLINE, |line| {
        operator_support::message(line)
            .contains("revoking grants that expired while the operator was down")
    })
    .await;

    // The add lands but its answer is late; the operator dies before writing Active.
    let mut op = op;
    let (group, account) = pairs[1].clone();
    fx.fake.set_faults(vec![FaultRule {
        route: Some(MEMBERSHIP_ROUTE.into()),
        method: Some("POST".into()),
        kind: FaultKind::LateAnswer { ms: 60_000 },
        probability: 1.0,
        calls: Vec::new(),
    }]);
    let adds_before = adds(&fx);
    create_grant(&fx, "crash", by_ids("site", &group, &account, "6s")).await;
    wait_member(&fx, &group, &account, true).await;
    let pending = grants(&fx).get("crash").await.expect("get");
    assert_eq!(phase(&pending), Some(GrantPhase::Pending));
    assert_eq!(
        pending.status.as_ref().and_then(|s| s.pending_change),
        Some(confluence_operator::api::MembershipChange::Add),
        "the add was on record before Confluence was called"
    );
    op.sigkill().await;
    fx.fake.set_faults(Vec::new());
    let op = fx.start_operator().await;
    let active = wait_phase(&fx, "crash", GrantPhase::Active, GRANT_DEADLINE, Some(&op)).await;
    assert_eq!(
        active
            .status
            .as_ref()
            .and_then(|s| s.preexisting_membership),
        Some(false),
        "our own add is not mistaken for a pre-existing membership"
    );
    assert_eq!(adds(&fx) - adds_before, 1, "exactly one add");
    let members = fx.fake.group_members(&group).expect("group exists");
    assert_eq!(members.iter().filter(|m| **m == account).count(), 1);
    wait_phase(&fx, "crash", GrantPhase::Expired, GRANT_DEADLINE, Some(&op)).await;
    assert!(
        !fx.fake.is_member(&group, &account),
        "still revoked at expiry"
    );
}

/// What the user gets wrong ends in Failed with a reason: a connector whose account is
/// not a site admin, an unknown group or user, a duration over the operator's limit.
/// Grants wait (Pending) for a connector that does not exist yet.
#[tokio::test]
async fn failures_are_reported_with_reasons() {
    let mut config = FakeConfig::preset(Preset::Small);
    config
        .credentials
        .push(Credential::new("viewer@example.com", "viewer-token", false));
    let Some((fx, op, tenant)) = connected("grant-fail", config).await else {
        return;
    };
    let (group, account) = tenant.outsiders(1).remove(0);

    create_grant(&fx, "early", by_ids("later", &group, &account, "1h")).await;
    let waiting = wait_phase(&fx, "early", GrantPhase::Pending, GRANT_DEADLINE, Some(&op)).await;
    let waiting = if ready_reason(&waiting).starts_with("ConnectorNotFound") {
        waiting
    } else {
        common::wait_for_within("ConnectorNotFound", GRANT_DEADLINE, || async {
            let g = grants(&fx).get("early").await.ok()?;
            ready_reason(&g)
                .starts_with("ConnectorNotFound")
                .then_some(g)
        })
        .await
    };
    assert!(ready_reason(&waiting).contains("later"));

    fx.put_secret("viewer", "viewer@example.com", "viewer-token")
        .await;
    fx.create_connector("viewer", fx.spec("viewer")).await;
    fx.wait_connected("viewer", SYNC_DEADLINE, Some(&op)).await;
    create_grant(&fx, "no-admin", by_ids("viewer", &group, &account, "1h")).await;
    let denied = wait_phase(
        &fx,
        "no-admin",
        GrantPhase::Failed,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        ready_reason(&denied).starts_with("PermissionDenied"),
        "{}",
        ready_reason(&denied)
    );
    assert!(!fx.fake.is_member(&group, &account));
    let stalled = denied.status.as_ref().map(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True")
    });
    assert_eq!(stalled, Some(true));

    let unknown_group = by_ids(
        "site",
        "00000000-0000-4000-8000-00000000dead",
        &account,
        "1h",
    );
    create_grant(&fx, "no-group", unknown_group).await;
    let g = wait_phase(
        &fx,
        "no-group",
        GrantPhase::Failed,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        ready_reason(&g).starts_with("GroupNotFound"),
        "{}",
        ready_reason(&g)
    );

    let mut by_name = by_ids("site", &group, &account, "1h");
    by_name.group = GroupSelector {
        name: Some("no-such-group".into()),
        id: None,
    };
    create_grant(&fx, "no-group-name", by_name).await;
    let g = wait_phase(
        &fx,
        "no-group-name",
        GrantPhase::Failed,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        ready_reason(&g).contains("no-such-group"),
        "{}",
        ready_reason(&g)
    );

    create_grant(
        &fx,
        "no-user",
        by_ids("site", &group, "557058:unknown", "1h"),
    )
    .await;
    let g = wait_phase(
        &fx,
        "no-user",
        GrantPhase::Failed,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        ready_reason(&g).starts_with("UserNotFound"),
        "{}",
        ready_reason(&g)
    );

    let mut by_email = by_ids("site", &group, &account, "1h");
    by_email.user = UserSelector {
        account_id: None,
        email: Some("nobody@nowhere.example".into()),
    };
    create_grant(&fx, "no-email", by_email).await;
    let g = wait_phase(
        &fx,
        "no-email",
        GrantPhase::Failed,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        ready_reason(&g).contains("accountId"),
        "the message says how to name the user instead: {}",
        ready_reason(&g)
    );

    create_grant(&fx, "too-long", by_ids("site", &group, &account, "25h")).await;
    let g = wait_phase(
        &fx,
        "too-long",
        GrantPhase::Failed,
        GRANT_DEADLINE,
        Some(&op),
    )
    .await;
    assert!(
        ready_reason(&g).starts_with("DurationTooLong"),
        "{}",
        ready_reason(&g)
    );
    assert_eq!(adds(&fx), 1, "only the refused add reached Confluence");
}

/// The API server enforces the schema: a duration over 7 days, both or neither of
/// name/id, and any change of the spec are refused with a clear message.
#[tokio::test]
async fn the_api_server_rejects_bad_and_changed_specs() {
    let Some(env) = common::setup("grant-schema").await else {
        return;
    };
    let api: Api<ConfluenceAccessGrant> = env.api();
    let too_long = ConfluenceAccessGrant::new("too-long", by_ids("site", "g", "a", "169h"));
    let err = api
        .create(&PostParams::default(), &too_long)
        .await
        .expect_err("169h is refused");
    assert!(err.to_string().contains("at most 168h"), "{err}");

    let mut both = by_ids("site", "g", "a", "1h");
    both.group.name = Some("confluence-users".into());
    let err = api
        .create(
            &PostParams::default(),
            &ConfluenceAccessGrant::new("both", both),
        )
        .await
        .expect_err("name and id together are refused");
    assert!(
        err.to_string()
            .contains("exactly one of group.name and group.id"),
        "{err}"
    );

    api.create(
        &PostParams::default(),
        &ConfluenceAccessGrant::new("fixed", by_ids("site", "g", "a", "1h")),
    )
    .await
    .expect("a valid grant is accepted");
    let err = api
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"duration": "2h"}})),
        )
        .await
        .expect_err("the spec is immutable");
    assert!(err.to_string().contains("spec is immutable"), "{err}");
}

/// 100 grants on one connector all become Active, then Expired, and the fake holds no
/// membership any of them added.
#[tokio::test]
async fn a_hundred_grants_come_and_go() {
    let Some((fx, op, tenant)) = connected("grant-many", FakeConfig::preset(Preset::Small)).await
    else {
        return;
    };
    let pairs = tenant.outsiders(100);
    assert_eq!(pairs.len(), 100);
    for (i, (group, account)) in pairs.iter().enumerate() {
        create_grant(
            &fx,
            &format!("g{i:03}"),
            by_ids("site", group, account, "30s"),
        )
        .await;
    }
    let api = grants(&fx);
    let count_in = |want: GrantPhase| {
        let api = api.clone();
        async move {
            let list = api.list(&Default::default()).await.ok()?;
            let n = list.items.iter().filter(|g| phase(g) == Some(want)).count();
            Some(n)
        }
    };
    common::wait_for_within("100 Active grants", Duration::from_secs(180), || async {
        let active = count_in(GrantPhase::Active).await?;
        let expired = count_in(GrantPhase::Expired).await?;
        // A slow start may let the first grants expire before the last are Active.
        (active + expired == 100 && expired < 100).then_some(())
    })
    .await;
    common::wait_for_within("100 Expired grants", Duration::from_secs(240), || async {
        (count_in(GrantPhase::Expired).await? == 100).then_some(())
    })
    .await;
    for (group, account) in &pairs {
        assert!(
            !fx.fake.is_member(group, account),
            "{account} left in {group} (log {})",
            op.log_path.display()
        );
    }
    assert_eq!(adds(&fx), 100, "one add per grant");
}
