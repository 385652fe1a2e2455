//! The committed CRD (`crds/*.yaml`) against a real kube-apiserver: it installs both
//! ways users install it, its schema accepts and rejects what the API promises, and
//! the status subresource, printer columns and RBAC behave as the operator expects.
//!
//! Objects are handled as `DynamicObject`/JSON on purpose: these tests check what
//! the YAML does, independently of the Rust types it is generated from.

mod common;

use std::process::Stdio;

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::core::Request;
use serde_json::{Value, json};

use common::TestEnv;

const GROUP: &str = "confluence-operator.io";
const VERSION: &str = "v1alpha1";
const KIND: &str = "ConfluenceConnector";
const PLURAL: &str = "confluenceconnectors";
const CRD_NAME: &str = "confluenceconnectors.confluence-operator.io";

fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.into(),
        plural: PLURAL.into(),
    }
}

fn connectors(env: &TestEnv) -> Api<DynamicObject> {
    Api::namespaced_with(env.client.clone(), &env.namespace, &resource())
}

fn valid_spec() -> Value {
    json!({
        "site": "acme.atlassian.net",
        "credentials": {"secretRef": {"name": "confluence-credentials", "usernameKey": "username", "apiTokenKey": "apiToken"}},
        "sync": {"interval": "1h", "timeout": "30m", "spaces": true, "skipPersonalSpaces": false},
        "suspend": false
    })
}

fn connector(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("a well-formed DynamicObject")
}

async fn create(env: &TestEnv, name: &str, spec: Value) -> Result<DynamicObject, kube::Error> {
    connectors(env)
        .create(&PostParams::default(), &connector(name, spec))
        .await
}

fn generation(obj: &DynamicObject) -> i64 {
    obj.metadata
        .generation
        .expect("metadata.generation is set by the server")
}

#[tokio::test]
async fn crds_apply_server_side_and_become_established() {
    // setup() applies every CRD with server-side apply and waits for Established.
    let Some(env) = common::setup("crd-ssa").await else {
        return;
    };
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(env.client.clone());
    let crd = crds.get(CRD_NAME).await.expect("CRD is installed");
    assert_eq!(crd.spec.group, GROUP);
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, KIND);
    assert_eq!(crd.spec.names.plural, PLURAL);
    assert!(
        crd.spec
            .names
            .short_names
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|s| s == "cfc"),
        "shortName cfc missing: {:?}",
        crd.spec.names.short_names
    );
    assert!(
        crd.spec
            .versions
            .iter()
            .any(|v| v.name == VERSION && v.served && v.storage),
        "{VERSION} must be served and stored"
    );
    let accepted = crd
        .status
        .and_then(|s| s.accepted_names)
        .expect("acceptedNames");
    assert_eq!(
        accepted.plural, PLURAL,
        "names were accepted without conflict"
    );

    // Re-applying is idempotent and succeeds while the CRD is in use.
    create(&env, "before-reapply", valid_spec())
        .await
        .expect("create before re-apply");
    common::apply_crds(&env.client).await;
    connectors(&env)
        .get("before-reapply")
        .await
        .expect("object survives re-apply");
}

#[tokio::test]
async fn crds_apply_with_kubectl() {
    let Some(env) = common::setup("crd-kubectl").await else {
        return;
    };
    let kubectl = std::env::var_os("KUBECTL").unwrap_or_else(|| "kubectl".into());
    let mut command = tokio::process::Command::new(&kubectl);
    command
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .arg("apply")
        .args(
            common::crd_files()
                .iter()
                .flat_map(|f| [std::ffi::OsStr::new("-f"), f.as_os_str()]),
        )
        .stdin(Stdio::null());
    let output = match command.output().await {
        Ok(output) => output,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let reason = format!("{} not found", kubectl.to_string_lossy());
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
                panic!("kubectl is required under CI: {reason}");
            }
            common::print_uncaptured(&format!("SKIPPED (no kubectl): {reason}"));
            return;
        }
        Err(err) => panic!("cannot run kubectl: {err}"),
    };
    assert!(
        output.status.success(),
        "kubectl apply failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    common::wait_crd_established(&env.client, CRD_NAME).await;
    create(&env, "after-kubectl", valid_spec())
        .await
        .expect("CRD usable after kubectl apply");
}

