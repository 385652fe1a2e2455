//! One logical request: admission (in-flight cap, shared pause), the attempt under its
//! deadline, body cap and pace, classification and the retry loop.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::{debug, info, warn};
use url::Url;

use super::body::{BodyError, read_capped};
use super::config::{BodyProgress, ClientConfig, RetryPolicy, normalize_base_url};
use super::error_body::{FailureKind, classify, shorten, summarize_body};
use super::errors::{ConfluenceError, ResponseContext, Stall};
use super::observer::RequestObserver;
use super::pacing::{Change, Pacer};
use super::retry::{Decision, Failure, RetryState, parse_retry_after, random_jitter};
use super::stats::{ClientStats, Counters, Route};
use super::throttle::Throttle;

/// Error bodies are only summarized; reading more than this gains nothing.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A successful answer: the decoded body and the headers (for `Link`).
pub(crate) struct Fetched<T> {
    pub(crate) value: T,
    pub(crate) headers: HeaderMap,
}

/// The shared HTTP machinery behind every clone of a client.
pub(crate) struct Transport {
    http: reqwest::Client,
    root: Url,
    username: String,
    token: SecretString,
    throttle: Throttle,
    pacer: Pacer,
    counters: Counters,
    max_response_bytes: usize,
    request_timeout: Duration,
    body_progress: BodyProgress,
    pub(crate) max_pages: usize,
    retry: RetryPolicy,
    observer: Option<std::sync::Arc<dyn RequestObserver>>,
}

/// What the retry loop does with an attempt.
enum Judged<T> {
    /// Stop with this result.
    Done(Result<Fetched<T>, ConfluenceError>),
    /// Consult the retry policy; report the error if it says stop.
    Retryable(Failure, ConfluenceError),
}

/// What one attempt produced.
enum Attempt {
    Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
    },
    Broken(reqwest::Error),
    /// The deadline passed or the body fell below its pace.
    Stalled(Stall),
    TooLarge,
}

