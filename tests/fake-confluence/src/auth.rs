//! Basic-auth checking and the many shapes of "bad credentials" (§2.1, §11).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::config::{AuthFailureMode, Credential, Quirks};
use crate::views::{json_response, v2_error};

/// Who is calling, stored as a request extension for handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Index into the configured credentials.
    Credential(usize),
    /// Missing or wrong credentials on an anonymous-read site (only `user/current`).
    Anonymous,
}

impl Caller {
    pub fn credential(self) -> Option<usize> {
        match self {
            Caller::Credential(i) => Some(i),
            Caller::Anonymous => None,
        }
    }
}

/// Which family a route belongs to; failures look different in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    V1,
    V2,
    Open,
}

impl Api {
    pub fn of(route: &str) -> Api {
        if route.starts_with("/wiki/rest/api/") {
            Api::V1
        } else if route.starts_with("/wiki/api/v2/") {
            Api::V2
        } else {
            Api::Open
        }
    }
}

pub const CURRENT_USER_ROUTE: &str = "/wiki/rest/api/user/current";

const DEPRECATED_BASIC: &str = "Basic authentication with passwords is deprecated.  For more information, see: https://developer.atlassian.com/cloud/confluence/deprecation-notice-basic-auth/";
const TOMCAT_401: &str = "<!doctype html><html lang=\"en\"><head><title>HTTP Status 401 – Unauthorized</title></head><body><h1>HTTP Status 401 – Unauthorized</h1></body></html>";

fn credential_index(headers: &HeaderMap, creds: &[Credential]) -> Option<usize> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (email, token) = decoded.split_once(':')?;
    creds
        .iter()
        .position(|c| c.email == email && c.token == token)
}

/// The caller, or the answer a real site gives to these credentials.
pub fn authenticate(
    headers: &HeaderMap,
    creds: &[Credential],
    route: &str,
    via_gateway: bool,
    quirks: &Quirks,
) -> Result<Caller, Response> {
    let api = Api::of(route);
    match credential_index(headers, creds) {
        Some(i) if creds.get(i).is_some_and(|c| c.scoped) && !via_gateway => Err((
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html;charset=utf-8")],
            TOMCAT_401,
        )
            .into_response()),
        Some(i) => Ok(Caller::Credential(i)),
        None if api == Api::Open => Ok(Caller::Anonymous),
        None if quirks.anonymous_site && route == CURRENT_USER_ROUTE => Ok(Caller::Anonymous),
        None => Err(failure(api, route, via_gateway, quirks.v1_auth_failure)),
    }
}

fn failure(api: Api, route: &str, via_gateway: bool, mode: AuthFailureMode) -> Response {
    if via_gateway {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "code": 401, "message": "Unauthorized" }),
        );
    }
    if api == Api::V2 {
        return v2_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not Found", None);
    }
    match mode {
        AuthFailureMode::Unauthorized401Text => (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
            DEPRECATED_BASIC,
        )
            .into_response(),
        AuthFailureMode::Forbidden403Json if route == CURRENT_USER_ROUTE => json_response(
            StatusCode::FORBIDDEN,
            &json!({
                "statusCode": 403,
                "message": "com.atlassian.confluence.mvc.rest.common.exception.StacklessResponseStatusException: 403 FORBIDDEN \"Request rejected because caller cannot access Confluence\""
            }),
        ),
        AuthFailureMode::Forbidden403Json => json_response(
            StatusCode::FORBIDDEN,
            &json!({ "message": "Current user not permitted to use Confluence", "statusCode": 403 }),
        ),
    }
}

/// 404 HTML for a host that is not this site.
pub fn wrong_site() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/html;charset=UTF-8")],
        "<html><head><title>Atlassian Cloud Notifications - Page Unavailable</title></head><body>Page unavailable</body></html>",
    )
        .into_response()
}
