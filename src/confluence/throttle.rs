//! Client-wide flow control: a cap on requests in flight and one shared pause that a
//! rate-limit answer imposes on every worker (§6: one `Retry-After` pauses them all).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// In-flight cap plus shared pause.
#[derive(Debug)]
pub(crate) struct Throttle {
    in_flight: Semaphore,
    paused_until: Mutex<Option<Instant>>,
}

impl Throttle {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            in_flight: Semaphore::new(max_in_flight.max(1)),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits out any pause, then takes an in-flight slot. Returns `None` only if the
    /// semaphore was closed, which this type never does.
    pub(crate) async fn admit(&self) -> Option<SemaphorePermit<'_>> {
        loop {
            self.wait_pause().await;
            let permit = self.in_flight.acquire().await.ok()?;
            // A pause may have begun while this worker queued for a slot; honour it
            // rather than sending a request that is sure to be throttled.
            if self.pause_deadline().is_none() {
                return Some(permit);
            }
        }
    }

    /// Pauses every worker for `wait` from now; an existing longer pause is kept.
    /// Returns true when this call extended the pause (for logging once per pause).
    pub(crate) fn pause_for(&self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut guard = self.lock();
        match *guard {
            Some(existing) if existing >= until => false,
            _ => {
                *guard = Some(until);
                true
            }
        }
    }

    /// The end of the current pause, if one is in force.
    fn pause_deadline(&self) -> Option<Instant> {
        let mut guard = self.lock();
        match *guard {
            Some(until) if until > Instant::now() => Some(until),
            Some(_) => {
                *guard = None;
                None
            }
            None => None,
        }
    }

    async fn wait_pause(&self) {
        // Loop: the pause may be extended while sleeping.
        while let Some(until) = self.pause_deadline() {
            tokio::time::sleep_until(until).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // The guarded value is a plain deadline; a panic elsewhere cannot leave it
        // inconsistent, so a poisoned lock is simply reused.
        self.paused_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_worker_until_it_ends() {
        let t = std::sync::Arc::new(Throttle::new(4));
        assert!(t.pause_for(Duration::from_secs(5)));
        assert!(
            !t.pause_for(Duration::from_secs(1)),
            "shorter pause keeps the longer one"
        );
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..3 {
            let t = t.clone();
            handles.push(tokio::spawn(async move {
                let _permit = t.admit().await;
                Instant::now()
            }));
        }
        for h in handles {
            let admitted = h.await.expect("task");
            assert_eq!(admitted - start, Duration::from_secs(5));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_is_capped() {
        let t = Throttle::new(2);
        let a = t.admit().await;
        let b = t.admit().await;
        assert!(a.is_some() && b.is_some());
        let third = tokio::time::timeout(Duration::from_secs(1), t.admit()).await;
        assert!(third.is_err(), "third slot must wait");
        drop(a);
        assert!(t.admit().await.is_some());
    }
}
