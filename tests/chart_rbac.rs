//! The chart's RBAC is sufficient, proved by running the real operator with nothing
//! but the chart's ServiceAccount: its objects come from `helm template`, applied to
//! the control plane; the operator's kubeconfig holds only a token minted for that
//! ServiceAccount (TokenRequest). Also namespaced mode: another namespace's connectors
//! and Secrets are out of reach.

mod chart_support;
mod common;
mod operator_support;

use std::time::Duration;

use chart_support::{apply, can_i, documents, helms, kind, select_kinds, template};
use confluence_operator::api::Phase;
use fake_confluence::{FakeConfig, Preset};
use operator_support::{
    FINALIZER, Fixture, Operator, SYNC_DEADLINE, fixture, is_connected, quiet_window, status_json,
};

const SECRET: &str = "confluence-credentials";
const RELEASE: &str = "ops";
const SERVICE_ACCOUNT: &str = "ops-confluence-operator";
/// Objects that carry permissions; the Deployment itself cannot run here (no kubelet).
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

fn user(namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:{SERVICE_ACCOUNT}")
}

/// Renders the chart into the fixture's namespace with `values`, gives its cluster-wide
/// objects names unique to this test (the release name is shared), applies the RBAC
/// objects and returns the rendering.
fn install_rbac(fx: &Fixture, values: &[&str]) -> Vec<serde_json::Value> {
    let (_, helm) = helms().remove(0);
    let mut extra = Vec::new();
    for v in values {
        extra.extend_from_slice(&["--set", v]);
    }
    let rendered = template(&helm, RELEASE, fx.ns(), &extra);
    let mut docs = documents(&rendered);
    for doc in &mut docs {
        if matches!(kind(doc), "ClusterRole" | "ClusterRoleBinding") {
            let name = doc["metadata"]["name"].as_str().expect("name").to_owned();
            doc["metadata"]["name"] = format!("{name}-{}", fx.ns()).into();
            if kind(doc) == "ClusterRoleBinding" {
                let role = doc["roleRef"]["name"].as_str().expect("roleRef").to_owned();
                doc["roleRef"]["name"] = format!("{role}-{}", fx.ns()).into();
            }
        }
    }
    apply(&fx.env, &select_kinds(&docs, &RBAC_KINDS));
    docs
}

/// Starts the operator with only the ServiceAccount's token, leader election on (the
/// chart's Lease Role), allowed to reach the fake.
async fn start_as_service_account(fx: &Fixture) -> Operator {
    let kubeconfig = chart_support::service_account_kubeconfig(&fx.env, fx.ns(), SERVICE_ACCOUNT);
    let mut options = fx.operator_options("chart-sa");
    options.kubeconfig = kubeconfig;
    options.leader_election_namespace = Some(fx.ns().to_owned());
    options.identity = Some("chart-sa-0".to_owned());
    Operator::start(options).await
}

