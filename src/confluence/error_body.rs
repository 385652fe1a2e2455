//! Turning an error answer into a short message and a class (§2.1, §7).
//!
//! Pure functions: the HTTP layer feeds status and body, and gets back what to put in
//! the error. Parse order follows §7: v2 `errors[0]`, v1 `{statusCode,message}` (+ the
//! first `data.errors[].message.translation`), gateway `{code,message}`, raw text.

use serde::Deserialize;

/// Longest detail kept from a body, in characters.
pub(crate) const MAX_DETAIL_CHARS: usize = 200;

/// What an error body said, reduced to what the error needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodySummary {
    /// Short human-readable text.
    pub detail: String,
    /// Whether the body was a JSON object (vs text/HTML/empty).
    pub is_json: bool,
}

/// How an error answer should be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    Authentication,
    PermissionDenied,
    NotFound,
    BadRequest,
    RateLimited,
    Server,
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AnyErrorBody {
    errors: Option<Vec<V2Error>>,
    message: Option<serde_json::Value>,
    data: Option<V1Data>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct V2Error {
    code: Option<String>,
    title: Option<String>,
    detail: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct V1Data {
    errors: Option<Vec<V1DataError>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct V1DataError {
    message: Option<V1Translation>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct V1Translation {
    translation: Option<String>,
}

/// Reduces an error body to a short, single-line message.
pub(crate) fn summarize_body(body: &[u8]) -> BodySummary {
    if let Ok(parsed) = serde_json::from_slice::<AnyErrorBody>(body) {
        return BodySummary {
            detail: shorten(&json_message(parsed)),
            is_json: true,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = html_title(&text).unwrap_or(&text);
    BodySummary {
        detail: shorten(text),
        is_json: false,
    }
}

fn json_message(parsed: AnyErrorBody) -> String {
    if let Some(first) = parsed.errors.and_then(|e| e.into_iter().next()) {
        let head = first.title.or(first.code).unwrap_or_default();
        return match first.detail.filter(|d| !d.is_empty()) {
            Some(detail) if !head.is_empty() => format!("{head}: {detail}"),
            Some(detail) => detail,
            None => head,
        };
    }
    // `message` is a string in v1 and gateway bodies; anything else is shown as JSON.
    let message = match parsed.message {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let translation = parsed
        .data
        .and_then(|d| d.errors)
        .and_then(|e| e.into_iter().find_map(|e| e.message?.translation))
        .filter(|t| !t.is_empty() && *t != message);
    match translation {
        Some(t) if !message.is_empty() => format!("{message} ({t})"),
        Some(t) => t,
        None => message,
    }
}

/// The `<title>` of an HTML page: short and usually says what the page is.
fn html_title(text: &str) -> Option<&str> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    // Lower-casing ASCII keeps byte offsets, so the indices are valid in `text`.
    text.get(start..end)
}

/// Collapses whitespace and cuts to [`MAX_DETAIL_CHARS`] on a character boundary.
pub(crate) fn shorten(text: &str) -> String {
    let mut out = String::new();
    let mut count = 0usize;
    for word in text.split_whitespace() {
        if count > 0 {
            out.push(' ');
            count += 1;
        }
        for ch in word.chars() {
            if count == MAX_DETAIL_CHARS {
                out.push('…');
                return out;
            }
            out.push(ch);
            count += 1;
        }
    }
    out
}

/// Phrases of the v1 403 that means "these credentials cannot use Confluence" (§2.1).
const V1_AUTH_403_PHRASES: [&str; 2] = [
    "caller cannot access confluence",
    "not permitted to use confluence",
];

/// Maps a non-success status and its summarized body to a failure kind.
pub(crate) fn classify(status: u16, summary: &BodySummary) -> FailureKind {
    match status {
        401 => FailureKind::Authentication,
        403 => {
            let lower = summary.detail.to_ascii_lowercase();
            if V1_AUTH_403_PHRASES.iter().any(|p| lower.contains(p)) {
                FailureKind::Authentication
            } else {
                FailureKind::PermissionDenied
            }
        }
        404 => FailureKind::NotFound,
        429 => FailureKind::RateLimited,
        400 | 405 | 415 | 422 => FailureKind::BadRequest,
        // 501 (not implemented / not enabled) will not change on a retry.
        501 => FailureKind::Other,
        500..=599 => FailureKind::Server,
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: &str) -> (FailureKind, BodySummary) {
        let s = summarize_body(body.as_bytes());
        (classify(status, &s), s)
    }

    #[test]
    fn section_2_1_auth_failures_classify_as_authentication() {
        let cases = [
            (
                401,
                "Basic authentication with passwords is deprecated.  For more information, see: https://developer.atlassian.com/cloud/confluence/deprecation-notice-basic-auth/",
            ),
            (
                403,
                r#"{"statusCode":403,"message":"com.atlassian.confluence.mvc.rest.common.exception.StacklessResponseStatusException: 403 FORBIDDEN \"Request rejected because caller cannot access Confluence\""}"#,
            ),
            (
                403,
                r#"{"message":"Current user not permitted to use Confluence","statusCode":403}"#,
            ),
            (
                401,
                "<html><head><title>HTTP Status 401 – Unauthorized</title></head><body>x</body></html>",
            ),
            (
                401,
                r#"{"code":401,"message":"Unauthorized; scope does not match"}"#,
            ),
            (401, r#"{"code":401,"message":"Unauthorized"}"#),
        ];
        for (status, body) in cases {
            assert_eq!(kind(status, body).0, FailureKind::Authentication, "{body}");
        }
    }

    #[test]
    fn bodies_reduce_to_their_message() {
        let (_, s) = kind(
            401,
            "<html><head><title>HTTP Status 401 – Unauthorized</title></head></html>",
        );
        assert_eq!(s.detail, "HTTP Status 401 – Unauthorized");
        assert!(!s.is_json);

        let (k, s) = kind(
            404,
            r#"{"errors":[{"status":404,"code":"NOT_FOUND","title":"Not Found","detail":null}]}"#,
        );
        assert_eq!(
            (k, s.detail.as_str(), s.is_json),
            (FailureKind::NotFound, "Not Found", true)
        );

        let (k, s) = kind(
            400,
            r#"{"errors":[{"status":400,"code":"INVALID_REQUEST_PARAMETER","title":"Bad limit","detail":"limit must be 1-250"}]}"#,
        );
        assert_eq!(
            (k, s.detail.as_str()),
            (FailureKind::BadRequest, "Bad limit: limit must be 1-250")
        );

        let (k, s) = kind(
            404,
            r#"{"statusCode":404,"message":"This is an example error message.","data":{"authorized":false,"valid":false,"successful":false,"errors":[{"message":{"translation":"Translated text.","args":[]}}]}}"#,
        );
        assert_eq!(
            (k, s.detail.as_str()),
            (
                FailureKind::NotFound,
                "This is an example error message. (Translated text.)"
            )
        );

        let (k, s) = kind(
            500,
            r#"{"statusCode":500,"message":"java.lang.IllegalArgumentException: boom","reason":"Internal Server Error"}"#,
        );
        assert_eq!(
            (k, s.detail.as_str()),
            (
                FailureKind::Server,
                "java.lang.IllegalArgumentException: boom"
            )
        );

        let (k, s) = kind(403, r#"{"statusCode":403,"message":"XSRF check failed"}"#);
        assert_eq!(
            (k, s.detail.as_str()),
            (FailureKind::PermissionDenied, "XSRF check failed")
        );

        let (k, s) = kind(429, "");
        assert_eq!((k, s.detail.as_str()), (FailureKind::RateLimited, ""));

        assert_eq!(kind(502, "<html>bad gateway</html>").0, FailureKind::Server);
        assert_eq!(kind(415, "").0, FailureKind::BadRequest);
        assert_eq!(kind(409, "{}").0, FailureKind::Other);
        assert_eq!(kind(501, "app not enabled").0, FailureKind::Other);
    }

    #[test]
    fn long_bodies_are_cut_on_a_char_boundary() {
        let body = "é".repeat(5000);
        let s = summarize_body(body.as_bytes());
        assert_eq!(s.detail.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(s.detail.ends_with('…'));
        assert_eq!(shorten("a \n  b\tc"), "a b c");
    }
}
