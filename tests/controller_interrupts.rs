//! Syncs that are interrupted, against the real binary: the operator killed (SIGKILL)
//! mid-fetch and while it finishes the snapshot, stopped with SIGTERM, the connector
//! deleted, changed or suspended mid-sync.
//!
//! A "slow" tenant (240 groups, 2 s per request) makes a sync last long enough that
//! an uncancelled sync would keep sending requests through every quiet window below.

mod common;
mod operator_support;

use std::time::{Duration, Instant};

use confluence_operator::api::{ConfluenceConnector, Phase, SyncSpec};
use confluence_operator::c1z::Snapshot;
use fake_confluence::{DataConfig, FakeConfig, Latency, Preset, RunningFake};
use serde_json::json;

use operator_support::{
    Fixture, Operator, SYNC_DEADLINE, condition, connected_fixture, fixture, generation,
    is_connected, last_sync_start, level, message, observed_generation, phase_of, quiet_window,
    request_value, status_json, sync_id, sync_with_timeout, tree, work_files,
};

const SECRET: &str = "confluence-credentials";
/// Latency of the slow tenant: a sync of it takes about 25 s (~300 requests).
const SLOW: Latency = Latency {
    fixed_ms: 2000,
    jitter_ms: 0,
};

/// A small tenant with many groups, so that walking the members takes many rounds.
fn slow_config() -> FakeConfig {
    FakeConfig::with_data(DataConfig {
        users: 300,
        groups: 240,
        ..DataConfig::preset(Preset::Small)
    })
}

fn no_latency(fake: &RunningFake) {
    fake.set_latency(Latency::default());
}

/// A fixture with the slow tenant, an operator, and connector `acme` (with `sync` as its
/// `spec.sync`) whose first sync is under way: `Syncing`, and the fake has answered 5
/// requests. `None` as for [`fixture`].
async fn slow_first_sync(prefix: &str, sync: Option<SyncSpec>) -> Option<(Fixture, Operator)> {
    let fx = fixture(prefix, slow_config()).await?;
    fx.fake.set_latency(SLOW);
    let op = fx.start_operator().await;
    fx.put_valid_secret(SECRET).await;
    let mut spec = fx.spec(SECRET);
    spec.sync = sync;
    fx.create_connector("acme", spec).await;
    fx.wait_syncing("acme", Some(&op)).await;
    fx.wait_requests(5, Some(&op)).await;
    Some((fx, op))
}

/// Waits until the running sync has created its work files.
async fn wait_work_files(fx: &Fixture) {
    common::wait_for_within(
        "the sync to create its work files",
        Duration::from_secs(30),
        || async { (!work_files(fx.data.path()).is_empty()).then_some(()) },
    )
    .await;
}

/// Starts a second operator ("restarted") and waits until it connects `acme`, without
/// work files left and with a snapshot that reads back. Returns the operator (to keep it
/// running) and the connector.
async fn restart_connects_clean(
    fx: &Fixture,
    deadline: Duration,
) -> (Operator, ConfluenceConnector) {
    let op = Operator::start(fx.operator_options("restarted")).await;
    let c = fx.wait_connected("acme", deadline, Some(&op)).await;
    assert_clean_and_readable(fx, "acme", &c);
    (op, c)
}

