//! The Confluence client against the fake Confluence Cloud server: complete walks
//! compared with the fake's ground truth, pagination quirks, rate limits, faults and
//! every flavour of bad credentials.

use std::collections::BTreeSet;
use std::time::Duration;

use confluence_operator::confluence::{
    AccountType, ClientConfig, ConfluenceClient, ConfluenceError, ErrorClass, PrincipalType,
    RetryPolicy, StopReason,
};
use fake_confluence::{
    AuthFailureMode, Credential, DataConfig, FakeConfig, FakeConfluence, FaultKind, FaultRule,
    Preset, RateLimitConfig, RbacMode, RunningFake, Truth,
};
use futures::{StreamExt, TryStreamExt};
use secrecy::SecretString;

const MEMBERS_ROUTE: &str = "/wiki/rest/api/group/{groupId}/membersByGroupId";
const SEARCH_ROUTE: &str = "/wiki/rest/api/search/user";
const GROUPS_ROUTE: &str = "/wiki/rest/api/group";

/// Verbs and nouns the reference connector turns into entitlements.
use confluence_operator::c1z::{ALL_NOUNS as NOUNS, ALL_VERBS as VERBS};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        max_rate_limit_waits: 50,
        max_elapsed: Duration::from_secs(120),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(10),
        max_malformed_attempts: 2,
    }
}

fn config_for(base: &str, email: &str, token: &str) -> ClientConfig {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = url::Url::parse(base).expect("fake base url");
    let mut cfg = ClientConfig::new(url, email, SecretString::from(token.to_owned()));
    cfg.retry = fast_retry();
    cfg
}

fn client_for(fake: &RunningFake) -> ConfluenceClient {
    let c = fake.credential();
    ConfluenceClient::new(config_for(fake.base_url(), &c.email, &c.token)).expect("client")
}

async fn start(cfg: FakeConfig) -> RunningFake {
    FakeConfluence::start(cfg).await.expect("fake starts")
}

/// What a complete walk found, in the truth's id forms.
#[derive(Debug, Default)]
struct Found {
    users: BTreeSet<String>,
    groups: BTreeSet<String>,
    memberships: BTreeSet<String>,
    spaces: BTreeSet<String>,
    grants: BTreeSet<String>,
    search_rows: usize,
}

