//! The sync against a hostile server: pagination that stops advancing and answers that
//! trickle, stop or never come must fail the sync with a clear class and route, leave
//! the previous snapshot byte-identical and leave no other file — never end early with
//! a partial snapshot, never hang.

mod hostile_support;

use std::path::Path;
use std::time::{Duration, Instant};

use confluence_operator::confluence::{BodyProgress, ClientConfig};
use confluence_operator::controller::outcome::failure_reason;
use confluence_operator::sync::{SyncError, SyncOptions, run_sync};
use hostile_support::{HostileServer, Hostility, Route, client, files_in};
use tokio_util::sync::CancellationToken;

/// The generous ceiling the issue of a hung sync is judged by; the failures below come
/// in seconds.
const CEILING: Duration = Duration::from_secs(120);

fn options() -> SyncOptions {
    SyncOptions {
        // Far above CEILING: only the client's own rules can end these syncs in time.
        timeout: Duration::from_secs(600),
        ..SyncOptions::default()
    }
}

/// Deadlines for the slow-answer tests: the pace rule trips within a second, the
/// request deadline stays out of its way. Deadlines set low elsewhere stay at seconds,
/// so that a busy machine cannot make a correct answer miss them twice.
fn quick_pace(config: &mut ClientConfig) {
    config.request_timeout = Duration::from_secs(60);
    config.body_progress = BodyProgress {
        window: Duration::from_millis(500),
        min_bytes: 4096,
    };
}

/// Syncs a correct tenant into `dir/snap.c1z`, turns the server hostile, syncs again
/// with the client tuned by `tune` and checks that the failure left the previous
/// snapshot alone; returns the error.
async fn fails_cleanly(
    hostility: Hostility,
    tune: impl FnOnce(&mut ClientConfig),
) -> (SyncError, HostileServer) {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.c1z");
    let report = run_sync(
        &client(&server, |_| {}),
        &options(),
        &out,
        &CancellationToken::new(),
    )
    .await
    .expect("the well-behaved tenant syncs");
    assert_eq!(
        (
            report.counts.groups,
            report.counts.users,
            report.counts.spaces
        ),
        (1, 2, 1)
    );
    let before = std::fs::read(&out).unwrap();

    server.set(hostility);
    let started = Instant::now();
    let err = run_sync(
        &client(&server, tune),
        &options(),
        &out,
        &CancellationToken::new(),
    )
    .await
    .expect_err("a hostile server fails the sync");
    assert!(
        started.elapsed() < CEILING,
        "{hostility:?} took {:?}",
        started.elapsed()
    );
    assert_previous_kept(dir.path(), &out, &before);
    (err, server)
}

fn assert_previous_kept(dir: &Path, out: &Path, before: &[u8]) {
    assert_eq!(
        std::fs::read(out).unwrap(),
        before,
        "the previous snapshot is byte-identical"
    );
    assert_eq!(
        files_in(dir),
        ["snap.c1z"],
        "no output or work file is left"
    );
}

fn assert_not_advancing(err: &SyncError, route: Route) {
    assert_eq!(err.class(), "malformed_response", "{err}");
    assert_eq!(failure_reason(err), "SyncFailed");
    let text = err.to_string();
    assert!(text.contains(route.template()), "{text}");
    assert!(text.contains("not advancing"), "{text}");
}

