//! A small Confluence look-alike that misbehaves on demand: pagination that does not
//! advance, and answers that trickle, stop or never come. It serves a one-of-everything
//! tenant (a group with one member, two users, a space with one permission) correctly
//! until told otherwise. The faithful fake (`fake-confluence`) stays faithful; hostility
//! lives here.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Response, Uri};
use confluence_operator::confluence::{ClientConfig, ConfluenceClient, RetryPolicy};
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};

pub const USERNAME: &str = "admin@example.com";
pub const TOKEN: &str = "hostile-token";

/// The routes the hostile server can misbehave on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    CurrentUser,
    Groups,
    Members,
    Search,
    Spaces,
    Permissions,
    SpaceRoles,
}

impl Route {
    /// The route as the client names it in errors.
    pub fn template(self) -> &'static str {
        match self {
            Self::CurrentUser => "GET /wiki/rest/api/user/current",
            Self::Groups => "GET /wiki/rest/api/group",
            Self::Members => "GET /wiki/rest/api/group/{id}/membersByGroupId",
            Self::Search => "GET /wiki/rest/api/search/user",
            Self::Spaces => "GET /wiki/api/v2/spaces",
            Self::Permissions => "GET /wiki/api/v2/spaces/{id}/permissions",
            Self::SpaceRoles => "GET /wiki/api/v2/space-roles",
        }
    }

    fn of(path: &str) -> Option<Self> {
        Some(match path {
            "/wiki/rest/api/user/current" => Self::CurrentUser,
            "/wiki/rest/api/group" => Self::Groups,
            "/wiki/rest/api/search/user" => Self::Search,
            "/wiki/api/v2/spaces" => Self::Spaces,
            "/wiki/api/v2/space-roles" => Self::SpaceRoles,
            p if p.starts_with("/wiki/rest/api/group/") && p.ends_with("/membersByGroupId") => {
                Self::Members
            }
            p if p.starts_with("/wiki/api/v2/spaces/") && p.ends_with("/permissions") => {
                Self::Permissions
            }
            _ => return None,
        })
    }
}

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// A correct tenant.
    None,
    /// Every page of this v1 route is the same single row; `group` and
    /// `membersByGroupId` add a `next` whose `start` moves on.
    SameRow(Route),
    /// Each page of this v2 route brings a new row and the same cursor as the last.
    RepeatedCursor(Route),
    /// Group pages bring new rows, each with the same `next`.
    RepeatedNext,
    /// Group pages of 50 new rows without end while `totalSize` says 1.
    BeyondTotal,
    /// Group pages of one new row and a moving `next`, without end.
    Endless,
    /// This route's body (100,000 bytes) arrives one byte per interval.
    Trickle(Route, Duration),
    /// Half of this route's body, then nothing while the connection stays open.
    StopHalfway(Route),
    /// This route's headers, then nothing.
    HeadersThenSilence(Route),
    /// Nothing at all on this route, not even headers.
    NoAnswer(Route),
}

struct Shared {
    hostility: Mutex<Hostility>,
    log: Mutex<Vec<Route>>,
}

/// A running hostile server; it stops with the test's runtime.
pub struct HostileServer {
    base: url::Url,
    shared: Arc<Shared>,
}

impl HostileServer {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            hostility: Mutex::new(Hostility::None),
            log: Mutex::new(Vec::new()),
        });
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base: url::Url::parse(&format!("http://{addr}")).expect("url"),
            shared,
        }
    }

    pub fn base_url(&self) -> &url::Url {
        &self.base
    }

    /// Switches behaviour and forgets the requests seen so far.
    pub fn set(&self, hostility: Hostility) {
        *self.shared.hostility.lock().expect("lock") = hostility;
        self.shared.log.lock().expect("lock").clear();
    }

    /// Requests to `route` since the last [`Self::set`].
    pub fn requests_to(&self, route: Route) -> usize {
        let log = self.shared.log.lock().expect("lock");
        log.iter().filter(|r| **r == route).count()
    }
}

/// A client for the server with short retry waits; `tune` adjusts the rest.
pub fn client(server: &HostileServer, tune: impl FnOnce(&mut ClientConfig)) -> ConfluenceClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut config = ClientConfig::new(
        server.base_url().clone(),
        USERNAME,
        SecretString::from(TOKEN),
    );
    config.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..config.retry
    };
    tune(&mut config);
    ConfluenceClient::new(config).expect("client builds")
}

/// Files in a directory, to prove a failed sync left nothing behind.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn answer(State(shared): State<Arc<Shared>>, uri: Uri) -> Response<Body> {
    let Some(route) = Route::of(uri.path()) else {
        return json(404, &json!({"message": "no such route"}));
    };
    shared.log.lock().expect("lock").push(route);
    let hostility = *shared.hostility.lock().expect("lock");
    let query = Query::of(&uri);
    let Some(body) = page(route, hostility, &query, shared.log_count(route)) else {
        return json(
            404,
            &json!({"errors": [{"status": 404, "code": "NOT_FOUND", "title": "Not Found", "detail": null}]}),
        );
    };
    match hostility {
        Hostility::Trickle(r, every) if r == route => slow(padded(&body), Delivery::Trickle(every)),
        Hostility::StopHalfway(r) if r == route => slow(padded(&body), Delivery::Half),
        Hostility::HeadersThenSilence(r) if r == route => slow(padded(&body), Delivery::Nothing),
        Hostility::NoAnswer(r) if r == route => futures::future::pending().await,
        _ => json(200, &body),
    }
}