/// Walks everything a sync reads, groups and spaces `parallel` at a time.
async fn walk_all(client: &ConfluenceClient, parallel: usize) -> Result<Found, ConfluenceError> {
    let mut found = Found::default();
    client.current_user().await?;

    let groups: Vec<String> = client
        .groups()?
        .into_stream()
        .map_ok(|page| futures::stream::iter(page.into_iter().filter_map(|g| g.id).map(Ok)))
        .try_flatten()
        .try_collect()
        .await?;
    found.groups.extend(groups.iter().cloned());

    let member_pages: Vec<(String, Vec<(String, bool)>)> = futures::stream::iter(groups)
        .map(|gid| async move {
            let mut rows = Vec::new();
            let mut pager = client.group_members(&gid)?;
            while let Some(page) = pager.next_page().await? {
                rows.extend(page.into_iter().filter_map(|u| {
                    let atlassian = u.account_type == Some(AccountType::Atlassian);
                    u.account_id.map(|id| (id, atlassian))
                }));
            }
            Ok::<_, ConfluenceError>((gid, rows))
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    for (gid, members) in member_pages {
        for (account, _) in members.into_iter().filter(|(_, atlassian)| *atlassian) {
            found
                .memberships
                .insert(format!("group:{gid}:member:user:{account}"));
            found.users.insert(account);
        }
    }

    let mut search = client.search_users()?;
    while let Some(page) = search.next_page().await? {
        found.search_rows += page.len();
        for user in page.into_iter().filter_map(|r| r.user) {
            if user.account_type == Some(AccountType::Atlassian) {
                found.users.extend(user.account_id);
            }
        }
    }
    assert_eq!(search.stop_reason(), Some(StopReason::EmptyPage));

    let spaces: Vec<String> = client
        .spaces(None)?
        .into_stream()
        .map_ok(|page| futures::stream::iter(page.into_iter().filter_map(|s| s.id).map(Ok)))
        .try_flatten()
        .try_collect()
        .await?;
    found.spaces.extend(spaces.iter().cloned());
    let grants: Vec<Vec<String>> = futures::stream::iter(spaces)
        .map(|sid| async move {
            let mut grants = Vec::new();
            let mut pager = client.space_permissions(&sid)?;
            while let Some(page) = pager.next_page().await? {
                for p in page {
                    let (Some(principal), Some(op)) = (p.principal, p.operation) else {
                        continue;
                    };
                    let kind = match principal.kind {
                        Some(PrincipalType::User) => "user",
                        Some(PrincipalType::Group) => "group",
                        _ => continue,
                    };
                    let (Some(key), Some(target), Some(pid)) =
                        (op.key, op.target_type, principal.id)
                    else {
                        continue;
                    };
                    if VERBS.contains(&key.as_str()) && NOUNS.contains(&target.as_str()) {
                        grants.push(format!("space:{sid}:{key}-{target}:{kind}:{pid}"));
                    }
                }
            }
            Ok::<_, ConfluenceError>(grants)
        })
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    found.grants.extend(grants.into_iter().flatten());
    Ok(found)
}

fn assert_matches_truth(found: &Found, truth: &Truth) {
    let set = |ids: &[String]| ids.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(found.groups, set(&truth.groups.ids), "groups");
    assert_eq!(
        found.memberships,
        set(&truth.memberships.ids),
        "memberships"
    );
    assert_eq!(found.users, set(&truth.users.ids), "users");
    assert_eq!(found.spaces, set(&truth.spaces.ids), "spaces");
    assert_eq!(
        found.grants,
        set(&truth.space_permissions.ids),
        "space permissions"
    );
}

fn query_number(query: &str, key: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_walk_over_many_pages_matches_the_truth() {
    // Big enough for many pages everywhere, small enough for a debug-build fake.
    let mut cfg = FakeConfig::with_data(DataConfig {
        users: 1500,
        groups: 120,
        spaces: 60,
        permissions_per_space: (100, 400),
        ..DataConfig::preset(Preset::Small)
    });
    cfg.request_log_capacity = 100_000;
    // Silent caps on both offset endpoints: short pages that are not the end.
    cfg.quirks.group_page_cap = 25;
    cfg.quirks.search_page_cap = 100;
    let fake = start(cfg).await;
    let client = client_for(&fake);

    let found = walk_all(&client, 8).await.expect("walk");
    let truth = fake.truth();
    assert_matches_truth(&found, &truth);

    let log = fake.requests();
    let members: Vec<_> = log.iter().filter(|r| r.route == MEMBERS_ROUTE).collect();
    assert!(!members.is_empty());
    assert!(
        members
            .iter()
            .all(|r| query_number(&r.query, "limit") == Some(200)
                && r.query.contains("expand=operations")),
        "membersByGroupId is always asked for 200 rows with operations"
    );
    assert!(members.iter().all(|r| r.status == 200));

    // Group pages are capped at 25: offsets advance by rows received, not by limit.
    let group_starts: Vec<_> = log
        .iter()
        .filter(|r| r.route == GROUPS_ROUTE)
        .filter_map(|r| query_number(&r.query, "start"))
        .collect();
    assert_eq!(group_starts.len(), truth.groups.count.div_ceil(25));
    assert!(
        group_starts.iter().enumerate().all(|(i, s)| *s == i * 25),
        "{group_starts:?}"
    );

    // Member lists and permission lists span several pages too.
    assert!(
        members
            .iter()
            .any(|r| query_number(&r.query, "start").is_some_and(|s| s >= 400))
    );
    assert!(log.iter().any(|r| {
        r.route == "/wiki/api/v2/spaces/{id}/permissions" && r.query.contains("cursor=")
    }));

    // search/user: pages of 100 up to and including an empty page past the last row.
    let search_starts: Vec<_> = log
        .iter()
        .filter(|r| r.route == SEARCH_ROUTE)
        .filter_map(|r| query_number(&r.query, "start"))
        .collect();
    let expected_requests = found.search_rows.div_ceil(100) + 1;
    assert!(found.search_rows > 100, "several search pages");
    assert_eq!(search_starts.len(), expected_requests, "{search_starts:?}");
    assert_eq!(search_starts.last().copied(), Some(found.search_rows));
    assert!(
        log.iter()
            .filter(|r| r.route == SEARCH_ROUTE)
            .all(|r| query_number(&r.query, "limit") == Some(100)
                && r.query.contains("cql=type%3Duser"))
    );

    // The client's own counters agree with what the server saw.
    let client_stats = client.stats();
    let fake_stats = fake.stats();
    for (route, fake_route) in [
        (
            "GET /wiki/rest/api/group/{id}/membersByGroupId",
            MEMBERS_ROUTE,
        ),
        ("GET /wiki/rest/api/group", GROUPS_ROUTE),
        ("GET /wiki/rest/api/search/user", SEARCH_ROUTE),
        (
            "GET /wiki/api/v2/spaces/{id}/permissions",
            "/wiki/api/v2/spaces/{id}/permissions",
        ),
    ] {
        assert_eq!(
            client_stats.requests_by_route.get(route).copied(),
            Some(fake_stats.route_total("GET", fake_route)),
            "{route}"
        );
    }
    assert_eq!(client_stats.retries, 0);
    assert!(
        fake_stats.peak_concurrent <= 8,
        "in-flight cap: {}",
        fake_stats.peak_concurrent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_with_retry_after() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.rate_limit = Some(RateLimitConfig {
        capacity: 6,
        refill_per_sec: 10.0,
        ..RateLimitConfig::default()
    });
    let fake = start(cfg).await;
    let client = client_for(&fake);

    let found = walk_all(&client, 8).await.expect("walk despite 429s");
    assert_matches_truth(&found, &fake.truth());

    let fake_429s = fake.stats().rate_limited;
    let stats = client.stats();
    assert!(fake_429s > 0, "the test must actually hit the limit");
    assert_eq!(stats.rate_limited_429, fake_429s);
    assert_eq!(
        stats.retries, fake_429s,
        "every 429 was retried once it cleared"
    );
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_a_rate_limited_error() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    // One token, refilled every 100 s: the second call is told to wait far too long.
    cfg.rate_limit = Some(RateLimitConfig {
        capacity: 1,
        refill_per_sec: 0.01,
        ..RateLimitConfig::default()
    });
    let fake = start(cfg).await;
    let client = client_for(&fake);
    client
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect("first call has a token");
    let err = client
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect_err("throttled");
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(100)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_transient_faults_and_resets_are_survived() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.faults = vec![
        FaultRule {
            probability: 0.1,
            ..FaultRule::always(None, FaultKind::Transient)
        },
        FaultRule::on_calls(MEMBERS_ROUTE, &[2, 5], FaultKind::Reset),
        FaultRule::on_calls(
            GROUPS_ROUTE,
            &[1],
            FaultKind::Status {
                status: 503,
                retry_after_secs: Some(1),
            },
        ),
        FaultRule::on_calls(
            SEARCH_ROUTE,
            &[1],
            FaultKind::Status {
                status: 500,
                retry_after_secs: None,
            },
        ),
        FaultRule::on_calls(
            "/wiki/api/v2/spaces",
            &[1],
            FaultKind::Status {
                status: 504,
                retry_after_secs: None,
            },
        ),
        FaultRule::on_calls(
            "/wiki/api/v2/spaces/{id}/permissions",
            &[3],
            FaultKind::Status {
                status: 502,
                retry_after_secs: None,
            },
        ),
    ];
    let fake = start(cfg).await;
    let client = client_for(&fake);

    let found = walk_all(&client, 8).await.expect("walk despite faults");
    assert_matches_truth(&found, &fake.truth());
    let stats = client.stats();
    assert!(stats.retries >= 6, "{stats:?}");
    assert!(stats.transient_errors >= 5, "{stats:?}");
}

#[tokio::test]
async fn a_persistent_500_ends_as_transient() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.faults = vec![FaultRule::always(
        Some(GROUPS_ROUTE),
        FaultKind::Status {
            status: 500,
            retry_after_secs: None,
        },
    )];
    let fake = start(cfg).await;
    let client = client_for(&fake);
    let err = client
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect_err("500s");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(
        fake.stats().route_total("GET", GROUPS_ROUTE),
        5,
        "max_attempts"
    );
    assert!(err.to_string().contains("HTTP 500"), "{err}");
}

#[tokio::test]
async fn persistent_malformed_json_is_a_malformed_response() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.faults = vec![FaultRule::always(
        Some("/wiki/api/v2/spaces"),
        FaultKind::MalformedJson,
    )];
    let fake = start(cfg).await;
    let client = client_for(&fake);
    let err = client
        .spaces(None)
        .expect("pager")
        .next_page()
        .await
        .expect_err("malformed");
    assert_eq!(err.class(), ErrorClass::MalformedResponse);
    assert_eq!(fake.stats().route_total("GET", "/wiki/api/v2/spaces"), 2);
}

#[tokio::test]
async fn wrong_credentials_are_authentication_errors_in_every_mode() {
    for mode in [
        AuthFailureMode::Forbidden403Json,
        AuthFailureMode::Unauthorized401Text,
    ] {
        let mut cfg = FakeConfig::preset(Preset::Small);
        cfg.quirks.v1_auth_failure = mode;
        let fake = start(cfg).await;
        let bad = ConfluenceClient::new(config_for(
            fake.base_url(),
            "admin@example.com",
            "wrong-token",
        ))
        .expect("client");

        let err = bad.current_user().await.expect_err("bad token");
        assert_eq!(err.class(), ErrorClass::Authentication, "{mode:?}: {err}");
        let err = bad
            .groups()
            .expect("pager")
            .next_page()
            .await
            .expect_err("bad token");
        assert_eq!(err.class(), ErrorClass::Authentication, "{mode:?}: {err}");
        let err = bad
            .search_users()
            .expect("pager")
            .next_page()
            .await
            .expect_err("bad token");
        assert_eq!(err.class(), ErrorClass::Authentication, "{mode:?}: {err}");
        assert!(!format!("{err} {err:?}").contains("wrong-token"));

        // v2 answers bad credentials with a bare 404.
        let err = bad
            .spaces(None)
            .expect("pager")
            .next_page()
            .await
            .expect_err("bad token");
        assert_eq!(err.class(), ErrorClass::NotFound);
        assert!(err.may_be_credentials(), "{err}");
        assert_eq!(bad.stats().retries, 0, "credential failures are final");
    }
}

#[tokio::test]
async fn anonymous_sites_scoped_tokens_and_wrong_sites_are_told_apart() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.quirks.anonymous_site = true;
    let mut scoped = Credential::new("scoped@example.com", "scoped-token", false);
    scoped.scoped = true;
    cfg.credentials.push(scoped);
    let fake = start(cfg).await;

    let anon = ConfluenceClient::new(config_for(fake.base_url(), "admin@example.com", "nope"))
        .expect("client");
    let err = anon.current_user().await.expect_err("anonymous trap");
    assert_eq!(err.class(), ErrorClass::Authentication, "{err}");

    let scoped = ConfluenceClient::new(config_for(
        fake.base_url(),
        "scoped@example.com",
        "scoped-token",
    ))
    .expect("client");
    let err = scoped
        .current_user()
        .await
        .expect_err("scoped token on the site host");
    assert_eq!(err.class(), ErrorClass::Authentication, "{err}");
    assert!(err.to_string().contains("HTTP Status 401"), "{err}");

    fake.update_quirks(|q| q.site_host = Some("acme.atlassian.net".into()));
    let err = client_for(&fake)
        .current_user()
        .await
        .expect_err("wrong site");
    assert_eq!(err.class(), ErrorClass::Configuration, "{err}");
    assert!(err.to_string().contains("Page Unavailable"), "{err}");
}

#[tokio::test]
async fn the_gateway_root_and_tenant_info_work() {
    let fake = start(FakeConfig::preset(Preset::Small)).await;
    let info = client_for(&fake).tenant_info().await.expect("tenant info");
    assert_eq!(info.cloud_id.as_deref(), Some(fake.cloud_id().as_str()));

    let c = fake.credential();
    let gateway = format!("{}/ex/confluence/{}", fake.base_url(), fake.cloud_id());
    let client = ConfluenceClient::new(config_for(&gateway, &c.email, &c.token)).expect("client");
    let me = client
        .current_user()
        .await
        .expect("current user via gateway");
    assert!(!me.account_id.is_empty());
    let mut spaces = 0;
    let mut pager = client.spaces(None).expect("pager");
    while let Some(page) = pager.next_page().await.expect("page") {
        spaces += page.len();
    }
    assert_eq!(spaces, fake.truth().spaces.count);
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path.starts_with("/ex/confluence/"))
    );
}

