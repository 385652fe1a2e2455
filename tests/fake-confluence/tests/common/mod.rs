//! Raw-HTTP plumbing shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use fake_confluence::{FakeConfig, FakeConfluence, RunningFake};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

pub struct Api {
    pub fake: RunningFake,
    pub http: reqwest::Client,
}

/// Built with the operator in one workspace, reqwest's rustls has no built-in crypto
/// provider (the operator picks ring explicitly), so tests install it themselves.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn start(cfg: FakeConfig) -> Api {
    install_crypto_provider();
    let fake = FakeConfluence::start(cfg).await.expect("fake starts");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    Api { fake, http }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.fake.base_url(), path)
    }

    /// A request with the default credential and `Accept: application/json`.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let c = self.fake.credential();
        self.http
            .request(method, self.url(path))
            .basic_auth(&c.email, Some(&c.token))
            .header("Accept", "application/json")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.expect("request")
    }

    /// GET, expect 200, parse JSON.
    pub async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        let status = r.status();
        let text = r.text().await.expect("body");
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).expect("json body")
    }

    pub async fn anon(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }
}

pub fn arr(v: &Value) -> &Vec<Value> {
    v.as_array().expect("array")
}

pub fn s(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("string expected, got {v}"))
}