#[tokio::test]
async fn valid_connector_is_accepted() {
    let Some(env) = common::setup("crd-valid").await else {
        return;
    };
    let created = create(&env, "full", valid_spec())
        .await
        .expect("a valid connector is accepted");
    assert_eq!(
        created.data["spec"],
        valid_spec(),
        "spec is stored as written"
    );
    assert_eq!(generation(&created), 1);

    // Only site and the Secret name are required; everything else has a code default.
    let minimal = json!({"site": "acme", "credentials": {"secretRef": {"name": "creds"}}});
    let created = create(&env, "minimal", minimal.clone())
        .await
        .expect("a minimal connector is accepted");
    assert_eq!(
        created.data["spec"], minimal,
        "no schema defaults are injected into spec"
    );

    for (i, site) in [
        "acme",
        "https://acme.atlassian.net",
        "https://acme.atlassian.net/wiki",
        "http://127.0.0.1:8080",
    ]
    .iter()
    .enumerate()
    {
        let spec = json!({"site": site, "credentials": {"secretRef": {"name": "creds"}}});
        create(&env, &format!("site-{i}"), spec)
            .await
            .unwrap_or_else(|err| panic!("site {site:?} rejected: {err}"));
    }
}

/// Each case: a name, a spec, and the field path the rejection message must name.
fn invalid_cases() -> Vec<(&'static str, Value, &'static str)> {
    let with = |pointer: &str, value: Value| {
        let mut spec = valid_spec();
        *spec
            .pointer_mut(pointer)
            .expect("pointer into the valid spec") = value;
        spec
    };
    let without = |parent: &str, key: &str| {
        let mut spec = valid_spec();
        spec.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .expect("object in the valid spec")
            .remove(key);
        spec
    };
    vec![
        ("bad-site", with("/site", json!("not a host!")), "spec.site"),
        (
            "site-with-path",
            with("/site", json!("https://acme.atlassian.net/other")),
            "spec.site",
        ),
        ("empty-site", with("/site", json!("")), "spec.site"),
        ("missing-site", without("", "site"), "spec.site"),
        (
            "interval-too-short",
            with("/sync/interval", json!("30s")),
            "spec.sync.interval",
        ),
        (
            "interval-not-duration",
            with("/sync/interval", json!("hourly")),
            "spec.sync.interval",
        ),
        (
            "timeout-too-short",
            with("/sync/timeout", json!("59s")),
            "spec.sync.timeout",
        ),
        (
            "missing-secret-name",
            without("/credentials/secretRef", "name"),
            "spec.credentials.secretRef.name",
        ),
        (
            "empty-secret-name",
            with("/credentials/secretRef/name", json!("")),
            "spec.credentials.secretRef.name",
        ),
        (
            "missing-credentials",
            without("", "credentials"),
            "spec.credentials",
        ),
        ("site-wrong-type", with("/site", json!(42)), "spec.site"),
        (
            "suspend-wrong-type",
            with("/suspend", json!("yes")),
            "spec.suspend",
        ),
        (
            "spaces-wrong-type",
            with("/sync/spaces", json!("true")),
            "spec.sync.spaces",
        ),
        (
            "interval-wrong-type",
            with("/sync/interval", json!(3600)),
            "spec.sync.interval",
        ),
        (
            "secret-ref-wrong-type",
            with("/credentials/secretRef", json!("creds")),
            "spec.credentials.secretRef",
        ),
    ]
}

