//! Harness of the controller integration tests: the real `confluence-operator run`
//! binary as a child process against the local control plane, an in-process fake
//! Confluence, and helpers to drive and observe `ConfluenceConnector`s.
//!
//! Every test owns its namespace (from `common::setup`), its fake, its data directory
//! and its operator process(es); an operator only watches its own namespace. The child
//! is killed (SIGKILL) when its [`Operator`] is dropped, so a failing test never leaks
//! processes. Operator logs (JSON lines on stderr) go to
//! `$CARGO_TARGET_TMPDIR/controller-logs/<namespace>-<label>.log` and are kept for
//! post-mortems; a timeout names that file and prints the log's tail.
//!
//! Use with `mod common; mod operator_support;` from a file in `tests/`.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confluence_operator::api::{
    ConfluenceConnector, ConfluenceConnectorSpec, CredentialsSpec, Phase, SecretRef, SnapshotRef,
    SyncSpec,
};
use fake_confluence::{FakeConfig, FakeConfluence, RunningFake};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::common::{self, TestEnv};

/// The trigger annotation.
pub const SYNC_REQUEST: &str = "confluence-operator.io/sync-requested-at";
/// The connectors' finalizer.
pub const FINALIZER: &str = "confluence-operator.io/cleanup";
/// The usual deadline for a sync of the small tenant to end.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(180);
/// Text of Confluence error bodies (the fake's) that must not reach a condition message
/// or an Event.
pub const RAW_BODY_MARKERS: [&str; 4] = ["java.lang.", "com.atlassian.", "Exception", "statusCode"];
/// `RUST_LOG` of the token-leak test: everything of ours at debug, noisy libraries not.
pub const DEBUG_LOG: &str = "debug,hyper=info,h2=info,rustls=info,tower=info,kube=info";

// ---------------------------------------------------------------------------------
// The fixture: namespace + fake + data directory.
// ---------------------------------------------------------------------------------

/// One test's world: a namespace on the control plane, a fake Confluence and an empty
/// data directory for the operator(s).
pub struct Fixture {
    pub env: TestEnv,
    pub fake: RunningFake,
    pub data: TempDir,
}

/// Sets up a [`Fixture`]; `None` when the control plane is absent outside CI (the test
/// then returns early and passes, as `common::setup` prints).
pub async fn fixture(prefix: &str, config: FakeConfig) -> Option<Fixture> {
    let env = common::setup(prefix).await?;
    let fake = FakeConfluence::start(config)
        .await
        .unwrap_or_else(|e| panic!("cannot start the fake Confluence: {e}"));
    let data = tempfile::Builder::new()
        .prefix("controller-data-")
        .tempdir()
        .expect("cannot create a data directory");
    Some(Fixture { env, fake, data })
}

/// A [`fixture`] with a running operator and connector `name` (Secret `secret`, valid)
/// connected by its first sync; `None` as for [`fixture`].
pub async fn connected_fixture(
    prefix: &str,
    config: FakeConfig,
    name: &str,
    secret: &str,
) -> Option<(Fixture, Operator, ConfluenceConnector)> {
    let fx = fixture(prefix, config).await?;
    let op = fx.start_operator().await;
    let c = fx.create_connected(name, secret, &op).await;
    Some((fx, op, c))
}

impl Fixture {
    pub fn ns(&self) -> &str {
        &self.env.namespace
    }

    /// Options for an operator watching this fixture's namespace with this data
    /// directory, allowed to reach the fake (`--allowed-site-suffix 127.0.0.1
    /// --allow-insecure-http`).
    pub fn operator_options(&self, label: &str) -> OperatorOptions {
        OperatorOptions {
            label: label.to_owned(),
            namespace: self.env.namespace.clone(),
            kubeconfig: self.env.kubeconfig.clone(),
            data_dir: self.data.path().to_owned(),
            allow_local_sites: true,
            concurrency: None,
            leader_election_namespace: None,
            identity: None,
            rust_log: "info".to_owned(),
        }
    }

    /// Starts an operator with [`Fixture::operator_options`].
    pub async fn start_operator(&self) -> Operator {
        Operator::start(self.operator_options("operator")).await
    }

    // -- Secrets --------------------------------------------------------------------

