//! The client's error type and its coarse classes.
//!
//! Every message is built from safe parts only: method, route template, status, a short
//! text from the response body and the `Atl-Traceid`. Never a token, an Authorization
//! header or a full URL.

use std::fmt;
use std::time::Duration;

/// Coarse error classes the caller acts on (condition reasons, retry decisions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// Credentials are wrong, expired, revoked or anonymous: fix the Secret.
    Authentication,
    /// The account may not see or do this.
    PermissionDenied,
    /// The object does not exist or is not visible.
    NotFound,
    /// Throttled and the wait was too long or the retry budget ran out.
    RateLimited,
    /// Server errors, timeouts (the request deadline, a stalled body) and connection
    /// failures that outlived the retries.
    Transient,
    /// A response that could not be understood (bad JSON, missing envelope, bad links),
    /// or pagination that stopped advancing (links sent twice, pages without new rows,
    /// the page cap).
    MalformedResponse,
    /// The request was rejected as invalid (400, 405, 415, 422).
    BadRequest,
    /// The client or the site is misconfigured (bad base URL, a non-JSON site answer).
    Configuration,
    /// Anything else (unexpected status, oversized body).
    Other,
}

impl ErrorClass {
    /// A stable lower-case label for metrics and condition reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "authentication",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::RateLimited => "rate_limited",
            Self::Transient => "transient",
            Self::MalformedResponse => "malformed_response",
            Self::BadRequest => "bad_request",
            Self::Configuration => "configuration",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The safe-to-log facts about one failed HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseContext {
    /// HTTP method.
    pub method: &'static str,
    /// Route template, e.g. `/wiki/rest/api/group/{id}/membersByGroupId`.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
    /// Short text from the body (≤ ~200 characters), credentials scrubbed.
    pub detail: String,
    /// The `Atl-Traceid` header, for Atlassian support.
    pub trace_id: Option<String>,
}

impl fmt::Display for ResponseContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: HTTP {}", self.method, self.route, self.status)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if let Some(trace) = &self.trace_id {
            write!(f, " (Atl-Traceid {trace})")?;
        }
        Ok(())
    }
}

/// How an attempt ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// No complete answer, headers and body, within the request deadline.
    Deadline(Duration),
    /// After the headers, the body brought fewer than `min_bytes` in `window`.
    SlowBody {
        /// Bytes each window had to bring.
        min_bytes: u64,
        /// The window.
        window: Duration,
    },
}

impl fmt::Display for Stall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deadline(limit) => write!(f, "no complete answer within {limit:?}"),
            Self::SlowBody { min_bytes, window } => write!(
                f,
                "the response body stalled: fewer than {min_bytes} bytes in {window:?}"
            ),
        }
    }
}

