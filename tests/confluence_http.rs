//! HTTP behaviour of the Confluence client against small scripted stub servers: the
//! cases a full fake does not easily produce (anonymous answers, web pages, broken and
//! oversized bodies) plus the retry and pause mechanics with exact request counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Response, Uri};
use confluence_operator::confluence::{
    ClientConfig, ConfluenceClient, ErrorClass, RetryPolicy, StopReason,
};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "stub-token-DO-NOT-LEAK";

/// One request as the stub saw it.
#[derive(Debug, Clone)]
struct Seen {
    path_and_query: String,
    at: Instant,
    authorization: Option<String>,
}

type Script = dyn Fn(&str, usize) -> Response<Body> + Send + Sync;

/// A stub whose answers come from `script(path_and_query, request_index)`.
struct Stub {
    base: url::Url,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    async fn start(script: impl Fn(&str, usize) -> Response<Body> + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let script: Arc<Script> = Arc::new(script);
        let log = seen.clone();
        let app = Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let log = log.clone();
            let script = script.clone();
            async move {
                let pq = uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                let index = {
                    let mut log = log.lock().expect("log lock");
                    log.push(Seen {
                        path_and_query: pq.clone(),
                        at: Instant::now(),
                        authorization: headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned),
                    });
                    log.len() - 1
                };
                script(&pq, index)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: url::Url::parse(&format!("http://{addr}")).expect("url"),
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log lock").clone()
    }
}

fn json(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("response")
}

fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        max_rate_limit_waits: 5,
        max_elapsed: Duration::from_secs(30),
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        max_malformed_attempts: 2,
    }
}

fn client(base: &url::Url) -> ConfluenceClient {
    install_crypto();
    let mut cfg = ClientConfig::new(base.clone(), "bot@example.com", SecretString::from(TOKEN));
    cfg.retry = fast_retry();
    ConfluenceClient::new(cfg).expect("client")
}

