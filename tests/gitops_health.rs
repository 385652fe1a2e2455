//! GitOps health of live connectors, computed by the libraries the GitOps tools run:
//! Flux's kstatus (`sigs.k8s.io/cli-utils` pkg/kstatus/status, via target/go-bin/kstatus)
//! and Argo CD's Lua interpreter running our `health.lua` (gopher-lua, via
//! target/go-bin/argocd-lua). Connectors are driven through every state of operator
//! conventions §2 against the real operator and control plane, and each live object is
//! checked against the committed Argo CD fixture of that row (same phase, conditions,
//! generation and deletion state), so the fixtures cannot drift from what the operator
//! writes. `UPDATE_GITOPS_FIXTURES=1` rewrites the fixtures from the live objects.

mod chart_support;
mod common;
mod operator_support;

use std::path::PathBuf;

use chart_support::{root, run, run_ok, tool};
use fake_confluence::{DataConfig, FakeConfig, Latency, Preset};
use kube::Resource as _;
use operator_support::{
    Fixture, Operator, SYNC_DEADLINE, condition, fixture, generation, observed_generation,
    phase_of, request_value,
};
use serde_json::{Value, json};

const SECRET: &str = "confluence-credentials";
/// Every request takes this long, so a sync of the tenant below lasts ~25 s: long
/// enough to read the connector while it syncs.
const SLOW: Latency = Latency {
    fixed_ms: 2000,
    jitter_ms: 0,
};

fn customization_dir() -> PathBuf {
    root()
        .join("examples/argocd/resource_customizations/confluence-operator.io/ConfluenceConnector")
}

fn slow_config() -> FakeConfig {
    FakeConfig::with_data(DataConfig {
        users: 300,
        groups: 240,
        ..DataConfig::preset(Preset::Small)
    })
}

/// (status, message) of `obj` by kstatus.
fn kstatus(obj: &Value) -> (String, String) {
    let out = run_ok(&tool("kstatus"), &[], Some(obj.to_string().as_bytes()));
    let line: Value = serde_json::from_str(out.trim()).expect("kstatus prints JSON");
    (
        line["status"].as_str().unwrap_or("").to_owned(),
        line["message"].as_str().unwrap_or("").to_owned(),
    )
}

/// (status, message) of `obj` by health.lua in Argo CD's interpreter.
fn argocd_health(obj: &Value) -> (String, String) {
    let script = customization_dir().join("health.lua");
    let out = run_ok(
        &tool("argocd-lua"),
        &["health", script.to_str().expect("UTF-8")],
        Some(obj.to_string().as_bytes()),
    );
    let health: Value = serde_json::from_str(out.trim()).expect("argocd-lua prints JSON");
    (
        health["status"].as_str().unwrap_or("").to_owned(),
        health["message"].as_str().unwrap_or("").to_owned(),
    )
}

/// The live object as a fixture: server bookkeeping dropped, the test namespace
/// renamed to `identity`.
fn sanitize(obj: &Value, namespace: &str) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for key in ["managedFields", "uid", "resourceVersion"] {
            meta.remove(key);
        }
    }
    let text = obj.to_string().replace(namespace, "identity");
    serde_json::from_str(&text).expect("still JSON")
}

/// What a fixture must share with the live object of its row.
fn shape(obj: &Value) -> Value {
    let status = &obj["status"];
    let mut conditions: Vec<String> = status["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}={}/{}",
                        c["type"].as_str().unwrap_or(""),
                        c["status"].as_str().unwrap_or(""),
                        c["reason"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    conditions.sort();
    let generation = obj["metadata"]["generation"].as_i64();
    let observed = status["observedGeneration"].as_i64();
    json!({
        "phase": status["phase"],
        "conditions": conditions,
        "suspend": obj["spec"]["suspend"],
        "deleting": obj["metadata"]["deletionTimestamp"].is_string(),
        "finalizers": obj["metadata"]["finalizers"],
        "generationObserved": generation == observed,
        "hasSummary": status["summary"].is_object(),
    })
}

struct Checker {
    failures: Vec<String>,
}

impl Checker {
    /// Checks one live connector: kstatus, Argo CD health, and its fixture.
    fn check(
        &mut self,
        fx: &Fixture,
        live: &confluence_operator::api::ConfluenceConnector,
        fixture_name: &str,
        want_kstatus: Option<&str>,
        want_health: &str,
    ) {
        let mut live = serde_json::to_value(live).expect("serialisable");
        // Typed objects lose apiVersion/kind on the way in; the tools need them.
        live["apiVersion"] = "confluence-operator.io/v1alpha1".into();
        live["kind"] = "ConfluenceConnector".into();
        let (ks, ks_message) = kstatus(&live);
        if let Some(want) = want_kstatus
            && ks != want
        {
            self.failures.push(format!(
                "{fixture_name}: kstatus {ks} ({ks_message}), want {want}; status {}",
                live["status"]
            ));
        }
        let (health, message) = argocd_health(&live);
        if health != want_health {
            self.failures.push(format!(
                "{fixture_name}: Argo CD health {health} ({message}), want {want_health}; status {}",
                live["status"]
            ));
        }
        eprintln!("{fixture_name}: kstatus {ks} | Argo CD {health}: {message}");

        let sanitized = sanitize(&live, fx.ns());
        let path = customization_dir()
            .join("testdata")
            .join(format!("{fixture_name}.yaml"));
        if std::env::var_os("UPDATE_GITOPS_FIXTURES").is_some_and(|v| v == "1") {
            let yaml = serde_yaml::to_string(&sanitized).expect("serialisable");
            std::fs::write(
                &path,
                format!(
                    "# Captured from the live control plane by tests/gitops_health.rs.\n{yaml}"
                ),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            return;
        }
        let committed: Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (UPDATE_GITOPS_FIXTURES=1 writes it)",
                    path.display()
                )
            }))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if shape(&committed) != shape(&sanitized) {
            self.failures.push(format!(
                "{}: the committed fixture no longer matches what the operator writes\ncommitted: {}\nlive:      {}\n(re-capture with UPDATE_GITOPS_FIXTURES=1)",
                path.display(),
                shape(&committed),
                shape(&sanitized)
            ));
        }
    }
}