/// Every line of the operator's log that reports an API call RBAC refused (the API
/// server's wording: `... is forbidden: User "..." cannot ...`).
fn forbidden_lines(op: &Operator) -> Vec<String> {
    op.log_text()
        .lines()
        .filter(|l| {
            l.contains("is forbidden")
                || l.contains("cannot list resource")
                || l.contains("cannot get resource")
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn operator_works_with_only_the_charts_cluster_rbac() {
    let _ = helms();
    let Some(fx) = fixture("chart-rbac", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    let docs = install_rbac(&fx, &["leaderElect=true"]);
    assert!(docs.iter().any(|d| kind(d) == "ClusterRoleBinding"));
    // Exactly the calls the operator makes: the API server's audit log of this test
    // shows every verb below used and nothing refused. The run below proves the set
    // sufficient; a new rule needs a new call.
    let role = docs
        .iter()
        .find(|d| {
            kind(d) == "ClusterRole"
                && d["metadata"]["name"] == format!("{SERVICE_ACCOUNT}-{}", fx.ns()).as_str()
        })
        .expect("the operator's ClusterRole");
    assert_eq!(
        role["rules"],
        serde_json::json!([
            {"apiGroups": ["confluence-operator.io"], "resources": ["confluenceconnectors"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["confluence-operator.io"], "resources": ["confluenceconnectors/status"], "verbs": ["get", "patch"]},
            {"apiGroups": ["confluence-operator.io"], "resources": ["confluenceaccessgrants"], "verbs": ["list", "watch", "patch"]},
            {"apiGroups": ["confluence-operator.io"], "resources": ["confluenceaccessgrants/status"], "verbs": ["get", "patch"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ]),
        "the operator's rules changed"
    );
    let lease_role = docs
        .iter()
        .find(|d| kind(d) == "Role" && d["rules"][0]["resources"][0] == "leases")
        .expect("the leader-election Role");
    assert_eq!(
        lease_role["rules"],
        serde_json::json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "patch"]}])
    );
    let sa = user(fx.ns());
    // The cluster-wide rules reach every namespace, Secrets read-only.
    assert!(can_i(&fx.env, &sa, "list", "secrets", None));
    assert!(can_i(
        &fx.env,
        &sa,
        "watch",
        "confluenceconnectors.confluence-operator.io",
        None
    ));
    assert!(!can_i(&fx.env, &sa, "update", "secrets", Some(fx.ns())));
    assert!(!can_i(
        &fx.env,
        &sa,
        "create",
        "customresourcedefinitions",
        None
    ));
    assert!(!can_i(
        &fx.env,
        &sa,
        "update",
        "confluenceconnectors.confluence-operator.io",
        Some(fx.ns())
    ));

    let op = start_as_service_account(&fx).await;
    // Happy path: Secret read, first sync, status written, finalizer added.
    let connected = fx.create_connected("acme", SECRET, &op).await;
    assert!(
        connected
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER)),
        "no finalizer: {:?}",
        connected.metadata.finalizers
    );
    // The Lease, through the chart's leader-election Role.
    let lease = chart_support::kubectl_admin(
        &fx.env,
        &[
            "get",
            "leases",
            "-n",
            fx.ns(),
            "-o",
            "jsonpath={.items[*].spec.holderIdentity}",
        ],
        None,
    );
    assert!(
        lease.contains("chart-sa-0"),
        "no Lease held by the operator: {lease:?}"
    );
    // Events, through events.k8s.io.
    let events = fx.events("acme").await;
    assert!(
        events
            .iter()
            .any(|e| e.reporting_controller.as_deref() == Some("confluence-operator")),
        "no Event from the operator: {events:?}"
    );

    // A Secret rotation is noticed (metadata watch) and read (get): a wrong token turns
    // the connector to AuthenticationFailed, the right one back to Connected.
    let cred = fx.fake.credential().clone();
    fx.put_secret(SECRET, &cred.email, "not-the-token").await;
    fx.wait_failed(
        "acme",
        Phase::NotConnected,
        "AuthenticationFailed",
        SYNC_DEADLINE,
        Some(&op),
    )
    .await;
    fx.put_valid_secret(SECRET).await;
    fx.wait_connected("acme", SYNC_DEADLINE, Some(&op)).await;
    let reasons: Vec<String> = fx
        .events("acme")
        .await
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(
        reasons.iter().any(|r| r == "AuthenticationFailed"),
        "no AuthenticationFailed Event: {reasons:?}"
    );

    // A just-in-time grant: resolved through a GET of the connector, its finalizer and
    // status written, the membership added and removed again on deletion.
    grant_and_revoke(&fx, &op).await;

    // Deletion: the finalizer cleans the snapshots up and lets go.
    let dir = fx.connector_dir("acme");
    assert!(dir.exists(), "no snapshot directory {}", dir.display());
    fx.delete_connector("acme").await;
    fx.wait_gone("acme", SYNC_DEADLINE, Some(&op)).await;
    assert!(!dir.exists(), "snapshots left behind in {}", dir.display());

    assert_eq!(
        forbidden_lines(&op),
        Vec::<String>::new(),
        "refused API calls"
    );
}

/// A grant on connector `acme` reaches Active (the fake shows the membership) and its
/// deletion removes the membership through the grant's finalizer.
async fn grant_and_revoke(fx: &Fixture, op: &Operator) {
    use confluence_operator::api::{
        ConfluenceAccessGrant, ConfluenceAccessGrantSpec, ConnectorRef, GrantPhase, GroupSelector,
        UserSelector,
    };
    use kube::api::{Api, DeleteParams, PostParams};

    let truth = fx.fake.truth();
    let (group, account) = truth
        .groups
        .ids
        .iter()
        .flat_map(|g| truth.users.ids.iter().map(move |u| (g.clone(), u.clone())))
        .find(|(g, u)| !truth.users.disabled_ids.contains(u) && !fx.fake.is_member(g, u))
        .expect("an outsider in the small tenant");
    let grants: Api<ConfluenceAccessGrant> = fx.env.api();
    let spec = ConfluenceAccessGrantSpec {
        connector_ref: ConnectorRef {
            name: "acme".into(),
        },
        group: GroupSelector {
            name: None,
            id: Some(group.clone()),
        },
        user: UserSelector {
            account_id: Some(account.clone()),
            email: None,
        },
        duration: "1h".into(),
        reason: "RBAC check".into(),
    };
    grants
        .create(
            &PostParams::default(),
            &ConfluenceAccessGrant::new("jit", spec),
        )
        .await
        .expect("create the grant");
    common::wait_for_within("the grant to be Active", SYNC_DEADLINE, || async {
        let g = grants.get("jit").await.ok()?;
        (g.status.and_then(|s| s.phase) == Some(GrantPhase::Active)).then_some(())
    })
    .await;
    assert!(
        fx.fake.is_member(&group, &account),
        "log {}",
        op.log_path.display()
    );
    grants
        .delete("jit", &DeleteParams::default())
        .await
        .expect("delete the grant");
    common::wait_for_within("the grant to be gone", SYNC_DEADLINE, || async {
        grants.get_opt("jit").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!fx.fake.is_member(&group, &account), "revoked on deletion");
}

#[tokio::test]
async fn namespaced_mode_reaches_only_the_watched_namespaces() {
    let _ = helms();
    let Some(fx) = fixture("chart-rbac-ns", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    let Some(other) = common::setup("chart-rbac-other").await else {
        return;
    };
    let docs = install_rbac(
        &fx,
        &[
            "leaderElect=true",
            &format!("watchNamespace={{{}}}", fx.ns()),
        ],
    );
    assert!(
        !docs.iter().any(|d| kind(d) == "ClusterRoleBinding"),
        "namespaced mode must not bind cluster-wide rules"
    );
    let deployment = docs
        .iter()
        .find(|d| kind(d) == "Deployment")
        .expect("Deployment");
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains(&format!("--namespace={}", fx.ns())), "{args}");

    let sa = user(fx.ns());
    assert!(can_i(&fx.env, &sa, "get", "secrets", Some(fx.ns())));
    assert!(!can_i(
        &fx.env,
        &sa,
        "get",
        "secrets",
        Some(&other.namespace)
    ));
    assert!(!can_i(&fx.env, &sa, "list", "secrets", None));
    assert!(!can_i(
        &fx.env,
        &sa,
        "list",
        "confluenceconnectors.confluence-operator.io",
        Some(&other.namespace)
    ));

    // A connector and its Secret in the other namespace, created first.
    let cred = fx.fake.credential().clone();
    chart_support::apply(
        &other,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {SECRET}\n  namespace: {ns}\nstringData:\n  username: {email}\n  apiToken: {token}\n---\napiVersion: confluence-operator.io/v1alpha1\nkind: ConfluenceConnector\nmetadata:\n  name: outside\n  namespace: {ns}\nspec:\n  site: {site}\n  credentials:\n    secretRef:\n      name: {SECRET}\n",
            ns = other.namespace,
            email = cred.email,
            token = cred.token,
            site = fx.fake.base_url(),
        ),
    );
    // A real GET with the ServiceAccount's token is refused.
    let kubeconfig = chart_support::service_account_kubeconfig(&fx.env, fx.ns(), SERVICE_ACCOUNT);
    let refused = chart_support::run_err(
        &chart_support::kubectl(),
        &[
            "--kubeconfig",
            kubeconfig.to_str().expect("UTF-8"),
            "get",
            "secret",
            SECRET,
            "-n",
            &other.namespace,
        ],
        None,
    );
    assert!(refused.contains("Forbidden"), "{refused}");

    let op = start_as_service_account(&fx).await;
    fx.create_connected("acme", SECRET, &op).await;
    // By now the operator has long listed its namespace; give a stray watch a moment
    // more, then the outside connector must still carry only the CRD's default status.
    quiet_window(Duration::from_secs(3)).await;
    let api: kube::Api<confluence_operator::api::ConfluenceConnector> = other.api();
    let outside = api.get("outside").await.expect("outside connector");
    assert!(!is_connected(&outside));
    let status = outside.status.as_ref().expect("CRD default status");
    assert!(
        status.conditions.is_empty(),
        "touched: {}",
        status_json(&outside)
    );
    assert_eq!(
        status.observed_generation,
        Some(-1),
        "{}",
        status_json(&outside)
    );
    assert!(
        outside.metadata.finalizers.is_none(),
        "{:?}",
        outside.metadata.finalizers
    );
    assert_eq!(
        forbidden_lines(&op),
        Vec::<String>::new(),
        "refused API calls"
    );
}
