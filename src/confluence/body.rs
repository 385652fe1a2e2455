//! Reading one response body: a size cap against runaway answers and a minimum pace
//! against bodies that stall or trickle.
//!
//! The pace rule is hand-written: reqwest offers a whole-request timeout and an idle
//! read timeout, but an idle timeout is defeated by one byte now and then, and no
//! maintained crate watches the rate of a `reqwest` body.

use bytes::{Bytes, BytesMut};
use reqwest::Response;
use tokio::time::Instant;

use super::config::BodyProgress;

/// Why reading a body stopped early.
pub(crate) enum BodyError {
    /// The body is larger than the cap.
    TooLarge,
    /// A window closed with fewer bytes than the rule asks for.
    TooSlow,
    /// The connection failed.
    Transport(reqwest::Error),
}

/// Tracks a body's pace, window by window; time is passed in so the rule is testable.
#[derive(Debug)]
pub(crate) struct Pace {
    rule: BodyProgress,
    window_start: Instant,
    bytes: u64,
}

impl Pace {
    pub(crate) fn new(rule: BodyProgress, now: Instant) -> Self {
        Self {
            rule,
            window_start: now,
            bytes: 0,
        }
    }

    /// When the current window closes; `None` when the rule is off.
    pub(crate) fn window_end(&self) -> Option<Instant> {
        (self.rule.min_bytes > 0).then(|| self.window_start + self.rule.window)
    }

    /// Counts `n` bytes that arrived at `now`.
    pub(crate) fn on_bytes(&mut self, now: Instant, n: usize) -> Result<(), BodyError> {
        self.bytes = self.bytes.saturating_add(n as u64);
        self.check(now)
    }

    /// Closes the window if `now` is past its end: too few bytes fail the body, enough
    /// bytes open the next window.
    pub(crate) fn check(&mut self, now: Instant) -> Result<(), BodyError> {
        match self.window_end() {
            Some(end) if now >= end => {
                if self.bytes < self.rule.min_bytes {
                    return Err(BodyError::TooSlow);
                }
                self.window_start = now;
                self.bytes = 0;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Reads the body chunk by chunk under the pace rule, refusing (or, for error bodies,
/// truncating) past `cap` so that a runaway answer cannot exhaust memory.
pub(crate) async fn read_capped(
    response: &mut Response,
    cap: usize,
    truncate: bool,
    rule: BodyProgress,
) -> Result<Bytes, BodyError> {
    if !truncate
        && response
            .content_length()
            .is_some_and(|len| len > cap as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let hint = response
        .content_length()
        .map_or(0, |l| l.min(cap as u64) as usize);
    let mut buf = BytesMut::with_capacity(hint);
    let mut pace = Pace::new(rule, Instant::now());
    loop {
        // Dropping `chunk()` at a window's end loses nothing: a frame is only taken
        // from the connection when the future completes.
        let next = match pace.window_end() {
            Some(end) => match tokio::time::timeout_at(end, response.chunk()).await {
                Ok(next) => next,
                Err(_) => {
                    pace.check(Instant::now())?;
                    continue;
                }
            },
            None => response.chunk().await,
        };
        let Some(chunk) = next.map_err(BodyError::Transport)? else {
            break;
        };
        if buf.len() + chunk.len() > cap {
            if truncate {
                buf.extend_from_slice(&chunk[..cap - buf.len()]);
                break;
            }
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
        pace.on_bytes(Instant::now(), chunk.len())?;
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const RULE: BodyProgress = BodyProgress {
        window: Duration::from_secs(10),
        min_bytes: 100,
    };

    fn slow(result: Result<(), BodyError>) -> bool {
        matches!(result, Err(BodyError::TooSlow))
    }

    #[test]
    fn a_steady_body_keeps_opening_windows() {
        let t0 = Instant::now();
        let mut pace = Pace::new(RULE, t0);
        for s in 1..=60 {
            assert!(
                pace.on_bytes(t0 + Duration::from_secs(s), 20).is_ok(),
                "{s}"
            );
        }
        assert_eq!(pace.window_end(), Some(t0 + Duration::from_secs(70)));
    }

    #[test]
    fn a_trickle_fails_when_its_window_closes() {
        let t0 = Instant::now();
        let mut pace = Pace::new(RULE, t0);
        for s in 1..10 {
            assert!(pace.on_bytes(t0 + Duration::from_secs(s), 1).is_ok(), "{s}");
        }
        assert!(slow(pace.on_bytes(t0 + Duration::from_secs(10), 1)));
    }

    #[test]
    fn silence_fails_at_the_window_end_and_not_before() {
        let t0 = Instant::now();
        let mut pace = Pace::new(RULE, t0);
        assert!(pace.on_bytes(t0 + Duration::from_secs(1), 500).is_ok());
        assert!(pace.check(t0 + Duration::from_secs(9)).is_ok());
        // The first window was full: a second one opens, then passes in silence.
        assert!(pace.check(t0 + Duration::from_secs(10)).is_ok());
        assert!(pace.check(t0 + Duration::from_secs(19)).is_ok());
        assert!(slow(pace.check(t0 + Duration::from_secs(20))));
    }

    #[test]
    fn zero_bytes_turns_the_rule_off() {
        let t0 = Instant::now();
        let mut pace = Pace::new(
            BodyProgress {
                min_bytes: 0,
                ..RULE
            },
            t0,
        );
        assert_eq!(pace.window_end(), None);
        assert!(pace.check(t0 + Duration::from_secs(3600)).is_ok());
    }
}