#[tokio::test]
async fn invalid_connectors_are_rejected_naming_the_field() {
    let Some(env) = common::setup("crd-invalid").await else {
        return;
    };
    let mut failures = Vec::new();
    for (name, spec, field) in invalid_cases() {
        match create(&env, name, spec.clone()).await {
            Ok(_) => failures.push(format!("{name}: accepted {spec}")),
            Err(kube::Error::Api(status)) if status.code == 422 => {
                if !status.message.contains(field) {
                    failures.push(format!(
                        "{name}: message does not name {field}: {}",
                        status.message
                    ));
                }
            }
            Err(err) => failures.push(format!("{name}: expected 422 Invalid, got {err}")),
        }
    }
    assert!(
        failures.is_empty(),
        "invalid connectors:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn unknown_fields_are_pruned() {
    let Some(env) = common::setup("crd-prune").await else {
        return;
    };
    let mut spec = valid_spec();
    spec["bogus"] = json!("x");
    spec["sync"]["everyFullMoon"] = json!(true);
    spec["credentials"]["secretRef"]["namespace"] = json!("other");
    let mut obj = connector("pruned", spec);
    obj.data["extraTopLevel"] = json!({"a": 1});
    let created = connectors(&env)
        .create(&PostParams::default(), &obj)
        .await
        .expect("unknown fields are dropped, not rejected");
    assert_eq!(
        created.data["spec"],
        valid_spec(),
        "unknown spec fields pruned"
    );
    assert!(
        created.data.get("extraTopLevel").is_none(),
        "unknown top-level field pruned"
    );
    let read = connectors(&env).get("pruned").await.expect("read back");
    assert_eq!(
        read.data["spec"],
        valid_spec(),
        "nothing unknown was stored"
    );
}

fn sample_status() -> Value {
    json!({
        "observedGeneration": 1,
        "phase": "Connected",
        "conditions": [{
            "type": "Ready",
            "status": "True",
            "reason": "Connected",
            "message": "synced 5 users and 2 groups",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 1
        }],
        "lastSyncTime": "2026-01-01T00:00:00Z",
        "summary": {
            "users": 5,
            "disabledUsers": 1,
            "groups": 2,
            "memberships": 7,
            "spaces": 3,
            "spacePermissions": 11
        }
    })
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status() {
    let Some(env) = common::setup("crd-status").await else {
        return;
    };
    let api = connectors(&env);
    let created = create(&env, "status", valid_spec()).await.expect("create");
    assert_eq!(generation(&created), 1);

    // Status written through /status: spec and generation untouched, and a spec
    // smuggled into the same request is ignored.
    let patch = json!({"status": sample_status(), "spec": {"site": "other.atlassian.net"}});
    let after_status = api
        .patch_status("status", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("status patch");
    assert_eq!(after_status.data["status"]["phase"], "Connected");
    assert_eq!(after_status.data["status"]["summary"]["users"], 5);
    assert_eq!(
        after_status.data["spec"],
        valid_spec(),
        "spec unchanged by a status write"
    );
    assert_eq!(
        generation(&after_status),
        1,
        "a status write does not bump generation"
    );

    // Status written through the main resource is ignored.
    let main_patch = json!({"status": {"phase": "Error"}});
    let after_main = api
        .patch(
            "status",
            &PatchParams::default(),
            &Patch::Merge(&main_patch),
        )
        .await
        .expect("patch");
    assert_eq!(
        after_main.data["status"]["phase"], "Connected",
        "status only changes through /status"
    );
    assert_eq!(generation(&after_main), 1);

    // A spec change bumps generation and keeps the status.
    let spec_patch = json!({"spec": {"sync": {"interval": "2h"}}});
    let after_spec = api
        .patch(
            "status",
            &PatchParams::default(),
            &Patch::Merge(&spec_patch),
        )
        .await
        .expect("spec patch");
    assert_eq!(after_spec.data["spec"]["sync"]["interval"], "2h");
    assert_eq!(generation(&after_spec), 2, "a spec change bumps generation");
    assert_eq!(after_spec.data["status"]["observedGeneration"], 1);

    // Metadata-only changes do not bump generation either.
    let label = json!({"metadata": {"labels": {"team": "identity"}}});
    let after_label = api
        .patch("status", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label patch");
    assert_eq!(generation(&after_label), 2);
}

#[tokio::test]
async fn status_is_validated_and_defaults_observed_generation() {
    let Some(env) = common::setup("crd-status-schema").await else {
        return;
    };
    let api = connectors(&env);
    create(&env, "status-schema", valid_spec())
        .await
        .expect("create");

    let patch = json!({"status": {"phase": "Syncing"}});
    let written = api
        .patch_status(
            "status-schema",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .expect("status");
    assert_eq!(
        written.data["status"]["observedGeneration"], -1,
        "observedGeneration defaults to -1"
    );

    let bad = json!({"status": {"phase": "Sleeping"}});
    match api
        .patch_status(
            "status-schema",
            &PatchParams::default(),
            &Patch::Merge(&bad),
        )
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "unexpected error: {status:?}");
            assert!(
                status.message.contains("status.phase"),
                "message names the field: {}",
                status.message
            );
        }
        other => panic!("an unknown phase must be rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn printer_columns_come_from_the_server() {
    let Some(env) = common::setup("crd-columns").await else {
        return;
    };
    let api = connectors(&env);
    create(&env, "columns", valid_spec()).await.expect("create");
    api.patch_status(
        "columns",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": sample_status()})),
    )
    .await
    .expect("status patch");

    let path = format!(
        "/apis/{GROUP}/{VERSION}/namespaces/{}/{PLURAL}",
        env.namespace
    );
    let mut request = Request::new(path)
        .list(&ListParams::default())
        .expect("list request");
    // What kubectl asks for: the server renders additionalPrinterColumns itself.
    request.headers_mut().insert(
        "accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
            .parse()
            .expect("valid header value"),
    );
    let table: Value = env.client.request(request).await.expect("Table response");
    assert_eq!(table["kind"], "Table", "server returned a Table: {table}");

    let columns: Vec<(String, i64)> = table["columnDefinitions"]
        .as_array()
        .expect("columnDefinitions")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_uppercase(),
                c["priority"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "NAME",
        "SITE",
        "STATUS",
        "READY",
        "USERS",
        "GROUPS",
        "LAST SYNC",
        "AGE",
        "MESSAGE",
    ] {
        assert!(
            names.contains(&expected),
            "column {expected} missing from {names:?}"
        );
    }
    assert!(
        columns.iter().any(|(n, p)| n == "MESSAGE" && *p > 0),
        "MESSAGE is a wide-only column: {columns:?}"
    );

    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "one connector in the namespace");
    let cells = rows[0]["cells"].as_array().expect("cells");
    let cell = |column: &str| {
        let index = names
            .iter()
            .position(|n| *n == column)
            .expect("known column");
        cells[index].clone()
    };
    assert_eq!(cell("NAME"), "columns");
    assert_eq!(cell("SITE"), "acme.atlassian.net");
    assert_eq!(cell("STATUS"), "Connected");
    assert_eq!(cell("READY"), "True");
    assert_eq!(cell("USERS"), 5);
    assert_eq!(cell("GROUPS"), 2);
    assert_eq!(cell("MESSAGE"), "synced 5 users and 2 groups");
    assert!(
        cell("LAST SYNC").as_str().is_some_and(|s| !s.is_empty()),
        "LAST SYNC rendered: {cells:?}"
    );
}

#[tokio::test]
async fn service_account_without_rbac_is_forbidden() {
    let Some(env) = common::setup("crd-rbac").await else {
        return;
    };
    create(&env, "guarded", valid_spec())
        .await
        .expect("create as admin");

    let nobody = env.client_as_service_account("nobody");
    let as_nobody: Api<DynamicObject> = Api::namespaced_with(nobody, &env.namespace, &resource());
    for (what, result) in [
        (
            "list",
            as_nobody.list(&ListParams::default()).await.map(|_| ()),
        ),
        ("get", as_nobody.get("guarded").await.map(|_| ())),
        (
            "create",
            as_nobody
                .create(&PostParams::default(), &connector("sneaky", valid_spec()))
                .await
                .map(|_| ()),
        ),
    ] {
        match result {
            Err(kube::Error::Api(status)) if status.code == 403 => {
                assert!(
                    status
                        .message
                        .contains(&format!("system:serviceaccount:{}:nobody", env.namespace)),
                    "{what}: the denial names the impersonated user: {}",
                    status.message
                );
            }
            other => panic!("{what} without RBAC must be forbidden, got {other:?}"),
        }
    }

    // Control: the same identity is allowed once a Role grants read access, so the
    // denials above come from RBAC and not from impersonation itself.
    let roles: Api<Role> = env.api();
    let role = Role {
        metadata: ObjectMeta {
            name: Some("connector-reader".into()),
            ..ObjectMeta::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![GROUP.into()]),
            resources: Some(vec![PLURAL.into()]),
            verbs: vec!["get".into(), "list".into()],
            ..PolicyRule::default()
        }]),
    };
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let bindings: Api<RoleBinding> = env.api();
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some("connector-reader".into()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: "connector-reader".into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "reader".into(),
            namespace: Some(env.namespace.clone()),
            ..Subject::default()
        }]),
    };
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");

    let reader: Api<DynamicObject> = Api::namespaced_with(
        env.client_as_service_account("reader"),
        &env.namespace,
        &resource(),
    );
    // RBAC changes reach the authorizer through an informer: wait instead of sleeping.
    common::wait_for("the RoleBinding to take effect", || async {
        reader.get("guarded").await.ok()
    })
    .await;
    match reader
        .create(
            &PostParams::default(),
            &connector("still-not", valid_spec()),
        )
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("create is outside the Role, got {other:?}"),
    }
}
