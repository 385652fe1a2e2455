//! Routing, the per-request pipeline (site check, faults, auth, rate limit, recording)
//! and the accept loop.
//!
//! The accept loop is hand-written rather than `axum::serve` so that a fault can close one
//! TCP connection without answering, which a handler cannot do on its own.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::auth::{self, Api};
use crate::faults::{Early, Plan};
use crate::ratelimit::{Decision, allowed_headers, too_many_requests};
use crate::state::{AppState, InflightGuard, lock, read};
use crate::stats::RequestRecord;
use crate::views::{json_response, v1_error, v2_error};
use crate::{control, routes_v1 as v1, routes_v2 as v2};

const GATEWAY_PREFIX: &str = "/ex/confluence/{cloudId}";

/// Lets the pipeline drop the connection a request arrived on.
#[derive(Clone)]
pub struct ConnHandle(pub CancellationToken);

/// Marks an answer to hold back for this many milliseconds after the request was
/// carried out and recorded.
#[derive(Clone, Copy)]
struct LateAnswer(u64);

/// Per-route pipeline state: the route template is what stats, rate limits and fault
/// rules key on.
#[derive(Clone)]
struct Ctx {
    st: Arc<AppState>,
    route: &'static str,
}

/// The API under `prefix` ("" for the site host, the gateway prefix otherwise). Routes
/// are registered with their full path rather than nested so handlers and the pipeline
/// see the unmodified request path.
fn api_routes(st: &Arc<AppState>, prefix: &str) -> Router<Arc<AppState>> {
    let routes: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = vec![
        ("/wiki/rest/api/user/current", get(v1::current_user)),
        ("/wiki/rest/api/group", get(v1::groups)),
        ("/wiki/rest/api/group/by-id", get(v1::group_by_id)),
        (
            "/wiki/rest/api/group/{groupId}/membersByGroupId",
            get(v1::members),
        ),
        (
            "/wiki/rest/api/group/userByGroupId",
            post(v1::add_member).delete(v1::remove_member),
        ),
        ("/wiki/rest/api/search/user", get(v1::search_user)),
        ("/wiki/rest/api/user", get(v1::user)),
        ("/wiki/rest/api/user/bulk", get(v1::user_bulk)),
        ("/wiki/rest/api/user/memberof", get(v1::member_of)),
        ("/wiki/api/v2/spaces", get(v2::spaces)),
        ("/wiki/api/v2/spaces/{id}", get(v2::space)),
        ("/wiki/api/v2/spaces/{id}/permissions", get(v2::permissions)),
        (
            "/wiki/api/v2/spaces/{id}/role-assignments",
            get(v2::role_assignments),
        ),
        ("/wiki/api/v2/space-role-mode", get(v2::space_role_mode)),
        ("/wiki/api/v2/space-roles", get(v2::space_roles)),
        ("/wiki/api/v2/users-bulk", post(v2::users_bulk)),
    ];
    routes
        .into_iter()
        .fold(Router::new(), |router, (route, method_router)| {
            let ctx = Ctx {
                st: st.clone(),
                route,
            };
            router.route(
                &format!("{prefix}{route}"),
                method_router.layer(from_fn_with_state(ctx, pipeline)),
            )
        })
}

pub fn router(state: Arc<AppState>) -> Router {
    let edge = Ctx {
        st: state.clone(),
        route: "/_edge/tenant_info",
    };
    Router::new()
        .merge(api_routes(&state, ""))
        .route(
            "/_edge/tenant_info",
            get(v2::tenant_info).layer(from_fn_with_state(edge, pipeline)),
        )
        .merge(api_routes(&state, GATEWAY_PREFIX))
        .merge(control::routes())
        .fallback(unmatched)
        .with_state(state)
}

/// Unknown paths: v1/v2-shaped 404s under `/wiki`, the HTML page elsewhere
/// (`/confluence/...` and paths without `/wiki` are 404 on a real site too).
async fn unmatched(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let resp = if path.starts_with("/wiki/rest/api/") {
        v1_error(StatusCode::NOT_FOUND, "Not Found")
    } else if path.starts_with("/wiki/api/v2/") {
        v2_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not Found", None)
    } else {
        auth::wrong_site()
    };
    lock(&st.recorder).record(RequestRecord {
        method: req.method().to_string(),
        query: req.uri().query().unwrap_or("").to_owned(),
        path,
        route: "unmatched".into(),
        headers: redacted(req.headers()),
        status: resp.status().as_u16(),
    });
    resp
}

fn redacted(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            let value = if k == header::AUTHORIZATION {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.as_str().to_owned(), value)
        })
        .collect()
}

/// Routes that return identities (users, groups, members) and may cost more tokens.
fn identity_route(route: &str) -> bool {
    route.starts_with("/wiki/rest/api/group")
        || route.starts_with("/wiki/rest/api/user")
        || route == "/wiki/rest/api/search/user"
        || route == "/wiki/api/v2/users-bulk"
}

enum Outcome {
    Answer(Response),
    Reset,
}