impl Transport {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, ConfluenceError> {
        let root = normalize_base_url(&config.base_url)?;
        // reqwest is built without a crypto provider of its own (the process installs
        // ring once); without one it would panic, so refuse cleanly instead.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(ConfluenceError::InvalidConfig {
                reason: "no process-wide rustls crypto provider installed".into(),
            });
        }
        if config.request_timeout.is_zero() {
            return Err(ConfluenceError::InvalidConfig {
                reason: "the request timeout must be longer than zero".into(),
            });
        }
        if config.body_progress.min_bytes > 0 && config.body_progress.window.is_zero() {
            return Err(ConfluenceError::InvalidConfig {
                reason: "the body progress window must be longer than zero".into(),
            });
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(config.user_agent.clone())
            // The deadline over the whole attempt is the transport's own (`attempt`), so
            // that running out of it is reported as what it is.
            .connect_timeout(config.connect_timeout)
            // Never follow a redirect: it could carry the credentials to another host,
            // and the API does not redirect in normal operation.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfluenceError::InvalidConfig {
                reason: format!("cannot build HTTP client: {}", e.without_url()),
            })?;
        Ok(Self {
            http,
            root,
            username: config.username.clone(),
            token: config.api_token.clone(),
            throttle: Throttle::new(config.max_in_flight),
            pacer: Pacer::new(),
            counters: Counters::default(),
            max_response_bytes: config.max_response_bytes,
            request_timeout: config.request_timeout,
            body_progress: config.body_progress,
            max_pages: config.max_pages.max(1),
            retry: config.retry.clone(),
            observer: config.observer.clone(),
        })
    }

    /// The API root (origin or gateway root), without a trailing slash.
    pub(crate) fn root(&self) -> &Url {
        &self.root
    }

    pub(crate) fn stats(&self) -> ClientStats {
        self.counters.snapshot()
    }

    /// GETs `url` and decodes a JSON body, retrying per the policy.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        route: Route,
        url: Url,
    ) -> Result<Fetched<T>, ConfluenceError> {
        self.execute(route, url, None, |body| serde_json::from_slice(body))
            .await
    }

    /// Sends a membership write (`route`'s method, with the XSRF opt-out header and an
    /// optional JSON body). A success body is never parsed: Confluence answers 201 with
    /// an empty or non-JSON body. Writes that are not idempotent are not retried after
    /// a transient failure (see [`Route::idempotent`]).
    pub(crate) async fn write(
        &self,
        route: Route,
        url: Url,
        body: Option<serde_json::Value>,
    ) -> Result<(), ConfluenceError> {
        self.execute(route, url, body.as_ref(), |_| Ok(()))
            .await
            .map(|fetched| fetched.value)
    }

    /// One logical request with retries; `decode` turns a success body into `T`.
    async fn execute<T>(
        &self,
        route: Route,
        url: Url,
        body: Option<&serde_json::Value>,
        decode: impl Fn(&[u8]) -> Result<T, serde_json::Error>,
    ) -> Result<Fetched<T>, ConfluenceError> {
        let started = Instant::now();
        let mut state = RetryState::new(&self.retry);
        let mut attempt_no: u32 = 0;
        loop {
            attempt_no += 1;
            // The route's pace first, without holding an in-flight slot, so that other
            // routes use the slots while this one waits for its budget to refill.
            self.pacer.wait(route).await;
            let Some(permit) = self.throttle.admit(route).await else {
                return Err(ConfluenceError::InvalidConfig {
                    reason: "request gate closed".into(),
                });
            };
            self.counters.request(route);
            let sent = Instant::now();
            let attempt = self.attempt(route, &url, body).await;
            drop(permit);
            let took = sent.elapsed();
            let took_ms = took.as_millis() as u64;
            if let Some(observer) = &self.observer {
                let status = match &attempt {
                    Attempt::Answer { status, .. } => Some(status.as_u16()),
                    Attempt::Broken(_) | Attempt::Stalled(_) | Attempt::TooLarge => None,
                };
                observer.request(route.template(), status, took);
            }

            let (failure, error) = match self.judge(route, attempt, attempt_no, took_ms, &decode) {
                Judged::Done(result) => return result,
                Judged::Retryable(failure, error) => (failure, error),
            };
            if !route.idempotent() && !matches!(failure, Failure::RateLimited { .. }) {
                // The write may have happened although the answer was lost.
                return Err(error);
            }

            match state.on_failure(failure, started.elapsed(), random_jitter()) {
                Decision::GiveUp => {
                    if matches!(failure, Failure::RateLimited { .. }) {
                        warn!(route = route.template(), "confluence rate limit: giving up");
                    }
                    return Err(error);
                }
                Decision::Retry { wait, shared } => {
                    self.counters.retry();
                    if let Some(observer) = &self.observer {
                        observer.retry(match failure {
                            Failure::RateLimited { .. } => "rate_limited",
                            Failure::Transient { .. } => "transient",
                            Failure::Malformed => "malformed_response",
                        });
                    }
                    if shared {
                        if self.throttle.pause_for(wait) {
                            info!(
                                route = route.template(),
                                wait_ms = wait.as_millis() as u64,
                                "confluence rate limit: pausing all requests of this client"
                            );
                        }
                    } else {
                        debug!(
                            route = route.template(),
                            wait_ms = wait.as_millis() as u64,
                            error = %error,
                            "retrying confluence request"
                        );
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
    }

    /// Turns one attempt into a final result or a retryable failure.
    fn judge<T>(
        &self,
        route: Route,
        attempt: Attempt,
        attempt_no: u32,
        took_ms: u64,
        decode: &impl Fn(&[u8]) -> Result<T, serde_json::Error>,
    ) -> Judged<T> {
        let (status, headers, body) = match attempt {
            Attempt::Answer {
                status,
                headers,
                body,
            } => (status, headers, body),
            Attempt::Broken(e) => {
                debug!(
                    method = route.method(),
                    route = route.template(),
                    took_ms,
                    attempt = attempt_no,
                    timeout = e.is_timeout(),
                    connect = e.is_connect(),
                    "confluence request failed in transport"
                );
                self.counters.transient();
                let error = ConfluenceError::Network {
                    method: route.method(),
                    route: route.template(),
                    source: e.without_url(),
                };
                return Judged::Retryable(Failure::Transient { retry_after: None }, error);
            }
            Attempt::Stalled(stall) => {
                debug!(
                    method = route.method(),
                    route = route.template(),
                    took_ms,
                    attempt = attempt_no,
                    %stall,
                    "confluence request ran out of time"
                );
                self.counters.transient();
                let error = ConfluenceError::TimedOut {
                    method: route.method(),
                    route: route.template(),
                    stall,
                };
                return Judged::Retryable(Failure::Transient { retry_after: None }, error);
            }
            Attempt::TooLarge => {
                return Judged::Done(Err(ConfluenceError::ResponseTooLarge {
                    method: route.method(),
                    route: route.template(),
                    limit: self.max_response_bytes,
                }));
            }
        };
        debug!(
            method = route.method(),
            route = route.template(),
            status = status.as_u16(),
            took_ms,
            attempt = attempt_no,
            "confluence request"
        );
        self.note_headers(route, status, &headers);
        if !status.is_success() {
            return match self.failed_answer(route, status, &headers, &body) {
                Ok((failure, error)) => Judged::Retryable(failure, error),
                Err(final_error) => Judged::Done(Err(final_error)),
            };
        }
        match decode(&body) {
            Ok(value) => Judged::Done(Ok(Fetched { value, headers })),
            // A site that answers the credential check with a web page is the wrong
            // site, not a flaky one: no retry.
            Err(_) if route == Route::CurrentUser && !looks_like_json(&body) => Judged::Done(Err(
                ConfluenceError::SiteMisconfigured(self.context(route, status, &headers, &body)),
            )),
            Err(e) => Judged::Retryable(
                Failure::Malformed,
                ConfluenceError::Malformed {
                    method: route.method(),
                    route: route.template(),
                    detail: shorten(&e.to_string()),
                },
            ),
        }
    }

    /// One attempt under the request deadline, which covers connecting, the headers and
    /// the whole body.
    async fn attempt(&self, route: Route, url: &Url, body: Option<&serde_json::Value>) -> Attempt {
        tokio::time::timeout(self.request_timeout, self.exchange(route, url, body))
            .await
            .unwrap_or(Attempt::Stalled(Stall::Deadline(self.request_timeout)))
    }

    /// Sends one request and reads its body under the cap and the pace rule.
    async fn exchange(&self, route: Route, url: &Url, body: Option<&serde_json::Value>) -> Attempt {
        let mut request = match route.method() {
            "POST" => self.http.post(url.clone()),
            "DELETE" => self.http.delete(url.clone()),
            _ => self.http.get(url.clone()),
        };
        if route.method() != "GET" {
            // Without it Atlassian's XSRF filter answers 403 to every write.
            request = request.header("X-Atlassian-Token", "no-check");
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        if route != Route::TenantInfo {
            // reqwest marks the Authorization header sensitive, keeping it out of its
            // own Debug output; the token is otherwise exposed only by `scrub`.
            request = request.basic_auth(&self.username, Some(self.token.expose_secret()));
        }
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::Broken(e),
        };
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let cap = if status.is_success() {
            self.max_response_bytes
        } else {
            MAX_ERROR_BODY_BYTES
        };
        match read_capped(&mut response, cap, !status.is_success(), self.body_progress).await {
            Ok(body) => Attempt::Answer {
                status,
                headers,
                body,
            },
            Err(BodyError::TooLarge) => Attempt::TooLarge,
            Err(BodyError::TooSlow) => Attempt::Stalled(Stall::SlowBody {
                min_bytes: self.body_progress.min_bytes,
                window: self.body_progress.window,
            }),
            Err(BodyError::Transport(e)) => Attempt::Broken(e),
        }
    }

    /// Turns a non-success answer into either a retryable failure (with the error to
    /// report if retries run out) or a final error.
    fn failed_answer(
        &self,
        route: Route,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(Failure, ConfluenceError), ConfluenceError> {
        let summary = summarize_body(body);
        let context = self.context(route, status, headers, body);
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let kind = classify(status.as_u16(), &summary);
        match kind {
            FailureKind::RateLimited => {
                self.counters.rate_limited();
                Ok(rate_limited(context, retry_after))
            }
            // 503 with Retry-After is a resource limit: handled like 429 (§6).
            FailureKind::Server
                if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some() =>
            {
                self.counters.rate_limited();
                Ok(rate_limited(context, retry_after))
            }
            FailureKind::Server => {
                self.counters.transient();
                Ok((
                    Failure::Transient { retry_after },
                    ConfluenceError::Server(context),
                ))
            }
            // The credential check answered by something that is not the API (a web
            // page for a misspelled site, a redirect) is a configuration error (§2.1).
            FailureKind::NotFound
            | FailureKind::Other
            | FailureKind::BadRequest
            | FailureKind::PermissionDenied
                if route == Route::CurrentUser && !summary.is_json =>
            {
                Err(ConfluenceError::SiteMisconfigured(context))
            }
            FailureKind::Authentication => Err(ConfluenceError::Authentication(context)),
            FailureKind::PermissionDenied => Err(ConfluenceError::PermissionDenied(context)),
            FailureKind::NotFound => Err(ConfluenceError::NotFound(context)),
            FailureKind::BadRequest => Err(ConfluenceError::BadRequest(context)),
            FailureKind::Other => Err(ConfluenceError::UnexpectedStatus(context)),
        }
    }

    fn context(
        &self,
        route: Route,
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
    ) -> ResponseContext {
        ResponseContext {
            method: route.method(),
            route: route.template(),
            status: status.as_u16(),
            detail: self.scrub(summarize_body(body).detail),
            trace_id: header_text(headers, "atl-traceid").map(|t| shorten(&t)),
        }
    }

    /// Removes the token (raw or inside Basic credentials) should a server or proxy
    /// ever echo it back in an error body.
    fn scrub(&self, detail: String) -> String {
        use base64::Engine as _;
        let token = self.token.expose_secret();
        if token.is_empty() {
            return detail;
        }
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{token}", self.username));
        detail
            .replace(&basic, "[REDACTED]")
            .replace(token, "[REDACTED]")
    }

    /// Counts and logs the rate-limit headers worth seeing (§6, §9.5).
    fn note_headers(&self, route: Route, status: StatusCode, headers: &HeaderMap) {
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.pacer.throttled(route, headers);
        } else {
            match self.pacer.answered(route, headers) {
                Some(Change::Started(rate)) => debug!(
                    route = route.template(),
                    rate = format!("{rate:.1}"),
                    "confluence rate budget low: pacing this route"
                ),
                Some(Change::Lifted) => {
                    debug!(route = route.template(), "confluence rate budget recovered")
                }
                None => {}
            }
        }
        if header_text(headers, "x-ratelimit-nearlimit")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            self.counters.near_limit();
            debug!(
                route = route.template(),
                "confluence rate limit nearly reached"
            );
        }
        if let Some(reason) = header_text(headers, "ratelimit-reason") {
            debug!(route = route.template(), reason = %shorten(&reason), "confluence rate limit reason");
        }
        if let Some(beta) = header_text(headers, "beta-retry-after") {
            // Advisory only (would-have-been-throttled app traffic): logged, not obeyed.
            debug!(route = route.template(), beta_retry_after = %shorten(&beta), "confluence advisory rate limit");
        }
    }
}

fn rate_limited(
    context: ResponseContext,
    retry_after: Option<Duration>,
) -> (Failure, ConfluenceError) {
    (
        Failure::RateLimited { retry_after },
        ConfluenceError::RateLimited {
            context,
            retry_after,
        },
    )
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// True when the first non-space byte could start a JSON value the client expects.
fn looks_like_json(body: &[u8]) -> bool {
    matches!(
        body.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_sniffing() {
        assert!(looks_like_json(b"  {\"a\":1}"));
        assert!(looks_like_json(b"[]"));
        assert!(!looks_like_json(b"<!DOCTYPE html>"));
        assert!(!looks_like_json(b""));
    }
}