fn assert_timed_out(err: &SyncError, route: Route, what: &str) {
    assert_eq!(err.class(), "transient", "{err}");
    assert_eq!(failure_reason(err), "SiteUnreachable");
    let text = err.to_string();
    assert!(text.contains(route.template()), "{text}");
    assert!(text.contains(what), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_row_pages_fail_the_group_list() {
    let (err, server) = fails_cleanly(Hostility::SameRow(Route::Groups), |_| {}).await;
    assert_not_advancing(&err, Route::Groups);
    assert!(err.to_string().contains("brought no new row"), "{err}");
    // One page with the row, then the tolerated pages without a new one: no more.
    assert_eq!(server.requests_to(Route::Groups), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_row_pages_fail_a_member_list() {
    let (err, server) = fails_cleanly(Hostility::SameRow(Route::Members), |_| {}).await;
    assert_not_advancing(&err, Route::Members);
    assert_eq!(server.requests_to(Route::Members), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_row_pages_fail_the_user_search() {
    let (err, server) = fails_cleanly(Hostility::SameRow(Route::Search), |_| {}).await;
    assert_not_advancing(&err, Route::Search);
    assert_eq!(server.requests_to(Route::Search), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_fails_the_space_list() {
    let (err, server) = fails_cleanly(Hostility::RepeatedCursor(Route::Spaces), |_| {}).await;
    assert_not_advancing(&err, Route::Spaces);
    assert!(err.to_string().contains("a next link came back"), "{err}");
    assert_eq!(server.requests_to(Route::Spaces), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_fails_a_permission_list() {
    let (err, server) = fails_cleanly(Hostility::RepeatedCursor(Route::Permissions), |_| {}).await;
    assert_not_advancing(&err, Route::Permissions);
    assert_eq!(server.requests_to(Route::Permissions), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_next_fails_the_group_list() {
    let (err, server) = fails_cleanly(Hostility::RepeatedNext, |_| {}).await;
    assert_not_advancing(&err, Route::Groups);
    assert!(err.to_string().contains("a next link came back"), "{err}");
    assert_eq!(server.requests_to(Route::Groups), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_far_beyond_the_announced_total_fails() {
    let (err, server) = fails_cleanly(Hostility::BeyondTotal, |_| {}).await;
    assert_not_advancing(&err, Route::Groups);
    assert!(err.to_string().contains("announced 1"), "{err}");
    // 2 × 1 + 200 rows are allowed for shifting offsets; pages bring 50.
    assert_eq!(server.requests_to(Route::Groups), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_cap_is_an_error_of_the_same_class() {
    let (err, server) = fails_cleanly(Hostility::Endless, |c| c.max_pages = 20).await;
    assert_eq!(err.class(), "malformed_response", "{err}");
    assert_eq!(failure_reason(&err), "SyncFailed");
    assert!(err.to_string().contains("/wiki/rest/api/group"), "{err}");
    assert!(err.to_string().contains("more than 20 pages"), "{err}");
    assert_eq!(server.requests_to(Route::Groups), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_fails_on_the_pace_rule_after_bounded_retries() {
    let trickle = Hostility::Trickle(Route::Spaces, Duration::from_millis(20));
    let (err, server) = fails_cleanly(trickle, quick_pace).await;
    assert_timed_out(&err, Route::Spaces, "the response body stalled");
    assert_eq!(server.requests_to(Route::Spaces), 2, "max_attempts = 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_fails_on_the_request_deadline_without_the_pace_rule() {
    let trickle = Hostility::Trickle(Route::Members, Duration::from_millis(20));
    let (err, server) = fails_cleanly(trickle, |c| {
        c.request_timeout = Duration::from_secs(2);
        c.body_progress.min_bytes = 0;
    })
    .await;
    assert_timed_out(&err, Route::Members, "no complete answer within 2s");
    assert_eq!(server.requests_to(Route::Members), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_halfway_fails() {
    let (err, server) = fails_cleanly(Hostility::StopHalfway(Route::Search), quick_pace).await;
    assert_timed_out(&err, Route::Search, "the response body stalled");
    assert_eq!(server.requests_to(Route::Search), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_then_silence_fails() {
    let (err, server) = fails_cleanly(
        Hostility::HeadersThenSilence(Route::Permissions),
        quick_pace,
    )
    .await;
    assert_timed_out(&err, Route::Permissions, "the response body stalled");
    assert_eq!(server.requests_to(Route::Permissions), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_at_all_fails_on_the_request_deadline() {
    let (err, server) = fails_cleanly(Hostility::NoAnswer(Route::Groups), |c| {
        c.request_timeout = Duration::from_millis(2500);
    })
    .await;
    assert_timed_out(&err, Route::Groups, "no complete answer within 2.5s");
    assert_eq!(server.requests_to(Route::Groups), 2);
}
