//! Per-route pacing from Confluence's budget headers (§6): slow down before the budget
//! is gone instead of running into 429s.
//!
//! Confluence limits each tenant per endpoint and method with token buckets and tells
//! every answer how much of the bucket is left (`X-RateLimit-Limit`, `-Remaining`,
//! `-NearLimit`), but never how fast it refills. So each route measures the refill
//! itself: between two answers, tokens regained = remaining now − remaining then +
//! answers in between. While the bucket is comfortably full the route is not paced at
//! all; once it runs low the route is paced at the measured refill, scaled by how the
//! bucket stands against a reserve: half the refill with the bucket empty, the refill
//! itself at the reserve, up to twice it above. The reserve absorbs the requests
//! already in flight and the error of the measurement, so the bucket should never run
//! dry; when the bucket refills (a quiet period, or a refill faster than measured) the
//! pace rises with it, and lifts once the bucket is full.
//!
//! Hand-written rather than built on `governor`: a governor quota is fixed when the
//! limiter is made, while this pace changes with every answer; the part a crate would
//! provide (spacing requests at a rate) is the few lines of [`Pacer::wait`].

use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::stats::Route;

/// Pacing starts when less than this share of the budget is left.
const PACE_BELOW: f64 = 0.5;
/// The share of the budget the pace tries to keep in hand for requests in flight.
const RESERVE: f64 = 0.3;
/// The pace's range around the measured refill: at an empty bucket, and at most.
const SLOWEST: f64 = 0.5;
const FASTEST: f64 = 2.0;
/// Shortest span a refill measurement may cover, and fewest answers in it: remaining
/// counts are whole tokens, so shorter spans are mostly rounding.
const MIN_SPAN: Duration = Duration::from_millis(250);
const MIN_ANSWERS: u64 = 5;
/// Weight of a new measurement in the smoothed refill.
const NEW_WEIGHT: f64 = 0.3;
/// Before any refill has been measured, assume the bucket refills in this long.
const ASSUMED_REFILL_TIME: f64 = 2.0;
/// Requests per second below which no route is ever paced.
const MIN_RATE: f64 = 0.5;

/// What one answer said about its route's budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Budget {
    /// `X-RateLimit-Limit`: the bucket's size.
    pub(crate) limit: u32,
    /// `X-RateLimit-Remaining`.
    pub(crate) remaining: u32,
    /// `X-RateLimit-NearLimit: true` (under 20 % left).
    pub(crate) near_limit: bool,
}

impl Budget {
    /// The budget an answer carries; `None` without usable limit and remaining headers.
    pub(crate) fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let number =
            |name: &str| -> Option<u32> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let limit = number("x-ratelimit-limit").filter(|l| *l > 0)?;
        let remaining = number("x-ratelimit-remaining")?.min(limit);
        let near_limit = headers
            .get("x-ratelimit-nearlimit")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        Some(Self {
            limit,
            remaining,
            near_limit,
        })
    }
}

/// The start of a refill measurement.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    remaining: f64,
    answers: u64,
}

/// The pace of one route. Pure: time comes in with every call.
#[derive(Debug, Default)]
pub(crate) struct RoutePace {
    answers: u64,
    mark: Option<Mark>,
    /// Measured refill, tokens per second (smoothed).
    refill: Option<f64>,
    /// Requests per second allowed; `None` while the route is not paced.
    rate: Option<f64>,
}

impl RoutePace {
    /// The pace in force, requests per second; `None` when not paced.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// The refill measured so far, tokens per second.
    #[cfg(test)]
    pub(crate) fn refill(&self) -> Option<f64> {
        self.refill
    }

    /// Takes in the budget of a successful answer.
    pub(crate) fn observe(&mut self, now: Instant, budget: Budget) {
        self.answers += 1;
        let limit = f64::from(budget.limit);
        let remaining = f64::from(budget.remaining);
        let here = Mark {
            at: now,
            remaining,
            answers: self.answers,
        };
        match self.mark {
            // A full bucket throws refill away, so a measurement must start afresh.
            _ if remaining >= limit - 1.0 => self.mark = Some(here),
            None => self.mark = Some(here),
            Some(mark)
                if now.duration_since(mark.at) >= MIN_SPAN
                    && self.answers - mark.answers >= MIN_ANSWERS =>
            {
                let span = now.duration_since(mark.at).as_secs_f64();
                let spent = (self.answers - mark.answers) as f64;
                let measured = ((remaining - mark.remaining + spent) / span).max(0.0);
                self.refill = Some(
                    self.refill
                        .map_or(measured, |r| r + NEW_WEIGHT * (measured - r)),
                );
                self.mark = Some(here);
            }
            Some(_) => {}
        }
        // Once paced, a route stays paced until its bucket is full again: lifting the
        // pace halfway would let every worker burst into what is left.
        let paced = match self.rate {
            Some(_) => remaining < limit - 1.0,
            None => budget.near_limit || remaining < limit * PACE_BELOW,
        };
        self.rate = paced.then(|| {
            let refill = self.refill.unwrap_or(limit / ASSUMED_REFILL_TIME);
            let standing = remaining / (limit * RESERVE).max(1.0);
            let scale = (SLOWEST + (1.0 - SLOWEST) * standing).min(FASTEST);
            (refill * scale).max(MIN_RATE)
        });
    }