impl Shared {
    fn log_count(&self, route: Route) -> usize {
        self.log
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| **r == route)
            .count()
    }
}

struct Query {
    start: usize,
}

impl Query {
    fn of(uri: &Uri) -> Self {
        let start = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|kv| kv.strip_prefix("start="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Self { start }
    }
}

/// The JSON body of one page; `None` answers 404. `nth` counts this route's requests.
fn page(route: Route, hostility: Hostility, q: &Query, nth: usize) -> Option<Value> {
    let start = q.start;
    Some(match route {
        Route::CurrentUser => user("u1"),
        Route::Groups => match hostility {
            Hostility::SameRow(Route::Groups) => v1(start, vec![group("g1")], Some(start + 1)),
            Hostility::RepeatedNext => v1(start, vec![group(&format!("g{start}"))], Some(1)),
            Hostility::BeyondTotal => {
                let rows = (start..start + 50)
                    .map(|i| group(&format!("g{i}")))
                    .collect();
                let mut body = v1(start, rows, Some(start + 50));
                body["totalSize"] = json!(1);
                body
            }
            Hostility::Endless => v1(start, vec![group(&format!("g{start}"))], Some(start + 1)),
            _ if start == 0 => v1(start, vec![group("g1")], None),
            _ => v1(start, vec![], None),
        },
        Route::Members => match hostility {
            Hostility::SameRow(Route::Members) => v1(start, vec![user("u1")], Some(start + 1)),
            _ if start == 0 => v1(start, vec![user("u1")], None),
            _ => v1(start, vec![], None),
        },
        Route::Search => match hostility {
            Hostility::SameRow(Route::Search) => v1(start, vec![hit("u1")], None),
            _ if start == 0 => v1(start, vec![hit("u1"), hit("u2")], None),
            _ => v1(start, vec![], None),
        },
        Route::Spaces => match hostility {
            Hostility::RepeatedCursor(Route::Spaces) => v2(
                vec![space(&nth.to_string())],
                Some("/wiki/api/v2/spaces?limit=250&cursor=again"),
            ),
            _ => v2(vec![space("1")], None),
        },
        Route::Permissions => match hostility {
            Hostility::RepeatedCursor(Route::Permissions) => v2(
                vec![permission(&format!("p{nth}"))],
                Some("/wiki/api/v2/spaces/1/permissions?limit=250&cursor=again"),
            ),
            _ => v2(vec![permission("p1")], None),
        },
        Route::SpaceRoles => return None,
    })
}

fn v1(start: usize, results: Vec<Value>, next_start: Option<usize>) -> Value {
    let mut links = json!({"base": "http://127.0.0.1/wiki", "context": "/wiki"});
    if let Some(next) = next_start {
        links["next"] = json!(format!("/rest/api/group?next=true&limit=200&start={next}"));
    }
    json!({"results": results, "start": start, "limit": 200, "size": results.len(), "_links": links})
}

fn v2(results: Vec<Value>, next: Option<&str>) -> Value {
    let mut links = json!({"base": "http://127.0.0.1/wiki"});
    if let Some(next) = next {
        links["next"] = json!(next);
    }
    json!({"results": results, "_links": links})
}

fn user(id: &str) -> Value {
    json!({
        "type": "known", "accountId": id, "accountType": "atlassian",
        "displayName": format!("User {id}"), "publicName": id, "email": format!("{id}@example.com"),
        "operations": [{"operation": "use", "targetType": "application"}]
    })
}

fn hit(id: &str) -> Value {
    json!({"user": user(id), "title": format!("User {id}"), "entityType": "user"})
}

fn group(id: &str) -> Value {
    json!({"type": "group", "id": id, "name": format!("group-{id}")})
}

fn space(id: &str) -> Value {
    json!({"id": id, "key": format!("S{id}"), "name": format!("Space {id}"), "type": "global", "status": "current"})
}

fn permission(id: &str) -> Value {
    json!({"id": id, "principal": {"type": "user", "id": "u1"}, "operation": {"key": "read", "targetType": "space"}})
}

fn json(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

/// The page after 100,000 bytes of leading white space (still valid JSON), so that a
/// slow delivery takes far longer than any test waits.
fn padded(body: &Value) -> Bytes {
    let mut text = " ".repeat(100_000);
    text.push_str(&body.to_string());
    Bytes::from(text)
}

enum Delivery {
    Trickle(Duration),
    Half,
    Nothing,
}

/// A 200 with the full `Content-Length` whose body arrives badly.
fn slow(body: Bytes, delivery: Delivery) -> Response<Body> {
    let len = body.len();
    let stream: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> = match delivery
    {
        Delivery::Trickle(every) => futures::stream::unfold(0usize, move |i| {
            let body = body.clone();
            async move {
                if i >= body.len() {
                    return None;
                }
                tokio::time::sleep(every).await;
                Some((Ok(body.slice(i..i + 1)), i + 1))
            }
        })
        .boxed(),
        Delivery::Half => futures::stream::once(async move { Ok(body.slice(..len / 2)) })
            .chain(futures::stream::pending())
            .boxed(),
        Delivery::Nothing => futures::stream::pending().boxed(),
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("content-length", len)
        .body(Body::from_stream(stream))
        .expect("response")
}
