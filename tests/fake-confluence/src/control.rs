//! The control API under `/__fake/` (no auth, no faults, not rate limited) and the
//! functions the Rust handle shares with it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Latency, Quirks, RateLimitConfig};
use crate::faults::FaultRule;
use crate::pages::{PageLimits, PagesNeeded, pages_needed};
use crate::state::{AppState, lock, read, write};
use crate::stats::Stats;
use crate::truth::{self, Truth};

pub fn truth_of(st: &AppState) -> Truth {
    let quirks = st.quirks();
    let tenant = read(&st.tenant);
    // The first credential is the sync account the truth is computed for.
    truth::compute(
        &tenant,
        quirks.search_ceiling,
        quirks.hide_suspended_members,
        &|key| st.space_visible(Some(0), key),
    )
}

pub fn stats_of(st: &AppState) -> Stats {
    let mut s = lock(&st.recorder).stats();
    s.peak_concurrent = st.peak_inflight.load(Ordering::SeqCst);
    s.faults_injected = lock(&st.faults).injected;
    s
}

pub fn reset_stats(st: &AppState) {
    lock(&st.recorder).reset();
    lock(&st.faults).injected = 0;
    st.peak_inflight
        .store(st.inflight.load(Ordering::SeqCst), Ordering::SeqCst);
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/__fake/truth", get(get_truth))
        .route("/__fake/pages", get(get_pages))
        .route("/__fake/stats", get(get_stats))
        .route("/__fake/requests", get(get_requests))
        .route("/__fake/reset", post(post_reset))
        .route(
            "/__fake/faults",
            get(get_faults).post(post_faults).delete(delete_faults),
        )
        .route(
            "/__fake/rate-limit",
            get(get_rate_limit).post(post_rate_limit),
        )
        .route("/__fake/quirks", get(get_quirks).post(post_quirks))
        .route("/__fake/latency", get(get_latency).post(post_latency))
        .route("/__fake/clock", post(post_clock))
}

type St = State<Arc<AppState>>;

async fn get_truth(State(st): St) -> Json<Truth> {
    Json(truth_of(&st))
}

/// Fewest requests per collection for the page sizes in the query (client defaults).
async fn get_pages(
    State(st): St,
    axum::extract::Query(limits): axum::extract::Query<PageLimits>,
) -> Json<PagesNeeded> {
    let quirks = st.quirks();
    let tenant = read(&st.tenant);
    Json(pages_needed(
        &tenant,
        limits,
        quirks.search_page_cap,
        quirks.search_ceiling,
        quirks.hide_suspended_members,
        &|key| st.space_visible(Some(0), key),
    ))
}

async fn get_stats(State(st): St) -> Json<Stats> {
    Json(stats_of(&st))
}

async fn get_requests(State(st): St) -> Response {
    Json(lock(&st.recorder).log()).into_response()
}

async fn post_reset(State(st): St) -> StatusCode {
    reset_stats(&st);
    StatusCode::NO_CONTENT
}

/// Accepts either `{"rules":[…]}` or a bare array of rules.
#[derive(Deserialize)]
#[serde(untagged)]
enum FaultsBody {
    Wrapped { rules: Vec<FaultRule> },
    Bare(Vec<FaultRule>),
}

async fn get_faults(State(st): St) -> Response {
    Json(json!({ "rules": lock(&st.faults).rules() })).into_response()
}

async fn post_faults(State(st): St, Json(body): Json<FaultsBody>) -> StatusCode {
    let rules = match body {
        FaultsBody::Wrapped { rules } | FaultsBody::Bare(rules) => rules,
    };
    lock(&st.faults).set_rules(rules);
    StatusCode::NO_CONTENT
}

async fn delete_faults(State(st): St) -> StatusCode {
    lock(&st.faults).set_rules(Vec::new());
    StatusCode::NO_CONTENT
}

async fn get_rate_limit(State(st): St) -> Json<Option<RateLimitConfig>> {
    Json(lock(&st.limiter).config().cloned())
}

/// `null` turns rate limiting off.
async fn post_rate_limit(State(st): St, Json(cfg): Json<Option<RateLimitConfig>>) -> StatusCode {
    lock(&st.limiter).set_config(cfg);
    StatusCode::NO_CONTENT
}

async fn get_quirks(State(st): St) -> Json<Quirks> {
    Json(st.quirks())
}

/// Missing fields take their defaults.
async fn post_quirks(State(st): St, Json(q): Json<Quirks>) -> StatusCode {
    *write(&st.quirks) = q;
    StatusCode::NO_CONTENT
}

async fn get_latency(State(st): St) -> Json<Latency> {
    Json(*read(&st.latency))
}

async fn post_latency(State(st): St, Json(l): Json<Latency>) -> StatusCode {
    *write(&st.latency) = l;
    StatusCode::NO_CONTENT
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ClockBody {
    freeze: Option<bool>,
    advance_ms: Option<u64>,
}

/// `{"freeze":true}`, `{"freeze":false}`, `{"advanceMs":1500}` (combinable).
async fn post_clock(State(st): St, Json(b): Json<ClockBody>) -> StatusCode {
    match b.freeze {
        Some(true) => st.clock.freeze(),
        Some(false) => st.clock.unfreeze(),
        None => {}
    }
    if let Some(ms) = b.advance_ms {
        st.clock.advance(ms as f64 / 1000.0);
    }
    StatusCode::NO_CONTENT
}
