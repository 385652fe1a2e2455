//! The Helm chart, checked with Helm 3 and Helm 4 and against the real API server:
//! lint, rendering of every `ci/` values file, server-side dry runs of those
//! renderings, schema and rendering guards, install and uninstall. Also: the chart's
//! CRDs are the committed ones and its appVersion is the crate's version.

mod chart_support;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chart_support::{
    KUBE_VERSION, apply, chart_dir, documents, helms, kind, kubectl_admin, root, run_err, run_ok,
    template,
};
use serde_json::Value;

fn yaml_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, bytes)
        })
        .collect()
}

/// Helm installs `crds/` as it is: every CRD must be there, byte for byte the committed
/// (generated) one, and nothing else.
#[test]
fn chart_crds_are_the_committed_crds() {
    let committed = yaml_files(&root().join("crds"));
    let chart = yaml_files(&chart_dir().join("crds"));
    assert!(!committed.is_empty(), "crds/ is empty");
    assert_eq!(
        committed.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "charts/confluence-operator/crds/ must hold exactly the files of crds/ (`make chart-crds`)"
    );
    for (name, bytes) in &committed {
        assert!(
            chart[name] == *bytes,
            "charts/confluence-operator/crds/{name} differs from crds/{name}: run `make chart-crds`"
        );
    }
}

/// The default image tag is appVersion, so it must name this crate's release.
#[test]
fn chart_app_version_is_the_crate_version() {
    let text = std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml");
    let chart: Value = serde_yaml::from_str(&text).expect("Chart.yaml is YAML");
    assert_eq!(
        chart["appVersion"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "Chart.yaml appVersion must equal the crate version"
    );
    assert_eq!(chart["kubeVersion"].as_str(), Some(">=1.33.0-0"));
}

fn ci_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart_dir().join("ci"))
        .expect("charts/confluence-operator/ci")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for expected in [
        "default-values.yaml",
        "namespaced-values.yaml",
        "persistence-values.yaml",
        "servicemonitor-values.yaml",
        "networkpolicy-values.yaml",
        "leader-election-values.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "ci/{expected} is missing"
        );
    }
    files
}

fn deployment(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| kind(d) == "Deployment")
        .expect("a Deployment is rendered")
}

