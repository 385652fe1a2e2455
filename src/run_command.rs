//! `confluence-operator run`: the controller process. Wiring only: metrics and probes,
//! leader election, the controllers, and a shutdown that leaves no work files behind.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::cli::RunArgs;
use crate::controller::context::{Context, Settings};
use crate::controller::run::{Scope, run as run_controllers};
use crate::http::{self, HttpState};
use crate::leader::{self, LeaderConfig};
use crate::metrics::Metrics;
use crate::shutdown::cancel_on_signals;

/// Requests in flight per sync, as for `confluence-operator sync`.
const REQUESTS_PER_SYNC: usize = 8;
/// After a shutdown signal the process ends within this time even if something hangs,
/// so that Kubernetes' grace period is never what stops it.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(9);
/// The reporting controller named on Events.
const CONTROLLER_NAME: &str = "confluence-operator";

/// Why the operator stopped with an error.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("no Kubernetes configuration: {0}")]
    Kubeconfig(#[source] kube::Error),
    #[error("{0}")]
    Http(#[from] http::HttpError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {0}")]
    Leader(#[from] leader::LeaderError),
}

/// Runs the controller until SIGTERM or SIGINT.
pub fn run(args: RunArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime);
    let result = runtime.and_then(|rt| rt.block_on(operate(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "the operator stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn operate(args: RunArgs) -> Result<(), RunError> {
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());

    let client = kube::Client::try_default()
        .await
        .map_err(RunError::Kubeconfig)?;
    std::fs::create_dir_all(&args.data_dir).map_err(|source| RunError::DataDir {
        path: args.data_dir.display().to_string(),
        source,
    })?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = http::bind(args.http_addr).await?;
    if let Ok(addr) = listener.local_addr() {
        info!(addr = %addr, "serving /metrics, /healthz and /readyz");
    }
    let server = tokio::spawn(http::serve(
        listener,
        HttpState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
        shutdown.clone(),
    ));

    let identity = leader::identity();
    let settings = Settings {
        data_dir: args.data_dir.clone(),
        snapshot_retention: usize::from(args.snapshot_retention),
        site_policy: args.site.policy(),
        requests_in_flight: REQUESTS_PER_SYNC,
        concurrency: usize::from(args.concurrency),
        max_grant_duration: args.max_grant_duration,
        request_timeout: args.request_timeout,
    };
    let scope = Scope {
        namespaces: args.namespaces.clone(),
        selector: args.selector.clone(),
    };
    info!(
        namespaces = ?scope.namespaces,
        selector = scope.selector.as_deref().unwrap_or(""),
        concurrency = settings.concurrency,
        data_dir = %settings.data_dir.display(),
        leader_elect = args.leader_elect,
        "starting"
    );
    let controllers = {
        let client = client.clone();
        let metrics = metrics.clone();
        let ready = ready.clone();
        let identity = identity.clone();
        move |token: CancellationToken| async move {
            let recorder = Recorder::new(
                client.clone(),
                Reporter {
                    controller: CONTROLLER_NAME.into(),
                    instance: Some(identity),
                },
            );
            let ctx = Arc::new(Context::new(client, settings, recorder, metrics, token));
            run_controllers(ctx, scope, ready).await;
        }
    };

    let work = async {
        if args.leader_elect {
            // In a pod the client's default namespace is the service account's, which
            // is where the Lease belongs unless the flag says otherwise.
            let namespace = args
                .leader_election_namespace
                .clone()
                .or_else(|| {
                    std::env::var("POD_NAMESPACE")
                        .ok()
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| client.default_namespace().to_string());
            // A standby is ready: readiness is not leadership, or rollouts would block.
            ready.store(true, Ordering::Relaxed);
            let config = LeaderConfig {
                lease_name: leader::lease_name(args.selector.as_deref()),
                namespace,
                identity,
                lease_duration_secs: 15,
                grace_secs: 5,
            };
            let outcome = leader::run_when_leader(
                client.clone(),
                config,
                metrics.clone(),
                shutdown.clone(),
                controllers,
            )
            .await;
            outcome.map_err(RunError::from)
        } else {
            metrics.set_leader(true);
            controllers(shutdown.clone()).await;
            Ok(())
        }
    };
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_DEADLINE).await;
    };
    let result = tokio::select! {
        result = work => result,
        () = deadline => {
            warn!("shutdown took too long; exiting anyway");
            Ok(())
        }
    };
    // Whatever ended the work (signal, lost lease), the HTTP server goes too.
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(2), server).await {
        Ok(Ok(Err(e))) => warn!(error = %e, "HTTP server"),
        Ok(Err(e)) => warn!(error = %e, "HTTP server task"),
        _ => {}
    }
    info!("stopped");
    result
}