    /// A 429 on this route: the bucket is empty. The shared pause waits out
    /// `Retry-After`; afterwards the route goes no faster than its refill.
    pub(crate) fn throttled(&mut self, limit: Option<u32>) {
        let fallback = limit.map_or(MIN_RATE, |l| f64::from(l) / ASSUMED_REFILL_TIME);
        let slowest = (self.refill.unwrap_or(fallback) * SLOWEST).max(MIN_RATE);
        self.rate = Some(self.rate.map_or(slowest, |r| r.min(slowest)));
    }
}

/// A route's pacing starting or ending.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Change {
    /// Paced from now on, at this many requests per second.
    Started(f64),
    /// No longer paced.
    Lifted,
}

#[derive(Debug)]
struct RouteSlot {
    pace: RoutePace,
    next: Option<Instant>,
}

/// The paces of every route of one client, and the spacing of their requests.
#[derive(Debug)]
pub(crate) struct Pacer {
    routes: Mutex<Vec<RouteSlot>>,
}

impl Pacer {
    pub(crate) fn new() -> Self {
        let routes = (0..Route::COUNT)
            .map(|_| RouteSlot {
                pace: RoutePace::default(),
                next: None,
            })
            .collect();
        Self {
            routes: Mutex::new(routes),
        }
    }

