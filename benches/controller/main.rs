//! Controller benchmark: prints figures, asserts nothing.
//!
//! One operator process (the release binary, as deployed) against the local control plane
//! and one fake Confluence (in this process, small preset, no latency) with two
//! credentials per connector:
//!
//! 1. N connectors (default 500), each with its own Secret, all created before the
//!    operator starts: time from the operator's start until every one is `Connected`.
//! 2. API-server requests the operator made during those syncs, per connector and sync,
//!    from the API server's own `apiserver_request_total` diffed around the phase
//!    (so no operator cooperation is needed), with status writes on their own.
//! 3. Secret rotations (default 50, one every 250 ms): each Secret is switched to its
//!    connector's second credential; time from the write until the connector is
//!    `Connected` with the new credentials (fingerprint changed, `Ready=True`,
//!    `lastSyncTime` not before the rotation).
//! 4. The operator's peak RSS (`VmHWM`), read just before it is stopped.
//!
//! Run with `make bench-controller` (release build, local control plane). Settings
//! (environment): `BENCH_CONNECTORS` (500), `BENCH_CONCURRENCY` (4, the operator's
//! `--concurrency`), `BENCH_ROTATIONS` (50), `BENCH_ROTATION_INTERVAL_MS` (250; 0 rotates
//! all at once), `BENCH_TIMEOUT_SECS` (900, the whole run), `OPERATOR_BIN` (the
//! operator's binary). The control plane comes from `CONTROL_PLANE_KUBECONFIG` only, as
//! for the integration tests, so a real cluster is never touched.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confluence_operator::api::{
    ConfluenceConnector, ConfluenceConnectorSpec, CredentialsSpec, Phase, SecretRef, SyncSpec,
    all_crds,
};
use fake_confluence::{Credential, FakeConfig, FakeConfluence, Preset, RunningFake};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};
use serde_json::json;

const FIELD_MANAGER: &str = "confluence-operator-bench";
const GROUP: &str = "confluence-operator.io";
/// How often waits look at what the watch has seen.
const POLL: Duration = Duration::from_millis(50);
/// A rotation not answered within this time is reported as missing, not waited for.
const ROTATION_WAIT: Duration = Duration::from_secs(120);

struct Settings {
    connectors: usize,
    concurrency: u16,
    rotations: usize,
    rotation_interval: Duration,
    timeout: Duration,
    operator_bin: PathBuf,
    out_dir: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type BenchResult<T> = Result<T, String>;

fn err<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{context}: {e}")
}

// ------------------------------------------------------------------ what the watch saw

/// A rotation of one connector's Secret and when its connector answered it.
struct Rotation {
    at: Instant,
    /// Wall-clock time of the write, for `lastSyncTime` (whole seconds) comparisons.
    wall: Timestamp,
    old_fingerprint: Option<String>,
    done_at: Option<Instant>,
}

#[derive(Default)]
struct Seen {
    connected_at: Option<Instant>,
    fingerprint: Option<String>,
    sync_ids: HashSet<String>,
    last_sync_time: Option<Timestamp>,
    rotation: Option<Rotation>,
}

#[derive(Default)]
struct Observations {
    by_name: HashMap<String, Seen>,
    /// Successful syncs: distinct `status.snapshot.syncId` values.
    ok_syncs: u64,
    /// Finished syncs that did not leave the connector Connected.
    failed_syncs: u64,
}