fn args(docs: &[Value]) -> Vec<String> {
    deployment(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

/// The container's args as the operator's own command line parses them: the rendering
/// must be a valid `confluence-operator run`.
fn parse_run_args(args: &[String]) -> confluence_operator::cli::RunArgs {
    use clap::Parser as _;
    let argv = std::iter::once("confluence-operator".to_owned()).chain(args.iter().cloned());
    match confluence_operator::cli::Cli::try_parse_from(argv) {
        Ok(cli) => match cli.command {
            confluence_operator::cli::Command::Run(run) => run,
            other => panic!("the chart runs {other:?}, not `run`"),
        },
        Err(e) => panic!("the operator rejects the chart's args {args:?}: {e}"),
    }
}

/// What each ci/ file must change in the rendering.
fn check_rendering(file: &str, docs: &[Value], namespaced: &[&str]) {
    let kinds: Vec<&str> = docs.iter().map(kind).collect();
    let args = args(docs);
    let pod = &deployment(docs)["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // Restricted security context, probes and resources, whatever the values file.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{file}"
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{file}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{file}");
    assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{file}");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(args.contains(&"--data-dir=/var/lib/confluence-operator".to_owned()));
    let run = parse_run_args(&args);
    assert_eq!(run.concurrency, 4, "{file}");
    assert_eq!(
        run.data_dir,
        std::path::Path::new("/var/lib/confluence-operator")
    );
    assert_eq!(
        run.leader_elect,
        file == "leader-election-values.yaml",
        "{file}: {args:?}"
    );
    if file == "namespaced-values.yaml" {
        assert_eq!(run.namespaces, namespaced, "{file}");
    } else {
        assert!(run.namespaces.is_empty(), "{file}: {:?}", run.namespaces);
    }

    let volume = &pod["volumes"][0];
    match file {
        "default-values.yaml" => {
            assert!(kinds.contains(&"ClusterRole") && kinds.contains(&"ClusterRoleBinding"));
            assert!(!kinds.contains(&"Role"), "{kinds:?}");
            assert!(volume["emptyDir"].is_object(), "{volume}");
            assert_eq!(deployment(docs)["spec"]["strategy"]["type"], "Recreate");
            assert!(!args.iter().any(|a| a.starts_with("--namespace")));
        }
        "namespaced-values.yaml" => {
            for ns in namespaced {
                assert!(args.contains(&format!("--namespace={ns}")), "{args:?}");
                assert!(
                    docs.iter().any(|d| kind(d) == "Role"
                        && d["metadata"]["namespace"] == *ns
                        && d["rules"].as_array().is_some_and(|r| r.len() >= 4)),
                    "no operator Role in {ns}"
                );
                assert!(
                    docs.iter()
                        .any(|d| kind(d) == "RoleBinding" && d["metadata"]["namespace"] == *ns)
                );
            }
            // No cluster-wide operator rules (the aggregated user roles stay).
            assert!(!kinds.contains(&"ClusterRoleBinding"), "{kinds:?}");
        }
        "persistence-values.yaml" => {
            assert!(kinds.contains(&"PersistentVolumeClaim"));
            assert!(volume["persistentVolumeClaim"]["claimName"].is_string());
        }
        "servicemonitor-values.yaml" => {
            assert!(kinds.contains(&"Service"));
            // The control plane has no monitoring.coreos.com API: no ServiceMonitor.
            assert!(!kinds.contains(&"ServiceMonitor"), "{kinds:?}");
        }
        "networkpolicy-values.yaml" => assert!(kinds.contains(&"NetworkPolicy")),
        "leader-election-values.yaml" => {
            assert_eq!(deployment(docs)["spec"]["replicas"], 2);
            assert_eq!(
                deployment(docs)["spec"]["strategy"]["type"],
                "RollingUpdate"
            );
            assert!(args.contains(&"--leader-elect".to_owned()));
            assert!(kinds.contains(&"PodDisruptionBudget"));
            assert!(
                docs.iter()
                    .any(|d| kind(d) == "Role" && d["rules"][0]["resources"][0] == "leases"),
                "no Lease Role"
            );
        }
        other => panic!("no expectations for ci/{other}"),
    }
}

/// `helm lint --strict`, then every ci/ file rendered, checked, and applied with a
/// server-side dry run (with crds/) to the control plane, by Helm 3 and Helm 4.
#[tokio::test]
async fn lint_render_and_server_dry_run_with_helm_3_and_4() {
    let helms = helms();
    let kubectl = chart_support::kubectl();
    let Some(env) = common::setup("chart-render").await else {
        return;
    };
    let other = common::unique_name("chart-render-b");
    kubectl_admin(&env, &["create", "namespace", &other], None);
    let watch = format!("watchNamespace={{{},{other}}}", env.namespace);
    let chart = chart_dir();
    for (label, helm) in &helms {
        let version = run_ok(helm, &["version", "--short"], None);
        let major = if *label == "helm3" { "v3." } else { "v4." };
        assert!(version.starts_with(major), "{label} reports {version}");
        let lint = run_ok(
            helm,
            &[
                "lint",
                "--strict",
                "--kube-version",
                KUBE_VERSION,
                chart.to_str().expect("UTF-8"),
            ],
            None,
        );
        assert!(lint.contains("0 chart(s) failed"), "{label} lint: {lint}");
        for file in ci_files() {
            let name = file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let file_arg = file.to_str().expect("UTF-8").to_owned();
            let mut extra = vec!["-f", &file_arg];
            let namespaced = name == "namespaced-values.yaml";
            // Watch namespaces that exist on this control plane.
            if namespaced {
                extra.extend_from_slice(&["--set", &watch]);
            }
            let rendered = template(helm, "ops", &env.namespace, &extra);
            let docs = documents(&rendered);
            check_rendering(&name, &docs, &[&env.namespace, &other]);
            if name == "servicemonitor-values.yaml" {
                let with_api = template(
                    helm,
                    "ops",
                    &env.namespace,
                    &[
                        "-f",
                        &file_arg,
                        "--api-versions",
                        "monitoring.coreos.com/v1/ServiceMonitor",
                    ],
                );
                assert!(
                    documents(&with_api)
                        .iter()
                        .any(|d| kind(d) == "ServiceMonitor"),
                    "{label}: no ServiceMonitor although its API exists"
                );
            }
            // The API server validates every object (schema, RBAC rules, fields)
            // without persisting anything.
            let kubeconfig = env.kubeconfig.to_str().expect("UTF-8");
            let crds = root().join("crds");
            let out = run_ok(
                &kubectl,
                &[
                    "--kubeconfig",
                    kubeconfig,
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "--field-manager",
                    "helm-dry-run",
                    "-f",
                    crds.to_str().expect("UTF-8"),
                    "-f",
                    "-",
                ],
                Some(rendered.as_bytes()),
            );
            assert!(
                out.contains(
                    "deployment.apps/ops-confluence-operator serverside-applied (server dry run)"
                ),
                "{label} {name}: {out}"
            );
        }
    }
}

/// The example Secret, connector and access grant are valid for the API server (CRD
/// schema and CEL rules included).
#[tokio::test]
async fn examples_pass_a_server_dry_run() {
    let kubectl = chart_support::kubectl();
    let Some(env) = common::setup("chart-example").await else {
        return;
    };
    for (file, applied) in [
        (
            "examples/connector.yaml",
            "confluenceconnector.confluence-operator.io/acme serverside-applied",
        ),
        (
            "examples/access-grant.yaml",
            "confluenceaccessgrant.confluence-operator.io/ann-incident-4711 serverside-applied",
        ),
    ] {
        let text = std::fs::read_to_string(root().join(file)).expect(file);
        assert!(text.contains("namespace: identity"), "{file}");
        let text = text.replace(
            "namespace: identity",
            &format!("namespace: {}", env.namespace),
        );
        let out = run_ok(
            &kubectl,
            &[
                "--kubeconfig",
                env.kubeconfig.to_str().expect("UTF-8"),
                "apply",
                "--server-side",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(text.as_bytes()),
        );
        assert!(out.contains(applied), "{file}: {out}");
    }
}

/// Wrong types are rejected by values.schema.json; two replicas without leader
/// election and unknown top-level values fail rendering.
#[test]
fn schema_and_guards_reject_bad_values() {
    for (label, helm) in helms() {
        let err = run_err(
            &helm,
            &[
                "template",
                "x",
                chart_dir().to_str().expect("UTF-8"),
                "--kube-version",
                KUBE_VERSION,
                "--set",
                "concurrent=many",
            ],
            None,
        );
        assert!(err.contains("concurrent"), "{label}: {err}");
        let err = run_err(
            &helm,
            &[
                "template",
                "x",
                chart_dir().to_str().expect("UTF-8"),
                "--kube-version",
                KUBE_VERSION,
                "--set",
                "leaderElect=yes",
            ],
            None,
        );
        assert!(err.contains("leaderElect"), "{label}: {err}");
        let err = run_err(
            &helm,
            &[
                "template",
                "x",
                chart_dir().to_str().expect("UTF-8"),
                "--kube-version",
                KUBE_VERSION,
                "--set",
                "replicaCount=2",
            ],
            None,
        );
        assert!(
            err.contains("replicaCount > 1 needs leaderElect: true"),
            "{label}: {err}"
        );
        let err = run_err(
            &helm,
            &[
                "template",
                "x",
                chart_dir().to_str().expect("UTF-8"),
                "--kube-version",
                KUBE_VERSION,
                "--set",
                "replicas=2",
            ],
            None,
        );
        assert!(err.contains("replicas"), "{label}: {err}");
        // extraArgs: values, bare switches and dropped switches, all accepted by the CLI.
        let rendered = template(
            &helm,
            "x",
            "default",
            &[
                "--set",
                "extraArgs.selector=shard=a",
                "--set",
                "extraArgs.allow-insecure-http=true",
                "--set",
                "extraArgs.leader-elect=false",
                "--set",
                "extraArgs.allowed-site-suffix=.wiki.example.internal",
            ],
        );
        let args = args(&documents(&rendered));
        let run = parse_run_args(&args);
        assert_eq!(
            run.selector.as_deref(),
            Some("shard=a"),
            "{label}: {args:?}"
        );
        assert!(run.site.allow_insecure_http, "{label}: {args:?}");
        assert!(!run.leader_elect, "{label}: {args:?}");
        assert_eq!(
            run.site.allowed_site_suffixes,
            [".wiki.example.internal"],
            "{label}: {args:?}"
        );
        // The same two replicas with leader election render.
        template(
            &helm,
            "x",
            "default",
            &["--set", "replicaCount=2", "--set", "leaderElect=true"],
        );
        // Older clusters are refused by kubeVersion.
        let err = run_err(
            &helm,
            &[
                "template",
                "x",
                chart_dir().to_str().expect("UTF-8"),
                "--kube-version",
                "v1.32.0",
            ],
            None,
        );
        assert!(
            err.contains("kubeVersion") || err.contains("incompatible"),
            "{label}: {err}"
        );
    }
}

/// `helm install` (no --wait: nothing runs pods here) creates the release's objects;
/// `helm uninstall` removes them but leaves the CRD and the connectors.
#[tokio::test]
async fn install_and_uninstall_keep_crds_and_connectors() {
    let helms = helms();
    let Some(env) = common::setup("chart-install").await else {
        return;
    };
    let kubeconfig = env.kubeconfig.to_str().expect("UTF-8").to_owned();
    let chart = chart_dir();
    let connector = format!(
        "apiVersion: confluence-operator.io/v1alpha1\nkind: ConfluenceConnector\nmetadata:\n  name: acme\n  namespace: {}\nspec:\n  site: acme.atlassian.net\n  credentials:\n    secretRef:\n      name: confluence-credentials\n",
        env.namespace
    );
    for (label, helm) in &helms {
        // Cluster-scoped names carry the release name: one per Helm major and test run.
        let release = format!("{}-{label}", env.namespace);
        let out = run_ok(
            helm,
            &[
                "install",
                &release,
                chart.to_str().expect("UTF-8"),
                "--kubeconfig",
                &kubeconfig,
                "--namespace",
                &env.namespace,
                "--set",
                "metrics.service.enabled=true",
            ],
            None,
        );
        assert!(out.contains("STATUS: deployed"), "{label}: {out}");
        assert!(
            out.contains("kubectl get cfc -A"),
            "{label}: NOTES missing: {out}"
        );
        let fullname = format!("{release}-confluence-operator");
        let fullname = if release.contains("confluence-operator") {
            release.clone()
        } else {
            fullname
        };
        for object in [
            format!("deployment/{fullname}"),
            format!("serviceaccount/{fullname}"),
            format!("service/{fullname}-metrics"),
        ] {
            kubectl_admin(&env, &["get", "-n", &env.namespace, &object], None);
        }
        for object in [
            format!("clusterrole/{fullname}"),
            format!("clusterrolebinding/{fullname}"),
            format!("clusterrole/{fullname}-view"),
            format!("clusterrole/{fullname}-edit"),
        ] {
            kubectl_admin(&env, &["get", &object], None);
        }
        apply(&env, &connector);

        let out = run_ok(
            helm,
            &[
                "uninstall",
                &release,
                "--kubeconfig",
                &kubeconfig,
                "--namespace",
                &env.namespace,
            ],
            None,
        );
        assert!(out.contains("uninstalled"), "{label}: {out}");
        let gone = run_err(
            &chart_support::kubectl(),
            &[
                "--kubeconfig",
                &kubeconfig,
                "get",
                "-n",
                &env.namespace,
                &format!("deployment/{fullname}"),
            ],
            None,
        );
        assert!(gone.contains("NotFound"), "{label}: {gone}");
        kubectl_admin(
            &env,
            &["get", "crd", "confluenceconnectors.confluence-operator.io"],
            None,
        );
        kubectl_admin(&env, &["get", "-n", &env.namespace, "cfc/acme"], None);
    }
}
