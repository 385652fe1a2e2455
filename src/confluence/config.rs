//! Client configuration: where to connect, which credentials, and how patient to be.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::errors::ConfluenceError;
use super::observer::RequestObserver;

/// Default number of requests one client keeps in flight (§6: 4–8 per tenant).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 8;
/// Default TCP/TLS connect timeout (§9.1).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on one response body; a 250-row v2 page is well below 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;
/// Time an answer may take to begin: `GET /group` can take 20–30 s in large orgs (§3.1).
pub const ANSWER_START_ALLOWANCE: Duration = Duration::from_secs(30);
/// A modest transfer rate (1 MiB/s) at which the largest accepted body must still fit
/// within the request deadline.
pub const MODEST_BODY_RATE: u64 = 1024 * 1024;
/// Default deadline for one attempt, headers and body (§9.1: about a minute): time for
/// the answer to begin plus the largest accepted body at a modest rate, 30 s + 32 MiB
/// at 1 MiB/s = 62 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = request_deadline_for(DEFAULT_MAX_RESPONSE_BYTES);
/// Default minimum pace of a body: 32 KiB per 30 s, about 1 KiB/s. Three orders of
/// magnitude below the modest rate, so only a stalled or trickling body trips it, and
/// the window matches the time an answer may take to begin.
pub const DEFAULT_BODY_PROGRESS: BodyProgress = BodyProgress {
    window: ANSWER_START_ALLOWANCE,
    min_bytes: 32 * 1024,
};

/// The request deadline that lets a body of `max_body_bytes` arrive at the modest rate
/// after an answer that took the whole allowance to begin.
pub const fn request_deadline_for(max_body_bytes: usize) -> Duration {
    Duration::from_secs(
        ANSWER_START_ALLOWANCE.as_secs() + (max_body_bytes as u64).div_ceil(MODEST_BODY_RATE),
    )
}

/// The minimum pace of a response body, from the headers on: every `window` must bring
/// at least `min_bytes` or the body's end. Catches a body that stops or trickles long
/// before the request deadline would, however long that deadline is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyProgress {
    /// How long each measured stretch of the body lasts.
    pub window: Duration,
    /// Bytes each window must bring; 0 turns the rule off.
    pub min_bytes: u64,
}

impl Default for BodyProgress {
    fn default() -> Self {
        DEFAULT_BODY_PROGRESS
    }
}
/// Default cap on pages in one walk; 10 000 pages of 200 rows is 2 million rows.
pub const DEFAULT_MAX_PAGES: usize = 10_000;

/// How failed requests are retried.
///
/// Two budgets apply to one logical request: transient failures (5xx, connection
/// errors, timeouts, truncated bodies) consume `max_attempts`; rate-limit answers
/// (429, or 503 with `Retry-After`) consume `max_rate_limit_waits`. Both are bounded
/// by `max_elapsed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts for transient failures, the first one included (minimum 1).
    pub max_attempts: u32,
    /// Waits on rate-limit answers before giving up with a rate-limited error.
    pub max_rate_limit_waits: u32,
    /// Wall-clock budget for one logical request including every wait.
    pub max_elapsed: Duration,
    /// First back-off delay for transient failures (before jitter).
    pub base_delay: Duration,
    /// Largest back-off delay for transient failures (before jitter).
    pub max_delay: Duration,
    /// Longest `Retry-After` the client is willing to honour; longer → rate-limited error.
    pub max_retry_after: Duration,
    /// Attempts for a 200 answer whose JSON does not parse: a parse failure after a
    /// clean transfer is rarely transient, so this stays small.
    pub max_malformed_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Atlassian's guidance: ~4 retries, exponential from 1–5 s capped at 30–60 s,
        // Retry-After honoured exactly and capped at 5–10 minutes.
        Self {
            max_attempts: 5,
            max_rate_limit_waits: 20,
            max_elapsed: Duration::from_secs(15 * 60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(10 * 60),
            max_malformed_attempts: 2,
        }
    }
}