    /// Creates (or overwrites) Secret `name` with keys `username` and `apiToken`.
    pub async fn put_secret(&self, name: &str, username: &str, token: &str) {
        let api: Api<Secret> = self.env.api();
        let data = BTreeMap::from([
            ("username", ByteString(username.as_bytes().to_vec())),
            ("apiToken", ByteString(token.as_bytes().to_vec())),
        ]);
        api.patch(
            name,
            &PatchParams::apply(common::FIELD_MANAGER).force(),
            &Patch::Apply(&json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name},
                "data": data,
            })),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot apply Secret {name}: {e}"));
    }

    /// A Secret with the fake's own (valid) credential.
    pub async fn put_valid_secret(&self, name: &str) {
        let cred = self.fake.credential().clone();
        self.put_secret(name, &cred.email, &cred.token).await;
    }

    // -- Connectors -----------------------------------------------------------------

    pub fn connectors(&self) -> Api<ConfluenceConnector> {
        self.env.api()
    }

    /// A spec pointing at the fake with Secret `secret`.
    pub fn spec(&self, secret: &str) -> ConfluenceConnectorSpec {
        spec_for(self.fake.base_url(), secret)
    }

    /// Creates connector `name` with `spec`.
    pub async fn create_connector(
        &self,
        name: &str,
        spec: ConfluenceConnectorSpec,
    ) -> ConfluenceConnector {
        self.connectors()
            .create(
                &PostParams::default(),
                &ConfluenceConnector::new(name, spec),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create connector {name}: {e}"))
    }

    /// Puts a valid Secret `secret`, creates connector `name` with it and waits until the
    /// first sync has connected it (within [`SYNC_DEADLINE`]).
    pub async fn create_connected(
        &self,
        name: &str,
        secret: &str,
        operator: &Operator,
    ) -> ConfluenceConnector {
        self.put_valid_secret(secret).await;
        self.create_connector(name, self.spec(secret)).await;
        self.wait_connected(name, SYNC_DEADLINE, Some(operator))
            .await
    }

    pub async fn get(&self, name: &str) -> ConfluenceConnector {
        self.connectors()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("cannot read connector {name}: {e}"))
    }

    pub async fn get_opt(&self, name: &str) -> Option<ConfluenceConnector> {
        self.connectors()
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("cannot read connector {name}: {e}"))
    }

    /// JSON merge patch of the connector (spec or metadata).
    pub async fn merge_patch(&self, name: &str, patch: Value) -> ConfluenceConnector {
        self.connectors()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("cannot patch connector {name} with {patch}: {e}"))
    }

    /// Sets the trigger annotation to `value`.
    pub async fn request_sync(&self, name: &str, value: &str) -> ConfluenceConnector {
        self.merge_patch(
            name,
            json!({"metadata": {"annotations": {SYNC_REQUEST: value}}}),
        )
        .await
    }

    pub async fn delete_connector(&self, name: &str) {
        self.connectors()
            .delete(name, &DeleteParams::background())
            .await
            .unwrap_or_else(|e| panic!("cannot delete connector {name}: {e}"));
    }

    /// Polls connector `name` until `check` holds, for at most `deadline`. On timeout
    /// the panic shows the last status and the tail of `operator`'s log.
    pub async fn wait_connector(
        &self,
        name: &str,
        what: &str,
        deadline: Duration,
        operator: Option<&Operator>,
        mut check: impl FnMut(&ConfluenceConnector) -> bool,
    ) -> ConfluenceConnector {
        let start = Instant::now();
        let mut last = None;
        loop {
            match self.connectors().get_opt(name).await {
                Ok(Some(obj)) => {
                    if check(&obj) {
                        return obj;
                    }
                    last = Some(obj);
                }
                Ok(None) => last = None,
                Err(e) => eprintln!("reading connector {name}: {e}"),
            }
            if start.elapsed() >= deadline {
                let status = last
                    .as_ref()
                    .map(|o| serde_json::to_string_pretty(&o.status).unwrap_or_default())
                    .unwrap_or_else(|| "<connector absent>".into());
                let log = operator
                    .map(|op| format!("\n{}", op.log_excerpt()))
                    .unwrap_or_default();
                panic!(
                    "timed out after {deadline:?} waiting for connector {}/{name}: {what}\nlast status: {status}{log}",
                    self.ns()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits for `phase: Connected`, `Ready=True` for the current generation.
    pub async fn wait_connected(
        &self,
        name: &str,
        deadline: Duration,
        operator: Option<&Operator>,
    ) -> ConfluenceConnector {
        self.wait_connector(
            name,
            "phase Connected, Ready=True and observedGeneration = generation",
            deadline,
            operator,
            is_connected,
        )
        .await
    }

    /// Waits until the sync requested with trigger value `value` has run and left the
    /// connector Connected (`lastHandledSyncRequest` = `value`).
    pub async fn wait_request_handled(
        &self,
        name: &str,
        value: &str,
        what: &str,
        operator: Option<&Operator>,
    ) -> ConfluenceConnector {
        self.wait_connector(name, what, SYNC_DEADLINE, operator, |c| {
            is_connected(c) && last_handled_request(c) == Some(value)
        })
        .await
    }

    /// Waits until Ready=False with `reason` (and the phase `phase`).
    pub async fn wait_failed(
        &self,
        name: &str,
        phase: Phase,
        reason: &str,
        deadline: Duration,
        operator: Option<&Operator>,
    ) -> ConfluenceConnector {
        self.wait_connector(
            name,
            &format!("phase {phase:?} with Ready=False reason {reason}"),
            deadline,
            operator,
            |c| {
                phase_of(c) == Some(phase)
                    && condition(c, "Ready")
                        .is_some_and(|r| r.status == "False" && r.reason == reason)
            },
        )
        .await
    }

    /// Waits until a sync is visibly running (`phase: Syncing`).
    pub async fn wait_syncing(
        &self,
        name: &str,
        operator: Option<&Operator>,
    ) -> ConfluenceConnector {
        self.wait_connector(name, "phase Syncing", SYNC_DEADLINE, operator, |c| {
            phase_of(c) == Some(Phase::Syncing)
        })
        .await
    }

    /// Waits until the fake has answered at least `n` requests since its stats were
    /// last reset: a sync is then really under way, not just announced.
    pub async fn wait_requests(&self, n: u64, operator: Option<&Operator>) {
        let start = Instant::now();
        while self.fake.stats().total_requests < n {
            if start.elapsed() > SYNC_DEADLINE {
                let log = operator.map(|op| op.log_tail(40)).unwrap_or_default();
                panic!(
                    "the fake answered only {} of {n} requests within {SYNC_DEADLINE:?}\n{log}",
                    self.fake.stats().total_requests
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resets the fake's stats, lets `window` pass and returns how many requests the fake
    /// answered meanwhile.
    pub async fn requests_within(&self, window: Duration) -> u64 {
        self.fake.reset_stats();
        quiet_window(window).await;
        self.fake.stats().total_requests
    }

    /// Waits until the connector no longer exists.
    pub async fn wait_gone(&self, name: &str, deadline: Duration, operator: Option<&Operator>) {
        let start = Instant::now();
        loop {
            let obj = self.get_opt(name).await;
            let Some(obj) = obj else {
                return;
            };
            if start.elapsed() >= deadline {
                let log = operator
                    .map(|op| format!("\n{}", op.log_excerpt()))
                    .unwrap_or_default();
                panic!(
                    "timed out after {deadline:?} waiting for connector {}/{name} to be gone; finalizers {:?}, deletionTimestamp {:?}, status {}{log}",
                    self.ns(),
                    obj.metadata.finalizers,
                    obj.metadata.deletion_timestamp,
                    status_json(&obj)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // -- Files ----------------------------------------------------------------------

    /// `<data-dir>/<ns>/<name>`.
    pub fn connector_dir(&self, name: &str) -> PathBuf {
        self.data.path().join(self.ns()).join(name)
    }

    /// The absolute path of a snapshot the status points at.
    pub fn snapshot_path(&self, snapshot: &SnapshotRef) -> PathBuf {
        self.data.path().join(&snapshot.file)
    }

    // -- Events ---------------------------------------------------------------------

    /// events.k8s.io/v1 Events about connector `name`.
    pub async fn events(&self, name: &str) -> Vec<Event> {
        let api: Api<Event> = self.env.api();
        api.list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("cannot list Events: {e}"))
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }

    /// Every Event in the namespace, as JSON text (for leak checks).
    pub async fn all_events_json(&self) -> String {
        let api: Api<Event> = self.env.api();
        let events = api
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("cannot list Events: {e}"));
        let core: Api<k8s_openapi::api::core::v1::Event> = self.env.api();
        let core_events = core
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("cannot list core/v1 Events: {e}"));
        format!(
            "{}\n{}",
            serde_json::to_string(&events.items).unwrap_or_default(),
            serde_json::to_string(&core_events.items).unwrap_or_default()
        )
    }

    /// Records every phase / Ready change of connector `name` from a watch, so that
    /// short-lived states (a fast `Syncing`) are not missed by polling.
    pub fn record_states(&self, name: &str) -> StateRecorder {
        StateRecorder::start(self.connectors(), name)
    }
}

/// A spec for `site` with Secret `secret` and every other field left to its default.
pub fn spec_for(site: &str, secret: &str) -> ConfluenceConnectorSpec {
    ConfluenceConnectorSpec {
        site: site.to_owned(),
        credentials: CredentialsSpec {
            secret_ref: SecretRef {
                name: secret.to_owned(),
                username_key: None,
                api_token_key: None,
            },
        },
        sync: None,
        suspend: None,
    }
}

/// `spec.sync` with only `timeout` set.
pub fn sync_with_timeout(timeout: &str) -> Option<SyncSpec> {
    Some(SyncSpec {
        timeout: Some(timeout.to_owned()),
        ..SyncSpec::default()
    })
}

// ---------------------------------------------------------------------------------
// Status helpers.
// ---------------------------------------------------------------------------------

pub fn condition<'a>(c: &'a ConfluenceConnector, type_: &str) -> Option<&'a Condition> {
    c.status
        .as_ref()?
        .conditions
        .iter()
        .find(|cond| cond.type_ == type_)
}

pub fn phase_of(c: &ConfluenceConnector) -> Option<Phase> {
    c.status.as_ref()?.phase
}

pub fn generation(c: &ConfluenceConnector) -> i64 {
    c.metadata.generation.expect("metadata.generation is set")
}

pub fn observed_generation(c: &ConfluenceConnector) -> Option<i64> {
    c.status.as_ref()?.observed_generation
}

/// Connected, Ready=True, for the object's current generation.
pub fn is_connected(c: &ConfluenceConnector) -> bool {
    phase_of(c) == Some(Phase::Connected)
        && condition(c, "Ready").is_some_and(|r| r.status == "True")
        && observed_generation(c) == c.metadata.generation
}

pub fn sync_id(c: &ConfluenceConnector) -> Option<String> {
    Some(c.status.as_ref()?.snapshot.as_ref()?.sync_id.clone())
}

pub fn status_json(c: &ConfluenceConnector) -> String {
    serde_json::to_string_pretty(&c.status).unwrap_or_default()
}

/// `lastHandledSyncRequest`, if set.
pub fn last_handled_request(c: &ConfluenceConnector) -> Option<&str> {
    c.status.as_ref()?.last_handled_sync_request.as_deref()
}

/// Asserts that condition `type_` is present with `status` and `reason`.
pub fn assert_condition(c: &ConfluenceConnector, type_: &str, status: &str, reason: &str) {
    let cond =
        condition(c, type_).unwrap_or_else(|| panic!("no {type_} condition: {}", status_json(c)));
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        (status, reason),
        "{type_} condition: {}",
        status_json(c)
    );
}

/// Asserts that no condition message quotes Confluence's error body
/// ([`RAW_BODY_MARKERS`]).
pub fn assert_no_raw_error_body(c: &ConfluenceConnector) {
    for cond in &c.status.as_ref().expect("status").conditions {
        for marker in RAW_BODY_MARKERS {
            assert!(
                !cond.message.contains(marker),
                "condition {} quotes Confluence's error body ({marker}): {:?}",
                cond.type_,
                cond.message
            );
        }
    }
}

/// `lastSyncStartTime`, if set.
pub fn last_sync_start(c: &ConfluenceConnector) -> Option<Timestamp> {
    Some(c.status.as_ref()?.last_sync_start_time.as_ref()?.0)
}

/// `lastSyncTime`, if set.
pub fn last_sync_time(c: &ConfluenceConnector) -> Option<Timestamp> {
    Some(c.status.as_ref()?.last_sync_time.as_ref()?.0)
}

/// The observable state of a connector at one moment, as [`StateRecorder`] keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub phase: Option<Phase>,
    /// `status/reason` of Ready.
    pub ready: Option<(String, String)>,
    pub reconciling: bool,
    pub stalled: bool,
    pub message: String,
    /// Top-level `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    pub generation: Option<i64>,
}

impl State {
    fn of(c: &ConfluenceConnector) -> Self {
        State {
            phase: phase_of(c),
            ready: condition(c, "Ready").map(|r| (r.status.clone(), r.reason.clone())),
            reconciling: condition(c, "Reconciling").is_some_and(|r| r.status == "True"),
            stalled: condition(c, "Stalled").is_some_and(|r| r.status == "True"),
            message: condition(c, "Ready")
                .map(|r| r.message.clone())
                .unwrap_or_default(),
            observed_generation: observed_generation(c),
            generation: c.metadata.generation,
        }
    }
}

/// Collects the distinct successive [`State`]s of one connector from a watch.
pub struct StateRecorder {
    states: Arc<Mutex<Vec<State>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StateRecorder {
    fn start(api: Api<ConfluenceConnector>, name: &str) -> Self {
        let states = Arc::new(Mutex::new(Vec::<State>::new()));
        let sink = states.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let task = tokio::spawn(async move {
            let mut stream = watcher(api, config)
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(item) = stream.next().await {
                if let Ok(obj) = item {
                    let state = State::of(&obj);
                    let mut states = sink.lock().expect("state lock");
                    if states.last() != Some(&state) {
                        states.push(state);
                    }
                }
            }
        });
        StateRecorder { states, task }
    }

    pub fn states(&self) -> Vec<State> {
        self.states.lock().expect("state lock").clone()
    }
}

impl Drop for StateRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------
// Files.
// ---------------------------------------------------------------------------------

/// Every entry under `dir`, at any depth (unreadable directories are skipped): its
/// path and whether it is a directory.
fn walk(dir: &Path) -> Vec<(PathBuf, bool)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                stack.push(path.clone());
            }
            found.push((path, is_dir));
        }
    }
    found
}

/// Work files a sync leaves while it runs: `.c1z-work-*` directories and `*.c1z.tmp`
/// files, anywhere under `dir`.
pub fn work_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|(path, is_dir)| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (*is_dir && name.starts_with(".c1z-work-")) || name.ends_with(".c1z.tmp")
        })
        .map(|(path, _)| path)
        .collect();
    found.sort();
    found
}