impl Observations {
    fn record(&mut self, obj: &ConfluenceConnector, now: Instant) {
        let Some(status) = obj.status.as_ref() else {
            return;
        };
        let seen = self.by_name.entry(obj.name_any()).or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let connected = ready && status.phase == Some(Phase::Connected);
        if let Some(snapshot) = &status.snapshot
            && seen.sync_ids.insert(snapshot.sync_id.clone())
        {
            self.ok_syncs += 1;
        }
        let last_sync_time = status.last_sync_time.as_ref().map(|t| t.0);
        if last_sync_time != seen.last_sync_time {
            seen.last_sync_time = last_sync_time;
            if last_sync_time.is_some() && !connected && status.phase != Some(Phase::Syncing) {
                self.failed_syncs += 1;
            }
        }
        seen.fingerprint.clone_from(&status.credentials_fingerprint);
        if connected && seen.connected_at.is_none() {
            seen.connected_at = Some(now);
        }
        if let Some(rotation) = seen.rotation.as_mut()
            && rotation.done_at.is_none()
            && connected
            && status.credentials_fingerprint.is_some()
            && status.credentials_fingerprint != rotation.old_fingerprint
            && last_sync_time.is_some_and(|t| t.as_second() >= rotation.wall.as_second())
        {
            rotation.done_at = Some(now);
        }
    }
}

type Shared = Arc<Mutex<Observations>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Observations> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Watches the namespace's connectors for the whole run: one LIST and one WATCH,
/// instead of polling 500 objects.
fn spawn_watch(api: Api<ConfluenceConnector>, shared: Shared) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            if let Ok(obj) = item {
                lock(&shared).record(&obj, Instant::now());
            }
        }
    })
}

// ------------------------------------------------------------------------ the operator

/// The operator child process; stopped (SIGTERM, then SIGKILL) when dropped, so that an
/// error or the overall timeout never leaves it running.
struct Operator {
    child: Child,
    started: Instant,
    log: PathBuf,
}

impl Operator {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the operator exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tail(&self.log, 20)
            )),
            _ => None,
        }
    }

    /// Peak resident set size in MiB (`VmHWM` of /proc/PID/status).
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    }

    /// SIGTERM (the operator's normal stop) and up to 15 s, then SIGKILL.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // No signal crate among the dependencies: kill(1) sends the SIGTERM.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("the operator did not stop within 15 s; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn start_operator(
    s: &Settings,
    kubeconfig: &Path,
    namespace: &str,
    data_dir: &Path,
) -> BenchResult<Operator> {
    std::fs::create_dir_all(&s.out_dir).map_err(err("cannot create the output directory"))?;
    let log = s.out_dir.join("operator.log");
    let file = std::fs::File::create(&log).map_err(err("cannot create the operator log"))?;
    let stderr = file.try_clone().map_err(err("operator log"))?;
    let child = Command::new(&s.operator_bin)
        .args(["run", "--namespace", namespace])
        .args(["--concurrency", &s.concurrency.to_string()])
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--http-addr", "127.0.0.1:0", "--log-format", "json"])
        .args(["--allowed-site-suffix", "127.0.0.1", "--allow-insecure-http"])
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(stderr)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it with `cargo build --release --bin confluence-operator`)",
                s.operator_bin.display()
            )
        })?;
    Ok(Operator {
        child,
        started: Instant::now(),
        log,
    })
}

/// The operator's HTTP address from its "serving /metrics ..." log line (field `addr`).
async fn operator_addr(operator: &mut Operator) -> BenchResult<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(why) = operator.exited() {
            return Err(why);
        }
        if let Ok(file) = std::fs::File::open(&operator.log) {
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if !line.contains("serving /metrics") {
                    continue;
                }
                if let Some(addr) = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v["fields"]["addr"].as_str().map(str::to_owned))
                {
                    return Ok(addr);
                }
            }
        }
        if Instant::now() > deadline {
            return Err("the operator did not log its HTTP address within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --------------------------------------------------------------- API server metrics

/// (verb, group, resource, subresource) of `apiserver_request_total`.
type RequestKey = (String, String, String, String);
/// `apiserver_request_total` summed over code, scope, version and component.
type RequestCounts = BTreeMap<RequestKey, f64>;

async fn apiserver_requests(client: &Client) -> BenchResult<RequestCounts> {
    // kube's request builder makes the plain GET /metrics (no `http` crate needed here).
    let request = kube::core::Request::new("")
        .get("metrics", &Default::default())
        .map_err(err("building GET /metrics"))?;
    let text = client
        .request_text(request)
        .await
        .map_err(err("GET /metrics on the API server"))?;
    let mut counts = RequestCounts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels = parse_labels(labels);
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        *counts
            .entry((
                get("verb"),
                get("group"),
                get("resource"),
                get("subresource"),
            ))
            .or_default() += value;
    }
    if counts.is_empty() {
        return Err("the API server's /metrics has no apiserver_request_total".into());
    }
    Ok(counts)
}

/// `a="x",b="y"` (values without escaped quotes, as in these labels).
fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some((value, after)) = after.split_once('"') else {
            break;
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value.to_owned());
        rest = after;
    }
    labels
}

