//! State shared by every request: the tenant plus the runtime-changeable settings.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use crate::config::{Credential, Latency, Quirks, RbacMode};
use crate::faults::FaultEngine;
use crate::model::Tenant;
use crate::ratelimit::RateLimiter;
use crate::stats::Recorder;

/// A poisoned lock only means another request panicked mid-update; the data is still the
/// best we have, so keep serving rather than failing every later request.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The rate limiter's clock, which tests may freeze and advance instead of sleeping.
pub struct Clock {
    start: Instant,
    state: Mutex<ClockState>,
}

#[derive(Default)]
struct ClockState {
    frozen_at: Option<f64>,
    offset: f64,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: Instant::now(),
            state: Mutex::new(ClockState::default()),
        }
    }

    /// Seconds since the fake started, as the limiter sees them.
    pub fn now(&self) -> f64 {
        let s = lock(&self.state);
        s.frozen_at
            .unwrap_or_else(|| self.start.elapsed().as_secs_f64())
            + s.offset
    }

    pub fn freeze(&self) {
        let mut s = lock(&self.state);
        if s.frozen_at.is_none() {
            s.frozen_at = Some(self.start.elapsed().as_secs_f64());
        }
    }

    pub fn unfreeze(&self) {
        let mut s = lock(&self.state);
        if let Some(at) = s.frozen_at.take() {
            // Continue from the frozen instant instead of jumping forward.
            s.offset += at - self.start.elapsed().as_secs_f64();
        }
    }

    pub fn advance(&self, secs: f64) {
        lock(&self.state).offset += secs.max(0.0);
    }
}

pub struct AppState {
    pub tenant: RwLock<Tenant>,
    pub credentials: Vec<Credential>,
    pub quirks: RwLock<Quirks>,
    pub latency: RwLock<Latency>,
    pub rbac: Option<RbacMode>,
    pub limiter: Mutex<RateLimiter>,
    pub faults: Mutex<FaultEngine>,
    pub recorder: Mutex<Recorder>,
    pub clock: Clock,
    pub inflight: AtomicU64,
    pub peak_inflight: AtomicU64,
    pub trace_counter: AtomicU64,
}

impl AppState {
    pub fn quirks(&self) -> Quirks {
        read(&self.quirks).clone()
    }

    pub fn next_trace_id(&self) -> String {
        format!(
            "{:032x}",
            self.trace_counter.fetch_add(1, Ordering::Relaxed) + 0x5eed_0000_0000
        )
    }

    /// Whether credential `index` may view the space with this key.
    pub fn space_visible(&self, credential: Option<usize>, key: &str) -> bool {
        match credential.and_then(|i| self.credentials.get(i)) {
            Some(c) => c
                .visible_spaces
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| k == key)),
            None => false,
        }
    }
}

/// Counts a request as in flight for as long as it lives.
pub struct InflightGuard<'a>(&'a AppState);

impl<'a> InflightGuard<'a> {
    pub fn new(state: &'a AppState) -> Self {
        let now = state.inflight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak_inflight.fetch_max(now, Ordering::SeqCst);
        InflightGuard(state)
    }
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}