/// Everything that can go wrong talking to Confluence.
#[derive(Debug, thiserror::Error)]
pub enum ConfluenceError {
    /// The configuration cannot work (bad base URL, no TLS provider, bad HTTP settings).
    #[error("invalid Confluence client configuration: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The site rejected the credentials (401, or a v1 403 saying the caller cannot use
    /// Confluence).
    #[error("Confluence rejected the credentials: {0}")]
    Authentication(ResponseContext),
    /// `user/current` answered, but not with a known account (the anonymous trap).
    #[error("Confluence did not recognise the credentials: {reason}")]
    NotAuthenticated {
        /// Why the answer was not accepted.
        reason: String,
    },
    /// The site answered a startup probe with something that is not the Confluence API.
    #[error("Confluence site answered with a non-API response (check the site URL): {0}")]
    SiteMisconfigured(ResponseContext),
    /// 403 that is not about the credentials.
    #[error("Confluence denied access: {0}")]
    PermissionDenied(ResponseContext),
    /// 404.
    #[error("Confluence object not found: {0}")]
    NotFound(ResponseContext),
    /// 400, 405, 415 or 422.
    #[error("Confluence rejected the request: {0}")]
    BadRequest(ResponseContext),
    /// Throttled beyond what the retry policy accepts.
    #[error("Confluence rate limit not cleared: {context}")]
    RateLimited {
        /// The last throttled answer.
        context: ResponseContext,
        /// The last `Retry-After`, if one was sent.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer that outlived the retries.
    #[error("Confluence server error: {0}")]
    Server(ResponseContext),
    /// Connection failure, timeout or broken body that outlived the retries.
    #[error("{method} {route}: network error: {source}")]
    Network {
        /// HTTP method.
        method: &'static str,
        /// Route template.
        route: &'static str,
        /// The transport error, stripped of its URL.
        #[source]
        source: reqwest::Error,
    },
    /// An attempt ran out of time (the request deadline or the body's minimum pace), and
    /// the retries ran out too.
    #[error("{method} {route}: {stall}")]
    TimedOut {
        /// HTTP method.
        method: &'static str,
        /// Route template.
        route: &'static str,
        /// What took too long.
        stall: Stall,
    },
    /// The body exceeded the configured size cap.
    #[error("{method} {route}: response larger than {limit} bytes")]
    ResponseTooLarge {
        /// HTTP method.
        method: &'static str,
        /// Route template.
        route: &'static str,
        /// The cap in bytes.
        limit: usize,
    },
    /// A successful answer that could not be understood.
    #[error("{method} {route}: malformed response: {detail}")]
    Malformed {
        /// HTTP method.
        method: &'static str,
        /// Route template.
        route: &'static str,
        /// What was wrong (parser message or missing field), never the whole body.
        detail: String,
    },
    /// A walk needed more pages than the configured cap: the last resort against a
    /// server that keeps inventing rows.
    #[error("{route}: more than {pages} pages; refusing to continue")]
    PageLimitExceeded {
        /// Route template.
        route: &'static str,
        /// The cap.
        pages: usize,
    },
    /// Any other status.
    #[error("unexpected Confluence answer: {0}")]
    UnexpectedStatus(ResponseContext),
}

impl ConfluenceError {
    /// The coarse class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::InvalidConfig { .. } | Self::SiteMisconfigured(_) => ErrorClass::Configuration,
            Self::Authentication(_) | Self::NotAuthenticated { .. } => ErrorClass::Authentication,
            Self::PermissionDenied(_) => ErrorClass::PermissionDenied,
            Self::NotFound(_) => ErrorClass::NotFound,
            Self::BadRequest(_) => ErrorClass::BadRequest,
            Self::RateLimited { .. } => ErrorClass::RateLimited,
            Self::Server(_) | Self::Network { .. } | Self::TimedOut { .. } => ErrorClass::Transient,
            Self::Malformed { .. } | Self::PageLimitExceeded { .. } => {
                ErrorClass::MalformedResponse
            }
            Self::ResponseTooLarge { .. } | Self::UnexpectedStatus(_) => ErrorClass::Other,
        }
    }

    /// The last `Retry-After` of a rate-limited error, for requeueing.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status, when the error came from an answer.
    pub fn status(&self) -> Option<u16> {
        self.context().map(|c| c.status)
    }

    /// The answer's facts, when the error came from an answer.
    pub fn context(&self) -> Option<&ResponseContext> {
        match self {
            Self::Authentication(c)
            | Self::SiteMisconfigured(c)
            | Self::PermissionDenied(c)
            | Self::NotFound(c)
            | Self::BadRequest(c)
            | Self::Server(c)
            | Self::UnexpectedStatus(c)
            | Self::RateLimited { context: c, .. } => Some(c),
            Self::InvalidConfig { .. }
            | Self::NotAuthenticated { .. }
            | Self::Network { .. }
            | Self::TimedOut { .. }
            | Self::ResponseTooLarge { .. }
            | Self::Malformed { .. }
            | Self::PageLimitExceeded { .. } => None,
        }
    }

    /// True for a v2 404 whose only text is `Not Found`: v2 answers bad credentials this
    /// way (§2.1), so the caller should confirm the credentials with `current_user()`
    /// before treating the object as missing.
    pub fn may_be_credentials(&self) -> bool {
        match self {
            Self::NotFound(c) => c.route.starts_with("/wiki/api/v2/") && c.detail == "Not Found",
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(route: &'static str, status: u16, detail: &str) -> ResponseContext {
        ResponseContext {
            method: "GET",
            route,
            status,
            detail: detail.into(),
            trace_id: Some("abc123".into()),
        }
    }

    #[test]
    fn display_carries_method_route_status_detail_and_trace() {
        let e = ConfluenceError::NotFound(ctx("/wiki/api/v2/spaces/{id}", 404, "Cannot find"));
        assert_eq!(
            e.to_string(),
            "Confluence object not found: GET /wiki/api/v2/spaces/{id}: HTTP 404: Cannot find (Atl-Traceid abc123)"
        );
        assert_eq!(e.class(), ErrorClass::NotFound);
        assert_eq!(e.status(), Some(404));
    }

    #[test]
    fn bare_v2_not_found_may_be_credentials() {
        let bare = ConfluenceError::NotFound(ctx("/wiki/api/v2/spaces", 404, "Not Found"));
        let named = ConfluenceError::NotFound(ctx(
            "/wiki/api/v2/spaces",
            404,
            "Not Found: Cannot find space",
        ));
        let v1 = ConfluenceError::NotFound(ctx("/wiki/rest/api/group", 404, "Not Found"));
        assert!(bare.may_be_credentials());
        assert!(!named.may_be_credentials());
        assert!(!v1.may_be_credentials());
    }

    #[test]
    fn stalls_are_transient_and_name_the_route() {
        for stall in [
            Stall::Deadline(Duration::from_secs(62)),
            Stall::SlowBody {
                min_bytes: 32768,
                window: Duration::from_secs(30),
            },
        ] {
            let e = ConfluenceError::TimedOut {
                method: "GET",
                route: "/wiki/api/v2/spaces",
                stall,
            };
            assert_eq!(e.class(), ErrorClass::Transient);
            assert!(
                e.to_string().starts_with("GET /wiki/api/v2/spaces: "),
                "{e}"
            );
        }
        assert_eq!(
            Stall::Deadline(Duration::from_secs(62)).to_string(),
            "no complete answer within 62s"
        );
    }

    #[test]
    fn rate_limited_exposes_retry_after() {
        let e = ConfluenceError::RateLimited {
            context: ctx("/wiki/rest/api/group", 429, ""),
            retry_after: Some(Duration::from_secs(700)),
        };
        assert_eq!(e.class(), ErrorClass::RateLimited);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(700)));
    }
}
