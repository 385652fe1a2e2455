//! Leader election for `--leader-elect` (conventions §4), on a `coordination.k8s.io` Lease
//! managed by kube-lease-manager; only the leader runs the controllers.
//!
//! Losing the lease is fatal by design: the work is cancelled and [`run_when_leader`]
//! returns an error so the process exits and restarts as a standby, instead of trying to
//! reason about what a half-stopped controller may still be doing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::metrics::Metrics;

/// Lease name without a label selector, and the prefix of per-shard lease names.
pub const LEASE_NAME_PREFIX: &str = "confluence-operator";

/// Default `LeaderConfig::lease_duration_secs`: a crashed leader is replaced within ~15 s.
pub const DEFAULT_LEASE_DURATION_SECS: u64 = 15;

/// Default `LeaderConfig::grace_secs`: renew 5 s before expiry, which also bounds the
/// clock skew between nodes that the election tolerates.
pub const DEFAULT_GRACE_SECS: u64 = 5;

/// Identity used when neither `POD_NAME` nor `HOSTNAME` is set.
const FALLBACK_IDENTITY: &str = "confluence-operator";

/// The API server rejects longer field manager names.
const MAX_FIELD_MANAGER_LEN: usize = 128;

/// Releasing is one GET and one PATCH; a hung API server must not hold up shutdown past
/// the pod's termination grace period, and the lease expires on its own anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of one leader election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Name of the Lease object, see [`lease_name`].
    pub lease_name: String,
    /// Namespace of the Lease object, usually the operator's own.
    pub namespace: String,
    /// This replica's holder identity, see [`identity`].
    pub identity: String,
    /// How long a lease stays valid after its last renewal.
    pub lease_duration_secs: u64,
    /// How long before expiry the holder renews; must be below `lease_duration_secs`.
    pub grace_secs: u64,
}

impl LeaderConfig {
    /// A configuration with the default duration and grace period.
    pub fn new(
        lease_name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            lease_name: lease_name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration_secs: DEFAULT_LEASE_DURATION_SECS,
            grace_secs: DEFAULT_GRACE_SECS,
        }
    }

    /// kube-lease-manager documents a panic for these cases, so they are refused up front.
    fn validate(&self) -> Result<(), LeaderError> {
        let problem = if self.lease_name.is_empty() {
            "the lease name is empty"
        } else if self.namespace.is_empty() {
            "the lease namespace is empty"
        } else if self.identity.is_empty() {
            "the identity is empty"
        } else if self.lease_duration_secs == 0 || self.grace_secs == 0 {
            "the lease duration and grace period must be positive"
        } else if self.grace_secs >= self.lease_duration_secs {
            "the grace period must be shorter than the lease duration"
        } else {
            return Ok(());
        };
        Err(LeaderError::InvalidConfig(problem))
    }
}

