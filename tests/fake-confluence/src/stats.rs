//! Request counters and the bounded request log.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// JSON (`GET /__fake/stats`):
/// `{"totalRequests":12,"rateLimited":1,"faultsInjected":0,"peakConcurrent":4,
///   "byRoute":{"GET /wiki/rest/api/group":{"200":2,"429":1}}}`
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total_requests: u64,
    /// Answers with status 429.
    pub rate_limited: u64,
    pub faults_injected: u64,
    pub peak_concurrent: u64,
    /// `"<METHOD> <route template>"` → status → count. Unrouted paths count as `unmatched`.
    pub by_route: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Stats {
    /// Requests to one route template with any method, summed over statuses.
    pub fn route_total(&self, method: &str, route: &str) -> u64 {
        self.by_route
            .get(&format!("{method} {route}"))
            .map(|m| m.values().sum())
            .unwrap_or(0)
    }
}

/// One logged request. `Authorization` is logged as `<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub route: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

pub struct Recorder {
    stats: Stats,
    log: VecDeque<RequestRecord>,
    capacity: usize,
}

impl Recorder {
    pub fn new(capacity: usize) -> Self {
        Recorder {
            stats: Stats::default(),
            log: VecDeque::new(),
            capacity,
        }
    }

    pub fn record(&mut self, rec: RequestRecord) {
        self.stats.total_requests += 1;
        if rec.status == 429 {
            self.stats.rate_limited += 1;
        }
        *self
            .stats
            .by_route
            .entry(format!("{} {}", rec.method, rec.route))
            .or_default()
            .entry(rec.status.to_string())
            .or_default() += 1;
        if self.capacity > 0 {
            if self.log.len() >= self.capacity {
                self.log.pop_front();
            }
            self.log.push_back(rec);
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    pub fn log(&self) -> Vec<RequestRecord> {
        self.log.iter().cloned().collect()
    }

    pub fn reset(&mut self) {
        self.stats = Stats::default();
        self.log.clear();
    }
}
