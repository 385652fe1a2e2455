//! Helpers of the chart and GitOps tests: the Go tools they drive (Helm 3 and 4,
//! kubectl, kstatus, Argo CD's Lua), chart rendering, and kubeconfigs for the chart's
//! ServiceAccount.
//!
//! The tools are built by `make test-tools` (a prerequisite of `make test`) into
//! `target/go-bin`. A missing tool fails the test with that instruction, never skips
//! it: a skipped chart test would let a broken chart through.
//!
//! Use with `mod common; mod chart_support;` from a file in `tests/`.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::common::TestEnv;

/// Kubernetes version of the local control plane, for offline rendering.
pub const KUBE_VERSION: &str = "v1.36.3";
/// The trigger annotation.
pub const SYNC_REQUEST: &str = "confluence-operator.io/sync-requested-at";

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn chart_dir() -> PathBuf {
    root().join("charts/confluence-operator")
}

/// Path of a tool in `target/go-bin`; panics with the make target that builds it.
pub fn tool(name: &str) -> PathBuf {
    let path = root().join("target/go-bin").join(name);
    if !path.is_file() {
        panic!(
            "{} is missing: run `make test-tools` (part of `make test`), which builds Helm 3 and 4, \
             kubectl, kstatus and argocd-lua into target/go-bin",
            path.display()
        );
    }
    path
}

/// The two Helm majors the chart supports: (label, binary).
pub fn helms() -> Vec<(&'static str, PathBuf)> {
    vec![("helm3", tool("helm3")), ("helm4", tool("helm4"))]
}

pub fn kubectl() -> PathBuf {
    tool("kubectl")
}

/// Runs `program args`, with `stdin` if given; returns the output whatever the exit.
pub fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        // Helm keeps caches and repository config here; the tests need none of the
        // developer's.
        .env("HELM_CACHE_HOME", scratch_dir("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch_dir("helm-config"))
        .env("HELM_DATA_HOME", scratch_dir("helm-data"))
        .env_remove("KUBECONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input)
            .unwrap_or_else(|e| panic!("writing to {}: {e}", program.display()));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", program.display()))
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

fn describe(program: &Path, args: &[&str], out: &Output) -> String {
    format!(
        "{} {}\nexit: {}\nstdout:\n{}\nstderr:\n{}",
        program.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs and requires success; returns stdout.
pub fn run_ok(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.status.success(),
        "command failed: {}",
        describe(program, args, &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and requires failure; returns stdout + stderr.
pub fn run_err(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(program, args, stdin);
    assert!(
        !out.status.success(),
        "command succeeded but should have failed: {}",
        describe(program, args, &out)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template RELEASE chart -n NS --kube-version KUBE_VERSION EXTRA…`, stdout.
pub fn template(helm: &Path, release: &str, namespace: &str, extra: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        release,
        chart.to_str().expect("UTF-8 path"),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
    ];
    args.extend_from_slice(extra);
    run_ok(helm, &args, None)
}

/// The documents of a multi-document YAML stream, as JSON values (nulls dropped).
pub fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{yaml}")))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

/// Documents of the given kinds, as one YAML stream.
pub fn select_kinds(docs: &[Value], kinds: &[&str]) -> String {
    docs.iter()
        .filter(|d| kinds.contains(&kind(d)))
        .map(|d| serde_yaml::to_string(d).expect("serialisable"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `kubectl --kubeconfig K ARGS…` with the admin kubeconfig of `env`.
pub fn kubectl_admin(env: &TestEnv, args: &[&str], stdin: Option<&[u8]>) -> String {
    let kubeconfig = env.kubeconfig.to_str().expect("UTF-8 path").to_owned();
    let mut all = vec!["--kubeconfig", &kubeconfig];
    all.extend_from_slice(args);
    run_ok(&kubectl(), &all, stdin)
}

/// Applies YAML as the admin with server-side apply.
pub fn apply(env: &TestEnv, yaml: &str) -> String {
    kubectl_admin(
        env,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "confluence-operator-tests",
            "-f",
            "-",
        ],
        Some(yaml.as_bytes()),
    )
}

/// Mints a token for ServiceAccount `namespace/name` (TokenRequest) and writes a
/// kubeconfig that uses only that token, with the admin kubeconfig's server and CA.
/// Returns its path.
pub fn service_account_kubeconfig(env: &TestEnv, namespace: &str, name: &str) -> PathBuf {
    let token = kubectl_admin(
        env,
        &["create", "token", name, "-n", namespace, "--duration", "2h"],
        None,
    );
    let token = token.trim();
    assert!(!token.is_empty(), "kubectl create token printed nothing");
    let admin: Value = serde_yaml::from_str(
        &std::fs::read_to_string(&env.kubeconfig)
            .unwrap_or_else(|e| panic!("{}: {e}", env.kubeconfig.display())),
    )
    .expect("the admin kubeconfig is YAML");
    let cluster = admin["clusters"][0]["cluster"].clone();
    assert!(
        cluster.is_object(),
        "the admin kubeconfig has no cluster: {admin}"
    );
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "control-plane", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {
            "cluster": "control-plane", "user": name, "namespace": namespace}}],
        "current-context": name,
    });
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("chart-kubeconfigs")
        .join(format!("{namespace}-{name}.yaml"));
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(
        &path,
        serde_yaml::to_string(&kubeconfig).expect("serialisable"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// `kubectl auth can-i VERB RESOURCE [-n NS]` as `user` (impersonated by the admin):
/// whether the API server allows it.
pub fn can_i(
    env: &TestEnv,
    user: &str,
    verb: &str,
    resource: &str,
    namespace: Option<&str>,
) -> bool {
    let kubeconfig = env.kubeconfig.to_str().expect("UTF-8 path").to_owned();
    let mut args = vec![
        "--kubeconfig",
        &kubeconfig,
        "auth",
        "can-i",
        verb,
        resource,
        "--as",
        user,
    ];
    match namespace {
        Some(ns) => args.extend_from_slice(&["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let out = run(&kubectl(), &args, None);
    let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match answer.as_str() {
        "yes" => true,
        "no" => false,
        _ => panic!(
            "unexpected answer from kubectl auth can-i: {}",
            describe(&kubectl(), &args, &out)
        ),
    }
}