#[tokio::test]
async fn space_roles_are_empty_when_not_available_and_listed_when_they_are() {
    let fake = start(FakeConfig::preset(Preset::Small)).await;
    let mut roles = client_for(&fake).space_roles(None).expect("pager");
    assert!(roles.next_page().await.expect("404 means none").is_none());
    assert_eq!(roles.stop_reason(), Some(StopReason::NotAvailable));

    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.rbac = Some(RbacMode::Roles);
    let fake = start(cfg).await;
    let mut roles = client_for(&fake).space_roles(None).expect("pager");
    let page = roles.next_page().await.expect("roles").expect("some roles");
    assert!(page.iter().all(|r| r.id.is_some() && r.name.is_some()));
}

#[tokio::test]
async fn a_next_link_on_every_group_page_still_ends_on_the_empty_page() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.quirks.group_page_cap = 6;
    cfg.quirks.group_next_always = true;
    let fake = start(cfg).await;
    let client = client_for(&fake);
    let mut pager = client.groups().expect("pager");
    let mut ids = BTreeSet::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        ids.extend(page.into_iter().filter_map(|g| g.id));
    }
    let truth = fake.truth();
    assert_eq!(ids.len(), truth.groups.count);
    assert_eq!(pager.stop_reason(), Some(StopReason::EmptyPage));
    assert_eq!(
        fake.stats().route_total("GET", GROUPS_ROUTE) as usize,
        truth.groups.count.div_ceil(6) + 1
    );
}