/// Everything needed to build a [`super::ConfluenceClient`].
#[derive(Clone)]
pub struct ClientConfig {
    /// API root: a site origin (`https://acme.atlassian.net`), a gateway root
    /// (`https://api.atlassian.com/ex/confluence/{cloudId}`) or a test server
    /// (`http://127.0.0.1:PORT`). A trailing `/wiki` is dropped; the client appends
    /// `/wiki/...` itself.
    pub base_url: Url,
    /// Account e-mail for Basic auth.
    pub username: String,
    /// API token for Basic auth; exposed only when the Authorization header is built.
    pub api_token: SecretString,
    /// Requests in flight at once across all callers of one client.
    pub max_in_flight: usize,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Deadline for one attempt, from sending to the last body byte. Running out of it
    /// is a transient failure, retried like a broken connection.
    pub request_timeout: Duration,
    /// Minimum pace of a body once the headers are in; falling below it is a transient
    /// failure too.
    pub body_progress: BodyProgress,
    /// Largest response body accepted; larger bodies fail the request.
    pub max_response_bytes: usize,
    /// Page cap for one walk; exceeding it is an error, never a silent truncation.
    pub max_pages: usize,
    /// Retry behaviour.
    pub retry: RetryPolicy,
    /// User-Agent header value.
    pub user_agent: String,
    /// Sees every attempt and retry (metrics); none by default.
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl ClientConfig {
    /// A configuration with the documented defaults.
    pub fn new(base_url: Url, username: impl Into<String>, api_token: SecretString) -> Self {
        Self {
            base_url,
            username: username.into(),
            api_token,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            body_progress: BodyProgress::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
            retry: RetryPolicy::default(),
            user_agent: concat!("confluence-operator/", env!("CARGO_PKG_VERSION")).to_owned(),
            observer: None,
        }
    }
}

impl fmt::Debug for ClientConfig {
    // Hand-written so that the token can never appear, even if the secret type changes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("username", &self.username)
            .field("api_token", &"[REDACTED]")
            .field("max_in_flight", &self.max_in_flight)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("body_progress", &self.body_progress)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_pages", &self.max_pages)
            .field("retry", &self.retry)
            .field("user_agent", &self.user_agent)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Validates `base_url` and returns the API root without a trailing slash or `/wiki`.
///
/// URLs carrying credentials, a query or a fragment are refused: credentials belong in
/// the token field (never in a URL that could be logged), and a query would be mixed
/// into every request.
pub(crate) fn normalize_base_url(base_url: &Url) -> Result<Url, ConfluenceError> {
    let invalid = |reason: &str| ConfluenceError::InvalidConfig {
        reason: reason.to_owned(),
    };
    if !matches!(base_url.scheme(), "http" | "https") {
        return Err(invalid("base URL must use http or https"));
    }
    if base_url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("base URL has no host"));
    }
    if !base_url.username().is_empty() || base_url.password().is_some() {
        return Err(invalid("base URL must not carry credentials"));
    }
    if base_url.query().is_some() || base_url.fragment().is_some() {
        return Err(invalid("base URL must not have a query or fragment"));
    }
    let mut root = base_url.clone();
    let trimmed = root.path().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/wiki").unwrap_or(trimmed).to_owned();
    root.set_path(&trimmed);
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, ConfluenceError> {
        let url = Url::parse(s).map_err(|_| ConfluenceError::InvalidConfig {
            reason: "parse".into(),
        })?;
        normalize_base_url(&url).map(|u| u.as_str().trim_end_matches('/').to_owned())
    }

    #[test]
    fn base_url_forms_normalize_to_the_api_root() {
        for (input, want) in [
            ("https://acme.atlassian.net", "https://acme.atlassian.net"),
            ("https://acme.atlassian.net/", "https://acme.atlassian.net"),
            (
                "https://acme.atlassian.net/wiki",
                "https://acme.atlassian.net",
            ),
            (
                "https://acme.atlassian.net/wiki/",
                "https://acme.atlassian.net",
            ),
            (
                "https://api.atlassian.com/ex/confluence/abc",
                "https://api.atlassian.com/ex/confluence/abc",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ] {
            assert_eq!(norm(input).ok().as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn base_url_with_credentials_query_or_odd_scheme_is_refused() {
        for input in [
            "https://user:pw@acme.atlassian.net",
            "https://acme.atlassian.net/?x=1",
            "https://acme.atlassian.net/#frag",
            "ftp://acme.atlassian.net",
        ] {
            assert!(norm(input).is_err(), "{input}");
        }
    }

    #[test]
    fn the_default_deadline_fits_the_largest_body_at_a_modest_rate() {
        let body_time =
            Duration::from_secs_f64(DEFAULT_MAX_RESPONSE_BYTES as f64 / MODEST_BODY_RATE as f64);
        assert!(DEFAULT_REQUEST_TIMEOUT >= ANSWER_START_ALLOWANCE + body_time);
        assert_eq!(DEFAULT_REQUEST_TIMEOUT, Duration::from_secs(62));
        // The pace rule must never stop a body arriving at the modest rate.
        let pace = DEFAULT_BODY_PROGRESS;
        assert!(pace.min_bytes < MODEST_BODY_RATE * pace.window.as_secs());
        assert!(pace.window < DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn debug_redacts_the_token() {
        let cfg = ClientConfig::new(
            Url::parse("https://acme.atlassian.net").expect("static url"),
            "me@example.com",
            SecretString::from("tok-SECRET-123"),
        );
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("tok-SECRET-123"));
        assert!(shown.contains("[REDACTED]"));
    }
}
