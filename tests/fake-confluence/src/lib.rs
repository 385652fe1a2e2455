//! A fake Confluence Cloud server for tests and benchmarks.
//!
//! It serves the v1 and v2 REST endpoints a Confluence identity sync uses (current user,
//! groups, members, user search, users, spaces, space permissions, space roles,
//! membership writes) with Confluence's quirks, from a tenant generated deterministically
//! from a seed, and reports the ground truth a complete sync must find.
//!
//! ```no_run
//! # async fn demo() -> Result<(), fake_confluence::Error> {
//! use fake_confluence::{FakeConfig, FakeConfluence, Preset};
//!
//! let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small)).await?;
//! let url = fake.base_url(); // "http://127.0.0.1:PORT"; API under /wiki/...
//! let cred = fake.credential(); // admin@example.com / test-token
//! // … run a sync against `url` with `cred` …
//! let truth = fake.truth();
//! assert!(truth.users.count > 0);
//! println!("{} requests", fake.stats().total_requests);
//! fake.stop().await;
//! # Ok(()) }
//! ```
//!
//! The same data and controls are available over HTTP under `/__fake/` (see the README):
//! `GET /__fake/truth` returns [`Truth`] as JSON, `GET /__fake/stats` returns [`Stats`].

// Handlers bail out with ready-made responses (`Result<_, Response>`); that path is cold
// and boxing every early answer would only add noise.
#![allow(clippy::result_large_err)]

mod auth;
mod config;
mod control;
mod cql;
mod data;
mod error;
mod faults;
mod model;
mod pages;
mod params;
mod ratelimit;
mod routes_v1;
mod routes_v2;
mod server;
mod state;
mod stats;
mod truth;
mod views;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::{
    AuthFailureMode, Credential, DataConfig, FakeConfig, Latency, Preset, Quirks, RateLimitConfig,
    RbacMode,
};
pub use error::{Error, Result};
pub use faults::{FaultKind, FaultRule};
pub use stats::{RequestRecord, Stats};
pub use truth::{IdSet, PermissionTruth, SpaceTruth, Truth, UserTruth};

use crate::faults::FaultEngine;
use crate::model::{AccountStatus, AccountType};
use crate::ratelimit::RateLimiter;
use crate::state::{AppState, Clock, lock, read, write};
use crate::stats::Recorder;

/// Entry point: starts fakes.
pub struct FakeConfluence;

impl FakeConfluence {
    /// Generates the tenant and starts serving on `config.listen` (an ephemeral
    /// `127.0.0.1` port by default). The server stops on [`RunningFake::stop`] or when the
    /// handle is dropped.
    pub async fn start(config: FakeConfig) -> Result<RunningFake> {
        if config.credentials.is_empty() {
            return Err(Error::Config("at least one credential is required".into()));
        }
        let data = config.data.clone();
        // Large tenants take a few seconds to build: keep that off the async workers.
        let mut tenant = tokio::task::spawn_blocking(move || data::generate(&data))
            .await
            .map_err(|e| Error::Config(format!("tenant generation failed: {e}")))?;
        for (user, cred) in tenant.users.iter_mut().zip(&config.credentials) {
            user.email.clone_from(&cred.email);
            user.email_visible = true;
            user.account_type = AccountType::Atlassian;
            user.status = AccountStatus::Active;
            user.is_guest = false;
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            tenant: RwLock::new(tenant),
            credentials: config.credentials,
            quirks: RwLock::new(config.quirks),
            latency: RwLock::new(config.latency),
            rbac: config.rbac,
            limiter: Mutex::new(RateLimiter::new(config.rate_limit)),
            faults: Mutex::new(FaultEngine::new(config.faults, config.fault_seed)),
            recorder: Mutex::new(Recorder::new(config.request_log_capacity)),
            clock: Clock::new(),
            inflight: AtomicU64::new(0),
            peak_inflight: AtomicU64::new(0),
            trace_counter: AtomicU64::new(0),
        });
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::serve(
            listener,
            server::router(state.clone()),
            shutdown.clone(),
        ));
        Ok(RunningFake {
            base_url: format!("http://{addr}"),
            addr,
            state,
            shutdown,
            task: Some(task),
        })
    }
}

