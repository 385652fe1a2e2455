//! Wiring of the grant controller(s): one per watched namespace (or one for all).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Config as ControllerConfig, Error as ControllerError};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::runtime::{Predicate, PredicateConfig};
use tracing::{debug, info, warn};

use crate::api::{ConfluenceAccessGrant, ConfluenceConnector, GrantPhase};

use super::super::run::{scoped_api, selected};
use super::context::GrantContext;
use super::reconciler::{error_policy, reconcile};

/// The grant controller for `namespace` (`None`: all) and grants matching `selector`:
/// its store (for readiness) and the future that runs it until shutdown.
pub fn controller(
    ctx: Arc<GrantContext>,
    namespace: Option<String>,
    selector: Option<String>,
) -> (
    Store<ConfluenceAccessGrant>,
    impl std::future::Future<Output = ()>,
) {
    let grants: Api<ConfluenceAccessGrant> = scoped_api(&ctx.base.client, namespace.as_deref());
    let connectors: Api<ConfluenceConnector> = scoped_api(&ctx.base.client, namespace.as_deref());
    let config = selected(selector.as_deref());
    let (reader, writer) = reflector::store();
    let store = reader.clone();
    let future = async move {
        revoke_expired(&ctx, &grants, &config).await;
        // Status writes do not wake the reconciler: only spec (creation, deletion) and
        // finalizer changes do, plus the requeue at expiry.
        let stream = watcher(grants, config)
            .default_backoff()
            .modify(|g| g.managed_fields_mut().clear())
            .reflect(writer)
            .applied_objects()
            .predicate_filter(
                predicates::generation.combine(predicates::finalizers),
                PredicateConfig::default(),
            );
        let waiting = store.clone();
        let mapper = move |connector: ConfluenceConnector| waiting_on(&waiting, &connector);
        let shutdown = ctx.base.shutdown.clone();
        let metrics_store = store.clone();
        let metrics = ctx.base.metrics.clone();
        Controller::for_stream(stream, store)
            .watches(connectors, watcher::Config::default(), mapper)
            .with_config(ControllerConfig::default().concurrency(16))
            .graceful_shutdown_on(async move { shutdown.cancelled().await })
            .run(reconcile, error_policy, ctx)
            .for_each(|result| {
                let active = metrics_store
                    .state()
                    .iter()
                    .filter(|g| phase(g) == Some(GrantPhase::Active))
                    .count();
                metrics.set_active_grants(i64::try_from(active).unwrap_or(i64::MAX));
                async move {
                    match result {
                        Ok((object, _)) => debug!(name = %object.name, "grant reconciled"),
                        Err(ControllerError::ObjectNotFound(object)) => {
                            debug!(name = %object.name, "reconcile skipped: the grant is gone")
                        }
                        Err(e) => warn!(error = %e, "grant controller"),
                    }
                }
            })
            .await;
    };
    (reader, future)
}

/// Before the controller starts: grants whose time ran out while no operator was
/// running lose their membership first, ahead of any new work.
async fn revoke_expired(
    ctx: &Arc<GrantContext>,
    grants: &Api<ConfluenceAccessGrant>,
    config: &watcher::Config,
) {
    let mut params = ListParams::default();
    if let Some(selector) = &config.label_selector {
        params = params.labels(selector);
    }
    let list = match grants.list(&params).await {
        Ok(list) => list,
        Err(e) => {
            // The controller's own first pass handles them a moment later.
            warn!(error = %e, "cannot list grants to revoke expired ones first");
            return;
        }
    };
    let now = Timestamp::now();
    let expired: Vec<_> = list
        .items
        .into_iter()
        .filter(|g| {
            phase(g) == Some(GrantPhase::Active)
                && g.status
                    .as_ref()
                    .and_then(|s| s.expires_at.as_ref())
                    .is_some_and(|t| t.0 <= now)
        })
        .collect();
    if expired.is_empty() {
        return;
    }
    info!(
        count = expired.len(),
        "revoking grants that expired while the operator was down"
    );
    for grant in expired {
        let name = grant.name_any();
        let grant = Arc::new(grant);
        if let Err(e) = reconcile(grant.clone(), ctx.clone()).await {
            // Left to the controller, which retries with back-off.
            warn!(name = %name, error = %e, "revoking an expired grant failed");
            let _ = error_policy(grant, &e, ctx.clone());
        }
    }
}

fn phase(grant: &ConfluenceAccessGrant) -> Option<GrantPhase> {
    grant.status.as_ref().and_then(|s| s.phase)
}

/// Grants in the connector's namespace that wait for it (not yet Active or ended).
fn waiting_on(
    store: &Store<ConfluenceAccessGrant>,
    connector: &ConfluenceConnector,
) -> Vec<ObjectRef<ConfluenceAccessGrant>> {
    let namespace = connector.namespace();
    let name = connector.name_any();
    store
        .state()
        .iter()
        .filter(|g| {
            g.namespace() == namespace
                && g.spec.connector_ref.name == name
                && matches!(phase(g), None | Some(GrantPhase::Pending))
        })
        .map(|g| ObjectRef::from_obj(g.as_ref()))
        .collect()
}