fn diff(before: &RequestCounts, after: &RequestCounts) -> RequestCounts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// The operator's requests in one phase, per finished sync.
struct ApiFigures {
    /// Requests other than LIST/WATCH (those are per process, not per sync).
    per_sync: f64,
    /// Of those, to the confluence-operator.io group.
    per_sync_group: f64,
    status_writes_per_sync: f64,
}

/// Prints the phase's requests (connectors, their status, Secrets, Events) and returns
/// the per-sync figures. `own` are requests the benchmark itself made in the phase.
fn report_requests(
    title: &str,
    counts: &RequestCounts,
    own: &RequestCounts,
    syncs: u64,
) -> ApiFigures {
    let syncs_f = syncs.max(1) as f64;
    println!("API server requests by the operator, {title} ({syncs} syncs):");
    println!(
        "  {:<7} {:<36} {:>8} {:>9}",
        "verb", "resource", "count", "per sync"
    );
    let mut rows: Vec<(&RequestKey, f64)> = counts
        .iter()
        .map(|(k, v)| (k, v - own.get(k).copied().unwrap_or(0.0)))
        .filter(|((_, group, resource, _), v)| {
            // The API server's own loopback traffic (leases, endpoints) is not ours.
            *v > 0.0 && (group == GROUP || resource == "secrets" || resource == "events")
        })
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (mut total, mut group_total, mut status_writes) = (0.0, 0.0, 0.0);
    for ((verb, group, resource, subresource), n) in rows {
        let name = if subresource.is_empty() {
            resource.clone()
        } else {
            format!("{resource}/{subresource}")
        };
        let per_process = verb == "LIST" || verb == "WATCH";
        println!(
            "  {verb:<7} {name:<36} {n:>8.0} {:>9}",
            if per_process {
                "(startup)".to_string()
            } else {
                format!("{:.2}", n / syncs_f)
            }
        );
        if per_process {
            continue;
        }
        total += n;
        if group == GROUP {
            group_total += n;
            if subresource == "status" && matches!(verb.as_str(), "PATCH" | "PUT" | "APPLY") {
                status_writes += n;
            }
        }
    }
    ApiFigures {
        per_sync: total / syncs_f,
        per_sync_group: group_total / syncs_f,
        status_writes_per_sync: status_writes / syncs_f,
    }
}

// ----------------------------------------------------------------------- set-up

fn credential(i: usize, which: char) -> Credential {
    Credential::new(
        &format!("bench-{i}-{which}@example.com"),
        &format!("token-{i}-{which}"),
        true,
    )
}

fn secret_name(i: usize) -> String {
    format!("cred-{i:04}")
}

fn connector_name(i: usize) -> String {
    format!("c-{i:04}")
}