async fn pipeline(State(ctx): State<Ctx>, req: Request, next: Next) -> Response {
    let st = ctx.st;
    let _inflight = InflightGuard::new(&st);
    let route = ctx.route.to_owned();
    let via_gateway = req.uri().path().starts_with("/ex/confluence/");
    let mut record = RequestRecord {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().unwrap_or("").to_owned(),
        route: route.clone(),
        headers: redacted(req.headers()),
        status: 0,
    };
    let conn = req.extensions().get::<ConnHandle>().cloned();
    match handle(&st, &route, via_gateway, req, next).await {
        Outcome::Answer(resp) => {
            record.status = resp.status().as_u16();
            lock(&st.recorder).record(record);
            // Recorded first: the request was carried out even if the client gives up
            // before the late answer arrives.
            if let Some(LateAnswer(ms)) = resp.extensions().get::<LateAnswer>().copied() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            resp
        }
        Outcome::Reset => {
            // Status 0 in stats and the log marks a dropped connection.
            lock(&st.recorder).record(record);
            match conn {
                Some(ConnHandle(token)) => {
                    token.cancel();
                    // The connection task drops this future together with the socket.
                    std::future::pending::<Response>().await
                }
                None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
    }
}

async fn handle(
    st: &AppState,
    route: &str,
    via_gateway: bool,
    mut req: Request,
    next: Next,
) -> Outcome {
    let quirks = st.quirks();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if quirks.site_host.as_deref().is_some_and(|want| want != host) {
        return Outcome::Answer(auth::wrong_site());
    }
    if via_gateway {
        let cloud = req.uri().path().split('/').nth(3).unwrap_or("").to_owned();
        if cloud != read(&st.tenant).cloud_id {
            return Outcome::Answer(auth::wrong_site());
        }
    }
    let method = req.method().as_str().to_owned();
    let (plan, delay) = {
        let mut faults = lock(&st.faults);
        let plan = faults.plan(&method, route);
        let latency = *read(&st.latency);
        let delay = latency.fixed_ms + faults.jitter(latency.jitter_ms) + plan.latency_ms;
        (plan, delay)
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    match plan.early {
        Some(Early::Reset) => return Outcome::Reset,
        Some(Early::Status {
            status,
            retry_after,
        }) => return Outcome::Answer(fault_response(status, retry_after)),
        None => {}
    }
    let caller =
        match auth::authenticate(req.headers(), &st.credentials, route, via_gateway, &quirks) {
            Ok(c) => c,
            Err(resp) => return Outcome::Answer(resp),
        };
    let decision = if Api::of(route) == Api::Open {
        Decision::Off
    } else {
        let now = st.clock.now();
        let mut limiter = lock(&st.limiter);
        let credential = caller.credential().unwrap_or(usize::MAX);
        match limiter.check(credential, &method, route, identity_route(route), now) {
            Decision::Limited { limit, retry_after } => {
                let cfg = limiter.config().cloned().unwrap_or_default();
                return Outcome::Answer(too_many_requests(&cfg, limit, retry_after));
            }
            d => d,
        }
    };
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    if plan.late_answer_ms > 0 {
        resp.extensions_mut()
            .insert(LateAnswer(plan.late_answer_ms));
    }
    if let Decision::Allowed { limit, remaining } = decision {
        allowed_headers(resp.headers_mut(), limit, remaining);
    }
    if let Ok(v) = HeaderValue::from_str(&st.next_trace_id()) {
        resp.headers_mut().insert("atl-traceid", v);
    }
    Outcome::Answer(reshape_body(resp, &plan).await)
}

fn fault_response(status: u16, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut resp = match status {
        500 => json_response(
            code,
            &serde_json::json!({
                "statusCode": 500,
                "message": "java.lang.reflect.UndeclaredThrowableException: null",
                "reason": "Internal Server Error"
            }),
        ),
        502 | 504 => (
            code,
            [(header::CONTENT_TYPE, "text/html")],
            format!(
                "<html><body><h1>{} {}</h1></body></html>",
                status,
                code.canonical_reason().unwrap_or("")
            ),
        )
            .into_response(),
        _ => json_response(
            code,
            &serde_json::json!({
                "statusCode": status,
                "message": code.canonical_reason().unwrap_or("Error")
            }),
        ),
    };
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Applies body faults: truncated JSON and/or a trickled body.
async fn reshape_body(resp: Response, plan: &Plan) -> Response {
    let malformed = plan.malformed && resp.status().is_success();
    if !malformed && plan.slow_body.is_none() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(mut bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if malformed {
        bytes = if bytes.len() > 1 {
            bytes.slice(..bytes.len() / 2)
        } else {
            Bytes::from_static(b"{\"results\":[")
        };
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = match plan.slow_body {
        Some((delay_ms, chunk)) => {
            let chunks: Vec<Bytes> = bytes.chunks(chunk).map(Bytes::copy_from_slice).collect();
            Body::from_stream(futures::stream::iter(chunks).then(move |c| async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                Ok::<_, std::io::Error>(c)
            }))
        }
        None => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

/// Accepts connections until `shutdown`, then lets open connections finish gracefully.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Usually a transient resource limit (EMFILE); back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let reset = CancellationToken::new();
        let app = app.clone();
        let conn_reset = reset.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnHandle(conn_reset.clone()));
                app.clone().oneshot(req.map(Body::new))
            });
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                // Dropping the connection closes the socket without an answer.
                _ = reset.cancelled() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.as_mut()).await;
                }
            }
        });
    }
}