/// A running fake. Dropping it stops the server.
pub struct RunningFake {
    base_url: String,
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl RunningFake {
    /// `http://127.0.0.1:PORT` (no trailing slash, no `/wiki`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The first configured credential: the sync account the truth is computed for.
    pub fn credential(&self) -> &Credential {
        &self.state.credentials[0]
    }

    pub fn credentials(&self) -> &[Credential] {
        &self.state.credentials
    }

    /// The tenant's cloud id (`/_edge/tenant_info`, gateway prefix `/ex/confluence/{id}`).
    pub fn cloud_id(&self) -> String {
        read(&self.state.tenant).cloud_id.clone()
    }

    /// What a complete sync must find now (membership writes change it).
    pub fn truth(&self) -> Truth {
        control::truth_of(&self.state)
    }

    pub fn stats(&self) -> Stats {
        control::stats_of(&self.state)
    }

    /// The most recent requests, oldest first (bounded by `request_log_capacity`).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.recorder).log()
    }

    /// Clears counters, the request log and the peak-concurrency mark.
    pub fn reset_stats(&self) {
        control::reset_stats(&self.state)
    }

    /// Whether the account is a member of the group right now.
    pub fn is_member(&self, group_id: &str, account_id: &str) -> bool {
        let t = read(&self.state.tenant);
        match (t.group_position(group_id), t.user_index.get(account_id)) {
            (Some(g), Some(u)) => t
                .groups
                .get(g)
                .is_some_and(|g| g.members.binary_search(u).is_ok()),
            _ => false,
        }
    }

    /// The accountIds of a group's members (all account types), or `None` for an unknown
    /// group.
    pub fn group_members(&self, group_id: &str) -> Option<Vec<String>> {
        let t = read(&self.state.tenant);
        let g = t.groups.get(t.group_position(group_id)?)?;
        Some(
            g.members
                .iter()
                .filter_map(|&m| t.users.get(m as usize))
                .map(|u| u.account_id.clone())
                .collect(),
        )
    }

    /// Grants group `group_id` the permission `key`/`target_type` (e.g. `read`/`space`)
    /// on space `space_id`, as an administrator would in Confluence's UI (the REST API
    /// has no such write, so tests use this). Returns false, changing nothing, for an
    /// unknown space, group or operation; granting a held permission again adds nothing.
    pub fn grant_space_permission(
        &self,
        space_id: u64,
        group_id: &str,
        key: &str,
        target_type: &str,
    ) -> bool {
        let mut t = write(&self.state.tenant);
        let Some(group) = t.group_position(group_id) else {
            return false;
        };
        let Some(operation) = model::OPERATIONS
            .iter()
            .position(|&(k, target)| k == key && target == target_type)
        else {
            return false;
        };
        // Permission ids are unique across the tenant; a new one comes after them all.
        let next_id = t
            .spaces
            .iter()
            .flat_map(|s| s.permissions.iter().map(|p| p.id))
            .max()
            .unwrap_or(0)
            + 1;
        let Ok(pos) = t.spaces.binary_search_by_key(&space_id, |s| s.id) else {
            return false;
        };
        let (group, operation) = (group as u32, operation as u8);
        let space = &mut t.spaces[pos];
        let held = space.permissions.iter().any(|p| {
            p.kind == model::PrincipalKind::Group
                && p.principal == group
                && p.operation == operation
        });
        if !held {
            // Appended with the largest id: the list stays in id order.
            space.permissions.push(model::Permission {
                id: next_id,
                kind: model::PrincipalKind::Group,
                principal: group,
                operation,
            });
        }
        true
    }

    /// Replaces the fault rules (their call counters restart).
    pub fn set_faults(&self, rules: Vec<FaultRule>) {
        lock(&self.state.faults).set_rules(rules);
    }

    /// `None` turns rate limiting off; new settings start with full buckets.
    pub fn set_rate_limit(&self, config: Option<RateLimitConfig>) {
        lock(&self.state.limiter).set_config(config);
    }

    pub fn set_latency(&self, latency: Latency) {
        *write(&self.state.latency) = latency;
    }

    pub fn quirks(&self) -> Quirks {
        self.state.quirks()
    }

    pub fn update_quirks(&self, f: impl FnOnce(&mut Quirks)) {
        f(&mut write(&self.state.quirks));
    }

    /// Stops the rate limiter's clock so buckets refill only through [`Self::advance_clock`].
    pub fn freeze_clock(&self) {
        self.state.clock.freeze();
    }

    pub fn unfreeze_clock(&self) {
        self.state.clock.unfreeze();
    }

    pub fn advance_clock(&self, by: Duration) {
        self.state.clock.advance(by.as_secs_f64());
    }

    /// Stops accepting, lets open connections finish (up to 5 s), and waits.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningFake {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