fn page_of(ids: std::ops::Range<usize>, next: bool) -> String {
    let end = ids.end;
    let rows: Vec<String> = ids
        .map(|i| format!(r#"{{"type":"group","id":"g{i:04}","name":"group-{i}"}}"#))
        .collect();
    let next = if next {
        format!(r#","next":"/rest/api/group?next=true&limit=200&start={end}""#)
    } else {
        String::new()
    };
    format!(
        r#"{{"results":[{}],"start":0,"limit":200,"size":{},"_links":{{"base":"http://x/wiki","context":"/wiki"{next}}}}}"#,
        rows.join(","),
        rows.len()
    )
}

fn query_param(pq: &str, key: &str) -> Option<usize> {
    let q = pq.split_once('?')?.1;
    q.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn current_user_accepts_only_a_known_account() {
    let stub = Stub::start(|_, _| {
        json(
            200,
            r#"{"type":"known","accountId":"608a","displayName":"Bot"}"#,
        )
    })
    .await;
    let me = client(&stub.base).current_user().await.expect("known user");
    assert_eq!(me.account_id, "608a");
    let seen = stub.seen();
    assert_eq!(
        seen[0].path_and_query,
        "/wiki/rest/api/user/current?expand=operations"
    );
    assert!(
        seen[0]
            .authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))
    );

    let anon =
        Stub::start(|_, _| json(200, r#"{"type":"anonymous","displayName":"Anonymous"}"#)).await;
    let err = client(&anon.base)
        .current_user()
        .await
        .expect_err("anonymous trap");
    assert_eq!(err.class(), ErrorClass::Authentication);

    let empty = Stub::start(|_, _| json(200, r#"{"type":"known","accountId":""}"#)).await;
    let err = client(&empty.base)
        .current_user()
        .await
        .expect_err("empty accountId");
    assert_eq!(err.class(), ErrorClass::Authentication);
}

#[tokio::test]
async fn web_pages_on_the_credential_check_are_configuration_errors() {
    let stub = Stub::start(|_, _| {
        Response::builder()
            .status(404)
            .header("content-type", "text/html")
            .body(Body::from(
                "<html><title>Atlassian Cloud Notifications - Page Unavailable</title></html>",
            ))
            .expect("response")
    })
    .await;
    let err = client(&stub.base)
        .current_user()
        .await
        .expect_err("html 404");
    assert_eq!(err.class(), ErrorClass::Configuration);
    assert!(err.to_string().contains("Page Unavailable"), "{err}");

    let ok_html = Stub::start(|_, _| {
        Response::builder()
            .status(200)
            .body(Body::from("<!DOCTYPE html><p>hi</p>"))
            .expect("response")
    })
    .await;
    let err = client(&ok_html.base)
        .current_user()
        .await
        .expect_err("html 200");
    assert_eq!(err.class(), ErrorClass::Configuration);
    assert_eq!(ok_html.seen().len(), 1, "a web page is not retried");
}

#[tokio::test]
async fn errors_carry_trace_id_and_never_the_token() {
    // A hostile body echoing the token must not leak it into the error.
    let stub = Stub::start(|_, _| {
        Response::builder()
            .status(403)
            .header("atl-traceid", "trace-42")
            .body(Body::from(format!(
                r#"{{"statusCode":403,"message":"nope {TOKEN}"}}"#
            )))
            .expect("response")
    })
    .await;
    let c = client(&stub.base);
    let err = c
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect_err("403");
    assert_eq!(err.class(), ErrorClass::PermissionDenied);
    let text = format!("{err} {err:?} {c:?}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(text.contains("trace-42"), "{text}");
    assert!(text.contains("GET /wiki/rest/api/group"), "{text}");
}

#[tokio::test]
async fn group_walk_advances_by_rows_and_stops_on_short_page_without_next() {
    // Pages silently capped at 150 rows with `next`, then a short last page without.
    let stub = Stub::start(|pq, _| {
        let start = query_param(pq, "start").unwrap_or(0);
        if start < 300 {
            json(200, &page_of(start..start + 150, true))
        } else {
            json(200, &page_of(start..start + 20, false))
        }
    })
    .await;
    let c = client(&stub.base);
    let mut ids = Vec::new();
    let summary = c
        .groups()
        .expect("pager")
        .for_each_page::<confluence_operator::confluence::ConfluenceError, _>(|rows| {
            ids.extend(rows.into_iter().filter_map(|g| g.id));
            Ok(())
        })
        .await
        .expect("walk");
    assert_eq!(ids.len(), 320);
    assert_eq!(summary.stop, StopReason::LastPage);
    let starts: Vec<_> = stub
        .seen()
        .iter()
        .map(|s| query_param(&s.path_and_query, "start"))
        .collect();
    assert_eq!(starts, vec![Some(0), Some(150), Some(300)]);
    assert!(
        stub.seen()
            .iter()
            .all(|s| query_param(&s.path_and_query, "limit") == Some(200))
    );
}

#[tokio::test]
async fn a_server_that_ignores_start_fails_the_walk_instead_of_looping_or_ending_it() {
    let stub = Stub::start(|_, _| json(200, &page_of(0..200, true))).await;
    let mut pager = client(&stub.base).groups().expect("pager");
    assert!(pager.next_page().await.expect("first").is_some());
    let err = pager.next_page().await.expect_err("the same page again");
    assert_eq!(err.class(), ErrorClass::MalformedResponse, "{err}");
    let text = err.to_string();
    assert!(text.contains("GET /wiki/rest/api/group"), "{text}");
    assert!(text.contains("not advancing"), "{text}");
    assert_eq!(pager.stop_reason(), None, "not an ordinary end");
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn v2_walk_follows_the_link_header_and_space_roles_404_is_not_available() {
    let stub = Stub::start(|pq, _| {
        if pq.starts_with("/wiki/api/v2/space-roles") {
            return json(404, r#"{"errors":[{"status":404,"code":"NOT_FOUND","title":"Not Found","detail":null}]}"#);
        }
        let (rows, link) = if pq.contains("cursor=c2") {
            (r#"[{"id":"3","key":"C","type":"personal"}]"#, None)
        } else {
            (
                r#"[{"id":"1","key":"A","type":"global"},{"id":"2","key":"B","type":"brand-new"}]"#,
                Some(r#"</wiki/api/v2/spaces?limit=250&cursor=c2>; rel="next""#),
            )
        };
        let mut b = Response::builder().status(200).header("content-type", "application/json");
        if let Some(link) = link {
            b = b.header("link", link);
        }
        b.body(Body::from(format!(r#"{{"results":{rows},"_links":{{}}}}"#))).expect("response")
    })
    .await;
    let c = client(&stub.base);
    let mut pager = c.spaces(None).expect("pager");
    let mut keys = Vec::new();
    while let Some(page) = pager.next_page().await.expect("page") {
        keys.extend(page.into_iter().filter_map(|s| s.key));
    }
    assert_eq!(keys, ["A", "B", "C"]);
    assert_eq!(pager.stop_reason(), Some(StopReason::NoNextLink));

    let mut roles = c.space_roles(None).expect("pager");
    assert!(roles.next_page().await.expect("404 is empty").is_none());
    assert_eq!(roles.stop_reason(), Some(StopReason::NotAvailable));
}

#[tokio::test]
async fn persistent_500_ends_transient_after_max_attempts() {
    let stub = Stub::start(|_, _| json(500, r#"{"statusCode":500,"message":"java.lang.reflect.UndeclaredThrowableException: null"}"#)).await;
    let c = client(&stub.base);
    let err = c
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect_err("500");
    assert_eq!(err.class(), ErrorClass::Transient);
    assert_eq!(stub.seen().len(), 3);
    let stats = c.stats();
    assert_eq!(stats.transient_errors, 3);
    assert_eq!(stats.retries, 2);
    assert_eq!(
        stats.requests_by_route.get("GET /wiki/rest/api/group"),
        Some(&3)
    );
}

#[tokio::test]
async fn persistent_malformed_json_is_malformed_response() {
    let stub = Stub::start(|_, _| json(200, r#"{"results":[{"id":"#)).await;
    let err = client(&stub.base)
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect_err("bad json");
    assert_eq!(err.class(), ErrorClass::MalformedResponse);
    assert_eq!(stub.seen().len(), 2, "malformed 200s are retried once");
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let stub = Stub::start(|_, _| json(200, &page_of(0..200, false))).await;
    install_crypto();
    let mut cfg = ClientConfig::new(
        stub.base.clone(),
        "bot@example.com",
        SecretString::from(TOKEN),
    );
    cfg.max_response_bytes = 1024;
    let c = ConfluenceClient::new(cfg).expect("client");
    let err = c
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect_err("too big");
    assert_eq!(err.class(), ErrorClass::Other);
    assert!(err.to_string().contains("larger than 1024 bytes"), "{err}");
}

#[tokio::test]
async fn a_429_pauses_every_worker_for_exactly_retry_after() {
    // The 3rd request overall gets 429 + Retry-After: 1; every other answer is fine.
    let stub = Stub::start(|pq, i| {
        if i == 2 {
            return Response::builder()
                .status(429)
                .header("retry-after", "1")
                .body(Body::empty())
                .expect("response");
        }
        let _ = pq;
        json(
            200,
            r#"{"results":[],"start":0,"limit":200,"size":0,"_links":{}}"#,
        )
    })
    .await;
    let c = client(&stub.base);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let mut p = c.group_members(&format!("grp-{w}")).expect("pager");
                p.next_page().await.expect("page");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let seen = stub.seen();
    assert_eq!(seen.len(), 13, "12 walks + 1 retry");
    let throttled_at = seen[2].at;
    let after: Vec<_> = seen[3..]
        .iter()
        .map(|s| s.at.duration_since(throttled_at))
        .collect();
    // Requests already in flight may land just after the 429; nothing new is sent until
    // the pause is over, and then all workers resume.
    let in_pause = after
        .iter()
        .filter(|d| **d > Duration::from_millis(300) && **d < Duration::from_millis(950))
        .count();
    assert_eq!(in_pause, 0, "{after:?}");
    let retried = seen[3..]
        .iter()
        .find(|s| s.path_and_query == seen[2].path_and_query)
        .map(|s| s.at.duration_since(throttled_at))
        .expect("throttled request retried");
    assert!(
        retried >= Duration::from_millis(990) && retried < Duration::from_millis(2500),
        "{retried:?}"
    );
    let stats = c.stats();
    assert_eq!(stats.rate_limited_429, 1);
    assert_eq!(stats.retries, 1);
}

#[tokio::test]
async fn retry_after_above_the_cap_fails_fast_as_rate_limited() {
    let stub = Stub::start(|_, _| {
        Response::builder()
            .status(429)
            .header("retry-after", "3600")
            .body(Body::empty())
            .expect("response")
    })
    .await;
    let err = client(&stub.base)
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect_err("429");
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(stub.seen().len(), 1);
}

/// A raw server whose first answer is cut off mid-body; the second is complete.
#[tokio::test]
async fn a_truncated_body_is_retried() {
    install_crypto();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for n in 0.. {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let body = r#"{"results":[],"start":0,"limit":200,"size":0,"_links":{}}"#;
            let reply = if n == 0 {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
                    body.len() + 50,
                    &body[..10]
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            };
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    let base = url::Url::parse(&format!("http://{addr}")).expect("url");
    let c = client(&base);
    let page = c
        .groups()
        .expect("pager")
        .next_page()
        .await
        .expect("recovered");
    assert!(page.is_none());
    assert_eq!(c.stats().transient_errors, 1);
    assert_eq!(c.stats().retries, 1);
}

/// Collects formatted log output in memory.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_logs_hold_neither_the_token_nor_the_basic_credentials() {
    use base64::Engine as _;
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let stub = Stub::start(|pq, i| match i {
        0 => Response::builder()
            .status(429)
            .header("retry-after", "0")
            .body(Body::empty())
            .expect("response"),
        1 => json(503, "busy"),
        _ if pq.contains("user/current") => {
            json(401, "Basic authentication with passwords is deprecated.")
        }
        _ => json(200, r#"{"results":[],"_links":{}}"#),
    })
    .await;
    let c = client(&stub.base);
    let _ = c.groups().expect("pager").next_page().await;
    let err = c.current_user().await.expect_err("401");
    assert_eq!(err.class(), ErrorClass::Authentication);
    tracing::debug!(error = %err, client = ?c, "done");

    let text = String::from_utf8_lossy(&logs.0.lock().expect("log buffer")).into_owned();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("bot@example.com:{TOKEN}"));
    assert!(
        text.contains("confluence request"),
        "debug lines are captured: {text}"
    );
    assert!(text.contains("pausing all requests"), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(!text.contains(&basic), "{text}");
}
