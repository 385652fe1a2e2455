//! The operator's own HTTP endpoint (`--http-addr`, conventions §5): `/metrics`
//! (OpenMetrics), `/healthz` (alive) and `/readyz` (ready to serve its role).
//!
//! No tracing layer wraps these routes: probes and scrapes arrive every few seconds and
//! would drown the reconcile logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Content type of the OpenMetrics text exposition that prometheus-client produces.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// State shared by the HTTP handlers.
#[derive(Clone, Debug)]
pub struct HttpState {
    /// The metrics served on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports. The caller sets it once the stores have synced, or once
    /// a standby's lease loop runs; it is deliberately not tied to leadership, since a
    /// standby that never became ready would block rolling updates.
    pub ready: Arc<AtomicBool>,
}

/// Failures of the HTTP endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listening socket could not be bound (address in use, no permission, …).
    #[error("binding the HTTP listener to {addr} failed")]
    Bind {
        /// The address that was requested.
        addr: SocketAddr,
        /// The underlying socket error.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped with an I/O error.
    #[error("serving HTTP failed")]
    Serve(#[source] std::io::Error),
}

/// Binds the listener, separately from [`serve`], so the caller can log the actual
/// address (port 0 picks a free one) and fail start-up before anything else runs.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// The routes, without a listener, so they can be exercised or embedded elsewhere.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves the routes on `listener` until `shutdown` is cancelled, then lets in-flight
/// requests finish and returns.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: CancellationToken,
) -> Result<(), HttpError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(HttpError::Serve)
}

async fn metrics(State(state): State<HttpState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding metrics failed\n",
            )
                .into_response()
        }
    }
}

/// Liveness only: it must not depend on the API server or Confluence, or an outage
/// there would get every replica restarted for nothing.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    /// A bare HTTP/1.1 GET with `Connection: close`, so the reply ends at EOF.
    async fn get(addr: SocketAddr, path: &str) -> Reply {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut raw = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
            .await
            .expect("reply in time")
            .expect("read reply");

        let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        Reply {
            status,
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    #[tokio::test]
    async fn serves_probes_and_metrics_until_shutdown() {
        let metrics = Arc::new(Metrics::new());
        metrics.reconciled("ConfluenceConnector", "success", 0.01);
        let ready = Arc::new(AtomicBool::new(false));
        let state = HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        };

        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, shutdown.clone()));

        let reply = get(addr, "/healthz").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.trim(), "ok");

        let reply = get(addr, "/readyz").await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.body.trim(), "not ready");

        ready.store(true, Ordering::Release);
        let reply = get(addr, "/readyz").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.trim(), "ok");

        let reply = get(addr, "/metrics").await;
        assert_eq!(reply.status, 200);
        assert!(
            reply.headers.contains(&format!(
                "content-type: {}",
                OPENMETRICS_CONTENT_TYPE.to_ascii_lowercase()
            )),
            "{}",
            reply.headers
        );
        assert!(
            reply.body.contains(
                r#"confluence_operator_reconciles_total{kind="ConfluenceConnector",result="success"} 1"#
            ),
            "{}",
            reply.body
        );
        assert!(reply.body.ends_with("# EOF\n"), "{}", reply.body);

        let reply = get(addr, "/nope").await;
        assert_eq!(reply.status, 404);

        shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server stops after shutdown")
            .expect("server task did not panic");
        assert!(result.is_ok(), "{result:?}");
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn bind_reports_the_address_in_use() {
        let first = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = first.local_addr().expect("local addr");
        match bind(addr).await {
            Err(HttpError::Bind { addr: failed, .. }) => assert_eq!(failed, addr),
            other => panic!("expected a bind error, got {other:?}"),
        }
    }
}