/// Why [`run_when_leader`] stopped other than by a normal shutdown.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The settings cannot work (see [`LeaderConfig`]).
    #[error("invalid leader election settings: {0}")]
    InvalidConfig(&'static str),
    /// Creating or looking up the Lease object failed (RBAC, API server unreachable, …).
    #[error("setting up lease {namespace}/{lease_name} failed")]
    Build {
        /// Namespace of the lease.
        namespace: String,
        /// Name of the lease.
        lease_name: String,
        /// The lease manager's error.
        #[source]
        source: LeaseManagerError,
    },
    /// Another replica holds the lease now; the work has been cancelled and has returned.
    #[error("lost the leader lease")]
    Lost,
    /// The lease manager task stopped with an error; any work has been cancelled and has
    /// returned.
    #[error("the lease manager failed")]
    ManagerFailed(#[source] LeaseManagerError),
    /// The lease manager task panicked or was aborted; any work has been cancelled and has
    /// returned.
    #[error("the lease manager task died")]
    ManagerDied(#[source] JoinError),
}

/// The Lease name for the shard selected by `selector` (`--label-selector`).
///
/// Without a selector (or with a blank one, which selects everything too) it is
/// `confluence-operator`; otherwise `confluence-operator-` plus the first 10 hex digits of
/// SHA-256 of the trimmed selector, so every shard elects its own leader while the name
/// stays a valid, short object name whatever characters the selector holds.
pub fn lease_name(selector: Option<&str>) -> String {
    match selector.map(str::trim).filter(|s| !s.is_empty()) {
        None => LEASE_NAME_PREFIX.to_owned(),
        Some(selector) => format!(
            "{LEASE_NAME_PREFIX}-{}",
            hex_prefix(&Sha256::digest(selector.as_bytes()), 10)
        ),
    }
}

/// This process's holder identity: `POD_NAME`, else `HOSTNAME`, else
/// `confluence-operator`, followed by `-<pid>`.
///
/// The process id keeps two processes on one host (say, two local runs against one
/// cluster) from sharing an identity and so both believing they hold the lease. In a pod
/// the pid is usually 1, so the identity is effectively the pod name.
pub fn identity() -> String {
    let base = ["POD_NAME", "HOSTNAME"]
        .into_iter()
        .filter_map(|var| std::env::var(var).ok())
        .map(|value| value.trim().to_owned())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| FALLBACK_IDENTITY.to_owned());
    format!("{base}-{}", std::process::id())
}

/// Waits for the lease, then runs `work` while holding it.
///
/// * `shutdown` cancelled before the lease is acquired: returns `Ok(())`.
/// * Leader: sets the `leader` gauge and calls `work` with a child token of `shutdown`.
///   When `work` returns (normally because `shutdown` was cancelled), the lease is
///   released so a standby takes over at once, and the result is `Ok(())`.
/// * Lease lost, or the lease manager failing: cancels the child token, waits for `work`
///   to return and returns an error. The caller should then cancel its own shutdown token
///   and exit non-zero, so the pod restarts as a standby.
///
/// `work` must return promptly once its token is cancelled: until it does, a new leader
/// may already be running next to it.
pub async fn run_when_leader<F, Fut>(
    client: kube::Client,
    config: LeaderConfig,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    work: F,
) -> Result<(), LeaderError>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    config.validate()?;

    let builder = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.lease_duration_secs)
        .with_grace(config.grace_secs)
        .with_field_manager(field_manager(&config.identity));
    // Building talks to the API server (it creates the Lease if missing), so it must not
    // hold up a shutdown requested meanwhile.
    let manager = tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        built = builder.build() => built.map_err(|source| LeaderError::Build {
            namespace: config.namespace.clone(),
            lease_name: config.lease_name.clone(),
            source,
        })?,
    };
    let (mut leader_rx, mut task) = manager.watch().await;

    info!(
        lease = %config.lease_name,
        namespace = %config.namespace,
        identity = %config.identity,
        "waiting for the leader lease"
    );
    let waited = tokio::select! {
        () = shutdown.cancelled() => Waited::Shutdown,
        acquired = leader_rx.wait_for(|leader| *leader) => match acquired {
            Ok(_) => Waited::Leader,
            Err(_) => Waited::ChannelClosed,
        },
        ended = &mut task => Waited::ManagerEnded(Box::new(ended)),
    };
    match waited {
        Waited::Leader => {}
        Waited::Shutdown => {
            info!(lease = %config.lease_name, "shutting down before acquiring the leader lease");
            release(leader_rx, task).await;
            return Ok(());
        }
        // The sender lives in the manager task, so a closed channel means the task is
        // finishing; its result says why.
        Waited::ChannelClosed => {
            let err = manager_ended(task.await);
            error!(lease = %config.lease_name, error = %err, "lease manager stopped before acquiring the lease");
            return Err(err);
        }
        Waited::ManagerEnded(ended) => {
            let err = manager_ended(*ended);
            error!(lease = %config.lease_name, error = %err, "lease manager stopped before acquiring the lease");
            return Err(err);
        }
    }

    info!(
        lease = %config.lease_name,
        namespace = %config.namespace,
        identity = %config.identity,
        "acquired the leader lease"
    );
    metrics.set_leader(true);
    let work_token = shutdown.child_token();
    let mut work = std::pin::pin!(work(work_token.clone()));

    let led = tokio::select! {
        () = &mut work => Led::WorkReturned,
        lost = leader_rx.wait_for(|leader| !*leader) => match lost {
            Ok(_) => Led::Lost,
            Err(_) => Led::ChannelClosed,
        },
        ended = &mut task => Led::ManagerEnded(Box::new(ended)),
    };

    let (err, manager) = match led {
        Led::WorkReturned => {
            metrics.set_leader(false);
            info!(lease = %config.lease_name, "work finished; releasing the leader lease");
            release(leader_rx, task).await;
            return Ok(());
        }
        Led::Lost => (LeaderError::Lost, Some((leader_rx, task))),
        Led::ChannelClosed => (manager_ended(task.await), None),
        Led::ManagerEnded(ended) => (manager_ended(*ended), None),
    };

    error!(
        lease = %config.lease_name,
        identity = %config.identity,
        error = %err,
        "no longer the leader; stopping the controllers"
    );
    work_token.cancel();
    work.await;
    metrics.set_leader(false);
    // After a loss the manager keeps competing for the lease; stop it, releasing anything
    // it may have re-acquired in the meantime.
    if let Some((leader_rx, task)) = manager {
        release(leader_rx, task).await;
    }
    Err(err)
}