async fn wait_for_state(
    fx: &Fixture,
    name: &str,
    what: &str,
    op: Option<&Operator>,
    check: impl FnMut(&confluence_operator::api::ConfluenceConnector) -> bool,
) -> confluence_operator::api::ConfluenceConnector {
    fx.wait_connector(name, what, SYNC_DEADLINE, op, check)
        .await
}

fn is_true(c: &confluence_operator::api::ConfluenceConnector, type_: &str) -> bool {
    condition(c, type_).is_some_and(|r| r.status == "True")
}

#[tokio::test]
async fn flux_and_argocd_health_of_live_connectors() {
    tool("kstatus");
    tool("argocd-lua");
    let Some(fx) = fixture("gitops", slow_config()).await else {
        return;
    };
    let mut checker = Checker { failures: vec![] };

    // No operator yet: only the CRD's default status.
    fx.put_valid_secret(SECRET).await;
    fx.create_connector("acme", fx.spec(SECRET)).await;
    let fresh = fx.get("acme").await;
    checker.check(&fx, &fresh, "no-status", Some("InProgress"), "Progressing");

    // The first sync of a generation: Reconciling=True, Ready=Unknown.
    fx.fake.set_latency(SLOW);
    let op = fx.start_operator().await;
    let syncing = wait_for_state(
        &fx,
        "acme",
        "Reconciling=True during the first sync",
        Some(&op),
        |c| is_true(c, "Reconciling"),
    )
    .await;
    checker.check(
        &fx,
        &syncing,
        "first-sync",
        Some("InProgress"),
        "Progressing",
    );
    fx.fake.set_latency(Latency::default());
    let connected = fx.wait_connected("acme", SYNC_DEADLINE, Some(&op)).await;
    checker.check(&fx, &connected, "connected", Some("Current"), "Healthy");

    // A connector on the shortest interval (1m), for a real periodic sync below.
    let mut spec = fx.spec(SECRET);
    spec.sync = Some(confluence_operator::api::SyncSpec {
        interval: Some("1m".to_owned()),
        ..Default::default()
    });
    fx.create_connector("periodic", spec).await;
    fx.wait_connected("periodic", SYNC_DEADLINE, Some(&op))
        .await;

    // A routine sync (here requested; a periodic one looks the same) keeps Ready=True:
    // still Current and Healthy, so Flux and Argo CD do not flap every interval.
    fx.fake.set_latency(SLOW);
    let value = request_value("gitops");
    fx.request_sync("acme", &value).await;
    let routine = wait_for_state(
        &fx,
        "acme",
        "phase Syncing with Ready=True",
        Some(&op),
        |c| {
            phase_of(c) == Some(confluence_operator::api::Phase::Syncing)
                && is_connected_but_syncing(c)
        },
    )
    .await;
    checker.check(&fx, &routine, "routine-sync", Some("Current"), "Healthy");
    fx.fake.set_latency(Latency::default());
    fx.wait_request_handled("acme", &value, "the requested sync", Some(&op))
        .await;

    // The periodic sync itself, when its interval has passed: the same.
    fx.fake.set_latency(SLOW);
    let periodic = wait_for_state(
        &fx,
        "periodic",
        "the periodic sync running with Ready=True",
        Some(&op),
        |c| {
            phase_of(c) == Some(confluence_operator::api::Phase::Syncing)
                && is_connected_but_syncing(c)
        },
    )
    .await;
    checker.check(&fx, &periodic, "periodic-sync", Some("Current"), "Healthy");
    fx.fake.set_latency(Latency::default());

    // Wrong credentials: Stalled=True, Ready=False AuthenticationFailed.
    let cred = fx.fake.credential().clone();
    fx.put_secret("wrong-credentials", &cred.email, "not-the-token")
        .await;
    fx.create_connector("badauth", fx.spec("wrong-credentials"))
        .await;
    let stalled = fx
        .wait_failed(
            "badauth",
            confluence_operator::api::Phase::NotConnected,
            "AuthenticationFailed",
            SYNC_DEADLINE,
            Some(&op),
        )
        .await;
    checker.check(&fx, &stalled, "stalled", Some("Failed"), "Degraded");

    // Suspended, acknowledged by the operator.
    let mut spec = fx.spec(SECRET);
    spec.suspend = Some(true);
    fx.create_connector("paused", spec).await;
    let suspended = wait_for_state(
        &fx,
        "paused",
        "the suspended generation acknowledged",
        Some(&op),
        |c| {
            observed_generation(c) == c.metadata.generation
                && c.status.as_ref().is_some_and(|s| !s.conditions.is_empty())
        },
    )
    .await;
    checker.check(&fx, &suspended, "suspended", None, "Suspended");

    // A new generation nobody has observed yet (the operator is down).
    let mut op = op;
    op.sigkill().await;
    let changed = fx
        .merge_patch("acme", json!({"spec": {"sync": {"interval": "2h"}}}))
        .await;
    assert!(observed_generation(&changed) < Some(generation(&changed)));
    checker.check(
        &fx,
        &changed,
        "generation-not-observed",
        Some("InProgress"),
        "Progressing",
    );

    // Being deleted, held by the finalizer while the operator is down.
    fx.delete_connector("acme").await;
    let deleting = fx.get("acme").await;
    assert!(deleting.meta().deletion_timestamp.is_some());
    checker.check(
        &fx,
        &deleting,
        "deleting",
        Some("Terminating"),
        "Progressing",
    );

    // A new operator finishes the deletion.
    let op = fx.start_operator().await;
    fx.wait_gone("acme", SYNC_DEADLINE, Some(&op)).await;
    assert!(
        checker.failures.is_empty(),
        "GitOps health checks failed:\n{}",
        checker.failures.join("\n\n")
    );
}

