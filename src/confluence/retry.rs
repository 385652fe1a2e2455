//! Retry decisions (§6), kept pure: the HTTP layer reports what happened and gets back
//! whether and how long to wait.
//!
//! The delay schedule comes from `backon`'s exponential builder; the loop itself is the
//! HTTP layer's own, because a 429 must pause *every* worker of the client (a shared
//! gate, not a per-call sleep) and must wait exactly `Retry-After`, which `backon`'s
//! per-future retry combinator cannot express without fighting it.
//!
//! Chosen policy (documented deviation from §6's "other 5xx only with Retry-After"):
//! every 5xx on a GET except 501 is retried, because reads are idempotent and the sync must
//! survive a share of random 500s; a persistent 500 still ends after `max_attempts`.

use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::config::RetryPolicy;

/// Lower and upper jitter factors applied to exponential delays (§6: ×0.7–1.3).
pub(crate) const JITTER_RANGE: (f64, f64) = (0.7, 1.3);

/// What one attempt came to, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 429, or 503 with `Retry-After`: throttled; pause every worker.
    RateLimited {
        /// The server's `Retry-After`, when sent and parseable.
        retry_after: Option<Duration>,
    },
    /// 5xx, connection failure, timeout, broken body.
    Transient {
        /// A `Retry-After` on a 5xx is honoured for this request only.
        retry_after: Option<Duration>,
    },
    /// A 200 whose JSON did not parse.
    Malformed,
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait, then try again; `shared` pauses every worker of the client.
    Retry {
        /// How long.
        wait: Duration,
        /// Whether the wait applies to the whole client (rate limit).
        shared: bool,
    },
    /// Stop and report the failure.
    GiveUp,
}

/// Retry bookkeeping for one logical request.
#[derive(Debug)]
pub(crate) struct RetryState {
    policy: RetryPolicy,
    backoff: ExponentialBackoff,
    attempts: u32,
    rate_limit_waits: u32,
    malformed: u32,
}

impl RetryState {
    /// Fresh state; the first attempt is about to be made.
    pub(crate) fn new(policy: &RetryPolicy) -> Self {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.base_delay)
            .with_max_delay(policy.max_delay.max(policy.base_delay))
            .with_factor(2.0)
            // Attempts are counted here, per failure kind; the schedule itself is endless.
            .without_max_times()
            .build();
        Self {
            policy: policy.clone(),
            backoff,
            attempts: 1,
            rate_limit_waits: 0,
            malformed: 0,
        }
    }

    /// Decides after a failed attempt. `elapsed` is the time since the logical request
    /// began; `jitter` is a factor in [`JITTER_RANGE`] (injected for testability).
    pub(crate) fn on_failure(
        &mut self,
        failure: Failure,
        elapsed: Duration,
        jitter: f64,
    ) -> Decision {
        let p = &self.policy;
        let (wait, shared) = match failure {
            Failure::RateLimited { retry_after } => {
                self.rate_limit_waits += 1;
                if self.rate_limit_waits > p.max_rate_limit_waits {
                    return Decision::GiveUp;
                }
                match retry_after {
                    // Exactly as asked: jitter would only make the next try land early
                    // or late, and early tries are answered with a longer wait.
                    Some(ra) if ra > p.max_retry_after => return Decision::GiveUp,
                    Some(ra) => (ra, true),
                    None => (self.next_backoff(jitter), true),
                }
            }
            Failure::Transient { retry_after } => {
                self.attempts += 1;
                if self.attempts > p.max_attempts.max(1) {
                    return Decision::GiveUp;
                }
                match retry_after {
                    Some(ra) if ra > p.max_retry_after => return Decision::GiveUp,
                    Some(ra) => (ra, false),
                    None => (self.next_backoff(jitter), false),
                }
            }
            Failure::Malformed => {
                self.malformed += 1;
                if self.malformed >= p.max_malformed_attempts.max(1) {
                    return Decision::GiveUp;
                }
                (self.next_backoff(jitter), false)
            }
        };
        if elapsed.saturating_add(wait) > self.policy.max_elapsed {
            return Decision::GiveUp;
        }
        Decision::Retry { wait, shared }
    }

    fn next_backoff(&mut self, jitter: f64) -> Duration {
        let base = self.backoff.next().unwrap_or(self.policy.max_delay);
        apply_jitter(base, jitter)
    }
}

/// Scales `delay` by `factor`, clamped to [`JITTER_RANGE`].
pub(crate) fn apply_jitter(delay: Duration, factor: f64) -> Duration {
    let factor = factor.clamp(JITTER_RANGE.0, JITTER_RANGE.1);
    Duration::try_from_secs_f64(delay.as_secs_f64() * factor).unwrap_or(delay)
}