/// Asserts that connector `name` left no work files and its snapshot reads back.
fn assert_clean_and_readable(fx: &Fixture, name: &str, c: &ConfluenceConnector) {
    let dir = fx.connector_dir(name);
    let leftovers = work_files(fx.data.path());
    assert!(
        leftovers.is_empty(),
        "work files left behind: {leftovers:?} (tree of {}: {:?})",
        dir.display(),
        tree(&dir)
    );
    let snapshot = c
        .status
        .as_ref()
        .and_then(|s| s.snapshot.clone())
        .expect("a snapshot after Connected");
    let path = fx.snapshot_path(&snapshot);
    Snapshot::open(&path)
        .unwrap_or_else(|e| panic!("snapshot {} does not read back: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_fetch_then_restart_connects_without_work_files() {
    let Some((fx, mut op)) = slow_first_sync("ctl-kill", None).await else {
        return;
    };
    // The first sync shows its progress (written at most every 10 s).
    let progressing = fx
        .wait_connector(
            "acme",
            "a progress message \"Syncing: walking group members: X of Y groups\"",
            Duration::from_secs(40),
            Some(&op),
            |c| {
                ["Reconciling", "Ready"].iter().any(|t| {
                    condition(c, t).is_some_and(|r| {
                        r.message.starts_with("Syncing: ")
                            && r.message.contains("walking group members: ")
                            && r.message.contains(" groups")
                    })
                })
            },
        )
        .await;
    assert_eq!(phase_of(&progressing), Some(Phase::Syncing));
    // Give the writer a moment to create its work files, then kill it hard.
    wait_work_files(&fx).await;
    op.sigkill().await;
    let left = work_files(fx.data.path());
    common::print_uncaptured(&format!("work files after SIGKILL mid-fetch: {left:?}"));

    no_latency(&fx.fake);
    let _restarted = restart_connects_clean(&fx, SYNC_DEADLINE).await;
    drop(op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_finishing_the_snapshot_then_restart_connects() {
    let Some(fx) = fixture("ctl-killfin", FakeConfig::preset(Preset::Medium)).await else {
        return;
    };
    let mut op = fx.start_operator().await;
    fx.put_valid_secret(SECRET).await;
    fx.create_connector("acme", fx.spec(SECRET)).await;

    // The engine logs the stage at once; the status message follows at most every 10 s.
    let start = Instant::now();
    let mut caught_by = None;
    while start.elapsed() < Duration::from_secs(300) {
        if op
            .log_lines()
            .iter()
            .any(|l| message(l).contains("finishing the snapshot"))
        {
            caught_by = Some("log");
            break;
        }
        if let Some(c) = fx.get_opt("acme").await {
            let msg = condition(&c, "Reconciling")
                .or(condition(&c, "Ready"))
                .map(|r| r.message.clone())
                .unwrap_or_default();
            if msg.contains("finishing the snapshot") {
                caught_by = Some("status message");
                break;
            }
            assert!(
                !is_connected(&c),
                "the medium sync ended before its finishing stage was seen; poll faster"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let caught_by = caught_by.unwrap_or_else(|| {
        panic!(
            "the finishing stage never showed within 300s; log tail:\n{}",
            op.log_tail(30)
        )
    });
    op.sigkill().await;
    let left = work_files(fx.data.path());
    let finished = fx
        .get("acme")
        .await
        .status
        .and_then(|s| s.snapshot)
        .is_some();
    common::print_uncaptured(&format!(
        "finishing stage seen via {caught_by} after {:?}; work files at SIGKILL: {left:?}; snapshot already published: {finished}",
        start.elapsed()
    ));
    assert!(
        !finished,
        "the snapshot was published before the kill: the finishing stage was not caught"
    );
    assert!(
        !left.is_empty(),
        "no work files at the kill: the finishing stage was not caught mid-way"
    );

    let (_op2, c) = restart_connects_clean(&fx, Duration::from_secs(400)).await;
    let truth = fx.fake.truth();
    assert_eq!(
        c.status.and_then(|s| s.summary).map(|s| s.users),
        Some(truth.users.count as i64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_sync_exits_within_ten_seconds_without_work_files() {
    let Some((fx, mut op)) = slow_first_sync("ctl-term", None).await else {
        return;
    };
    wait_work_files(&fx).await;

    let asked = Instant::now();
    op.sigterm();
    let exit = op.wait_exit(Duration::from_secs(10)).await;
    let took = asked.elapsed();
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "still running 10s after SIGTERM; log tail:\n{}",
            op.log_tail(30)
        )
    });
    assert!(exit.success(), "exit status after SIGTERM: {exit}");
    let left = work_files(fx.data.path());
    assert!(
        left.is_empty(),
        "work files left after SIGTERM ({took:?}): {left:?}"
    );
    // The next operator picks the connector up; it is not stuck in Syncing.
    no_latency(&fx.fake);
    let _restarted = restart_connects_clean(&fx, SYNC_DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_connector_mid_sync_stops_it_and_removes_its_snapshots() {
    let Some((fx, op, c)) = connected_fixture("ctl-delete", slow_config(), "acme", SECRET).await
    else {
        return;
    };
    assert!(
        c.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == operator_support::FINALIZER)),
        "the finalizer is missing: {:?}",
        c.metadata.finalizers
    );
    let dir = fx.connector_dir("acme");
    assert!(dir.is_dir(), "no connector directory {}", dir.display());

    // A slow requested sync, deleted while it runs.
    fx.fake.set_latency(SLOW);
    fx.fake.reset_stats();
    let value = request_value("before-delete");
    fx.request_sync("acme", &value).await;
    fx.wait_syncing("acme", Some(&op)).await;
    fx.wait_requests(5, Some(&op)).await;
    let log_lines_before = op.log_lines().len();
    let deleted = Instant::now();
    fx.delete_connector("acme").await;
    fx.wait_gone("acme", Duration::from_secs(30), Some(&op))
        .await;
    assert!(
        !dir.exists(),
        "the connector's snapshots were not removed: {:?}",
        tree(&dir)
    );

    // Requests answered within one latency after the cancel may still be counted;
    // after 5 s nothing may arrive any more.
    let settle = Duration::from_secs(5).saturating_sub(deleted.elapsed());
    quiet_window(settle).await;
    let requests = fx.requests_within(Duration::from_secs(10)).await;
    assert_eq!(
        requests, 0,
        "the fake still received {requests} requests 5-15s after the delete"
    );

    // No error loop after the delete.
    let errors: Vec<_> = op.log_lines()[log_lines_before..]
        .iter()
        .filter(|l| matches!(level(l), "WARN" | "ERROR"))
        .map(|l| l.to_string())
        .collect();
    assert!(
        errors.is_empty(),
        "warnings/errors after the delete:\n{}",
        errors.join("\n")
    );
    assert!(
        op.log_lines().len() - log_lines_before < 200,
        "log flood after delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_mid_sync_restarts_the_sync() {
    let Some((fx, op)) = slow_first_sync("ctl-respec", sync_with_timeout("30m")).await else {
        return;
    };
    let running = fx.get("acme").await;
    let first_start = last_sync_start(&running).expect("lastSyncStartTime while Syncing");
    // Let a second pass so that a restarted sync shows a later start time.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let changed = fx
        .merge_patch("acme", json!({"spec": {"sync": {"timeout": "20m"}}}))
        .await;
    let new_generation = generation(&changed);
    assert!(new_generation > generation(&running));
    op.wait_log(
        "the sync restarted after the spec change",
        Duration::from_secs(30),
        |l| message(l).contains("restarting"),
    )
    .await;
    // The old sync stops, a new one runs; once it ends fast, Connected for the new
    // generation.
    let restarted = fx
        .wait_connector(
            "acme",
            "a new sync start time",
            Duration::from_secs(60),
            Some(&op),
            |c| last_sync_start(c).is_some_and(|t| t > first_start),
        )
        .await;
    assert!(
        phase_of(&restarted) == Some(Phase::Syncing) || is_connected(&restarted),
        "{}",
        status_json(&restarted)
    );
    no_latency(&fx.fake);
    let c = fx.wait_connected("acme", SYNC_DEADLINE, Some(&op)).await;
    assert_eq!(observed_generation(&c), Some(new_generation));
    let ready = condition(&c, "Ready").expect("Ready");
    assert_eq!(ready.observed_generation, Some(new_generation));
    let syncs_started = op
        .log_lines()
        .iter()
        .filter(|l| message(l) == "sync started")
        .count();
    assert!(
        syncs_started >= 2,
        "expected two syncs to start (the first and the restart), saw {syncs_started}"
    );
    assert!(sync_id(&c).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_cancels_the_sync_and_resume_syncs_again() {
    let Some((fx, op)) = slow_first_sync("ctl-suspend", None).await else {
        return;
    };

    let suspended = fx
        .merge_patch("acme", json!({"spec": {"suspend": true}}))
        .await;
    let suspended_generation = generation(&suspended);
    let c = fx
        .wait_connector(
            "acme",
            "the suspension acknowledged (observedGeneration, not Syncing)",
            Duration::from_secs(60),
            Some(&op),
            |c| {
                observed_generation(c) == Some(suspended_generation)
                    && phase_of(c) != Some(Phase::Syncing)
            },
        )
        .await;
    common::print_uncaptured(&format!("status while suspended: {}", status_json(&c)));
    // Let answers already in flight (2 s latency) land, then nothing may arrive.
    quiet_window(Duration::from_secs(4)).await;
    let requests = fx.requests_within(Duration::from_secs(15)).await;
    assert_eq!(
        requests, 0,
        "{requests} requests reached the fake while suspended"
    );
    assert!(
        work_files(fx.data.path()).is_empty(),
        "the cancelled sync left work files: {:?}",
        work_files(fx.data.path())
    );

    no_latency(&fx.fake);
    let resumed = fx
        .merge_patch("acme", json!({"spec": {"suspend": false}}))
        .await;
    let c = fx.wait_connected("acme", SYNC_DEADLINE, Some(&op)).await;
    assert_eq!(observed_generation(&c), Some(generation(&resumed)));
    assert!(
        fx.fake.stats().total_requests > 0,
        "Connected after resume without a new sync"
    );
}
