//! Prometheus metrics of the operator (conventions §5), exposed in OpenMetrics text format.
//!
//! One [`Metrics`] value is created at start-up and shared as `Arc<Metrics>` by the
//! controllers, the sync tasks, the Confluence client, the lease loop and the HTTP server.
//! Labels never get finer than a connector's namespace/name: no account ids, e-mails, group
//! or space names, URLs or error text.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Prefix of every metric name.
pub const PREFIX: &str = "confluence_operator";

/// Values of the `status` label of `connector_status_condition`, one series each.
const CONDITION_STATUSES: [&str; 3] = ["True", "False", "Unknown"];

/// Reconciles of a short controller loop: a Secret GET and a status write, so 1 ms … 10 s.
const RECONCILE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A full sync pages through a whole tenant: from a tiny site to an hour-long crawl.
const SYNC_BUCKETS: [f64; 14] = [
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

/// Single Confluence REST calls, including slow paginated pages and client time-outs.
const API_REQUEST_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindResultLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindErrorLabels {
    kind: String,
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    namespace: String,
    name: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    namespace: String,
    name: String,
    condition: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    namespace: String,
    name: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChangeLabels {
    namespace: String,
    name: String,
    change: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointCodeLabels {
    endpoint: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: String,
}

/// A histogram family whose buckets come from a plain function, so the type stays nameable.
type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Label values that exist for one connector. prometheus-client families cannot be
/// iterated by label, so without this record `forget_connector` could not find the series
/// of a deleted connector, and stale conditions could not be told apart from current ones.
#[derive(Debug, Default)]
struct ConnectorSeries {
    sync_results: BTreeSet<String>,
    conditions: BTreeSet<String>,
    object_types: BTreeSet<String>,
    access_changes: BTreeSet<String>,
    last_success: bool,
}

/// Every metric family of the operator, registered under the `confluence_operator` prefix.
///
/// All methods take `&self` and are cheap; the value is `Send + Sync` and meant to be
/// shared as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindResultLabels, Counter>,
    reconcile_errors: Family<KindErrorLabels, Counter>,
    reconcile_duration: HistogramFamily<KindLabels>,
    sync_duration: HistogramFamily<ResultLabels>,
    syncs: Family<SyncLabels, Counter>,
    connector_condition: Family<ConditionLabels, Gauge>,
    connector_last_success: Family<ConnectorLabels, Gauge<f64, AtomicU64>>,
    connector_objects: Family<ObjectLabels, Gauge>,
    access_changes: Family<ChangeLabels, Counter>,
    api_requests: Family<EndpointCodeLabels, Counter>,
    api_request_duration: HistogramFamily<EndpointLabels>,
    api_retries: Family<ReasonLabels, Counter>,
    grants_active: Gauge,
    grants_granted: Counter,
    grants_revoked: Family<CauseLabels, Counter>,
    leader: Gauge,
    /// Held while a connector's series change, so the record and the families never
    /// disagree when a sync finishes concurrently with the connector's deletion.
    connectors: Mutex<HashMap<(String, String), ConnectorSeries>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates the registry and registers every family, all empty.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);

        // Counters and units are registered without `_total`/`_seconds`: prometheus-client
        // appends them itself (and panics on `_total` in debug builds).
        let reconciles = Family::<KindResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by resource kind and result",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<KindErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by resource kind and error class",
            reconcile_errors.clone(),
        );
        let reconcile_duration: HistogramFamily<KindLabels> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of reconciles, by resource kind",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let sync_duration: HistogramFamily<ResultLabels> =
            Family::new_with_constructor(sync_histogram);
        registry.register_with_unit(
            "sync_duration",
            "Duration of connector syncs, by result",
            Unit::Seconds,
            sync_duration.clone(),
        );
        let syncs = Family::<SyncLabels, Counter>::default();
        registry.register(
            "syncs",
            "Connector syncs finished, by connector and result",
            syncs.clone(),
        );
        let connector_condition = Family::<ConditionLabels, Gauge>::default();
        registry.register(
            "connector_status_condition",
            "Status conditions of connectors: 1 for the current status of each condition, 0 for the others",
            connector_condition.clone(),
        );
        let connector_last_success = Family::<ConnectorLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "connector_last_success_timestamp",
            "Unix time of the last successful sync of each connector",
            Unit::Seconds,
            connector_last_success.clone(),
        );
        let connector_objects = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "connector_objects",
            "Objects in the last successful snapshot of each connector, by type",
            connector_objects.clone(),
        );
        let access_changes = Family::<ChangeLabels, Counter>::default();
        registry.register(
            "access_changes",
            "Access changes found between consecutive snapshots of each connector, by kind \
             (usersAdded, usersRemoved, usersEnabled, usersDisabled, membershipsAdded, \
             membershipsRemoved, permissionsAdded, permissionsRemoved)",
            access_changes.clone(),
        );
        let api_requests = Family::<EndpointCodeLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Confluence API requests, by route template and HTTP status (error for transport failures)",
            api_requests.clone(),
        );
        let api_request_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(api_request_histogram);
        registry.register_with_unit(
            "api_request_duration",
            "Duration of Confluence API requests, by route template",
            Unit::Seconds,
            api_request_duration.clone(),
        );
        let api_retries = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "api_retries",
            "Retried Confluence API requests, by reason",
            api_retries.clone(),
        );
        let grants_active = Gauge::default();
        registry.register(
            "access_grants_active",
            "ConfluenceAccessGrants whose membership is in place now",
            grants_active.clone(),
        );
        let grants_granted = Counter::default();
        registry.register(
            "access_grants_granted",
            "Memberships added (or found in place) for ConfluenceAccessGrants",
            grants_granted.clone(),
        );
        let grants_revoked = Family::<CauseLabels, Counter>::default();
        registry.register(
            "access_grants_revoked",
            "Grant memberships ended, by cause (expired, deleted)",
            grants_revoked.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica runs the controllers as leader, else 0",
            leader.clone(),
        );

        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            sync_duration,
            syncs,
            connector_condition,
            connector_last_success,
            connector_objects,
            access_changes,
            api_requests,
            api_request_duration,
            api_retries,
            grants_active,
            grants_granted,
            grants_revoked,
            leader,
            connectors: Mutex::new(HashMap::new()),
        }
    }

    /// Records a finished reconcile of `kind` (e.g. `ConfluenceConnector`) with `result`
    /// (e.g. `success`, `error`) that took `seconds`.
    pub fn reconciled(&self, kind: &str, result: &str, seconds: f64) {
        self.reconciles
            .get_or_create(&KindResultLabels {
                kind: kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        observe(
            &self.reconcile_duration,
            &KindLabels {
                kind: kind.to_owned(),
            },
            seconds,
        );
    }

    /// Counts a failed reconcile of `kind`; `error` must be a fixed class such as
    /// `Error::metric_label()`, never error text.
    pub fn reconcile_error(&self, kind: &str, error: &str) {
        self.reconcile_errors
            .get_or_create(&KindErrorLabels {
                kind: kind.to_owned(),
                error: error.to_owned(),
            })
            .inc();
    }

    /// Records a finished sync of connector `namespace/name` with `result` that took `seconds`.
    pub fn sync_finished(&self, namespace: &str, name: &str, result: &str, seconds: f64) {
        let mut connectors = self.lock_connectors();
        self.syncs
            .get_or_create(&SyncLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        connectors
            .entry(key(namespace, name))
            .or_default()
            .sync_results
            .insert(result.to_owned());
        drop(connectors);
        observe(
            &self.sync_duration,
            &ResultLabels {
                result: result.to_owned(),
            },
            seconds,
        );
    }

    /// Mirrors a connector's status conditions, External Secrets style: for every condition
    /// type present, one series per status (`True`, `False`, `Unknown`) with 1 on the current
    /// status and 0 on the others. Types that were exported before but are missing from
    /// `conditions` lose their series. If a type appears twice, the last entry wins.
    pub fn set_conditions(&self, namespace: &str, name: &str, conditions: &[Condition]) {
        let current: BTreeMap<&str, &str> = conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();

        let mut connectors = self.lock_connectors();
        let series = connectors.entry(key(namespace, name)).or_default();

        for stale in series
            .conditions
            .iter()
            .filter(|condition| !current.contains_key(condition.as_str()))
        {
            for status in CONDITION_STATUSES {
                self.connector_condition
                    .remove(&condition_labels(namespace, name, stale, status));
            }
        }

        for (condition, current_status) in &current {
            for status in CONDITION_STATUSES {
                self.connector_condition
                    .get_or_create(&condition_labels(namespace, name, condition, status))
                    .set(i64::from(status == *current_status));
            }
        }
        series.conditions = current.keys().map(|c| (*c).to_owned()).collect();
    }

    /// Sets the Unix time (seconds) of connector `namespace/name`'s last successful sync.
    pub fn set_last_success(&self, namespace: &str, name: &str, unix_seconds: f64) {
        let mut connectors = self.lock_connectors();
        self.connector_last_success
            .get_or_create(&ConnectorLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
            .set(unix_seconds);
        connectors
            .entry(key(namespace, name))
            .or_default()
            .last_success = true;
    }

    /// Replaces the object counts of connector `namespace/name` with `counts`, pairs of
    /// type (`users`, `disabledUsers`, `groups`, `memberships`, `spaces`,
    /// `spacePermissions`) and number. Types exported before but absent from `counts` are
    /// removed, so the gauges always describe one snapshot.
    pub fn set_objects(&self, namespace: &str, name: &str, counts: &[(&'static str, i64)]) {
        let mut connectors = self.lock_connectors();
        let series = connectors.entry(key(namespace, name)).or_default();

        let current: BTreeSet<String> = counts.iter().map(|(t, _)| (*t).to_owned()).collect();
        for stale in series.object_types.difference(&current) {
            self.connector_objects
                .remove(&object_labels(namespace, name, stale));
        }
        for (object_type, count) in counts {
            self.connector_objects
                .get_or_create(&object_labels(namespace, name, object_type))
                .set(*count);
        }
        series.object_types = current;
    }

    /// Drops every series labelled with connector `namespace/name` (syncs, conditions,
    /// last success, objects), for a deleted connector.
    pub fn forget_connector(&self, namespace: &str, name: &str) {
        let mut connectors = self.lock_connectors();
        let Some(series) = connectors.remove(&key(namespace, name)) else {
            return;
        };
        for result in &series.sync_results {
            self.syncs.remove(&SyncLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                result: result.clone(),
            });
        }
        for condition in &series.conditions {
            for status in CONDITION_STATUSES {
                self.connector_condition
                    .remove(&condition_labels(namespace, name, condition, status));
            }
        }
        if series.last_success {
            self.connector_last_success.remove(&ConnectorLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
        for object_type in &series.object_types {
            self.connector_objects
                .remove(&object_labels(namespace, name, object_type));
        }
        for change in &series.access_changes {
            self.access_changes.remove(&ChangeLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                change: change.clone(),
            });
        }
    }

    /// Adds the access changes of one sync of connector `namespace/name`; `changes` pairs a
    /// fixed kind name (e.g. `usersAdded`) with its count. Zero counts still create the
    /// series, so a rate over them reads 0 rather than nothing.
    pub fn access_changed(&self, namespace: &str, name: &str, changes: &[(&str, u64)]) {
        let mut connectors = self.lock_connectors();
        let series = connectors.entry(key(namespace, name)).or_default();
        for (change, n) in changes {
            self.access_changes
                .get_or_create(&ChangeLabels {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    change: (*change).to_owned(),
                })
                .inc_by(*n);
            series.access_changes.insert((*change).to_owned());
        }
    }

    /// Sets how many grants are `Active`.
    pub fn set_active_grants(&self, count: i64) {
        self.grants_active.set(count);
    }

    /// Counts a membership granted (or found in place) for a grant.
    pub fn grant_granted(&self) {
        self.grants_granted.inc();
    }

    /// Counts a grant's membership ended; `cause` is `expired` or `deleted`.
    pub fn grant_revoked(&self, cause: &str) {
        self.grants_revoked
            .get_or_create(&CauseLabels {
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// Records one Confluence API request to route template `endpoint` (e.g.
    /// `/wiki/rest/api/group`): `code` is the HTTP status, `None` for a transport failure.
    pub fn api_request(&self, endpoint: &'static str, code: Option<u16>, seconds: f64) {
        let code = code.map_or_else(|| "error".to_owned(), |c| c.to_string());
        self.api_requests
            .get_or_create(&EndpointCodeLabels {
                endpoint: endpoint.to_owned(),
                code,
            })
            .inc();
        observe(
            &self.api_request_duration,
            &EndpointLabels {
                endpoint: endpoint.to_owned(),
            },
            seconds,
        );
    }

    /// Counts one retried API request; `reason` is a fixed class such as `429` or `timeout`.
    pub fn api_retry(&self, reason: &'static str) {
        self.api_retries
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Sets the `leader` gauge: 1 while this replica runs the controllers.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Encodes every metric in OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// A panic elsewhere while holding the lock leaves the record usable (every update is
    /// completed before the next one starts), so poisoning is ignored rather than spreading
    /// the panic into every later metric call.
    fn lock_connectors(&self) -> MutexGuard<'_, HashMap<(String, String), ConnectorSeries>> {
        self.connectors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(RECONCILE_BUCKETS)
}

fn sync_histogram() -> Histogram {
    Histogram::new(SYNC_BUCKETS)
}

fn api_request_histogram() -> Histogram {
    Histogram::new(API_REQUEST_BUCKETS)
}

/// A NaN or negative duration (a clock going backwards, a bug) would poison the histogram
/// sum forever, so it is dropped instead of observed.
fn observe<S>(family: &HistogramFamily<S>, labels: &S, seconds: f64)
where
    S: Clone + std::hash::Hash + Eq,
{
    if seconds.is_finite() && seconds >= 0.0 {
        family.get_or_create(labels).observe(seconds);
    }
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_owned(), name.to_owned())
}

fn condition_labels(namespace: &str, name: &str, condition: &str, status: &str) -> ConditionLabels {
    ConditionLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        condition: condition.to_owned(),
        status: status.to_owned(),
    }
}

fn object_labels(namespace: &str, name: &str, object_type: &str) -> ObjectLabels {
    ObjectLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        r#type: object_type.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(type_: &str, status: &str) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: "Test".to_owned(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        }
    }

    /// The value of the one sample line that starts with `series` (name and labels).
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    fn encoded(metrics: &Metrics) -> String {
        match metrics.encode() {
            Ok(text) => text,
            Err(err) => panic!("encoding failed: {err}"),
        }
    }

    #[test]
    fn metrics_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
        assert_send_sync::<std::sync::Arc<Metrics>>();
    }

    #[test]
    fn encodes_every_family_with_prefix_and_suffixes() {
        let metrics = Metrics::default();
        metrics.reconciled("ConfluenceConnector", "success", 0.02);
        metrics.reconcile_error("ConfluenceConnector", "kube");
        metrics.sync_finished("ns", "a", "success", 12.0);
        metrics.set_conditions("ns", "a", &[condition("Ready", "True")]);
        metrics.set_last_success("ns", "a", 1_700_000_000.5);
        metrics.set_objects("ns", "a", &[("users", 3), ("spacePermissions", 7)]);
        metrics.access_changed("ns", "a", &[("usersAdded", 2), ("permissionsRemoved", 0)]);
        metrics.access_changed("ns", "a", &[("usersAdded", 1)]);
        metrics.api_request("/wiki/rest/api/group", Some(200), 0.1);
        metrics.api_request("/wiki/rest/api/group", None, 0.1);
        metrics.api_retry("429");
        metrics.set_leader(true);

        let text = encoded(&metrics);
        for name in [
            "confluence_operator_reconciles_total",
            "confluence_operator_reconcile_errors_total",
            "confluence_operator_reconcile_duration_seconds_bucket",
            "confluence_operator_sync_duration_seconds_bucket",
            "confluence_operator_syncs_total",
            "confluence_operator_connector_status_condition",
            "confluence_operator_connector_last_success_timestamp_seconds",
            "confluence_operator_connector_objects",
            "confluence_operator_access_changes_total{namespace=\"ns\",name=\"a\",change=\"usersAdded\"} 3",
            "confluence_operator_access_changes_total{namespace=\"ns\",name=\"a\",change=\"permissionsRemoved\"} 0",
            "confluence_operator_api_requests_total",
            "confluence_operator_api_request_duration_seconds_bucket",
            "confluence_operator_api_retries_total",
            "confluence_operator_leader",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(!text.contains("_total_total"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");

        assert_eq!(
            sample(
                &text,
                r#"confluence_operator_reconciles_total{kind="ConfluenceConnector",result="success"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"confluence_operator_syncs_total{namespace="ns",name="a",result="success"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"confluence_operator_api_requests_total{endpoint="/wiki/rest/api/group",code="error"}"#
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"confluence_operator_connector_objects{namespace="ns",name="a",type="spacePermissions"}"#
            )
            .as_deref(),
            Some("7")
        );
        assert_eq!(
            sample(&text, "confluence_operator_leader").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn condition_gauge_marks_only_the_current_status() {
        let metrics = Metrics::new();
        metrics.set_conditions(
            "ns",
            "a",
            &[condition("Ready", "False"), condition("Stalled", "True")],
        );
        let text = encoded(&metrics);
        let series = |condition: &str, status: &str| {
            sample(
                &text,
                &format!(
                    r#"confluence_operator_connector_status_condition{{namespace="ns",name="a",condition="{condition}",status="{status}"}}"#
                ),
            )
        };
        assert_eq!(series("Ready", "True").as_deref(), Some("0"));
        assert_eq!(series("Ready", "False").as_deref(), Some("1"));
        assert_eq!(series("Ready", "Unknown").as_deref(), Some("0"));
        assert_eq!(series("Stalled", "True").as_deref(), Some("1"));
        assert_eq!(series("Stalled", "False").as_deref(), Some("0"));
        assert_eq!(series("Stalled", "Unknown").as_deref(), Some("0"));

        // A condition type that disappears takes its three series with it.
        metrics.set_conditions("ns", "a", &[condition("Ready", "True")]);
        let text = encoded(&metrics);
        assert!(!text.contains(r#"condition="Stalled""#), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"confluence_operator_connector_status_condition{namespace="ns",name="a",condition="Ready",status="True"}"#
            )
            .as_deref(),
            Some("1")
        );
    }

    #[test]
    fn set_objects_replaces_previous_types() {
        let metrics = Metrics::new();
        metrics.set_objects("ns", "a", &[("users", 1), ("groups", 2)]);
        metrics.set_objects("ns", "a", &[("users", 5)]);
        let text = encoded(&metrics);
        assert!(!text.contains(r#"type="groups""#), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"confluence_operator_connector_objects{namespace="ns",name="a",type="users"}"#
            )
            .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn forget_connector_drops_only_that_connectors_series() {
        let metrics = Metrics::new();
        for name in ["gone", "kept"] {
            metrics.sync_finished("ns", name, "success", 1.0);
            metrics.sync_finished("ns", name, "failure", 1.0);
            metrics.set_conditions("ns", name, &[condition("Ready", "True")]);
            metrics.set_last_success("ns", name, 1.0);
            metrics.set_objects("ns", name, &[("users", 1), ("groups", 2)]);
            metrics.access_changed("ns", name, &[("usersAdded", 1)]);
        }

        metrics.forget_connector("ns", "gone");
        // Forgetting twice, or a connector never seen, is harmless.
        metrics.forget_connector("ns", "gone");
        metrics.forget_connector("other", "never");

        let text = encoded(&metrics);
        assert!(!text.contains(r#"name="gone""#), "{text}");
        assert!(
            text.contains(
                r#"confluence_operator_syncs_total{namespace="ns",name="kept",result="failure"}"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"confluence_operator_connector_last_success_timestamp_seconds{namespace="ns",name="kept"}"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"confluence_operator_connector_objects{namespace="ns",name="kept",type="groups"}"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"confluence_operator_access_changes_total{namespace="ns",name="kept",change="usersAdded"} 1"#
            ),
            "{text}"
        );
        // The per-result sync histogram has no connector label and survives.
        assert!(
            text.contains("confluence_operator_sync_duration_seconds_count"),
            "{text}"
        );
    }

    #[test]
    fn invalid_durations_are_not_observed() {
        let metrics = Metrics::new();
        metrics.reconciled("ConfluenceConnector", "success", f64::NAN);
        metrics.reconciled("ConfluenceConnector", "success", -1.0);
        let text = encoded(&metrics);
        assert!(!text.contains("NaN"), "{text}");
        assert_eq!(
            sample(
                &text,
                r#"confluence_operator_reconciles_total{kind="ConfluenceConnector",result="success"}"#
            )
            .as_deref(),
            Some("2")
        );
    }
}