    /// Waits for this route's next slot; returns at once while it is not paced.
    pub(crate) async fn wait(&self, route: Route) {
        let slot = {
            let mut routes = self.lock();
            let Some(entry) = routes.get_mut(route.index()) else {
                return;
            };
            let now = Instant::now();
            match entry.pace.rate() {
                None => {
                    entry.next = None;
                    return;
                }
                Some(rate) => {
                    let slot = entry.next.map_or(now, |next| next.max(now));
                    entry.next = Some(slot + Duration::from_secs_f64(1.0 / rate));
                    slot
                }
            }
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Takes in the budget headers of an answer; says whether pacing of the route
    /// started or ended with it.
    pub(crate) fn answered(&self, route: Route, headers: &HeaderMap) -> Option<Change> {
        let budget = Budget::from_headers(headers)?;
        let mut routes = self.lock();
        let entry = routes.get_mut(route.index())?;
        let before = entry.pace.rate();
        entry.pace.observe(Instant::now(), budget);
        match (before, entry.pace.rate()) {
            (None, Some(rate)) => Some(Change::Started(rate)),
            (Some(_), None) => Some(Change::Lifted),
            _ => None,
        }
    }

    /// A 429 (or 503 with `Retry-After`) on `route`.
    pub(crate) fn throttled(&self, route: Route, headers: &HeaderMap) {
        let limit = Budget::from_headers(headers).map(|b| b.limit);
        let mut routes = self.lock();
        if let Some(entry) = routes.get_mut(route.index()) {
            entry.pace.throttled(limit);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RouteSlot>> {
        // Plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    /// A token bucket like Confluence's (and the fake's): `rate` tokens per second up to
    /// `capacity`, one per request, 429 when empty.
    struct Bucket {
        capacity: f64,
        rate: f64,
        tokens: f64,
        last: Instant,
    }

    impl Bucket {
        fn take(&mut self, now: Instant) -> Option<Budget> {
            let elapsed = now.duration_since(self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
            self.last = now;
            if self.tokens < 1.0 {
                return None;
            }
            self.tokens -= 1.0;
            let remaining = self.tokens.floor() as u32;
            Some(Budget {
                limit: self.capacity as u32,
                remaining,
                near_limit: f64::from(remaining) < self.capacity * 0.2,
            })
        }
    }

    /// Drives `workers` closed-loop workers (each waits `latency` for its answer)
    /// through the pacer against a bucket for `seconds`; returns (answers, 429s).
    async fn drive(capacity: f64, rate: f64, workers: usize, seconds: u64) -> (u64, u64, Pacer) {
        let pacer = std::sync::Arc::new(Pacer::new());
        let bucket = std::sync::Arc::new(Mutex::new(Bucket {
            capacity,
            rate,
            tokens: capacity,
            last: Instant::now(),
        }));
        let end = Instant::now() + Duration::from_secs(seconds);
        let latency = Duration::from_millis(20);
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let pacer = pacer.clone();
            let bucket = bucket.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut limited) = (0u64, 0u64);
                while Instant::now() < end {
                    pacer.wait(Route::GroupMembers).await;
                    let answer = bucket
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take(Instant::now());
                    tokio::time::sleep(latency).await;
                    let mut headers = HeaderMap::new();
                    match answer {
                        Some(b) => {
                            headers.insert("x-ratelimit-limit", HeaderValue::from(b.limit));
                            headers.insert("x-ratelimit-remaining", HeaderValue::from(b.remaining));
                            if b.near_limit {
                                headers.insert(
                                    "x-ratelimit-nearlimit",
                                    HeaderValue::from_static("true"),
                                );
                            }
                            pacer.answered(Route::GroupMembers, &headers);
                            ok += 1;
                        }
                        None => {
                            limited += 1;
                            pacer.throttled(Route::GroupMembers, &headers);
                            // The client's shared pause: Retry-After of one second.
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
                (ok, limited)
            }));
        }
        let (mut ok, mut limited) = (0, 0);
        for task in tasks {
            let (o, l) = task.await.expect("worker");
            ok += o;
            limited += l;
        }
        let pacer = std::sync::Arc::into_inner(pacer).expect("sole owner");
        (ok, limited, pacer)
    }

    #[tokio::test(start_paused = true)]
    async fn a_route_paced_by_its_headers_runs_at_the_refill_without_429s() {
        // 8 workers at 20 ms could send 400/s; the bucket refills 200/s, burst 100.
        let (ok, limited, pacer) = drive(100.0, 200.0, 8, 30).await;
        assert!(limited <= 2, "{limited} 429s");
        // The whole budget is 100 + 30 s x 200/s = 6100; nearly all of it is used.
        assert!(ok >= 5_700, "only {ok} answers in 30 s");
        let routes = pacer.lock();
        let refill = routes[Route::GroupMembers.index()]
            .pace
            .refill()
            .expect("measured");
        assert!(
            (170.0..=230.0).contains(&refill),
            "measured refill {refill}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_tight_budget_is_met_with_few_429s() {
        // The tight setting of the integration test: 20/s, burst 10.
        let (ok, limited, _) = drive(10.0, 20.0, 8, 30).await;
        assert!(limited <= 5, "{limited} 429s");
        assert!(ok >= 500, "only {ok} answers in 30 s (budget 610)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_generous_budget_is_never_paced() {
        // 8 workers at 20 ms send 400/s; a bucket of 1000 refilling 1000/s never runs low.
        let (ok, limited, pacer) = drive(1000.0, 1000.0, 8, 5).await;
        assert_eq!(limited, 0);
        assert!(ok >= 1_900, "{ok}");
        assert_eq!(pacer.lock()[Route::GroupMembers.index()].pace.rate(), None);
    }

    #[test]
    fn budget_headers_are_read_leniently() {
        let mut h = HeaderMap::new();
        assert_eq!(Budget::from_headers(&h), None);
        h.insert("x-ratelimit-limit", HeaderValue::from_static("100"));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static(" 150 "));
        h.insert("x-ratelimit-nearlimit", HeaderValue::from_static("TRUE"));
        assert_eq!(
            Budget::from_headers(&h),
            Some(Budget {
                limit: 100,
                remaining: 100,
                near_limit: true
            })
        );
        h.insert("x-ratelimit-limit", HeaderValue::from_static("0"));
        assert_eq!(
            Budget::from_headers(&h),
            None,
            "a zero budget means nothing"
        );
        h.insert("x-ratelimit-limit", HeaderValue::from_static("lots"));
        assert_eq!(Budget::from_headers(&h), None);
    }

    #[test]
    fn a_full_bucket_restarts_the_measurement() {
        let t0 = Instant::now();
        let mut pace = RoutePace::default();
        let budget = |remaining| Budget {
            limit: 100,
            remaining,
            near_limit: false,
        };
        // Slower than the refill: the bucket stays full and nothing is measured.
        for i in 0..10 {
            pace.observe(t0 + Duration::from_millis(100 * i), budget(99));
        }
        assert_eq!(pace.refill(), None);
        assert_eq!(pace.rate(), None);
        // Draining: 60 answers in 0.5 s leave 49, so 10 tokens came back: 20/s.
        for i in 1..=60 {
            let remaining = 99 - i * 50 / 60;
            pace.observe(
                t0 + Duration::from_millis(900 + i * 500 / 60),
                budget(remaining as u32),
            );
        }
        let refill = pace.refill().expect("measured");
        assert!((5.0..=40.0).contains(&refill), "{refill}");
        assert!(pace.rate().is_some(), "paced below half");
    }
}