/// Every file under `dir` (relative paths), for failure messages.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = walk(dir)
        .into_iter()
        .map(|(path, _)| {
            path.strip_prefix(dir)
                .unwrap_or(&path)
                .display()
                .to_string()
        })
        .collect();
    found.sort();
    found
}

/// SHA-256 of a file, hex.
pub fn sha256_hex(path: &Path) -> String {
    use sha2::Digest as _;
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let digest = sha2::Sha256::digest(&bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------
// The operator process.
// ---------------------------------------------------------------------------------

/// How to start `confluence-operator run`.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Names the log file (`<namespace>-<label>.log`).
    pub label: String,
    /// `--namespace`.
    pub namespace: String,
    /// `KUBECONFIG` of the child.
    pub kubeconfig: PathBuf,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--allowed-site-suffix 127.0.0.1 --allow-insecure-http`.
    pub allow_local_sites: bool,
    /// `--concurrency`.
    pub concurrency: Option<u16>,
    /// `--leader-elect --leader-election-namespace NS`.
    pub leader_election_namespace: Option<String>,
    /// `POD_NAME` of the child (its leader-election identity).
    pub identity: Option<String>,
    /// `RUST_LOG` of the child.
    pub rust_log: String,
}

/// A running `confluence-operator run`. Dropping it kills the process (SIGKILL).
pub struct Operator {
    child: Child,
    pid: u32,
    pub log_path: PathBuf,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: SocketAddr,
    pub options: OperatorOptions,
    exit: Option<ExitStatus>,
}

/// The message of the log line that announces the HTTP address.
const SERVING: &str = "serving /metrics, /healthz and /readyz";

impl Operator {
    /// Starts the binary and waits (up to 60 s) until it logs its HTTP address.
    pub async fn start(options: OperatorOptions) -> Operator {
        let log_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("controller-logs");
        std::fs::create_dir_all(&log_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_dir.display()));
        let log_path = log_dir.join(format!("{}-{}.log", options.namespace, options.label));
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));

        let mut command = Command::new(env!("CARGO_BIN_EXE_confluence-operator"));
        command
            .arg("run")
            .args(["--namespace", &options.namespace])
            .args(["--http-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&options.data_dir)
            .args(["--log-format", "json"]);
        if options.allow_local_sites {
            command
                .args(["--allowed-site-suffix", "127.0.0.1"])
                .arg("--allow-insecure-http");
        }
        if let Some(n) = options.concurrency {
            command.args(["--concurrency", &n.to_string()]);
        }
        if let Some(ns) = &options.leader_election_namespace {
            command
                .arg("--leader-elect")
                .args(["--leader-election-namespace", ns]);
        }
        // Nothing from the developer's environment may change the operator's flags.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CONFLUENCE_OPERATOR_") || key.starts_with("POD_") {
                command.env_remove(key.as_ref());
            }
        }
        if let Some(identity) = &options.identity {
            command.env("POD_NAME", identity);
        }
        command
            .env("KUBECONFIG", &options.kubeconfig)
            .env("RUST_LOG", &options.rust_log)
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start confluence-operator: {e}"));
        let pid = child.id().expect("a just-spawned child has a pid");
        let mut operator = Operator {
            child,
            pid,
            log_path,
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            options,
            exit: None,
        };
        let start = Instant::now();
        loop {
            if let Some(addr) = operator.find_http_addr() {
                operator.http_addr = addr;
                return operator;
            }
            if let Ok(Some(status)) = operator.child.try_wait() {
                panic!(
                    "confluence-operator exited with {status} before serving HTTP; log {}:\n{}",
                    operator.log_path.display(),
                    operator.log_tail(60)
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "confluence-operator did not log {SERVING:?} within 60s; log {}:\n{}",
                    operator.log_path.display(),
                    operator.log_tail(60)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    fn find_http_addr(&self) -> Option<SocketAddr> {
        self.log_lines().into_iter().find_map(|line| {
            (message(&line) == SERVING)
                .then(|| field(&line, "addr").and_then(|a| a.parse().ok()))
                .flatten()
        })
    }

    // -- Logs -----------------------------------------------------------------------

    /// The whole log as text.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The log's JSON lines (lines that are not JSON are skipped).
    pub fn log_lines(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// `<log path> (last 40 lines):` and those lines, for timeout messages.
    pub fn log_excerpt(&self) -> String {
        format!(
            "{} (last 40 lines):\n{}",
            self.log_path.display(),
            self.log_tail(40)
        )
    }

    /// Log lines whose message contains `needle`.
    pub fn log_messages_containing(&self, needle: &str) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|l| message(l).contains(needle))
            .collect()
    }

    /// Waits until a log line satisfies `check`, for at most `deadline`.
    pub async fn wait_log(
        &self,
        what: &str,
        deadline: Duration,
        mut check: impl FnMut(&Value) -> bool,
    ) -> Value {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| check(l)) {
                return line;
            }
            if start.elapsed() >= deadline {
                panic!(
                    "timed out after {deadline:?} waiting for a log line: {what}\n{}",
                    self.log_excerpt()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // -- HTTP -----------------------------------------------------------------------

    /// GET `path` on the operator's HTTP port: (status, content type, body).
    pub async fn http_get(&self, path: &str) -> (u16, String, String) {
        let url = format!("http://{}{path}", self.http_addr);
        let response = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client")
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url} failed: {e}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: cannot read the body: {e}"));
        (status, content_type, body)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (status, _, body) = self.http_get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics answered {status}: {body}");
        body
    }

    // -- Process control ------------------------------------------------------------

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// SIGKILL, and reaps the process.
    pub async fn sigkill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        let _ = self.child.start_kill();
        self.exit = self.child.wait().await.ok();
    }

    /// Waits for the process to exit, at most `deadline`; `None` if it is still running.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        if let Some(status) = self.exit {
            return Some(status);
        }
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.exit = Some(status);
                Some(status)
            }
            Ok(Err(e)) => panic!("waiting for the operator failed: {e}"),
            Err(_) => None,
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.exit.is_none() && matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.start_kill();
        }
    }
}

/// `fields.message` of a JSON log line.
pub fn message(line: &Value) -> &str {
    line.pointer("/fields/message")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `fields.<name>` of a JSON log line, as text.
pub fn field(line: &Value, name: &str) -> Option<String> {
    match line.get("fields")?.get(name)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `level` of a JSON log line.
pub fn level(line: &Value) -> &str {
    line.get("level").and_then(Value::as_str).unwrap_or("")
}

/// Whether a log line was written inside the `reconcile` span.
pub fn in_reconcile_span(line: &Value) -> bool {
    let named = |v: &Value| v.get("name").and_then(Value::as_str) == Some("reconcile");
    line.get("span").is_some_and(named)
        || line
            .get("spans")
            .and_then(Value::as_array)
            .is_some_and(|spans| spans.iter().any(named))
}

// ---------------------------------------------------------------------------------
// OpenMetrics.
// ---------------------------------------------------------------------------------

/// One sample of an OpenMetrics exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses an OpenMetrics text exposition strictly enough to catch format errors:
/// it must end with `# EOF`, every `# TYPE` names a valid type once, and every sample
/// line is `name{labels} value [timestamp]` for a declared family. Returns the samples,
/// or the first problem.
pub fn parse_openmetrics(text: &str) -> Result<Vec<Sample>, String> {
    const TYPES: [&str; 8] = [
        "counter",
        "gauge",
        "histogram",
        "gaugehistogram",
        "stateset",
        "info",
        "summary",
        "unknown",
    ];
    let lines: Vec<&str> = text.split('\n').collect();
    // The exposition ends with "# EOF" and an optional final newline.
    let body: &[&str] = match lines.as_slice() {
        [rest @ .., "# EOF", ""] | [rest @ .., "# EOF"] => rest,
        _ => return Err("does not end with `# EOF`".into()),
    };
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (i, line) in body.iter().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            return Err(format!("line {n} is empty (not allowed in OpenMetrics)"));
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            let family = parts.next().unwrap_or("");
            let value = parts.next();
            if !valid_metric_name(family) {
                return Err(format!("line {n}: bad metric name in {line:?}"));
            }
            match keyword {
                "TYPE" => {
                    let ty = value.unwrap_or("");
                    if !TYPES.contains(&ty) {
                        return Err(format!("line {n}: unknown type {ty:?}"));
                    }
                    if families.insert(family.to_owned(), ty.to_owned()).is_some() {
                        return Err(format!("line {n}: family {family} declared twice"));
                    }
                }
                "HELP" | "UNIT" => {}
                other => return Err(format!("line {n}: unknown keyword {other:?}")),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(format!("line {n}: malformed comment {line:?}"));
        }
        let sample = parse_sample(line).map_err(|e| format!("line {n} {line:?}: {e}"))?;
        let family = families
            .iter()
            .filter(|(f, ty)| {
                let suffixes: &[&str] = match ty.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" | "gaugehistogram" => {
                        &["_bucket", "_count", "_sum", "_created", "_gcount", "_gsum"]
                    }
                    "summary" => &["", "_count", "_sum", "_created"],
                    "info" => &["_info"],
                    _ => &[""],
                };
                suffixes.iter().any(|s| sample.name == format!("{f}{s}"))
            })
            .map(|(f, _)| f.clone())
            .next();
        if family.is_none() {
            return Err(format!(
                "line {n}: sample {} belongs to no declared family",
                sample.name
            ));
        }
        samples.push(sample);
    }
    Ok(samples)
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or("no value after the metric name")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            // label name
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated label set".into());
            };
            if c == '}' {
                break start + 1;
            }
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' {
                    key_end = i;
                    break;
                }
                chars.next();
            }
            let key = &after[start..key_end];
            if !valid_metric_name(key) || key.contains(':') {
                return Err(format!("bad label name {key:?}"));
            }
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key} value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, '\\')) => value.push('\\'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            if labels.insert(key.to_owned(), value).is_some() {
                return Err(format!("label {key} repeated"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => break i + 1,
                other => return Err(format!("expected `,` or `}}`, got {other:?}")),
            }
        };
        rest = &after[end..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("no single space before the value")?;
    let mut parts = rest.split(' ');
    let value_text = parts.next().unwrap_or("");
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("value {v:?} is not a number"))?,
    };
    if let Some(ts) = parts.next() {
        ts.parse::<f64>()
            .map_err(|_| format!("timestamp {ts:?} is not a number"))?;
    }
    if let Some(extra) = parts.next() {
        // Exemplars start with '#'; anything else is garbage.
        if extra != "#" {
            return Err(format!("unexpected trailing text {extra:?}"));
        }
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Samples named `name` whose labels include every pair of `labels`.
pub fn samples<'a>(all: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    all.iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// Misc.
// ---------------------------------------------------------------------------------

/// Sleeps `d`. Only for measuring that nothing happens during a window.
pub async fn quiet_window(d: Duration) {
    tokio::time::sleep(d).await;
}

/// A value for the trigger annotation that no other test uses.
pub fn request_value(tag: &str) -> String {
    format!(
        "{tag}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}
