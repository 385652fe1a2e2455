//! The request pattern of the reference Go connector (baton-confluence v0.0.24), replayed
//! serially with its page sizes and retry behaviour, for a side-by-side wall time when
//! the Go binary itself cannot be built.
//!
//! What it copies, from the connector's source: one request at a time; user search with
//! `limit=200`, stopping when a page is shorter than asked (so after the first page under
//! Confluence's 100-row cap); groups in pages of 200 following `_links.next`; every
//! group's members fetched twice (once for users, once for grants), pages of 200; spaces
//! in pages of 200 and permissions in pages of 100 following `_links.next` cursors;
//! 429/503/504 retried after a linear 1 s × attempt wait, ignoring `Retry-After`.

use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Replay {
    http: reqwest::Client,
    base: String,
    pub requests: u64,
    pub throttled: u64,
}

impl Replay {
    pub fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.to_string(),
            requests: 0,
            throttled: 0,
        }
    }

    async fn get(&mut self, path_and_query: &str) -> Result<Value, String> {
        let mut attempt = 0u64;
        loop {
            self.requests += 1;
            let response = self
                .http
                .get(format!("{}{path_and_query}", self.base))
                .basic_auth("admin@example.com", Some("test-token"))
                .header("Accept", "application/json")
                .header("X-Atlassian-Token", "no-check")
                .header("Content-Type", "application/json")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            if matches!(status, 429 | 503 | 504) {
                self.throttled += u64::from(status == 429);
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(attempt.min(60))).await;
                continue;
            }
            if status != 200 {
                return Err(format!("GET {path_and_query}: HTTP {status}"));
            }
            return response.json().await.map_err(|e| e.to_string());
        }
    }

    /// Walks v1 offset pages the way the reference does: on while `_links.next` is set.
    async fn v1_walk(&mut self, path: &str, limit: usize) -> Result<Vec<Value>, String> {
        let mut rows = Vec::new();
        let mut start = 0;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let page = self
                .get(&format!("{path}{sep}start={start}&limit={limit}"))
                .await?;
            let results = page["results"].as_array().cloned().unwrap_or_default();
            start += results.len();
            let more = page["_links"]["next"].is_string() && !results.is_empty();
            rows.extend(results);
            if !more {
                return Ok(rows);
            }
        }
    }

    /// Walks v2 cursor pages following `_links.next` (which starts with `/wiki`).
    async fn v2_walk(&mut self, path: &str, limit: usize) -> Result<Vec<Value>, String> {
        let mut rows = Vec::new();
        let mut next = format!("{path}?limit={limit}");
        loop {
            let page = self.get(&next).await?;
            rows.extend(page["results"].as_array().cloned().unwrap_or_default());
            match page["_links"]["next"].as_str() {
                Some(link) => next = link.to_string(),
                None => return Ok(rows),
            }
        }
    }

    /// The whole sync; returns the wall time.
    pub async fn run(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        self.get("/wiki/rest/api/user/current").await?;
        let search = self
            .get("/wiki/rest/api/search/user?cql=type%3Duser&expand=operations&start=0&limit=200")
            .await?;
        let _ = search["results"].as_array().map(Vec::len);
        let groups = self.v1_walk("/wiki/rest/api/group", 200).await?;
        let ids: Vec<String> = groups
            .iter()
            .filter_map(|g| g["id"].as_str().map(str::to_string))
            .collect();
        // Users pass, then grants pass: each group's members twice.
        for _pass in 0..2 {
            for id in &ids {
                self.v1_walk(
                    &format!("/wiki/rest/api/group/{id}/membersByGroupId?expand=operations"),
                    200,
                )
                .await?;
            }
        }
        let spaces = self.v2_walk("/wiki/api/v2/spaces", 200).await?;
        for space in &spaces {
            if let Some(id) = space["id"].as_str() {
                self.v2_walk(&format!("/wiki/api/v2/spaces/{id}/permissions"), 100)
                    .await?;
            }
        }
        Ok(started.elapsed())
    }
}