async fn kube_client() -> BenchResult<(Client, PathBuf)> {
    let path = std::env::var_os("CONTROL_PLANE_KUBECONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .ok_or("CONTROL_PLANE_KUBECONFIG is not set: run `make bench-controller` (tests/control-plane/run.sh -- cargo bench --bench controller)")?;
    let kubeconfig = Kubeconfig::read_from(&path).map_err(err("reading the kubeconfig"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(err("loading the kubeconfig"))?;
    let client = Client::try_from(config).map_err(err("kube client"))?;
    client
        .apiserver_version()
        .await
        .map_err(err("the API server does not answer"))?;
    Ok((client, path))
}

async fn apply_crds(client: &Client) -> BenchResult<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in all_crds() {
        let name = crd.name_any();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(err("applying the CRD"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let established = api
                .get(&name)
                .await
                .ok()
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                });
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not Established within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

async fn create_objects(client: &Client, namespace: &str, site: &str, n: usize) -> BenchResult<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .map_err(err("creating the namespace"))?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let connectors: Api<ConfluenceConnector> = Api::namespaced(client.clone(), namespace);
    let results: Vec<BenchResult<()>> = futures::stream::iter(0..n)
        .map(|i| {
            let (secrets, connectors) = (secrets.clone(), connectors.clone());
            async move {
                let cred = credential(i, 'a');
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(secret_name(i)),
                        ..ObjectMeta::default()
                    },
                    string_data: Some(BTreeMap::from([
                        ("username".to_owned(), cred.email),
                        ("apiToken".to_owned(), cred.token),
                    ])),
                    ..Secret::default()
                };
                secrets
                    .create(&PostParams::default(), &secret)
                    .await
                    .map_err(err("creating a Secret"))?;
                let mut connector = ConfluenceConnector::new(
                    &connector_name(i),
                    ConfluenceConnectorSpec {
                        site: site.to_owned(),
                        credentials: CredentialsSpec {
                            secret_ref: SecretRef {
                                name: secret_name(i),
                                username_key: None,
                                api_token_key: None,
                            },
                        },
                        sync: Some(SyncSpec {
                            interval: Some("1h".into()),
                            ..SyncSpec::default()
                        }),
                        suspend: None,
                    },
                );
                connector.metadata.namespace = Some(namespace.to_owned());
                connectors
                    .create(&PostParams::default(), &connector)
                    .await
                    .map_err(err("creating a connector"))?;
                Ok(())
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Deletes the connectors while the operator still runs (its finalizer removes their
/// snapshots), then the Secrets and the namespace. Returns how long the connectors took.
async fn cleanup(client: &Client, namespace: &str, operator_running: bool) -> Duration {
    let started = Instant::now();
    let connectors: Api<ConfluenceConnector> = Api::namespaced(client.clone(), namespace);
    let _ = connectors
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await;
    let deadline = Instant::now()
        + if operator_running {
            Duration::from_secs(120)
        } else {
            Duration::ZERO
        };
    loop {
        let left = connectors
            .list_metadata(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        if Instant::now() >= deadline {
            // Nobody left to handle the finalizer: drop it so nothing stays behind.
            if let Ok(list) = connectors.list_metadata(&ListParams::default()).await {
                for c in list.items {
                    let _ = connectors
                        .patch(
                            &c.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let _ = secrets
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await;
    // No namespace controller on the local control plane: finalize the namespace by hand
    // so it does not stay Terminating.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces
        .delete(namespace, &DeleteParams::background())
        .await;
    if let Ok(mut ns) = namespaces.get(namespace).await {
        if let Some(spec) = ns.spec.as_mut() {
            spec.finalizers = Some(Vec::new());
        }
        let _ = namespaces
            .replace_subresource("finalize", namespace, &PostParams::default(), &ns)
            .await;
    }
    took
}

// ---------------------------------------------------------------------- the phases

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

struct Figures {
    all_connected: Duration,
    first_connected: Duration,
    connected_p50: f64,
    initial: ApiFigures,
    initial_syncs: u64,
    failed_syncs: u64,
    rotations_done: usize,
    rotation_p50: f64,
    rotation_p99: f64,
    rotation_max: f64,
    rotation: Option<ApiFigures>,
    rotation_syncs: u64,
    peak_rss_mib: Option<f64>,
    counters: OperatorCounters,
    cleanup: Duration,
}

async fn bench(
    s: &Settings,
    client: &Client,
    kubeconfig: &Path,
    namespace: &str,
    fake: &RunningFake,
) -> BenchResult<Figures> {
    let n = s.connectors;
    apply_crds(client).await?;
    let created = Instant::now();
    create_objects(client, namespace, fake.base_url(), n).await?;
    println!(
        "created {n} Secrets and {n} connectors in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    let shared: Shared = Arc::default();
    let watch = spawn_watch(Api::namespaced(client.clone(), namespace), shared.clone());
    let data_dir = tempfile::tempdir().map_err(err("data directory"))?;
    let before = apiserver_requests(client).await?;

    // Phase 1: every connector to Connected.
    let mut operator = start_operator(s, kubeconfig, namespace, data_dir.path())?;
    let addr = operator_addr(&mut operator).await?;
    loop {
        if let Some(why) = operator.exited() {
            return Err(why);
        }
        let connected = lock(&shared)
            .by_name
            .values()
            .filter(|seen| seen.connected_at.is_some())
            .count();
        if connected >= n {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let mut to_connected: Vec<f64> = lock(&shared)
        .by_name
        .values()
        .filter_map(|seen| seen.connected_at)
        .map(|t| t.duration_since(operator.started).as_secs_f64())
        .collect();
    to_connected.sort_by(f64::total_cmp);
    let all_connected = Duration::from_secs_f64(percentile(&to_connected, 1.0));
    let first_connected = Duration::from_secs_f64(percentile(&to_connected, 0.0));
    println!(
        "all {n} Connected {:.1} s after the operator started (first {:.1} s, p50 {:.1} s): {:.1} connectors/s",
        all_connected.as_secs_f64(),
        first_connected.as_secs_f64(),
        percentile(&to_connected, 0.5),
        n as f64 / all_connected.as_secs_f64()
    );
    // Status writes land just after Connected is seen; let the last ones settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_initial = apiserver_requests(client).await?;
    let (initial_syncs, failed_syncs) = {
        let o = lock(&shared);
        (o.ok_syncs + o.failed_syncs, o.failed_syncs)
    };
    println!();
    let initial = report_requests(
        "initial sync of every connector",
        &diff(&before, &after_initial),
        &RequestCounts::new(),
        initial_syncs,
    );

    // Phase 2: Secret rotations.
    let rotations = s.rotations.min(n);
    let mut rotation = None;
    let mut rotation_syncs = 0;
    let mut latencies: Vec<f64> = Vec::new();
    if rotations > 0 {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let syncs_before = {
            let o = lock(&shared);
            o.ok_syncs + o.failed_syncs
        };
        for r in 0..rotations {
            let i = r * n / rotations;
            let cred = credential(i, 'b');
            {
                let mut o = lock(&shared);
                let seen = o.by_name.entry(connector_name(i)).or_default();
                seen.rotation = Some(Rotation {
                    at: Instant::now(),
                    wall: Timestamp::now(),
                    old_fingerprint: seen.fingerprint.clone(),
                    done_at: None,
                });
            }
            secrets
                .patch(
                    &secret_name(i),
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({"stringData": {"username": cred.email, "apiToken": cred.token}}),
                    ),
                )
                .await
                .map_err(err("rotating a Secret"))?;
            tokio::time::sleep(s.rotation_interval).await;
        }
        let deadline = Instant::now() + ROTATION_WAIT;
        loop {
            if let Some(why) = operator.exited() {
                return Err(why);
            }
            let pending = lock(&shared)
                .by_name
                .values()
                .filter(|seen| seen.rotation.as_ref().is_some_and(|r| r.done_at.is_none()))
                .count();
            if pending == 0 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after_rotation = apiserver_requests(client).await?;
        let o = lock(&shared);
        latencies = o
            .by_name
            .values()
            .filter_map(|seen| seen.rotation.as_ref())
            .filter_map(|r| r.done_at.map(|d| d.duration_since(r.at).as_secs_f64()))
            .collect();
        latencies.sort_by(f64::total_cmp);
        let syncs = o.ok_syncs + o.failed_syncs - syncs_before;
        rotation_syncs = syncs;
        drop(o);
        // The benchmark's own writes: one PATCH per rotated Secret.
        let own = RequestCounts::from([(
            (
                "PATCH".into(),
                String::new(),
                "secrets".into(),
                String::new(),
            ),
            rotations as f64,
        )]);
        println!();
        rotation = Some(report_requests(
            "Secret rotations",
            &diff(&after_initial, &after_rotation),
            &own,
            syncs,
        ));
        if latencies.len() < rotations {
            println!(
                "{} of {rotations} rotations did not reach Connected within {} s",
                rotations - latencies.len(),
                ROTATION_WAIT.as_secs()
            );
        }
    }

    let counters = operator_counters(&addr).await;
    let peak_rss_mib = operator.peak_rss_mib();
    let cleanup_took = cleanup(client, namespace, operator.exited().is_none()).await;
    operator.stop();
    watch.abort();
    Ok(Figures {
        all_connected,
        first_connected,
        connected_p50: percentile(&to_connected, 0.5),
        initial,
        initial_syncs,
        failed_syncs,
        rotations_done: latencies.len(),
        rotation_p50: percentile(&latencies, 0.5),
        rotation_p99: percentile(&latencies, 0.99),
        rotation_max: percentile(&latencies, 1.0),
        rotation,
        rotation_syncs,
        peak_rss_mib,
        counters,
        cleanup: cleanup_took,
    })
}

/// Counters from the operator's own /metrics (summed over labels): a cross-check of the
/// syncs the watch saw, and the Confluence requests per sync.
struct OperatorCounters {
    syncs: Option<f64>,
    confluence_requests: Option<f64>,
}

async fn operator_counters(addr: &str) -> OperatorCounters {
    let text = match reqwest::get(format!("http://{addr}/metrics")).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let sum = |metric: &str| -> Option<f64> {
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    OperatorCounters {
        syncs: sum("confluence_operator_syncs_total"),
        confluence_requests: sum("confluence_operator_api_requests_total"),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn print_table(s: &Settings, f: &Figures) {
    let n = s.connectors;
    let rotations = s.rotations.min(n);
    println!();
    println!(
        "== controller benchmark: {n} connectors, one operator (--concurrency {}), fake preset small, no latency",
        s.concurrency
    );
    let row = |name: &str, value: String, target: &str, ok: Option<bool>| {
        println!(
            "  {name:<46} {value:>22}  {target:<10} {}",
            ok.map(verdict).unwrap_or("")
        );
    };
    row("figure", "value".into(), "target", None);
    row(
        &format!("time until all {n} are Connected"),
        format!("{:.1} s", f.all_connected.as_secs_f64()),
        "",
        None,
    );
    row(
        "  first / median Connected",
        format!(
            "{:.1} / {:.1} s",
            f.first_connected.as_secs_f64(),
            f.connected_p50
        ),
        "",
        None,
    );
    row(
        "syncs seen (failed) / counted by the operator",
        format!(
            "{} ({}) / {}",
            f.initial_syncs + f.rotation_syncs,
            f.failed_syncs,
            f.counters
                .syncs
                .map_or("-".to_string(), |v| format!("{v:.0}"))
        ),
        "",
        None,
    );
    row(
        "API-server requests per sync (of them cfc)",
        format!(
            "{:.2} ({:.2})",
            f.initial.per_sync, f.initial.per_sync_group
        ),
        "",
        None,
    );
    row(
        "status writes per sync",
        format!("{:.2}", f.initial.status_writes_per_sync),
        "<= 3",
        Some(f.initial.status_writes_per_sync <= 3.0),
    );
    if let Some(r) = &f.rotation {
        row(
            "  after a rotation: requests / status writes",
            format!("{:.2} / {:.2}", r.per_sync, r.status_writes_per_sync),
            "<= 3",
            Some(r.status_writes_per_sync <= 3.0),
        );
        row(
            &format!(
                "rotation -> Connected p50 / p99 ({}/{rotations})",
                f.rotations_done
            ),
            format!("{:.2} / {:.2} s", f.rotation_p50, f.rotation_p99),
            "p99 < 5 s",
            Some(f.rotations_done == rotations && f.rotation_p99 < 5.0),
        );
        row(
            "  rotation -> Connected max",
            format!("{:.2} s", f.rotation_max),
            "",
            None,
        );
    }
    if let (Some(requests), Some(syncs)) = (f.counters.confluence_requests, f.counters.syncs) {
        row(
            "Confluence requests per sync",
            format!("{:.1}", requests / syncs.max(1.0)),
            "",
            None,
        );
    }
    match f.peak_rss_mib {
        Some(mib) => row(
            "operator peak RSS (VmHWM)",
            format!("{:.1} MB", mib * 1.048_576),
            "< 150 MB",
            Some(mib * 1.048_576 < 150.0),
        ),
        None => row(
            "operator peak RSS (VmHWM)",
            "unknown".into(),
            "< 150 MB",
            None,
        ),
    }
    row(
        &format!("deleting {n} connectors (finalizers)"),
        format!("{:.1} s", f.cleanup.as_secs_f64()),
        "",
        None,
    );
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let settings = Settings {
        connectors: env_or("BENCH_CONNECTORS", 500),
        concurrency: env_or("BENCH_CONCURRENCY", 4),
        rotations: env_or("BENCH_ROTATIONS", 50),
        rotation_interval: Duration::from_millis(env_or("BENCH_ROTATION_INTERVAL_MS", 250)),
        timeout: Duration::from_secs(env_or("BENCH_TIMEOUT_SECS", 900)),
        operator_bin: std::env::var_os("OPERATOR_BIN").map_or_else(
            || PathBuf::from(format!("{target}/release/confluence-operator")),
            PathBuf::from,
        ),
        out_dir: PathBuf::from(format!("{target}/bench-controller")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        let (client, kubeconfig) = match kube_client().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("benchmark failed: {e}");
                return 1;
            }
        };
        // Two credentials per connector: its Secret starts with the first and is rotated
        // to the second, so every rotation changes the credentials fingerprint.
        let mut config = FakeConfig::preset(Preset::Small);
        config.credentials = (0..settings.connectors)
            .flat_map(|i| [credential(i, 'a'), credential(i, 'b')])
            .collect();
        let fake = match FakeConfluence::start(config).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("benchmark failed: cannot start the fake Confluence: {e}");
                return 1;
            }
        };
        let namespace = format!("bench-controller-{:06x}", rand::random::<u32>() & 0xff_ffff);
        println!(
            "namespace {namespace}, fake Confluence at {}, operator log {}",
            fake.base_url(),
            settings.out_dir.join("operator.log").display()
        );
        let outcome = tokio::time::timeout(
            settings.timeout,
            bench(&settings, &client, &kubeconfig, &namespace, &fake),
        )
        .await;
        match outcome {
            Ok(Ok(figures)) => {
                print_table(&settings, &figures);
                0
            }
            Ok(Err(e)) => {
                eprintln!("benchmark failed: {e}");
                // The operator was stopped when its handle was dropped.
                let _ = tokio::time::timeout(
                    Duration::from_secs(60),
                    cleanup(&client, &namespace, false),
                )
                .await;
                1
            }
            Err(_) => {
                eprintln!(
                    "benchmark failed: not finished within {} s (BENCH_TIMEOUT_SECS); see {}",
                    settings.timeout.as_secs(),
                    settings.out_dir.join("operator.log").display()
                );
                let _ = tokio::time::timeout(
                    Duration::from_secs(60),
                    cleanup(&client, &namespace, false),
                )
                .await;
                1
            }
        }
    });
    std::process::exit(code);
}
