//! The client's membership calls against the fake Confluence: look-ups by id, add and
//! remove with Confluence's write rules (XSRF header, JSON body, 201/204 without a
//! body), and the retry rules for writes.

use std::time::Duration;

use confluence_operator::confluence::{ClientConfig, ConfluenceClient, ErrorClass, RetryPolicy};
use fake_confluence::{
    Credential, FakeConfig, FakeConfluence, FaultKind, FaultRule, Preset, Quirks, RateLimitConfig,
    RunningFake,
};
use secrecy::SecretString;

const WRITE_ROUTE: &str = "/wiki/rest/api/group/userByGroupId";

fn client(fake: &RunningFake, email: &str, token: &str) -> ConfluenceClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = url::Url::parse(fake.base_url()).expect("fake base url");
    let mut config = ClientConfig::new(url, email, SecretString::from(token.to_owned()));
    config.retry = RetryPolicy {
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_elapsed: Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    ConfluenceClient::new(config).expect("client")
}

fn admin(fake: &RunningFake) -> ConfluenceClient {
    let c = fake.credential().clone();
    client(fake, &c.email, &c.token)
}

/// A group and an active Atlassian user who is not its member.
fn outsider(fake: &RunningFake) -> (String, String) {
    let truth = fake.truth();
    for group in &truth.groups.ids {
        for user in &truth.users.ids {
            if truth.users.disabled_ids.contains(user) {
                continue;
            }
            if !fake.is_member(group, user) {
                return (group.clone(), user.clone());
            }
        }
    }
    panic!("the small tenant has no outsider");
}

#[tokio::test]
async fn add_check_and_remove_a_member() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small))
        .await
        .expect("fake");
    let client = admin(&fake);
    let (group, user) = outsider(&fake);

    let found = client.group_by_id(&group).await.expect("group by id");
    assert_eq!(found.id.as_deref(), Some(group.as_str()));
    let person = client.user_by_account_id(&user).await.expect("user by id");
    assert_eq!(person.account_id.as_deref(), Some(user.as_str()));

    assert!(!client.is_member(&group, &user).await.expect("memberof"));
    client.add_group_member(&group, &user).await.expect("add");
    assert!(fake.is_member(&group, &user));
    assert!(client.is_member(&group, &user).await.expect("memberof"));
    // A second add of a member is a success, also where Confluence answers 400.
    client
        .add_group_member(&group, &user)
        .await
        .expect("add again");
    fake.update_quirks(|q: &mut Quirks| q.existing_member_add_status = 400);
    client
        .add_group_member(&group, &user)
        .await
        .expect("'already a member' 400 counts as success");

    client
        .remove_group_member(&group, &user)
        .await
        .expect("remove");
    assert!(!fake.is_member(&group, &user));
    client
        .remove_group_member(&group, &user)
        .await
        .expect("removing a non-member is a 204 too");
    assert!(!client.is_member(&group, &user).await.expect("memberof"));

    let missing = client
        .group_by_id("00000000-0000-4000-8000-00000000dead")
        .await
        .expect_err("unknown group");
    assert_eq!(missing.class(), ErrorClass::NotFound);
    let missing = client
        .user_by_account_id("557058:nobody")
        .await
        .expect_err("unknown user");
    assert!(matches!(
        missing.class(),
        ErrorClass::NotFound | ErrorClass::BadRequest
    ));
    let stats = fake.stats();
    assert_eq!(stats.route_total("POST", WRITE_ROUTE), 3);
    assert_eq!(stats.route_total("DELETE", WRITE_ROUTE), 2);
}

#[tokio::test]
async fn writes_need_a_site_admin() {
    let mut config = FakeConfig::preset(Preset::Small);
    config
        .credentials
        .push(Credential::new("viewer@example.com", "viewer-token", false));
    let fake = FakeConfluence::start(config).await.expect("fake");
    let viewer = client(&fake, "viewer@example.com", "viewer-token");
    let (group, user) = outsider(&fake);
    assert!(
        !viewer
            .is_member(&group, &user)
            .await
            .expect("reads are allowed")
    );
    let denied = viewer
        .add_group_member(&group, &user)
        .await
        .expect_err("not an admin");
    assert_eq!(denied.class(), ErrorClass::PermissionDenied);
    let denied = viewer
        .remove_group_member(&group, &user)
        .await
        .expect_err("not an admin");
    assert_eq!(denied.class(), ErrorClass::PermissionDenied);
    assert!(!fake.is_member(&group, &user));
}

/// A lost answer to an add is not retried blindly (the caller re-reads the membership);
/// a removal is, and a 429 is waited out for both.
#[tokio::test]
async fn retry_rules_for_writes() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small))
        .await
        .expect("fake");
    let client = admin(&fake);
    let (group, user) = outsider(&fake);

    let rule = |method: &str, status: u16| FaultRule {
        route: Some(WRITE_ROUTE.into()),
        method: Some(method.into()),
        kind: FaultKind::Status {
            status,
            retry_after_secs: None,
        },
        probability: 0.0,
        calls: vec![1],
    };
    fake.set_faults(vec![rule("POST", 502)]);
    let lost = client
        .add_group_member(&group, &user)
        .await
        .expect_err("a 502 on an add is reported, not retried");
    assert_eq!(lost.class(), ErrorClass::Transient);
    assert_eq!(fake.stats().route_total("POST", WRITE_ROUTE), 1);

    client.add_group_member(&group, &user).await.expect("add");
    fake.set_faults(vec![rule("DELETE", 503)]);
    client
        .remove_group_member(&group, &user)
        .await
        .expect("a removal survives a 503");
    assert_eq!(fake.stats().route_total("DELETE", WRITE_ROUTE), 2);
    assert!(!fake.is_member(&group, &user));

    fake.set_faults(Vec::new());
    fake.set_rate_limit(Some(RateLimitConfig {
        capacity: 1,
        refill_per_sec: 2.0,
        ..RateLimitConfig::default()
    }));
    for _ in 0..3 {
        client
            .add_group_member(&group, &user)
            .await
            .expect("add under a rate limit");
        client
            .remove_group_member(&group, &user)
            .await
            .expect("remove under a rate limit");
    }
    assert!(fake.stats().rate_limited > 0, "the limit was hit");
    assert!(!fake.is_member(&group, &user));
}
