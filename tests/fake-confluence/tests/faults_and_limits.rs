//! Rate limiting, fault injection, the control API and the binary, over raw HTTP.

mod common;

use std::time::Duration;

use common::{arr, start};
use fake_confluence::{FakeConfig, FaultKind, FaultRule, Latency, RateLimitConfig};
use reqwest::Method;
use serde_json::{Value, json};

const GROUPS: &str = "/wiki/rest/api/group";
const USER: &str = "/wiki/rest/api/user/current";

fn limited(capacity: u32) -> FakeConfig {
    FakeConfig {
        rate_limit: Some(RateLimitConfig {
            capacity,
            refill_per_sec: 1.0,
            ..RateLimitConfig::default()
        }),
        ..FakeConfig::default()
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A fake with a 2-token bucket that has just answered 429 on `GROUPS`.
async fn throttled() -> (common::Api, reqwest::Response) {
    let api = start(limited(2)).await;
    api.fake.freeze_clock();
    for _ in 0..2 {
        assert_eq!(api.get(GROUPS).await.status(), 200);
    }
    let r = api.get(GROUPS).await;
    assert_eq!(r.status(), 429);
    (api, r)
}

#[tokio::test]
async fn rate_limit_retry_after_is_whole_seconds_rounded_up() {
    let (api, r) = throttled().await;
    assert_eq!(header(&r, "retry-after"), Some("1"), "1 token at 1/s");
    assert_eq!(api.fake.stats().rate_limited, 1);
}

#[tokio::test]
async fn rate_limit_limit_header() {
    let (_api, r) = throttled().await;
    assert_eq!(header(&r, "x-ratelimit-limit"), Some("2"));
}

#[tokio::test]
async fn rate_limit_remaining_header_is_zero() {
    let (_api, r) = throttled().await;
    assert_eq!(header(&r, "x-ratelimit-remaining"), Some("0"));
}

#[tokio::test]
async fn rate_limit_reset_header_format() {
    let (_api, r) = throttled().await;
    let reset = header(&r, "x-ratelimit-reset").expect("reset header");
    assert!(
        chrono::NaiveDateTime::parse_from_str(reset, "%Y-%m-%dT%H:%MZ").is_ok(),
        "yyyy-MM-ddTHH:mmZ, got {reset}"
    );
}

#[tokio::test]
async fn rate_limit_reason_header() {
    let (_api, r) = throttled().await;
    assert_eq!(
        header(&r, "ratelimit-reason"),
        Some("confluence-quota-tenant-based")
    );
}

#[tokio::test]
async fn rate_limit_near_limit_header_on_429() {
    let (_api, r) = throttled().await;
    assert_eq!(header(&r, "x-ratelimit-nearlimit"), Some("true"));
}

#[tokio::test]
async fn rate_limit_near_limit_below_20_percent() {
    let api = start(limited(10)).await;
    api.fake.freeze_clock();
    let mut near = Vec::new();
    for _ in 0..10 {
        let r = api.get(GROUPS).await;
        assert_eq!(r.status(), 200);
        near.push(header(&r, "x-ratelimit-nearlimit").is_some());
    }
    // Remaining after each request: 9..0; below 2 (20 % of 10) is near the limit.
    assert_eq!(near.iter().filter(|n| **n).count(), 2);
    assert!(!near[0] && near[9]);
}

#[tokio::test]
async fn rate_limit_near_limit_optional_on_429() {
    let mut cfg = limited(1);
    if let Some(rl) = cfg.rate_limit.as_mut() {
        rl.near_limit_on_429 = false;
    }
    let api = start(cfg).await;
    api.fake.freeze_clock();
    assert_eq!(api.get(GROUPS).await.status(), 200);
    let r = api.get(GROUPS).await;
    assert_eq!(r.status(), 429);
    assert!(header(&r, "x-ratelimit-nearlimit").is_none());
}

#[tokio::test]
async fn rate_limit_buckets_per_route_and_refill_with_clock() {
    let api = start(limited(1)).await;
    api.fake.freeze_clock();
    assert_eq!(api.get(GROUPS).await.status(), 200);
    assert_eq!(api.get(GROUPS).await.status(), 429);
    assert_eq!(api.get(USER).await.status(), 200, "other route, own bucket");
    api.fake.advance_clock(Duration::from_secs(1));
    assert_eq!(api.get(GROUPS).await.status(), 200);
    api.fake.set_rate_limit(None);
    for _ in 0..5 {
        assert_eq!(api.get(GROUPS).await.status(), 200);
    }
}

#[tokio::test]
async fn fault_503_with_retry_after_on_a_scripted_call() {
    let api = start(FakeConfig::default()).await;
    api.fake.set_faults(vec![FaultRule::on_calls(
        GROUPS,
        &[2],
        FaultKind::Status {
            status: 503,
            retry_after_secs: Some(3),
        },
    )]);
    assert_eq!(api.get(GROUPS).await.status(), 200);
    let r = api.get(GROUPS).await;
    assert_eq!(r.status(), 503);
    assert_eq!(header(&r, "retry-after"), Some("3"));
    assert_eq!(api.get(GROUPS).await.status(), 200);
    assert_eq!(api.fake.stats().faults_injected, 1);
}

fn status_fault(status: u16, retry_after_secs: Option<u64>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after_secs,
    }
}

/// A default fake whose first call to `route` fails with `kind`, and that first answer.
async fn first_call_fails(route: &str, kind: FaultKind) -> (common::Api, reqwest::Response) {
    let api = start(FakeConfig::default()).await;
    api.fake
        .set_faults(vec![FaultRule::on_calls(route, &[1], kind)]);
    let r = api.get(route).await;
    (api, r)
}

#[tokio::test]
async fn fault_500_with_retry_after() {
    let (_api, r) = first_call_fails(GROUPS, status_fault(500, Some(2))).await;
    assert_eq!(r.status(), 500);
    assert_eq!(header(&r, "retry-after"), Some("2"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["reason"], "Internal Server Error");
}

#[tokio::test]
async fn fault_500_without_retry_after() {
    let (api, r) = first_call_fails(GROUPS, status_fault(500, None)).await;
    assert_eq!(r.status(), 500);
    assert!(header(&r, "retry-after").is_none());
    assert_eq!(api.get(GROUPS).await.status(), 200);
}

#[tokio::test]
async fn fault_502() {
    let (api, r) = first_call_fails(USER, status_fault(502, None)).await;
    assert_eq!(r.status(), 502);
    assert!(header(&r, "retry-after").is_none());
    assert_eq!(api.get(USER).await.status(), 200);
}

#[tokio::test]
async fn fault_504() {
    let (api, r) = first_call_fails(USER, status_fault(504, None)).await;
    assert_eq!(r.status(), 504);
    assert_eq!(api.get(USER).await.status(), 200);
}

#[tokio::test]
async fn fault_connection_reset() {
    let api = start(FakeConfig::default()).await;
    api.fake
        .set_faults(vec![FaultRule::on_calls(USER, &[1], FaultKind::Reset)]);
    let err = api
        .req(Method::GET, USER)
        .send()
        .await
        .expect_err("connection closed without an answer");
    assert!(!err.is_timeout());
    assert_eq!(api.get(USER).await.status(), 200, "next request is served");
    let stats = api.fake.stats();
    assert_eq!(stats.by_route[&format!("GET {USER}")]["0"], 1);
}

#[tokio::test]
async fn fault_latency_still_answers() {
    let api = start(FakeConfig::default()).await;
    api.fake.set_faults(vec![FaultRule::always(
        Some(USER),
        FaultKind::Latency { ms: 50 },
    )]);
    api.fake.set_latency(Latency {
        fixed_ms: 10,
        jitter_ms: 10,
    });
    assert_eq!(api.get(USER).await.status(), 200);
}

#[tokio::test]
async fn fault_slow_body_arrives_whole() {
    let api = start(FakeConfig::default()).await;
    api.fake.set_faults(vec![FaultRule::always(
        Some(GROUPS),
        FaultKind::SlowBody {
            chunk_delay_ms: 1,
            chunk_bytes: 256,
        },
    )]);
    let body = api.json(GROUPS).await;
    assert_eq!(arr(&body["results"]).len(), 20);
}

#[tokio::test]
async fn fault_malformed_json() {
    let api = start(FakeConfig::default()).await;
    api.fake.set_faults(vec![FaultRule::always(
        Some(GROUPS),
        FaultKind::MalformedJson,
    )]);
    let r = api.get(GROUPS).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err());
}

#[tokio::test]
async fn fault_probability_and_prefix_routes() {
    let api = start(FakeConfig::default()).await;
    api.fake.set_faults(vec![FaultRule::always(
        Some("/wiki/api/v2/*"),
        FaultKind::Transient,
    )]);
    assert_eq!(api.get(USER).await.status(), 200, "v1 untouched");
    for _ in 0..5 {
        match api.req(Method::GET, "/wiki/api/v2/spaces").send().await {
            Ok(r) => assert!([500, 502, 503, 504].contains(&r.status().as_u16())),
            Err(e) => assert!(!e.is_timeout(), "only resets may fail to answer"),
        }
    }
    api.fake.set_faults(vec![FaultRule {
        probability: 0.0,
        ..FaultRule::always(None, FaultKind::Transient)
    }]);
    assert_eq!(api.get("/wiki/api/v2/spaces").await.status(), 200);
}

#[tokio::test]
async fn control_api_sets_faults_limits_quirks_and_clock() {
    let api = start(FakeConfig::default()).await;
    let post = |path: &'static str, body: Value| {
        let api = &api;
        async move {
            let r = api
                .http
                .post(api.url(path))
                .json(&body)
                .send()
                .await
                .expect("request");
            assert_eq!(r.status(), 204, "POST {path}");
        }
    };
    post(
        "/__fake/faults",
        json!({"rules":[{"route": GROUPS, "kind": {"type":"status","status":503,"retryAfterSecs":1}, "calls":[1]}]}),
    )
    .await;
    assert_eq!(api.get(GROUPS).await.status(), 503);
    assert_eq!(api.get(GROUPS).await.status(), 200);
    let r = api
        .http
        .delete(api.url("/__fake/faults"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 204);

    post("/__fake/clock", json!({"freeze": true})).await;
    post(
        "/__fake/rate-limit",
        json!({"capacity": 1, "refillPerSec": 1.0}),
    )
    .await;
    assert_eq!(api.get(USER).await.status(), 200);
    assert_eq!(api.get(USER).await.status(), 429);
    post("/__fake/clock", json!({"advanceMs": 1000})).await;
    assert_eq!(api.get(USER).await.status(), 200);
    post("/__fake/rate-limit", Value::Null).await;

    post("/__fake/quirks", json!({"groupPageCap": 2})).await;
    let page = api.json(GROUPS).await;
    assert_eq!(page["size"], 2);
    let quirks: Value = api
        .http
        .get(api.url("/__fake/quirks"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(quirks["searchPageCap"], 100, "omitted fields keep defaults");

    post("/__fake/latency", json!({"fixedMs": 1})).await;
    let stats: Value = api
        .http
        .get(api.url("/__fake/stats"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(stats["totalRequests"].as_u64().expect("number") >= 6);
    assert_eq!(stats["rateLimited"], 1);
    assert_eq!(stats["byRoute"][format!("GET {GROUPS}")]["503"], 1);
    let log: Value = api
        .http
        .get(api.url("/__fake/requests"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let first = &arr(&log)[0];
    let auth = arr(&first["headers"])
        .iter()
        .find(|h| h[0] == "authorization")
        .expect("authorization logged");
    assert_eq!(auth[1], "<redacted>");
    post("/__fake/reset", json!({})).await;
    assert_eq!(api.fake.stats().total_requests, 0);
}

#[tokio::test]
async fn stats_track_peak_concurrency() {
    let api = start(FakeConfig::default()).await;
    // Long enough that the requests overlap even on a busy machine.
    api.fake.set_latency(Latency {
        fixed_ms: 1000,
        jitter_ms: 0,
    });
    let calls = (0..8).map(|_| api.get(USER));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
    let stats = api.fake.stats();
    assert_eq!(stats.route_total("GET", USER), 8);
    assert!(stats.peak_concurrent >= 2, "{stats:?}");
}

#[tokio::test]
async fn binary_prints_listening_and_serves() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fake-confluence"))
        .args([
            "--preset",
            "small",
            "--seed",
            "3",
            "--users",
            "30",
            "--credentials",
            "ops@example.com:secret:admin",
            "--auth-failure",
            "401-text",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("ready in time")
        .expect("read")
        .expect("a line");
    let url = line
        .strip_prefix("LISTENING ")
        .expect("LISTENING line")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"));
    common::install_crypto_provider();
    let http = reqwest::Client::new();
    let me = http
        .get(format!("{url}{USER}"))
        .basic_auth("ops@example.com", Some("secret"))
        .send()
        .await
        .expect("request");
    assert_eq!(me.status(), 200);
    let bad = http
        .get(format!("{url}{USER}"))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), 401);
    let truth: Value = http
        .get(format!("{url}/__fake/truth"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(truth["users"]["count"].as_u64().expect("count") <= 30);
    child.kill().await.expect("kill");
}
