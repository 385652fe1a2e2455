//! The connector's main path, driven through the real `confluence-operator run` binary
//! against the local control plane and an in-process fake Confluence: the first sync,
//! missing and wrong credentials, the trigger annotation, `kubectl wait` with the
//! printer columns, and `/metrics`.

mod common;
mod operator_support;
mod sync_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use confluence_operator::api::{Phase, SyncSummary};
use confluence_operator::c1z::Snapshot;
use fake_confluence::{FakeConfig, Latency, Preset};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use serde_json::Value;

use operator_support::{
    Fixture, RAW_BODY_MARKERS, SYNC_DEADLINE, assert_condition, assert_no_raw_error_body,
    condition, connected_fixture, fixture, generation, is_connected, last_handled_request,
    last_sync_time, observed_generation, parse_openmetrics, phase_of, request_value, samples,
    status_json, sync_id,
};
use sync_support::SnapshotIds;

const SECRET: &str = "confluence-credentials";

/// Waits until the connector's Events include one with `reason`, and returns it.
async fn wait_event(fx: &Fixture, name: &str, reason: &str) -> k8s_openapi::api::events::v1::Event {
    common::wait_for(&format!("an Event {reason} about {name}"), || async {
        fx.events(name)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_shows_syncing_then_connected_with_the_truth() {
    let Some(fx) = fixture("ctl-first", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    // Some latency keeps the first sync visible for a few seconds.
    fx.fake.set_latency(Latency {
        fixed_ms: 150,
        jitter_ms: 0,
    });
    fx.put_valid_secret(SECRET).await;
    fx.create_connector("acme", fx.spec(SECRET)).await;
    // Watch before the operator starts, so that no status write is missed.
    let recorder = fx.record_states("acme");
    common::wait_for("the state recorder to see the connector", || async {
        (!recorder.states().is_empty()).then_some(())
    })
    .await;
    let op = fx.start_operator().await;

    let c = fx.wait_connected("acme", SYNC_DEADLINE, Some(&op)).await;
    let states = recorder.states();
    let first_connected = states
        .iter()
        .position(|s| s.phase == Some(Phase::Connected))
        .unwrap_or_else(|| panic!("the watch never saw Connected: {states:#?}"));
    let syncing = states[..first_connected]
        .iter()
        .find(|s| s.phase == Some(Phase::Syncing))
        .unwrap_or_else(|| panic!("no Syncing phase before Connected: {states:#?}"));
    assert_eq!(
        syncing.ready,
        Some(("Unknown".to_owned(), "Syncing".to_owned())),
        "during the first sync Ready must be Unknown/Syncing: {states:#?}"
    );
    assert!(
        syncing.reconciling,
        "during the first sync Reconciling must be True: {states:#?}"
    );
    // observedGeneration advances only at a truthful end state, not when a sync starts.
    assert!(
        states[..first_connected]
            .iter()
            .all(|s| s.observed_generation != s.generation),
        "observedGeneration reached the generation before the first sync ended: {states:#?}"
    );
    assert!(
        states
            .iter()
            .all(|s| s.ready.as_ref().is_none_or(|(status, _)| status != "False")),
        "Ready was False at some point of a good first sync: {states:#?}"
    );

    // Conditions and times.
    let status = c.status.clone().expect("status");
    let ready = condition(&c, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Connected")
    );
    assert_eq!(ready.observed_generation, Some(generation(&c)));
    let creds = condition(&c, "CredentialsValid").expect("CredentialsValid condition");
    assert_eq!(creds.status, "True", "{}", status_json(&c));
    assert_condition(&c, "Synced", "True", "SyncSucceeded");
    assert!(
        condition(&c, "Reconciling").is_none() && condition(&c, "Stalled").is_none(),
        "Reconciling/Stalled must be absent once Connected: {}",
        status_json(&c)
    );
    let started = status
        .last_sync_start_time
        .clone()
        .expect("lastSyncStartTime");
    let ended = status.last_sync_time.clone().expect("lastSyncTime");
    assert!(started.0 <= ended.0, "sync ended before it started");
    assert_eq!(
        status.last_successful_sync_time.as_ref(),
        Some(&ended),
        "lastSuccessfulSyncTime"
    );
    let next = status.next_sync_time.clone().expect("nextSyncTime");
    assert!(
        next.0 > ended.0,
        "nextSyncTime {next:?} is not after {ended:?}"
    );
    assert!(status.last_sync_duration.is_some(), "lastSyncDuration");
    let fingerprint = status
        .credentials_fingerprint
        .clone()
        .expect("credentialsFingerprint");
    assert!(
        !fingerprint.contains(&fx.fake.credential().token),
        "the fingerprint holds the token"
    );

    // Summary = truth.
    let truth = fx.fake.truth();
    let expected = SyncSummary {
        users: truth.users.count as i64,
        disabled_users: truth.users.disabled_count as i64,
        groups: truth.groups.count as i64,
        memberships: truth.memberships.count as i64,
        spaces: truth.spaces.count as i64,
        space_permissions: truth.space_permissions.count as i64,
    };
    assert_eq!(
        status.summary,
        Some(expected),
        "summary differs from the truth"
    );

    // The snapshot: where the status says, intact, and the same tenant.
    let snapshot = status.snapshot.clone().expect("status.snapshot");
    assert_eq!(
        snapshot.file,
        format!("{}/acme/{}.c1z", fx.ns(), snapshot.sync_id)
    );
    let path = fx.snapshot_path(&snapshot);
    let meta = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("snapshot {} missing: {e}", path.display()));
    assert_eq!(meta.len() as i64, snapshot.size_bytes, "sizeBytes");
    assert_eq!(
        operator_support::sha256_hex(&path),
        snapshot.sha256,
        "sha256"
    );
    let read = Snapshot::open(&path)
        .unwrap_or_else(|e| panic!("snapshot {} does not read back: {e}", path.display()));
    assert!(
        read.sync_runs.iter().any(|r| r.sync_id == snapshot.sync_id),
        "the file holds no sync run {}",
        snapshot.sync_id
    );
    SnapshotIds::read(&path).assert_eq(&SnapshotIds::from_truth(&truth));

    // The Event of the completed sync, with counts.
    let event = wait_event(&fx, "acme", "SyncSucceeded").await;
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(
        event.reporting_controller.as_deref(),
        Some("confluence-operator")
    );
    let note = event.note.clone().unwrap_or_default();
    assert!(
        note.contains(&truth.users.count.to_string()),
        "the SyncSucceeded note has no user count: {note:?}"
    );
    drop(op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_stalls_until_the_secret_is_created() {
    let Some(fx) = fixture("ctl-nosecret", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    let op = fx.start_operator().await;
    fx.create_connector("acme", fx.spec("late-secret")).await;

    let c = fx
        .wait_failed(
            "acme",
            Phase::NotConnected,
            "SecretNotFound",
            common::DEADLINE,
            Some(&op),
        )
        .await;
    assert_condition(&c, "Stalled", "True", "SecretNotFound");
    assert!(
        condition(&c, "Reconciling").is_none(),
        "Reconciling next to Stalled: {}",
        status_json(&c)
    );
    assert_eq!(
        observed_generation(&c),
        Some(generation(&c)),
        "a final failure acknowledges the generation"
    );
    let message = &condition(&c, "Ready").expect("Ready").message;
    assert!(
        message.contains("late-secret"),
        "the message should name the Secret: {message:?}"
    );
    let event = wait_event(&fx, "acme", "SecretNotFound").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        fx.fake.stats().total_requests,
        0,
        "no request may reach Confluence without credentials"
    );

    // The Secret appears: the operator notices without a restart.
    fx.put_valid_secret("late-secret").await;
    let c = fx.wait_connected("acme", SYNC_DEADLINE, Some(&op)).await;
    assert!(
        condition(&c, "Stalled").is_none(),
        "Stalled must go once Connected: {}",
        status_json(&c)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_fails_and_a_fixed_secret_connects_within_ten_seconds() {
    let Some(fx) = fixture("ctl-badtoken", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    let op = fx.start_operator().await;
    let email = fx.fake.credential().email.clone();
    fx.put_secret(SECRET, &email, "not-the-right-token").await;
    fx.create_connector("acme", fx.spec(SECRET)).await;

    let c = fx
        .wait_failed(
            "acme",
            Phase::NotConnected,
            "AuthenticationFailed",
            common::DEADLINE,
            Some(&op),
        )
        .await;
    assert_condition(&c, "CredentialsValid", "False", "AuthenticationFailed");
    assert_no_raw_error_body(&c);
    assert!(
        condition(&c, "Stalled").is_some_and(|s| s.status == "True"),
        "a rejected token only a user can fix: Stalled=True expected: {}",
        status_json(&c)
    );
    assert!(
        c.status
            .as_ref()
            .and_then(|s| s.snapshot.as_ref())
            .is_none()
    );
    let event = wait_event(&fx, "acme", "AuthenticationFailed").await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let note = event.note.clone().unwrap_or_default();
    assert!(
        RAW_BODY_MARKERS.iter().all(|m| !note.contains(m)),
        "the Event quotes Confluence's error body: {note:?}"
    );
    // Stalled: only a user change helps, so the operator must not keep presenting the
    // rejected token to Confluence (conventions: only a long safety requeue).
    let retries = fx.requests_within(Duration::from_secs(15)).await;
    assert_eq!(
        retries, 0,
        "{retries} requests with the rejected token within 15s of AuthenticationFailed"
    );

    // Rotating the Secret triggers a sync at once, not after the 1h interval.
    let rotated = Instant::now();
    fx.put_valid_secret(SECRET).await;
    fx.wait_connected("acme", Duration::from_secs(60), Some(&op))
        .await;
    let took = rotated.elapsed();
    assert!(
        took <= Duration::from_secs(10),
        "Connected only {took:?} after the Secret was fixed (want ≤ 10s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_annotation_starts_a_sync_and_is_echoed() {
    let Some((fx, op, first)) = connected_fixture(
        "ctl-trigger",
        FakeConfig::preset(Preset::Small),
        "acme",
        SECRET,
    )
    .await
    else {
        return;
    };
    let first_id = sync_id(&first).expect("a snapshot after the first sync");
    let first_time = last_sync_time(&first).expect("lastSyncTime");
    assert!(
        last_handled_request(&first).is_none(),
        "no request was made yet"
    );

    let recorder = fx.record_states("acme");
    let mut previous_id = first_id;
    let mut last = first;
    for round in 1..=3 {
        // Let the clock move on by a second so lastSyncTime can show the new sync.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        fx.fake.reset_stats();
        let value = request_value(&format!("round{round}"));
        fx.request_sync("acme", &value).await;
        let c = fx
            .wait_connector(
                "acme",
                &format!("lastHandledSyncRequest = {value}"),
                SYNC_DEADLINE,
                Some(&op),
                |c| last_handled_request(c) == Some(value.as_str()),
            )
            .await;
        assert!(
            is_connected(&c),
            "after the requested sync: {}",
            status_json(&c)
        );
        let id = sync_id(&c).expect("snapshot");
        assert_ne!(
            id, previous_id,
            "round {round}: no new snapshot (same syncId)"
        );
        let time = last_sync_time(&c).expect("lastSyncTime");
        assert!(
            time > first_time,
            "round {round}: lastSyncTime did not move ({time} vs {first_time})"
        );
        assert!(
            fx.fake
                .stats()
                .route_total("GET", "/wiki/rest/api/user/current")
                >= 1,
            "round {round}: the fake saw no sync"
        );
        previous_id = id;
        last = c;
    }
    // Four syncs, a retention of three: the snapshot in the status is among the three
    // kept.
    let kept: Vec<String> = std::fs::read_dir(fx.connector_dir("acme"))
        .expect("snapshot directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".c1z"))
        .collect();
    assert_eq!(kept.len(), 3, "kept {kept:?}");
    let current = last
        .status
        .as_ref()
        .and_then(|s| s.snapshot.as_ref())
        .map(|s| s.file.rsplit('/').next().unwrap_or_default().to_string())
        .expect("status.snapshot");
    assert!(kept.contains(&current), "{current} pruned; kept {kept:?}");
    // A requested sync of an unchanged generation is routine: Ready stays True.
    let states = recorder.states();
    assert!(
        states
            .iter()
            .all(|s| s.ready.as_ref().is_some_and(|(status, _)| status == "True")),
        "Ready left True during a requested sync: {states:#?}"
    );
}

/// `kubectl` on PATH, else `target/go-bin/kubectl`.
fn find_kubectl() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/go-bin/kubectl");
        local.is_file().then_some(local)
    })
}

/// Cuts one `kubectl get` table row into columns by the header's column starts.
fn table_columns(header: &str, row: &str, names: &[&str]) -> Vec<(String, String)> {
    let mut starts = Vec::new();
    let mut from = 0;
    for name in names {
        let at = header[from..]
            .find(name)
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("column {name} missing in header {header:?}"));
        starts.push(at);
        from = at + name.len();
    }
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let start = starts[i].min(row.len());
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(row.len())
                .min(row.len());
            ((*name).to_owned(), row[start..end].trim().to_owned())
        })
        .collect()
}

/// Evaluates the simple JSONPaths of printer columns (`.a.b`, `.a[?(@.k=="v")].c`).
fn eval_jsonpath(value: &Value, path: &str) -> Option<Value> {
    let mut current = vec![value.clone()];
    let mut rest = path.trim_start_matches('.');
    while !rest.is_empty() {
        if let Some(filter) = rest.strip_prefix("[?(@.") {
            let end = filter.find(")]")?;
            let (key, want) = filter[..end].split_once("==")?;
            let want = want.trim_matches(|c| c == '"' || c == '\'');
            current = current
                .iter()
                .filter_map(Value::as_array)
                .flatten()
                .filter(|item| item.get(key).and_then(Value::as_str) == Some(want))
                .cloned()
                .collect();
            rest = filter[end + 2..].trim_start_matches('.');
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let key = &rest[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = rest[end..].trim_start_matches('.');
        }
    }
    current.into_iter().next()
}

/// Asserts the printer columns `got`: each of `expected` has its value, and LAST SYNC,
/// AGE and MESSAGE are filled (neither empty nor `absent`, what the table shows for a
/// missing value). `shown` ends the failure messages (what was looked at).
fn assert_columns(
    got: &[(String, String)],
    expected: &[(&str, String)],
    absent: &str,
    shown: &str,
) {
    let value = |name: &str| got.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    for (name, want) in expected {
        assert_eq!(
            value(name).as_deref(),
            Some(want.as_str()),
            "column {name}{shown}"
        );
    }
    for name in ["LAST SYNC", "AGE", "MESSAGE"] {
        assert!(
            value(name)
                .as_ref()
                .is_some_and(|v| !v.is_empty() && v != absent),
            "column {name} is empty{shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_wait_succeeds_and_wide_columns_are_filled() {
    let Some(fx) = fixture("ctl-kubectl", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    fx.fake.set_latency(Latency {
        fixed_ms: 100,
        jitter_ms: 0,
    });
    let op = fx.start_operator().await;
    fx.put_valid_secret(SECRET).await;
    fx.create_connector("acme", fx.spec(SECRET)).await;
    let truth = fx.fake.truth();
    let expected: Vec<(&str, String)> = vec![
        ("NAME", "acme".to_owned()),
        ("SITE", fx.fake.base_url().to_owned()),
        ("STATUS", "Connected".to_owned()),
        ("READY", "True".to_owned()),
        ("USERS", truth.users.count.to_string()),
        ("GROUPS", truth.groups.count.to_string()),
    ];

    let Some(kubectl) = find_kubectl() else {
        // Emulation: no kubectl here. Wait as `kubectl wait --for=condition=Ready`
        // does, then evaluate the CRD's printer-column JSONPaths on the object.
        common::print_uncaptured(
            "kubectl not found: emulating `kubectl wait` and the printer columns through the API",
        );
        let c = fx
            .wait_connector("acme", "Ready=True", SYNC_DEADLINE, Some(&op), |c| {
                condition(c, "Ready").is_some_and(|r| {
                    r.status == "True" && r.observed_generation == c.metadata.generation
                })
            })
            .await;
        let crds: Api<CustomResourceDefinition> = Api::all(fx.env.client.clone());
        let crd = crds
            .get("confluenceconnectors.confluence-operator.io")
            .await
            .expect("the CRD");
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.name == "v1alpha1")
            .expect("v1alpha1");
        let columns = version
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let object = serde_json::to_value(&c).expect("connector as JSON");
        let mut got = vec![("NAME".to_owned(), "acme".to_owned())];
        for column in &columns {
            let value = eval_jsonpath(&object, &column.json_path)
                .map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                })
                .unwrap_or_default();
            got.push((column.name.to_uppercase(), value));
        }
        assert_columns(&got, &expected, "", &format!(": {got:?}"));
        return;
    };

    let kubectl_cmd = |args: &[&str]| {
        let mut command = tokio::process::Command::new(&kubectl);
        command
            .arg("--kubeconfig")
            .arg(&fx.env.kubeconfig)
            .args(["-n", fx.ns()])
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    };
    // Started while the first sync runs, so that it really waits.
    let wait = kubectl_cmd(&[
        "wait",
        "--for=condition=Ready",
        "cfc/acme",
        "--timeout=180s",
    ])
    .output()
    .await
    .expect("cannot run kubectl wait");
    assert!(
        wait.status.success(),
        "kubectl wait failed ({}): {}{}\noperator log tail:\n{}",
        wait.status,
        String::from_utf8_lossy(&wait.stdout),
        String::from_utf8_lossy(&wait.stderr),
        op.log_tail(30)
    );
    let c = fx.get("acme").await;
    assert!(
        is_connected(&c),
        "kubectl wait returned before Connected: {}",
        status_json(&c)
    );

    let get = kubectl_cmd(&["get", "cfc", "acme", "-o", "wide"])
        .output()
        .await
        .expect("cannot run kubectl get");
    let stdout = String::from_utf8_lossy(&get.stdout).into_owned();
    assert!(
        get.status.success(),
        "kubectl get failed: {stdout}{}",
        String::from_utf8_lossy(&get.stderr)
    );
    let mut lines = stdout.lines();
    let header = lines.next().expect("a header line");
    let row = lines.next().expect("a row for acme");
    let names = [
        "NAME",
        "SITE",
        "STATUS",
        "READY",
        "USERS",
        "GROUPS",
        "LAST SYNC",
        "AGE",
        "MESSAGE",
    ];
    let got = table_columns(header, row, &names);
    assert_columns(&got, &expected, "<none>", &format!(" in:\n{stdout}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_openmetrics_with_the_connector_series() {
    let Some(fx) = fixture("ctl-metrics", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    let op = fx.start_operator().await;
    for path in ["/healthz", "/readyz"] {
        common::wait_for(&format!("{path} to answer 200"), || {
            let op = &op;
            async move { (op.http_get(path).await.0 == 200).then_some(()) }
        })
        .await;
    }
    fx.create_connected("acme", SECRET, &op).await;

    let ns = fx.ns().to_owned();
    let (status, content_type, text) = op.http_get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "content type {content_type:?}"
    );
    let all = parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e}\n{text}"));

    let connector = [("namespace", ns.as_str()), ("name", "acme")];
    let syncs = samples(&all, "confluence_operator_syncs_total", &connector);
    let total: f64 = syncs.iter().map(|s| s.value).sum();
    assert!(
        total >= 1.0,
        "no confluence_operator_syncs_total for the connector:\n{text}"
    );
    assert!(
        syncs.iter().all(|s| s.labels.contains_key("result")),
        "syncs_total without a result label: {syncs:?}"
    );
    let ready_true = samples(
        &all,
        "confluence_operator_connector_status_condition",
        &[
            ("namespace", ns.as_str()),
            ("name", "acme"),
            ("condition", "Ready"),
            ("status", "True"),
        ],
    );
    assert_eq!(
        ready_true.iter().map(|s| s.value).collect::<Vec<_>>(),
        vec![1.0],
        "the Ready=True gauge of the connector should be 1:\n{text}"
    );
    let ready_other: Vec<_> = samples(
        &all,
        "confluence_operator_connector_status_condition",
        &[
            ("namespace", ns.as_str()),
            ("name", "acme"),
            ("condition", "Ready"),
        ],
    )
    .into_iter()
    .filter(|s| s.labels.get("status").map(String::as_str) != Some("True") && s.value != 0.0)
    .collect();
    assert!(
        ready_other.is_empty(),
        "other Ready statuses must be 0: {ready_other:?}"
    );
    let reconciles: f64 = samples(&all, "confluence_operator_reconciles_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(reconciles >= 1.0, "no reconciles counted:\n{text}");
    let api_requests: f64 = samples(&all, "confluence_operator_api_requests_total", &[])
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(api_requests >= 1.0, "no API requests counted:\n{text}");
    assert_eq!(
        samples(&all, "confluence_operator_leader", &[])
            .iter()
            .map(|s| s.value)
            .collect::<Vec<_>>(),
        vec![1.0],
        "without election the operator leads"
    );
    // Labels stay coarse: no URLs, account ids or group ids.
    let truth = fx.fake.truth();
    let port = fx.fake.addr().port().to_string();
    for sample in &all {
        for value in sample.labels.values() {
            assert!(
                !value.contains(&port) && !value.contains("http"),
                "label value looks like a URL: {sample:?}"
            );
            assert!(
                !truth.users.ids.contains(value) && !truth.groups.ids.contains(value),
                "label value is an identity: {sample:?}"
            );
        }
    }
    assert!(phase_of(&fx.get("acme").await) == Some(Phase::Connected));
}