/// Ready=True for the current generation and no Reconciling: what a routine sync shows.
fn is_connected_but_syncing(c: &confluence_operator::api::ConfluenceConnector) -> bool {
    is_true(c, "Ready")
        && !is_true(c, "Reconciling")
        && observed_generation(c) == c.metadata.generation
}

/// Every case of health_test.yaml and actions/action_test.yaml, in Argo CD's
/// interpreter. Needs no control plane.
#[test]
fn argocd_customization_tests_pass() {
    let dir = customization_dir();
    let out = run(
        &tool("argocd-lua"),
        &["test", dir.to_str().expect("UTF-8")],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "argocd-lua test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // One health case per row of the conventions' table (plus the routine sync), and
    // each fixture used.
    let tests: Value = serde_yaml::from_str(
        &std::fs::read_to_string(dir.join("health_test.yaml")).expect("health_test.yaml"),
    )
    .expect("YAML");
    let inputs: Vec<&str> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter_map(|t| t["inputPath"].as_str())
        .collect();
    for row in [
        "deleting",
        "no-status",
        "generation-not-observed",
        "suspended",
        "stalled",
        "first-sync",
        "connected",
        "routine-sync",
        "periodic-sync",
    ] {
        assert!(
            inputs.contains(&format!("testdata/{row}.yaml").as_str()),
            "health_test.yaml has no case for {row}: {inputs:?}"
        );
    }
    let cases = inputs.len() + 4;
    assert!(
        stdout.contains(&format!("{cases} passed, 0 failed")),
        "expected {cases} passing cases:\n{stdout}"
    );
}

/// The argocd-cm snippet carries exactly the scripts that the tests run.
#[test]
fn argocd_cm_snippet_embeds_the_tested_scripts() {
    let dir = customization_dir();
    let cm: Value = serde_yaml::from_str(
        &std::fs::read_to_string(root().join("examples/argocd/argocd-cm.yaml"))
            .expect("argocd-cm.yaml"),
    )
    .expect("YAML");
    let data = &cm["data"];
    let read =
        |p: &str| std::fs::read_to_string(dir.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        data["resource.customizations.health.confluence-operator.io_ConfluenceConnector"].as_str(),
        Some(read("health.lua").as_str()),
        "argocd-cm health script differs from health.lua"
    );
    let actions: Value = serde_yaml::from_str(
        data["resource.customizations.actions.confluence-operator.io_ConfluenceConnector"]
            .as_str()
            .expect("actions key"),
    )
    .expect("actions YAML");
    assert_eq!(
        actions["discovery.lua"].as_str(),
        Some(read("actions/discovery.lua").as_str())
    );
    assert_eq!(actions["definitions"][0]["name"], "sync-now");
    assert_eq!(
        actions["definitions"][0]["action.lua"].as_str(),
        Some(read("actions/sync-now/action.lua").as_str())
    );
}
