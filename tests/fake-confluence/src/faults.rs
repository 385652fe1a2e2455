//! Fault injection by probability or by script ("the 3rd call to this route fails").

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// One way a request can go wrong. JSON: `{"type":"status","status":503,"retryAfterSecs":2}`,
/// `{"type":"reset"}`, `{"type":"latency","ms":200}`,
/// `{"type":"slowBody","chunkDelayMs":50,"chunkBytes":64}`, `{"type":"malformedJson"}`,
/// `{"type":"transient"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum FaultKind {
    /// An error status (500, 502, 503, 504, …) with or without `Retry-After`.
    Status {
        status: u16,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Close the TCP connection without answering.
    Reset,
    /// Delay the answer.
    Latency { ms: u64 },
    /// Carry out the request, then delay the answer: a write that has landed although
    /// the client has not heard back yet.
    LateAnswer { ms: u64 },
    /// Send the body in small chunks with a pause between them.
    SlowBody {
        chunk_delay_ms: u64,
        #[serde(default = "default_chunk")]
        chunk_bytes: usize,
    },
    /// Cut a 2xx JSON body in half.
    MalformedJson,
    /// One of: 503 + `Retry-After: 1`, 502, 504, 500 + `Retry-After: 1`, 500, reset.
    Transient,
}

fn default_chunk() -> usize {
    64
}

/// When a fault fires. `route` is a route template such as
/// `/wiki/rest/api/group/{groupId}/membersByGroupId`, a prefix ending in `*`, or absent
/// for every API route; `calls` are 1-based counts of requests matching this rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultRule {
    #[serde(default)]
    pub route: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    pub kind: FaultKind,
    #[serde(default)]
    pub probability: f64,
    #[serde(default)]
    pub calls: Vec<u64>,
}

impl FaultRule {
    /// Fires on every matching request.
    pub fn always(route: Option<&str>, kind: FaultKind) -> Self {
        FaultRule {
            route: route.map(str::to_owned),
            method: None,
            kind,
            probability: 1.0,
            calls: Vec::new(),
        }
    }

    /// Fires on the given 1-based calls of the route.
    pub fn on_calls(route: &str, calls: &[u64], kind: FaultKind) -> Self {
        FaultRule {
            route: Some(route.to_owned()),
            method: None,
            kind,
            probability: 0.0,
            calls: calls.to_vec(),
        }
    }

    fn matches(&self, method: &str, route: &str) -> bool {
        let route_ok = match self.route.as_deref() {
            None | Some("*") => true,
            Some(r) => match r.strip_suffix('*') {
                Some(prefix) => route.starts_with(prefix),
                None => r == route,
            },
        };
        route_ok
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
    }
}

/// What the pipeline does to one request.
#[derive(Debug, Default)]
pub struct Plan {
    pub latency_ms: u64,
    pub late_answer_ms: u64,
    pub early: Option<Early>,
    pub slow_body: Option<(u64, usize)>,
    pub malformed: bool,
}

#[derive(Debug)]
pub enum Early {
    Status {
        status: u16,
        retry_after: Option<u64>,
    },
    Reset,
}

pub struct FaultEngine {
    rules: Vec<(FaultRule, u64)>,
    rng: ChaCha8Rng,
    pub injected: u64,
}

impl FaultEngine {
    pub fn new(rules: Vec<FaultRule>, seed: u64) -> Self {
        FaultEngine {
            rules: rules.into_iter().map(|r| (r, 0)).collect(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            injected: 0,
        }
    }

    pub fn rules(&self) -> Vec<FaultRule> {
        self.rules.iter().map(|(r, _)| r.clone()).collect()
    }

    /// Replaces the rules; call counters start again from zero.
    pub fn set_rules(&mut self, rules: Vec<FaultRule>) {
        self.rules = rules.into_iter().map(|r| (r, 0)).collect();
    }

    pub fn plan(&mut self, method: &str, route: &str) -> Plan {
        let mut plan = Plan::default();
        for (rule, count) in &mut self.rules {
            if !rule.matches(method, route) {
                continue;
            }
            *count += 1;
            let fire = rule.calls.contains(count)
                || (rule.probability > 0.0 && self.rng.random_bool(rule.probability.min(1.0)));
            if !fire {
                continue;
            }
            self.injected += 1;
            let kind = match &rule.kind {
                FaultKind::Transient => match self.rng.random_range(0..6) {
                    0 => FaultKind::Status {
                        status: 503,
                        retry_after_secs: Some(1),
                    },
                    1 => FaultKind::Status {
                        status: 502,
                        retry_after_secs: None,
                    },
                    2 => FaultKind::Status {
                        status: 504,
                        retry_after_secs: None,
                    },
                    3 => FaultKind::Status {
                        status: 500,
                        retry_after_secs: Some(1),
                    },
                    4 => FaultKind::Status {
                        status: 500,
                        retry_after_secs: None,
                    },
                    _ => FaultKind::Reset,
                },
                other => other.clone(),
            };
            match kind {
                FaultKind::Status {
                    status,
                    retry_after_secs,
                } => {
                    plan.early.get_or_insert(Early::Status {
                        status,
                        retry_after: retry_after_secs,
                    });
                }
                FaultKind::Reset => {
                    plan.early.get_or_insert(Early::Reset);
                }
                FaultKind::Latency { ms } => plan.latency_ms += ms,
                FaultKind::LateAnswer { ms } => plan.late_answer_ms += ms,
                FaultKind::SlowBody {
                    chunk_delay_ms,
                    chunk_bytes,
                } => plan.slow_body = Some((chunk_delay_ms, chunk_bytes.max(1))),
                FaultKind::MalformedJson => plan.malformed = true,
                FaultKind::Transient => {}
            }
        }
        plan
    }

    pub fn jitter(&mut self, max_ms: u64) -> u64 {
        if max_ms == 0 {
            0
        } else {
            self.rng.random_range(0..=max_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_calls_fire_exactly() {
        let mut e = FaultEngine::new(
            vec![FaultRule::on_calls(
                "/r",
                &[3],
                FaultKind::Status {
                    status: 503,
                    retry_after_secs: Some(2),
                },
            )],
            1,
        );
        assert!(e.plan("GET", "/r").early.is_none());
        assert!(e.plan("GET", "/other").early.is_none());
        assert!(e.plan("GET", "/r").early.is_none());
        assert!(matches!(
            e.plan("GET", "/r").early,
            Some(Early::Status { status: 503, .. })
        ));
        assert!(e.plan("GET", "/r").early.is_none());
    }

    #[test]
    fn rules_parse_from_json() {
        let r: FaultRule = serde_json::from_str(
            r#"{"route":"/wiki/rest/api/group","kind":{"type":"slowBody","chunkDelayMs":5},"calls":[1]}"#,
        )
        .expect("rule parses");
        assert_eq!(
            r.kind,
            FaultKind::SlowBody {
                chunk_delay_ms: 5,
                chunk_bytes: 64
            }
        );
    }
}
