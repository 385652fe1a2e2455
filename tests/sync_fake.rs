//! The sync engine against the fake Confluence server: correctness against its ground
//! truth, resilience to faults and rate limits, clean failures, pagination edge cases.

mod sync_support;

use std::time::Duration;

use confluence_operator::c1z::Snapshot;
use confluence_operator::controller::outcome::failure_reason;
use confluence_operator::sync::{ProgressSender, Stage, SyncError, SyncOptions, run_sync};
use fake_confluence::{
    DataConfig, FakeConfig, FakeConfluence, FaultKind, FaultRule, Preset, RateLimitConfig,
};
use sync_support::{SnapshotIds, client, client_with, files_in};
use tokio_util::sync::CancellationToken;

fn options() -> SyncOptions {
    SyncOptions {
        timeout: Duration::from_secs(600),
        ..SyncOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_preset_matches_the_truth() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Medium))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("medium.c1z");
    let report = run_sync(&client(&fake), &options(), &out, &CancellationToken::new())
        .await
        .unwrap();

    let truth = fake.truth();
    SnapshotIds::read(&out).assert_eq(&SnapshotIds::from_truth(&truth));
    assert_eq!(report.counts.users, truth.users.count as u64);
    assert_eq!(
        report.counts.disabled_users,
        truth.users.disabled_count as u64
    );
    assert_eq!(report.counts.groups, truth.groups.count as u64);
    assert_eq!(report.counts.memberships, truth.memberships.count as u64);
    assert_eq!(report.counts.spaces, truth.spaces.count as u64);
    assert_eq!(
        report.counts.space_permissions,
        truth.space_permissions.count as u64
    );
    assert_eq!(report.file, out);
    assert_eq!(files_in(dir.path()), ["medium.c1z"], "no work files left");

    // Each group's members are walked once: no page of the member route is asked twice.
    let mut member_pages = std::collections::HashSet::new();
    for request in fake
        .requests()
        .iter()
        .filter(|r| r.route.ends_with("membersByGroupId"))
    {
        assert!(
            member_pages.insert((request.path.clone(), request.query.clone())),
            "asked twice: {request:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_spaces_and_spaces_can_be_left_out() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small))
        .await
        .unwrap();
    let truth = fake.truth();
    let dir = tempfile::tempdir().unwrap();

    let out = dir.path().join("no-personal.c1z");
    let opts = SyncOptions {
        skip_personal_spaces: true,
        ..options()
    };
    let report = run_sync(&client(&fake), &opts, &out, &CancellationToken::new())
        .await
        .unwrap();
    let ids = SnapshotIds::read(&out);
    assert_eq!(
        ids.spaces.len(),
        truth.spaces.count - truth.spaces.personal_count
    );
    assert!(
        truth
            .spaces
            .personal_ids
            .iter()
            .all(|id| !ids.spaces.contains(id))
    );
    assert!(
        truth.spaces.personal_count > 0,
        "the preset has personal spaces"
    );
    assert_eq!(
        report.counts.space_permissions,
        truth.space_permissions.count_excluding_personal as u64
    );

    let out = dir.path().join("no-spaces.c1z");
    let opts = SyncOptions {
        spaces: false,
        ..options()
    };
    fake.reset_stats();
    let report = run_sync(&client(&fake), &opts, &out, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        (report.counts.spaces, report.counts.space_permissions),
        (0, 0)
    );
    assert_eq!(fake.stats().route_total("GET", "/wiki/api/v2/spaces"), 0);
    let snapshot = Snapshot::open(&out).unwrap();
    assert_eq!(
        snapshot.resource_types.len(),
        5,
        "every resource type is always written"
    );
}

/// A tenant big enough for many pages, small enough for a debug build.
fn faulty_tenant() -> FakeConfig {
    FakeConfig::with_data(DataConfig {
        users: 600,
        groups: 60,
        spaces: 40,
        ..DataConfig::preset(Preset::Small)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_rate_limits_do_not_change_the_output() {
    let fake = FakeConfluence::start(faulty_tenant()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.c1z");
    run_sync(
        &client(&fake),
        &options(),
        &clean,
        &CancellationToken::new(),
    )
    .await
    .unwrap();

    fake.set_faults(vec![
        FaultRule {
            probability: 0.08,
            ..FaultRule::always(None, FaultKind::Transient)
        },
        FaultRule {
            probability: 0.02,
            ..FaultRule::always(
                None,
                FaultKind::SlowBody {
                    chunk_delay_ms: 5,
                    chunk_bytes: 512,
                },
            )
        },
    ]);
    fake.set_rate_limit(Some(RateLimitConfig {
        capacity: 20,
        refill_per_sec: 40.0,
        ..RateLimitConfig::default()
    }));
    fake.reset_stats();
    let faulty = dir.path().join("faulty.c1z");
    let report = run_sync(
        &client(&fake),
        &options(),
        &faulty,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let stats = fake.stats();
    assert!(stats.faults_injected > 0, "faults were injected: {stats:?}");
    assert!(report.retries > 0, "the client retried");

    assert_same_content(
        &Snapshot::open(&clean).unwrap(),
        &Snapshot::open(&faulty).unwrap(),
    );
    SnapshotIds::read(&faulty).assert_eq(&SnapshotIds::from_truth(&fake.truth()));
}

/// Same rows with the same protobuf bytes, whatever the ids and timestamps.
fn assert_same_content(a: &Snapshot, b: &Snapshot) {
    use prost::Message;
    let key = |rows: Vec<(String, Vec<u8>)>| {
        rows.into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let resources = |s: &Snapshot| {
        key(s
            .resources
            .iter()
            .map(|r| (r.external_id.clone(), r.data.encode_to_vec()))
            .collect())
    };
    let entitlements = |s: &Snapshot| {
        key(s
            .entitlements
            .iter()
            .map(|r| (r.external_id.clone(), r.data.encode_to_vec()))
            .collect())
    };
    let grants = |s: &Snapshot| {
        key(s
            .grants
            .iter()
            .map(|r| {
                (
                    r.external_id.clone(),
                    [
                        r.data.encode_to_vec(),
                        r.expansion.clone().unwrap_or_default(),
                    ]
                    .concat(),
                )
            })
            .collect())
    };
    assert!(resources(a) == resources(b), "resources differ");
    assert!(entitlements(a) == entitlements(b), "entitlements differ");
    assert!(grants(a) == grants(b), "grants differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_fails_cleanly_and_keeps_the_old_snapshot() {
    let fake = FakeConfluence::start(faulty_tenant()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.c1z");
    run_sync(&client(&fake), &options(), &out, &CancellationToken::new())
        .await
        .unwrap();
    let before = std::fs::read(&out).unwrap();

    fake.set_faults(vec![FaultRule::always(
        Some("/wiki/api/v2/spaces"),
        FaultKind::MalformedJson,
    )]);
    let err = run_sync(&client(&fake), &options(), &out, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.class(), "malformed_response", "{err}");
    assert_eq!(failure_reason(&err), "SyncFailed");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        before,
        "the previous snapshot is untouched"
    );
    assert_eq!(files_in(dir.path()), ["snap.c1z"], "no partial files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_server_errors_fail_as_site_unreachable_without_files() {
    let fake = FakeConfluence::start(faulty_tenant()).await.unwrap();
    fake.set_faults(vec![FaultRule::always(
        Some("/wiki/rest/api/group/{groupId}/membersByGroupId"),
        FaultKind::Status {
            status: 500,
            retry_after_secs: None,
        },
    )]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.c1z");
    let client = client_with(&fake, "admin@example.com", "test-token", |c| {
        c.retry.max_attempts = 3;
        c.retry.max_elapsed = Duration::from_secs(5);
    });
    let err = run_sync(&client, &options(), &out, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(err.class(), "transient", "{err}");
    assert_eq!(failure_reason(&err), "SiteUnreachable");
    assert!(
        files_in(dir.path()).is_empty(),
        "no partial files: {:?}",
        files_in(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_before_any_file_is_created() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.c1z");
    let client = client_with(&fake, "admin@example.com", "wrong-token", |_| {});
    let err = run_sync(&client, &options(), &out, &CancellationToken::new())
        .await
        .unwrap_err();
    assert_eq!(failure_reason(&err), "AuthenticationFailed", "{err}");
    assert!(!err.to_string().contains("wrong-token"));
    assert!(files_in(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_stops_promptly_and_leaves_no_files() {
    let mut config = faulty_tenant();
    config.latency.fixed_ms = 50;
    let fake = FakeConfluence::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.c1z");
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let err = run_sync(&client(&fake), &options(), &out, &cancel)
        .await
        .unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    // Generous: the point is "not after the whole sync", which takes far longer here.
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_tenant_gives_a_valid_empty_snapshot() {
    let fake = FakeConfluence::start(FakeConfig::with_data(DataConfig::empty()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("empty.c1z");
    let report = run_sync(&client(&fake), &options(), &out, &CancellationToken::new())
        .await
        .unwrap();
    // The sync account itself is the only user the fake always has.
    let truth = fake.truth();
    assert_eq!(report.counts.groups, 0);
    assert_eq!(report.counts.spaces, 0);
    assert_eq!(report.counts.users, truth.users.count as u64);
    let snapshot = Snapshot::open(&out).unwrap();
    assert_eq!(snapshot.resource_types.len(), 5);
    assert_eq!(snapshot.sync_runs.len(), 1);
    assert!(snapshot.sync_runs[0].ended_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_last_pages_empty_and_big_groups_and_short_pages() {
    // 400 groups: two exactly full group pages; 250 spaces: one exactly full v2 page; the
    // edge groups have 0, exactly 400 and 450 members.
    let data = DataConfig {
        users: 1_000,
        groups: 400,
        spaces: 250,
        edge_case_groups: true,
        ..DataConfig::preset(Preset::Small)
    };
    let fake = FakeConfluence::start(FakeConfig::with_data(data))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("edges.c1z");
    run_sync(&client(&fake), &options(), &out, &CancellationToken::new())
        .await
        .unwrap();
    let truth = fake.truth();
    SnapshotIds::read(&out).assert_eq(&SnapshotIds::from_truth(&truth));

    // A short page before the end (a silent cap on the group list) is not the end.
    fake.update_quirks(|q| q.group_page_cap = 30);
    let out = dir.path().join("capped.c1z");
    run_sync(&client(&fake), &options(), &out, &CancellationToken::new())
        .await
        .unwrap();
    SnapshotIds::read(&out).assert_eq(&SnapshotIds::from_truth(&truth));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_space_gone_since_listing_is_skipped_not_a_failure() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small))
        .await
        .unwrap();
    // The first permissions walk meets a 404, as for a space deleted after listing.
    fake.set_faults(vec![FaultRule::on_calls(
        "/wiki/api/v2/spaces/{id}/permissions",
        &[1],
        FaultKind::Status {
            status: 404,
            retry_after_secs: None,
        },
    )]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.c1z");
    let report = run_sync(&client(&fake), &options(), &out, &CancellationToken::new())
        .await
        .expect("one missing space does not fail the sync");
    let truth = fake.truth();
    assert_eq!(report.counts.spaces, truth.spaces.count as u64);
    assert!(
        report.counts.space_permissions < truth.space_permissions.count as u64,
        "the skipped space's permissions are missing, the others are there"
    );
    assert!(report.counts.space_permissions > 0);
}

/// Runs a medium sync, publishing progress, and calls `on_finishing` once the engine
/// says it is finishing the snapshot.
async fn medium_sync_until_finishing(
    dir: &std::path::Path,
    cancel: CancellationToken,
) -> (
    tokio::task::JoinHandle<Result<confluence_operator::sync::SyncReport, SyncError>>,
    fake_confluence::RunningFake,
) {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Medium))
        .await
        .unwrap();
    let (progress, mut seen) = ProgressSender::channel();
    let options = SyncOptions {
        progress: Some(progress),
        ..options()
    };
    let client = client(&fake);
    let out = dir.join("snap.c1z");
    let sync = tokio::spawn(async move { run_sync(&client, &options, &out, &cancel).await });
    tokio::time::timeout(Duration::from_secs(300), async {
        while seen.borrow_and_update().stage != Stage::FinishingSnapshot {
            seen.changed()
                .await
                .expect("the engine keeps its sender until it ends");
        }
    })
    .await
    .expect("the sync reaches the finishing phase");
    (sync, fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_the_snapshot_is_finished_stops_promptly_without_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("snap.c1z"), b"previous").unwrap();
    let cancel = CancellationToken::new();
    let (sync, _fake) = medium_sync_until_finishing(dir.path(), cancel.clone()).await;
    let cancelled_at = std::time::Instant::now();
    cancel.cancel();
    let err = sync.await.unwrap().unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        cancelled_at.elapsed()
    );
    assert_eq!(files_in(dir.path()), ["snap.c1z"], "no work files left");
    assert_eq!(
        std::fs::read(dir.path().join("snap.c1z")).unwrap(),
        b"previous"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_sync_while_finishing_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sync, _fake) = medium_sync_until_finishing(dir.path(), CancellationToken::new()).await;
    sync.abort();
    let _ = sync.await;
    // The writer thread notices on its own and removes its work directory.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !files_in(dir.path()).is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_names_the_stage_and_counts_the_walks() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small))
        .await
        .unwrap();
    let (progress, seen) = ProgressSender::channel();
    let options = SyncOptions {
        progress: Some(progress),
        ..options()
    };
    let dir = tempfile::tempdir().unwrap();
    let report = run_sync(
        &client(&fake),
        &options,
        &dir.path().join("snap.c1z"),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let last = seen.borrow().clone();
    assert_eq!(last.stage, Stage::FinishingSnapshot);
    assert_eq!(last.groups_total, Some(report.counts.groups));
    assert_eq!(last.groups_walked, report.counts.groups);
    assert_eq!(last.spaces_total, Some(report.counts.spaces));
    assert_eq!(last.spaces_walked, report.counts.spaces);
}
