//! Wiring of the connector controller(s): one per watched namespace (or one for all),
//! sharing one context.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Config as ControllerConfig, Error as ControllerError};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, predicates, watcher};
use kube::runtime::{Predicate, PredicateConfig};
use tracing::{debug, info, warn};

use crate::api::ConfluenceConnector;

use super::context::Context;
use super::grants::{self, GrantContext};
use super::reconciler::{error_policy, reconcile};

/// What the controllers watch.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Namespaces; empty means all.
    pub namespaces: Vec<String>,
    /// A label selector on connectors.
    pub selector: Option<String>,
}

/// Runs the connector and grant controllers until `ctx.shutdown` is cancelled, then
/// stops every sync. `ready` turns true once every controller's cache is filled.
pub async fn run(ctx: Arc<Context>, scope: Scope, ready: Arc<AtomicBool>) {
    let scopes: Vec<Option<String>> = if scope.namespaces.is_empty() {
        vec![None]
    } else {
        scope.namespaces.iter().cloned().map(Some).collect()
    };
    let grant_ctx = Arc::new(GrantContext::new(
        ctx.clone(),
        ctx.settings.max_grant_duration,
    ));
    let mut connector_stores = Vec::new();
    let mut grant_stores = Vec::new();
    let mut controllers = Vec::new();
    let mut grant_controllers = Vec::new();
    for namespace in scopes {
        let (store, controller) =
            controller(ctx.clone(), namespace.clone(), scope.selector.clone());
        connector_stores.push(store);
        controllers.push(controller);
        let (store, controller) =
            grants::run::controller(grant_ctx.clone(), namespace, scope.selector.clone());
        grant_stores.push(store);
        grant_controllers.push(controller);
    }
    let readiness = async move {
        for store in connector_stores {
            if store.wait_until_ready().await.is_err() {
                return;
            }
        }
        for store in grant_stores {
            if store.wait_until_ready().await.is_err() {
                return;
            }
        }
        ready.store(true, Ordering::Relaxed);
        info!("caches filled; reconciling");
    };
    tokio::join!(
        futures::future::join_all(controllers),
        futures::future::join_all(grant_controllers),
        readiness
    );
    ctx.stop_all_syncs().await;
    info!("controllers stopped");
}

fn controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    selector: Option<String>,
) -> (
    Store<ConfluenceConnector>,
    impl std::future::Future<Output = ()>,
) {
    let connectors: Api<ConfluenceConnector> = scoped_api(&ctx.client, namespace.as_deref());
    let secrets: Api<PartialObjectMeta<Secret>> = scoped_api(&ctx.client, namespace.as_deref());
    let config = selected(selector.as_deref());
    let (reader, writer) = reflector::store();
    // The store sees every change (the Secret mapper and readiness read it); only
    // spec, annotation and finalizer changes reach the reconciler, so the operator's
    // own status writes do not wake it up again.
    let connectors = watcher(connectors, config)
        .default_backoff()
        .modify(|c| c.managed_fields_mut().clear())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation
                .combine(predicates::annotations)
                .combine(predicates::finalizers),
            PredicateConfig::default(),
        );
    // Metadata only: Secret values never enter the operator's memory through the
    // watch; a rotation still changes the resourceVersion.
    let secret_events = watcher(secrets, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let store = reader.clone();
    let mapper = move |secret: PartialObjectMeta<Secret>| connectors_using(&store, &secret);
    let triggers = futures::stream::unfold(ctx.trigger_stream(namespace.clone()), |mut rx| async {
        rx.recv().await.map(|key| (key, rx))
    });
    let shutdown = ctx.shutdown.clone();
    let future = Controller::for_stream(connectors, reader.clone())
        .watches_stream(secret_events, mapper)
        .reconcile_on(triggers)
        .with_config(ControllerConfig::default().concurrency(16))
        .graceful_shutdown_on(async move { shutdown.cancelled().await })
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => debug!(name = %object.name, "reconciled"),
                // A request for a connector deleted meanwhile: nothing left to do.
                Err(ControllerError::ObjectNotFound(object)) => {
                    debug!(name = %object.name, "reconcile skipped: the connector is gone")
                }
                Err(e) => warn!(error = %e, "controller"),
            }
        });
    (reader, future)
}

/// An API for `namespace`, or for all namespaces.
pub(super) fn scoped_api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watcher configuration for objects matching the label `selector`, if any.
pub(super) fn selected(selector: Option<&str>) -> watcher::Config {
    let config = watcher::Config::default();
    match selector {
        Some(selector) => config.labels(selector),
        None => config,
    }
}

/// Connectors in the Secret's namespace that reference it.
fn connectors_using(
    store: &Store<ConfluenceConnector>,
    secret: &PartialObjectMeta<Secret>,
) -> Vec<ObjectRef<ConfluenceConnector>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    store
        .state()
        .iter()
        .filter(|c| c.namespace() == namespace && c.spec.credentials.secret_ref.name == name)
        .map(|c| ObjectRef::from_obj(c.as_ref()))
        .collect()
}