/// A random factor in [`JITTER_RANGE`].
pub(crate) fn random_jitter() -> f64 {
    use rand::Rng;
    rand::rng().random_range(JITTER_RANGE.0..=JITTER_RANGE.1)
}

/// Parses `Retry-After`: delta-seconds (fractions tolerated) or an HTTP-date relative to
/// `now`. A date in the past means "now". Anything else is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            max_rate_limit_waits: 2,
            max_elapsed: Duration::from_secs(100),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(30),
            max_malformed_attempts: 2,
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + S(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("7", now), Some(S(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(S(0)));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(S(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(S(0))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn transient_backoff_grows_caps_and_stops_after_max_attempts() {
        let mut st = RetryState::new(&policy());
        let t = Failure::Transient { retry_after: None };
        assert_eq!(
            st.on_failure(t, S(0), 1.0),
            Decision::Retry {
                wait: S(1),
                shared: false
            }
        );
        assert_eq!(
            st.on_failure(t, S(0), 1.0),
            Decision::Retry {
                wait: S(2),
                shared: false
            }
        );
        assert_eq!(st.on_failure(t, S(0), 1.0), Decision::GiveUp);
    }

    #[test]
    fn backoff_stays_within_jitter_bounds_of_the_cap() {
        let mut p = policy();
        p.max_attempts = 50;
        let mut st = RetryState::new(&p);
        for _ in 0..40 {
            let jitter = random_jitter();
            assert!((0.7..=1.3).contains(&jitter));
            match st.on_failure(Failure::Transient { retry_after: None }, S(0), jitter) {
                Decision::Retry { wait, .. } => {
                    assert!(wait >= Duration::from_millis(700), "{wait:?}");
                    assert!(wait <= Duration::from_millis(5200), "{wait:?}");
                }
                Decision::GiveUp => panic!("budget should last"),
            }
        }
        assert_eq!(apply_jitter(S(10), 5.0), S(13));
        assert_eq!(apply_jitter(S(10), 0.0), S(7));
    }

    #[test]
    fn rate_limit_waits_exactly_retry_after_shared_and_respects_caps() {
        let mut st = RetryState::new(&policy());
        let rl = |s| Failure::RateLimited {
            retry_after: Some(S(s)),
        };
        assert_eq!(
            st.on_failure(rl(5), S(0), 1.3),
            Decision::Retry {
                wait: S(5),
                shared: true
            }
        );
        assert_eq!(
            st.on_failure(rl(5), S(0), 0.7),
            Decision::Retry {
                wait: S(5),
                shared: true
            }
        );
        assert_eq!(
            st.on_failure(rl(5), S(0), 1.0),
            Decision::GiveUp,
            "waits exhausted"
        );

        let mut st = RetryState::new(&policy());
        assert_eq!(
            st.on_failure(rl(31), S(0), 1.0),
            Decision::GiveUp,
            "beyond max_retry_after"
        );
        let mut st = RetryState::new(&policy());
        assert_eq!(
            st.on_failure(rl(20), S(90), 1.0),
            Decision::GiveUp,
            "beyond max_elapsed"
        );
        let mut st = RetryState::new(&policy());
        let no_header = Failure::RateLimited { retry_after: None };
        assert_eq!(
            st.on_failure(no_header, S(0), 1.0),
            Decision::Retry {
                wait: S(1),
                shared: true
            }
        );
    }

    #[test]
    fn rate_limits_do_not_consume_transient_attempts() {
        let mut st = RetryState::new(&policy());
        let rl = Failure::RateLimited {
            retry_after: Some(S(1)),
        };
        let t = Failure::Transient { retry_after: None };
        assert!(matches!(
            st.on_failure(rl, S(0), 1.0),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            st.on_failure(t, S(0), 1.0),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            st.on_failure(rl, S(0), 1.0),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            st.on_failure(t, S(0), 1.0),
            Decision::Retry { .. }
        ));
        assert_eq!(st.on_failure(t, S(0), 1.0), Decision::GiveUp);
    }

    #[test]
    fn malformed_is_retried_once_then_given_up() {
        let mut st = RetryState::new(&policy());
        assert!(matches!(
            st.on_failure(Failure::Malformed, S(0), 1.0),
            Decision::Retry { shared: false, .. }
        ));
        assert_eq!(
            st.on_failure(Failure::Malformed, S(0), 1.0),
            Decision::GiveUp
        );
    }

    #[test]
    fn transient_retry_after_is_honoured_for_the_request_only() {
        let mut st = RetryState::new(&policy());
        let t = Failure::Transient {
            retry_after: Some(S(3)),
        };
        assert_eq!(
            st.on_failure(t, S(0), 1.3),
            Decision::Retry {
                wait: S(3),
                shared: false
            }
        );
    }
}
