//! Client-wide flow control: a cap on requests in flight, handed out by route
//! priority, and one shared pause that a rate-limit answer imposes on every worker
//! (§6: one `Retry-After` pauses them all).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use priority_semaphore::{Permit, PrioritySemaphore};
use tokio::time::Instant;

use super::stats::Route;

/// In-flight cap plus shared pause.
pub(crate) struct Throttle {
    in_flight: Arc<PrioritySemaphore>,
    paused_until: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("free_slots", &self.in_flight.available_permits())
            .field("paused_until", &self.pause_deadline())
            .finish()
    }
}

/// Which requests get a free in-flight slot first.
///
/// A sync is as long as its busiest route, and that is the member walk: every group
/// costs at least one page, big groups many, and Confluence limits each route on its
/// own. While the walk's budget refills, every slot another route holds is refill the
/// walk cannot spend — measured: with first-come slots the walk got 155 requests/s of
/// a 200/s budget for the first two seconds of a 300-space sync, and ended 0.6 s
/// later than its budget allows. First claim to the slots keeps it at its budget
/// from the start; the other routes share what it leaves (it never holds a slot
/// while its own pace makes it wait, see `Pacer::wait`), and get every slot once it
/// is done.
fn priority(route: Route) -> i32 {
    match route {
        Route::GroupMembers => 1,
        _ => 0,
    }
}

impl Throttle {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        Self {
            in_flight: Arc::new(PrioritySemaphore::new(max_in_flight.max(1))),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits out any pause, then takes an in-flight slot, the member walk before other
    /// routes (see [`priority`]). Returns `None` only if the semaphore was closed,
    /// which this type never does.
    pub(crate) async fn admit(&self, route: Route) -> Option<Permit> {
        loop {
            self.wait_pause().await;
            let permit = self.in_flight.acquire(priority(route)).await.ok()?;
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
                let _permit = t.admit(Route::Groups).await;
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
        let a = t.admit(Route::Groups).await;
        let b = t.admit(Route::GroupMembers).await;
        assert!(a.is_some() && b.is_some());
        let third = tokio::time::timeout(Duration::from_secs(1), t.admit(Route::Groups)).await;
        assert!(third.is_err(), "third slot must wait");
        drop(a);
        assert!(t.admit(Route::Groups).await.is_some());
    }

    /// Requests queued behind a full cap: a freed slot goes to the member walk even
    /// when other routes queued first; among equals, first come first served.
    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_member_walk_first() {
        let t = std::sync::Arc::new(Throttle::new(1));
        let held = t.admit(Route::Spaces).await;
        let order = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for (i, route) in [
            Route::SpacePermissions,
            Route::SearchUsers,
            Route::GroupMembers,
            Route::SpacePermissions,
            Route::GroupMembers,
        ]
        .into_iter()
        .enumerate()
        {
            let (throttle, order) = (t.clone(), order.clone());
            handles.push(tokio::spawn(async move {
                let _permit = throttle.admit(route).await;
                order.lock().expect("order").push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            // Queue them in this order.
            while t.in_flight.queued() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for h in handles {
            h.await.expect("task");
        }
        assert_eq!(*order.lock().expect("order"), vec![2, 4, 0, 1, 3]);
    }
}
