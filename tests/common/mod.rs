//! Shared set-up for the integration tests that need a real Kubernetes API server.
//!
//! `tests/control-plane/run.sh -- cargo test` starts a local kube-apiserver and
//! exports `CONTROL_PLANE_KUBECONFIG`. Only that variable is read, never plain
//! `KUBECONFIG`, so a developer's real cluster is never touched. Without it a test
//! prints why it is skipped and passes, except under CI (`CI` set), where it fails:
//! CI must never go green with the integration tests silently skipped.
//!
//! Each test gets its own namespace. Nothing is cleaned up: the local control plane
//! has no namespace controller (deleted namespaces stay `Terminating`) and is thrown
//! away after the run anyway.
//!
//! Use with `mod common;` from a file in `tests/`.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rand::Rng;
use serde::Deserialize as _;

/// The only environment variable that points tests at an API server.
pub const KUBECONFIG_ENV: &str = "CONTROL_PLANE_KUBECONFIG";
/// Field manager for everything the tests apply.
pub const FIELD_MANAGER: &str = "confluence-operator-tests";
/// Generous on purpose: the control plane shares two cores with parallel test
/// binaries and compilers, and a slow pass must not look like a failure.
pub const DEADLINE: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// A connection to the local control plane plus a fresh namespace for one test.
pub struct TestEnv {
    /// Admin client (`system:masters`: bypasses RBAC, so never use it to test RBAC).
    pub client: Client,
    /// Admin client configuration, to derive clients with other identities.
    pub config: Config,
    /// The namespace created for this test.
    pub namespace: String,
    /// Path of the admin kubeconfig, for tools such as kubectl.
    pub kubeconfig: PathBuf,
}

/// Connects to the local control plane, applies the CRDs and creates a namespace
/// named `<prefix>-<random>`. Returns `None` (after printing why) when no control
/// plane is configured or reachable and `CI` is unset; panics under CI.
pub async fn setup(prefix: &str) -> Option<TestEnv> {
    // kube and reqwest are built without a default crypto provider; the error only
    // means another test in this binary installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let Some(kubeconfig) = std::env::var_os(KUBECONFIG_ENV).filter(|v| !v.is_empty()) else {
        return skip_or_fail(&format!(
            "{KUBECONFIG_ENV} is not set; run `tests/control-plane/run.sh -- cargo test` (or `make test`)"
        ));
    };
    let kubeconfig = PathBuf::from(kubeconfig);
    let config = match load_config(&kubeconfig).await {
        Ok(config) => config,
        Err(err) => {
            return skip_or_fail(&format!(
                "cannot load {KUBECONFIG_ENV}={}: {err:#}",
                kubeconfig.display()
            ));
        }
    };
    let client = Client::try_from(config.clone()).expect("client from a valid kubeconfig");
    match tokio::time::timeout(Duration::from_secs(20), client.apiserver_version()).await {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            return skip_or_fail(&format!(
                "API server at {} unreachable: {err}",
                config.cluster_url
            ));
        }
        Err(_) => {
            return skip_or_fail(&format!(
                "API server at {} did not answer within 20s",
                config.cluster_url
            ));
        }
    }

    apply_crds(&client).await;
    let namespace = create_namespace(&client, prefix).await;
    Some(TestEnv {
        client,
        config,
        namespace,
        kubeconfig,
    })
}

impl TestEnv {
    /// An API handle for namespaced objects of type `K` in this test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A client acting as `user` (through impersonation, which the admin may do), so
    /// that RBAC applies. With no `groups` the API server adds the usual ones, e.g.
    /// `system:serviceaccounts:<ns>` and `system:authenticated` for a ServiceAccount.
    pub fn client_as(&self, user: &str, groups: &[&str]) -> Client {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_owned());
        config.auth_info.impersonate_groups =
            (!groups.is_empty()).then(|| groups.iter().map(|g| (*g).to_owned()).collect());
        Client::try_from(config).expect("client from a valid kubeconfig")
    }

    /// A client acting as ServiceAccount `name` of this test's namespace.
    pub fn client_as_service_account(&self, name: &str) -> Client {
        self.client_as(
            &format!("system:serviceaccount:{}:{name}", self.namespace),
            &[],
        )
    }
}

fn skip_or_fail<T>(reason: &str) -> Option<T> {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("integration test needs the local control plane: {reason}");
    }
    print_uncaptured(&format!("SKIPPED (no control plane): {reason}"));
    None
}

/// Writes to stderr past the test harness's capture (which only intercepts the
/// print macros), so a skip is visible even when the test passes.
pub fn print_uncaptured(message: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{message}");
}

async fn load_config(path: &Path) -> anyhow::Result<Config> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

/// The committed CRD manifests, `crds/*.yaml`.
pub fn crd_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    files
}

/// Every CRD document in `crds/*.yaml`, parsed.
pub fn load_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = Vec::new();
    for file in crd_files() {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|err| panic!("{} is not valid YAML: {err}", file.display()));
            if value.is_null() {
                continue;
            }
            let crd: CustomResourceDefinition =
                serde_yaml::from_value(value).unwrap_or_else(|err| {
                    panic!("{} holds something other than a CRD: {err}", file.display())
                });
            crds.push(crd);
        }
    }
    assert!(!crds.is_empty(), "no CRDs found in crds/");
    crds
}

/// Applies all CRDs with server-side apply and waits until each is `Established`.
/// Idempotent, so every test can call it whatever ran before.
pub async fn apply_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in load_crds() {
        let name = crd
            .metadata
            .name
            .clone()
            .expect("CRD without metadata.name");
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|err| panic!("server-side apply of CRD {name} failed: {err}"));
        wait_crd_established(client, &name).await;
    }
}

/// Waits until CRD `name` has condition `Established=True`.
pub async fn wait_crd_established(client: &Client, name: &str) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for(&format!("CRD {name} to be Established"), || async {
        let crd = api.get_opt(name).await.ok().flatten()?;
        let established = crd
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;
}

async fn create_namespace(client: &Client, prefix: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let name = unique_name(prefix);
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|err| panic!("cannot create namespace {name}: {err}"));
    name
}

/// `<prefix>-<6 random chars>`, a valid DNS label (prefix lower-cased and cut so
/// the whole stays within 63 characters).
pub fn unique_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(50)
        .collect();
    clean = clean.trim_matches('-').to_owned();
    if clean.is_empty() {
        clean.push_str("test");
    }
    let mut rng = rand::rng();
    let suffix: String = (0..6)
        .map(|_| {
            let n = rng.random_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect();
    format!("{clean}-{suffix}")
}

/// Polls `check` until it returns `Some`, for at most [`DEADLINE`]; panics naming
/// `what` on timeout. Use it instead of fixed sleeps.
pub async fn wait_for<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, DEADLINE, check).await
}

/// [`wait_for`] with an explicit deadline.
pub async fn wait_for_within<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= give_up {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