/// What the lease manager task returns: the manager itself once it has released the lease.
type TaskResult = Result<Result<LeaseManager, LeaseManagerError>, JoinError>;

/// Boxed because a `LeaseManager` is large and these enums are otherwise tiny.
enum Waited {
    Leader,
    Shutdown,
    ChannelClosed,
    ManagerEnded(Box<TaskResult>),
}

enum Led {
    WorkReturned,
    Lost,
    ChannelClosed,
    ManagerEnded(Box<TaskResult>),
}

/// The manager task only returns `Ok` once every receiver is gone, which cannot happen
/// while we still hold one; if it does anyway, the lease is no longer being renewed.
fn manager_ended(ended: TaskResult) -> LeaderError {
    match ended {
        Ok(Ok(_)) => LeaderError::Lost,
        Ok(Err(err)) => LeaderError::ManagerFailed(err),
        Err(err) => LeaderError::ManagerDied(err),
    }
}

/// Dropping the last receiver is the manager's signal to release the lease (if held) and
/// stop; waiting for it makes the hand-over to a standby immediate instead of taking a
/// full lease duration.
async fn release(
    leader_rx: watch::Receiver<bool>,
    mut task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
) {
    drop(leader_rx);
    match tokio::time::timeout(RELEASE_TIMEOUT, &mut task).await {
        Ok(Ok(Ok(_))) => info!("released the leader lease"),
        Ok(Ok(Err(err))) => {
            warn!(error = %err, "releasing the leader lease failed; it will expire instead");
        }
        Ok(Err(err)) => {
            warn!(error = %err, "the lease manager task died while releasing the lease");
        }
        Err(_) => {
            warn!("releasing the leader lease timed out; it will expire instead");
            task.abort();
        }
    }
}

/// Server-side apply conflicts are what make the lock exclusive, so every identity needs
/// its own field manager; an over-long one is replaced by a hash to stay within the API
/// server's limit.
fn field_manager(identity: &str) -> String {
    let name = format!("{LEASE_NAME_PREFIX}-{identity}");
    if name.len() <= MAX_FIELD_MANAGER_LEN {
        name
    } else {
        format!(
            "{LEASE_NAME_PREFIX}-{}",
            hex_prefix(&Sha256::digest(identity.as_bytes()), 32)
        )
    }
}

/// The first `digits` lowercase hex digits of `bytes`.
fn hex_prefix(bytes: &[u8], digits: usize) -> String {
    let mut hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex.truncate(digits);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_name_without_selector_is_the_plain_prefix() {
        assert_eq!(lease_name(None), "confluence-operator");
        assert_eq!(lease_name(Some("")), "confluence-operator");
        assert_eq!(lease_name(Some("  ")), "confluence-operator");
    }

    #[test]
    fn lease_name_with_selector_hashes_it() {
        let expected = format!(
            "confluence-operator-{}",
            &format!("{:x}", Sha256::digest(b"shard=a"))[..10]
        );
        let name = lease_name(Some("shard=a"));
        assert_eq!(name, expected);
        assert_eq!(name.len(), "confluence-operator-".len() + 10);
        assert!(
            name["confluence-operator-".len()..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(lease_name(Some(" shard=a ")), name);
        assert_ne!(lease_name(Some("shard=b")), name);
        assert_eq!(
            lease_name(Some("shard=a")),
            name,
            "deterministic across calls"
        );
    }

    #[test]
    fn lease_name_is_a_valid_object_name_for_any_selector() {
        let name = lease_name(Some("app.kubernetes.io/part-of in (a, b),!tier"));
        assert!(name.len() <= 63);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    #[test]
    fn config_validation() {
        let ok = LeaderConfig::new("l", "ns", "me");
        assert!(ok.validate().is_ok());
        assert_eq!(ok.lease_duration_secs, 15);
        assert_eq!(ok.grace_secs, 5);

        for bad in [
            LeaderConfig {
                grace_secs: 15,
                ..ok.clone()
            },
            LeaderConfig {
                grace_secs: 0,
                ..ok.clone()
            },
            LeaderConfig {
                lease_duration_secs: 0,
                ..ok.clone()
            },
            LeaderConfig {
                identity: String::new(),
                ..ok.clone()
            },
            LeaderConfig {
                namespace: String::new(),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(LeaderError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn identity_ends_with_the_process_id() {
        let id = identity();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.len() > format!("-{}", std::process::id()).len());
    }

    #[test]
    fn field_manager_stays_within_the_api_limit() {
        assert_eq!(field_manager("pod-1"), "confluence-operator-pod-1");
        let long = "x".repeat(300);
        let name = field_manager(&long);
        assert!(name.len() <= MAX_FIELD_MANAGER_LEN, "{name}");
        assert_ne!(name, field_manager(&"y".repeat(300)));
    }
}
