//! Leader election against the real binary: of two operators with `--leader-elect`,
//! only the Lease holder reconciles; when it is killed, the standby takes over within
//! the lease duration and serves a sync request.

mod common;
mod operator_support;

use std::time::{Duration, Instant};

use fake_confluence::{FakeConfig, Preset};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use operator_support::{
    Operator, fixture, in_reconcile_span, parse_openmetrics, request_value, samples, tree,
};

const SECRET: &str = "confluence-credentials";
const LEASE: &str = "confluence-operator";

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

async fn leader_gauge(op: &Operator) -> f64 {
    let text = op.metrics().await;
    let all = parse_openmetrics(&text)
        .unwrap_or_else(|e| panic!("/metrics is not valid OpenMetrics: {e}\n{text}"));
    let values: Vec<f64> = samples(&all, "confluence_operator_leader", &[])
        .iter()
        .map(|s| s.value)
        .collect();
    assert_eq!(
        values.len(),
        1,
        "one confluence_operator_leader sample expected:\n{text}"
    );
    values[0]
}

fn reconcile_lines(op: &Operator) -> usize {
    op.log_lines()
        .iter()
        .filter(|l| in_reconcile_span(l))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let Some(fx) = fixture("ctl-ha", FakeConfig::preset(Preset::Small)).await else {
        return;
    };
    let ns = fx.ns().to_owned();
    let leases: Api<Lease> = fx.env.api();
    let standby_data = tempfile::Builder::new()
        .prefix("controller-data-b-")
        .tempdir()
        .expect("second data directory");

    let mut a_options = fx.operator_options("a");
    a_options.leader_election_namespace = Some(ns.clone());
    a_options.identity = Some("operator-a".into());
    let mut a = Operator::start(a_options).await;
    // The operator's identity is `<POD_NAME>-<pid>`.
    let a_id = format!("operator-a-{}", a.pid());
    common::wait_for_within(
        "operator-a to hold the Lease",
        Duration::from_secs(60),
        || async { (holder(&leases).await.as_deref() == Some(a_id.as_str())).then_some(()) },
    )
    .await;
    let mut b_options = fx.operator_options("b");
    b_options.leader_election_namespace = Some(ns.clone());
    b_options.identity = Some("operator-b".into());
    b_options.data_dir = standby_data.path().to_owned();
    let b = Operator::start(b_options).await;
    let b_id = format!("operator-b-{}", b.pid());

    fx.create_connected("acme", SECRET, &a).await;
    // Let the standby have every chance to (wrongly) act.
    tokio::time::sleep(Duration::from_secs(3)).await;

    assert_eq!(holder(&leases).await.as_deref(), Some(a_id.as_str()));
    assert!(
        reconcile_lines(&a) > 0,
        "the leader logged no reconcile:\n{}",
        a.log_tail(20)
    );
    assert_eq!(
        reconcile_lines(&b),
        0,
        "the standby reconciled:\n{}",
        b.log_tail(20)
    );
    assert_eq!(leader_gauge(&a).await, 1.0, "leader gauge of the leader");
    assert_eq!(leader_gauge(&b).await, 0.0, "leader gauge of the standby");
    assert!(
        tree(standby_data.path()).is_empty(),
        "the standby wrote files: {:?}",
        tree(standby_data.path())
    );
    let (status, _, _) = b.http_get("/readyz").await;
    assert_eq!(
        status, 200,
        "a standby is ready (readiness is not leadership)"
    );

    // The leader dies without releasing the Lease.
    let killed = Instant::now();
    a.sigkill().await;
    let took = common::wait_for_within(
        "operator-b to take the Lease over",
        Duration::from_secs(60),
        || async {
            (holder(&leases).await.as_deref() == Some(b_id.as_str())).then(|| killed.elapsed())
        },
    )
    .await;
    assert!(
        took <= Duration::from_secs(40),
        "take-over took {took:?} (lease duration 15s)"
    );
    common::print_uncaptured(&format!("leader take-over after {took:?}"));

    let value = request_value("after-failover");
    fx.request_sync("acme", &value).await;
    fx.wait_request_handled(
        "acme",
        &value,
        "the new leader to answer the sync request",
        Some(&b),
    )
    .await;
    assert!(
        reconcile_lines(&b) > 0,
        "the new leader logged no reconcile"
    );
    assert_eq!(leader_gauge(&b).await, 1.0, "leader gauge after take-over");
    assert!(
        !tree(standby_data.path()).is_empty(),
        "the new leader wrote no snapshot"
    );
}
