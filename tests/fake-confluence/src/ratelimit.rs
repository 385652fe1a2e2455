//! Token buckets per (credential, method, route template) and the 429 answer.

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};

use crate::config::RateLimitConfig;

struct Bucket {
    tokens: f64,
    last: f64,
}

pub enum Decision {
    /// Rate limiting is off.
    Off,
    Allowed {
        limit: u32,
        remaining: u32,
    },
    Limited {
        limit: u32,
        retry_after: u64,
    },
}

#[derive(Default)]
pub struct RateLimiter {
    config: Option<RateLimitConfig>,
    buckets: HashMap<(usize, String, String), Bucket>,
}

impl RateLimiter {
    pub fn new(config: Option<RateLimitConfig>) -> Self {
        RateLimiter {
            config,
            buckets: HashMap::new(),
        }
    }

    pub fn config(&self) -> Option<&RateLimitConfig> {
        self.config.as_ref()
    }

    /// New settings start from full buckets.
    pub fn set_config(&mut self, config: Option<RateLimitConfig>) {
        self.config = config;
        self.buckets.clear();
    }

    pub fn check(
        &mut self,
        credential: usize,
        method: &str,
        route: &str,
        identity_route: bool,
        now: f64,
    ) -> Decision {
        let Some(cfg) = &self.config else {
            return Decision::Off;
        };
        let capacity = f64::from(cfg.capacity.max(1));
        let rate = cfg.refill_per_sec.max(0.000_001);
        let cost = f64::from(if identity_route {
            cfg.identity_cost.max(1)
        } else {
            1
        });
        let bucket = self
            .buckets
            .entry((credential, method.to_owned(), route.to_owned()))
            .or_insert(Bucket {
                tokens: capacity,
                last: now,
            });
        bucket.tokens = (bucket.tokens + (now - bucket.last).max(0.0) * rate).min(capacity);
        bucket.last = now;
        // The epsilon absorbs float error so that advancing the clock by exactly the
        // refill time always frees the token.
        if bucket.tokens + 1e-9 >= cost {
            bucket.tokens = (bucket.tokens - cost).max(0.0);
            Decision::Allowed {
                limit: cfg.capacity,
                remaining: bucket.tokens.floor() as u32,
            }
        } else {
            let wait = (cost - bucket.tokens) / rate;
            Decision::Limited {
                limit: cfg.capacity,
                retry_after: (wait.ceil() as u64).max(1),
            }
        }
    }
}

/// Budget headers on an allowed answer; `X-RateLimit-NearLimit` below 20 % left.
pub fn allowed_headers(headers: &mut HeaderMap, limit: u32, remaining: u32) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    if f64::from(remaining) < f64::from(limit) * 0.2 {
        headers.insert("x-ratelimit-nearlimit", HeaderValue::from_static("true"));
    }
}

pub fn too_many_requests(cfg: &RateLimitConfig, limit: u32, retry_after: u64) -> Response {
    let reset = Utc::now() + Duration::seconds(retry_after as i64);
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        [("content-type", "application/json")],
        r#"{"message":"Rate limit exceeded"}"#,
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert("retry-after", HeaderValue::from(retry_after));
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
    if let Ok(v) = HeaderValue::from_str(&reset.format("%Y-%m-%dT%H:%MZ").to_string()) {
        h.insert("x-ratelimit-reset", v);
    }
    if let Ok(v) = HeaderValue::from_str(&cfg.reason) {
        h.insert("ratelimit-reason", v);
    }
    if cfg.near_limit_on_429 {
        h.insert("x-ratelimit-nearlimit", HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_empties_and_refills() {
        let mut rl = RateLimiter::new(Some(RateLimitConfig {
            capacity: 2,
            refill_per_sec: 1.0,
            ..RateLimitConfig::default()
        }));
        assert!(matches!(
            rl.check(0, "GET", "/r", false, 0.0),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            rl.check(0, "GET", "/r", false, 0.0),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            rl.check(0, "GET", "/r", false, 0.0),
            Decision::Limited { retry_after: 1, .. }
        ));
        // Another route has its own bucket.
        assert!(matches!(
            rl.check(0, "GET", "/s", false, 0.0),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            rl.check(0, "GET", "/r", false, 1.0),
            Decision::Allowed { .. }
        ));
    }
}
