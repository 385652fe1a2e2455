//! Wire shapes: how users, groups, spaces and errors look on the API (§3, §4, §7).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::model::{Group, OPERATIONS, Permission, Space, Tenant, User};

/// `http://host:port`, taken from the request so links work whatever address was used.
pub fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

pub fn wiki_base(headers: &HeaderMap) -> String {
    format!("{}/wiki", origin(headers))
}

pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub fn ok(body: &Value) -> Response {
    json_response(StatusCode::OK, body)
}

/// v1 error: `{"statusCode":…,"message":…,"data":{…}}`.
pub fn v1_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        &json!({
            "statusCode": status.as_u16(),
            "data": {
                "authorized": status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "valid": false,
                "errors": [{ "message": { "translation": message, "args": [] } }],
                "successful": false
            },
            "message": message
        }),
    )
}

/// v1 500 with Java text, as Cloud sends.
pub fn v1_server_error(message: &str) -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        &json!({ "statusCode": 500, "message": message, "reason": "Internal Server Error" }),
    )
}

/// v2 error: `{"errors":[{status,code,title,detail}]}`.
pub fn v2_error(status: StatusCode, code: &str, title: &str, detail: Option<&str>) -> Response {
    json_response(
        status,
        &json!({ "errors": [{ "status": status.as_u16(), "code": code, "title": title, "detail": detail }] }),
    )
}

pub fn v2_bad_request(title: &str) -> Response {
    v2_error(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST_PARAMETER",
        title,
        None,
    )
}

pub fn operations(u: &User) -> Value {
    if u.deactivated() {
        json!([])
    } else {
        json!([{ "operation": "use", "targetType": "application" }])
    }
}

/// A v1 user; `expand=operations` moves `operations` out of `_expandable`.
pub fn user_v1(u: &User, base: &str, expand_operations: bool) -> Value {
    let mut v = json!({
        "type": "known",
        "accountId": u.account_id,
        "accountType": u.account_type.as_str(),
        "email": u.visible_email(),
        "publicName": u.public_name,
        "profilePicture": {
            "path": format!("/wiki/aa-avatar/{}", u.account_id),
            "width": 48, "height": 48, "isDefault": false
        },
        "displayName": u.display_name(),
        "isExternalCollaborator": u.is_guest,
        "isGuest": u.is_guest,
        "accountStatus": u.status.as_str(),
        "locale": u.locale,
        "timeZone": u.time_zone,
        "_links": { "self": format!("{base}/rest/api/user?accountId={}", u.account_id) }
    });
    if expand_operations {
        v["operations"] = operations(u);
        v["_expandable"] = json!({ "personalSpace": "" });
    } else {
        v["_expandable"] = json!({ "operations": "", "personalSpace": "" });
    }
    v
}

pub fn group_v1(g: &Group, base: &str) -> Value {
    json!({
        "type": "group",
        "name": g.name,
        "id": g.id,
        "resourceAri": format!("ari:cloud:identity::group/{}", g.id),
        "usageType": g.usage_type,
        "managedBy": g.managed_by,
        "_links": { "self": format!("{base}/rest/experimental/group/{}", g.name) }
    })
}

pub fn space_v2(s: &Space, t: &Tenant) -> Value {
    let account = |i: u32| {
        t.users
            .get(i as usize)
            .map(|u| u.account_id.as_str())
            .unwrap_or("")
    };
    json!({
        "id": s.id.to_string(),
        "key": s.key,
        "name": s.name,
        "type": s.kind,
        "status": s.status,
        "authorId": account(s.author),
        "createdAt": s.created_at,
        "homepageId": s.homepage_id.to_string(),
        "description": null,
        "icon": null,
        "spaceOwnerId": account(s.owner),
        "currentActiveAlias": s.key,
        "_links": { "webui": format!("/spaces/{}", s.key) }
    })
}

pub fn permission_v2(p: &Permission, t: &Tenant) -> Value {
    let (key, target) = OPERATIONS
        .get(p.operation as usize)
        .copied()
        .unwrap_or(("read", "space"));
    json!({
        "id": p.id.to_string(),
        "principal": { "type": p.kind.as_str(), "id": t.principal_id(p) },
        "operation": { "key": key, "targetType": target }
    })
}

/// A `users-bulk` (v2) user.
pub fn user_v2(u: &User) -> Value {
    json!({
        "accountId": u.account_id,
        "accountType": u.account_type.as_str(),
        "accountStatus": u.status.as_str(),
        "email": u.visible_email(),
        "displayName": u.display_name(),
        "publicName": u.public_name,
        "timeZone": u.time_zone,
        "personalSpaceId": u.personal_space.map(|id| id.to_string()),
        "isExternalCollaborator": u.is_guest,
        "profilePicture": { "path": format!("/wiki/aa-avatar/{}", u.account_id), "isDefault": false }
    })
}
