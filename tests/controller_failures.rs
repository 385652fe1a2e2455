//! How the operator fails, against the real binary: sites it must refuse without
//! opening a connection (SSRF), a site that keeps answering 500 (error state, kept
//! snapshot, back-off), and the API token never leaking into logs, Events, status or
//! metrics.

mod common;
mod operator_support;

use std::time::Duration;

use base64::Engine as _;
use confluence_operator::api::Phase;
use fake_confluence::{Credential, FakeConfig, FaultKind, FaultRule, Preset};
use tokio::net::TcpListener;

use operator_support::{
    DEBUG_LOG, SYNC_DEADLINE, assert_condition, assert_no_raw_error_body, condition,
    connected_fixture, fixture, request_value, spec_for, status_json, sync_id,
};

const SECRET: &str = "confluence-credentials";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_sites_are_refused_without_any_connection() {
    let Some(fx) = fixture("ctl-ssrf", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    // A trap where a misbehaving operator would connect; it must see nothing.
    let trap = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the trap listener");
    let trap_site = format!(
        "http://127.0.0.1:{}",
        trap.local_addr().expect("addr").port()
    );
    // This operator runs WITHOUT --allowed-site-suffix / --allow-insecure-http.
    let mut options = fx.operator_options("strict");
    options.allow_local_sites = false;
    let op = operator_support::Operator::start(options).await;
    fx.put_valid_secret(SECRET).await;

    let sites = [
        ("evil", "evil.example.com".to_owned()),
        ("metadata", "169.254.169.254".to_owned()),
        ("lookalike", "acme.atlassian.net.evil.com".to_owned()),
        ("local", trap_site.clone()),
        ("fake", fx.fake.base_url().to_owned()),
    ];
    for (name, site) in &sites {
        fx.create_connector(name, spec_for(site, SECRET)).await;
    }
    for (name, site) in &sites {
        let c = fx
            .wait_failed(
                name,
                Phase::NotConnected,
                "InvalidSite",
                common::DEADLINE,
                Some(&op),
            )
            .await;
        assert!(
            condition(&c, "Stalled").is_some_and(|s| s.status == "True"),
            "{site}: an invalid site is Stalled: {}",
            status_json(&c)
        );
        let message = &condition(&c, "Ready").expect("Ready").message;
        assert!(!message.is_empty(), "{site}: InvalidSite without a message");
    }
    // Nothing connected to the trap, then or within the next few seconds.
    match tokio::time::timeout(Duration::from_secs(5), trap.accept()).await {
        Err(_) => {}
        Ok(Ok((_, peer))) => panic!("the operator connected to the trap {trap_site} from {peer}"),
        Ok(Err(e)) => panic!("trap accept failed: {e}"),
    }
    assert_eq!(
        fx.fake.stats().total_requests,
        0,
        "the strict operator sent requests to the fake at {}",
        fx.fake.base_url()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_keep_the_snapshot_and_back_off() {
    let Some((fx, op, good)) =
        connected_fixture("ctl-500", FakeConfig::preset(Preset::Small), "acme", SECRET).await
    else {
        return;
    };
    let good_status = good.status.clone().expect("status");
    let snapshot = good_status.snapshot.clone().expect("snapshot");
    let snapshot_path = fx.snapshot_path(&snapshot);
    assert!(snapshot_path.is_file());

    // Every call now answers 500; a requested sync must end in Error/SiteUnreachable
    // after the client's retries.
    fx.fake.set_faults(vec![FaultRule::always(
        None,
        FaultKind::Status {
            status: 500,
            retry_after_secs: None,
        },
    )]);
    let value = request_value("fail");
    fx.request_sync("acme", &value).await;
    let failed = fx
        .wait_failed(
            "acme",
            Phase::Error,
            "SiteUnreachable",
            Duration::from_secs(240),
            Some(&op),
        )
        .await;
    let status = failed.status.clone().expect("status");
    assert_no_raw_error_body(&failed);
    assert_condition(&failed, "Synced", "False", "SiteUnreachable");
    assert!(
        condition(&failed, "Stalled").is_none(),
        "a server outage is not Stalled (it can heal): {}",
        status_json(&failed)
    );
    assert_eq!(
        status.snapshot, good_status.snapshot,
        "the last good snapshot must be kept"
    );
    assert_eq!(
        status.summary, good_status.summary,
        "the last good summary must be kept"
    );
    assert_eq!(
        status.last_successful_sync_time, good_status.last_successful_sync_time,
        "lastSuccessfulSyncTime must not move"
    );
    assert_eq!(
        operator_support::sha256_hex(&snapshot_path),
        snapshot.sha256,
        "the snapshot file changed"
    );

    // Back-off: count what reaches the fake over a minute.
    let requests = fx.requests_within(Duration::from_secs(60)).await;
    common::print_uncaptured(&format!(
        "requests in the 60s back-off window: {requests}; Ready message while down: {:?}",
        condition(&failed, "Ready").map(|r| r.message.clone())
    ));
    assert!(
        requests <= 40,
        "{requests} requests in 60s while the site is down: no back-off"
    );
    assert!(
        requests >= 1,
        "no retry at all within 60s of a failed sync (expected 5s·2ⁿ back-off)"
    );
    let c = fx.get("acme").await;
    assert_eq!(
        c.status.as_ref().and_then(|s| s.snapshot.clone()),
        good_status.snapshot,
        "retries replaced the snapshot"
    );
    assert!(
        snapshot_path.is_file(),
        "the last good snapshot was removed"
    );

    // The site heals; a sync request skips the back-off and recovers.
    fx.fake.set_faults(Vec::new());
    let value = request_value("heal");
    fx.request_sync("acme", &value).await;
    let healed = fx
        .wait_request_handled("acme", &value, "Connected after the outage", Some(&op))
        .await;
    assert_ne!(sync_id(&healed), Some(snapshot.sync_id.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_logs_events_status_or_metrics() {
    let salt = common::unique_name("tok");
    let email = "leak-check@example.com";
    let token = format!("ATATT3x-{salt}-SECRETVALUE");
    let wrong = format!("WRONG-{salt}-NOTTHETOKEN");
    let mut config = FakeConfig::preset(Preset::Small);
    config.credentials = vec![Credential::new(email, &token, true)];
    let Some(fx) = fixture("ctl-leak", config).await else {
        return;
    };
    let mut options = fx.operator_options("debug");
    options.rust_log = DEBUG_LOG.to_owned();
    let op = operator_support::Operator::start(options).await;

    // A rejected token first (error paths), then the right one, then a requested sync.
    fx.put_secret(SECRET, email, &wrong).await;
    fx.create_connector("acme", fx.spec(SECRET)).await;
    fx.wait_failed(
        "acme",
        Phase::NotConnected,
        "AuthenticationFailed",
        common::DEADLINE,
        Some(&op),
    )
    .await;
    fx.put_secret(SECRET, email, &token).await;
    fx.wait_connected("acme", SYNC_DEADLINE, Some(&op)).await;
    let value = request_value("leak");
    fx.request_sync("acme", &value).await;
    fx.wait_request_handled("acme", &value, "the requested sync", Some(&op))
        .await;

    let b64 = base64::engine::general_purpose::STANDARD;
    let needles = [
        ("token", token.clone()),
        ("rejected token", wrong.clone()),
        ("base64(user:token)", b64.encode(format!("{email}:{token}"))),
        (
            "base64(user:rejected token)",
            b64.encode(format!("{email}:{wrong}")),
        ),
        ("base64(token)", b64.encode(&token)),
        ("token salt", salt.clone()),
    ];
    let log = op.log_text();
    let debug_lines = op
        .log_lines()
        .iter()
        .filter(|l| operator_support::level(l) == "DEBUG")
        .count();
    assert!(
        debug_lines >= 10,
        "the operator logged only {debug_lines} debug lines: the check would prove nothing"
    );
    let connector_json = serde_json::to_string(&fx.get("acme").await).expect("JSON");
    let haystacks = [
        ("operator log", log),
        ("Events", fx.all_events_json().await),
        ("connector (spec+status)", connector_json),
        ("metrics", op.metrics().await),
    ];
    for (where_, text) in &haystacks {
        for (what, needle) in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "the {what} appears in the {where_}"
            );
        }
    }
}
