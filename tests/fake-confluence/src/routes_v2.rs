//! v2 routes (`/wiki/api/v2/...`): spaces, space permissions, space roles and users-bulk
//! (§4), all cursor-paged.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::model::{PrincipalKind, ROLE_PRINCIPALS, Space, Tenant};
use crate::params::Params;
use crate::state::{AppState, read};
use crate::views::{ok, permission_v2, space_v2, user_v2, v2_bad_request, v2_error, wiki_base};

type St = State<Arc<AppState>>;

/// System roles served in RBAC mode; the first three ids are also the `role` principals
/// that classic permissions name.
const ROLES: [(&str, &str, &str); 4] = [
    ("Admin", "Full control of the space", "administer/space"),
    ("Collaborator", "Create and edit content", "create/page"),
    ("Viewer", "Read-only access", "read/space"),
    (
        "Manager",
        "Manage content and people",
        "restrict_content/space",
    ),
];
const FOURTH_ROLE_ID: &str = "c3bd1bd6-63f9-4e5c-8e8b-0b2c5f6a1d04";

fn role_id(i: usize) -> &'static str {
    ROLE_PRINCIPALS.get(i).copied().unwrap_or(FOURTH_ROLE_ID)
}

fn signature(parts: &str) -> String {
    Sha256::digest(parts.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Opaque to clients: base64 of the offset plus a hash of the filters it belongs to.
fn encode_cursor(offset: usize, sig: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{offset}:{sig}"))
}

fn decode_cursor(p: &Params, sig: &str) -> Result<usize, Response> {
    let Some(c) = p.get("cursor").filter(|c| !c.is_empty()) else {
        return Ok(0);
    };
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (off, s_sig) = s.split_once(':')?;
            (s_sig == sig).then(|| off.parse().ok()).flatten()
        })
        .ok_or_else(|| v2_bad_request("Invalid cursor"))
}

fn limit(p: &Params) -> Result<usize, Response> {
    match p.number("limit", 25) {
        Ok(l) if (1..=250).contains(&l) => Ok(l),
        Ok(l) => Err(v2_bad_request(&format!(
            "Provided value {{{l}}} for 'limit' is not the correct type. Expected type is LimitedInteger"
        ))),
        Err(v) => Err(v2_bad_request(&format!(
            "Provided value {{{v}}} for 'limit' is not the correct type. Expected type is LimitedInteger"
        ))),
    }
}

fn rbac_off() -> Response {
    v2_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Not Found", None)
}

fn space_not_found(id: &str) -> Response {
    v2_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("Cannot find a space with id [{id}]"),
        None,
    )
}

/// A paged v2 answer: `results`, `_links.next` (with `/wiki`) and `_links.base`.
fn page(
    headers: &HeaderMap,
    results: Vec<Value>,
    next: Option<String>,
    link_header: bool,
) -> Response {
    let base = wiki_base(headers);
    let mut links = json!({ "base": base });
    if let Some(n) = &next {
        links["next"] = Value::String(n.clone());
    }
    let mut resp = ok(&json!({ "results": results, "_links": links }));
    if link_header && let Some(n) = next {
        let v = format!("<{n}>; rel=\"next\", <{base}>; rel=\"base\"");
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert("link", v);
        }
    }
    resp
}

fn visible_space<'a>(
    st: &AppState,
    caller: Caller,
    tenant: &'a Tenant,
    id: &str,
) -> Result<&'a Space, Response> {
    let Ok(n) = id.parse::<u64>() else {
        return Err(v2_bad_request(&format!("Invalid space id: {id}")));
    };
    tenant
        .space(n)
        .filter(|s| st.space_visible(caller.credential(), &s.key))
        .ok_or_else(|| space_not_found(id))
}

pub async fn spaces(
    State(st): St,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.as_deref());
    let limit = match limit(&p) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let (ids, keys, types, statuses) = (
        p.list("ids"),
        p.list("keys"),
        p.list("type"),
        p.list("status"),
    );
    if ids.len() > 250 || keys.len() > 250 {
        return v2_bad_request("At most 250 ids or keys may be given");
    }
    let sort = p.get("sort").unwrap_or("id").to_owned();
    let sig = signature(&format!(
        "spaces|{ids:?}|{keys:?}|{types:?}|{statuses:?}|{sort}"
    ));
    let offset = match decode_cursor(&p, &sig) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let tenant = read(&st.tenant);
    let mut matching: Vec<&Space> = tenant
        .spaces
        .iter()
        .filter(|s| st.space_visible(caller.credential(), &s.key))
        .filter(|s| ids.is_empty() || ids.contains(&s.id.to_string()))
        .filter(|s| keys.is_empty() || keys.contains(&s.key))
        .filter(|s| types.is_empty() || types.iter().any(|t| t == s.kind))
        .filter(|s| statuses.is_empty() || statuses.iter().any(|t| t == s.status))
        .collect();
    match sort.as_str() {
        "-id" => matching.reverse(),
        "key" => matching.sort_by(|a, b| a.key.cmp(&b.key)),
        "-key" => matching.sort_by(|a, b| b.key.cmp(&a.key)),
        "name" => matching.sort_by(|a, b| a.name.cmp(&b.name)),
        "-name" => matching.sort_by(|a, b| b.name.cmp(&a.name)),
        _ => {}
    }
    let results: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(limit)
        .map(|s| space_v2(s, &tenant))
        .collect();
    let more = offset + results.len() < matching.len();
    let mut extra = String::new();
    for (k, v) in [
        ("ids", &ids),
        ("keys", &keys),
        ("type", &types),
        ("status", &statuses),
    ] {
        if !v.is_empty() {
            extra.push_str(&format!("&{k}={}", v.join(",")));
        }
    }
    if sort != "id" {
        extra.push_str(&format!("&sort={sort}"));
    }
    let next = more.then(|| {
        format!(
            "/wiki/api/v2/spaces?limit={limit}&cursor={}{extra}",
            encode_cursor(offset + results.len(), &sig)
        )
    });
    page(&headers, results, next, true)
}

pub async fn space(
    State(st): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let tenant = read(&st.tenant);
    match visible_space(&st, caller, &tenant, &id) {
        Ok(s) => ok(&space_v2(s, &tenant)),
        Err(r) => r,
    }
}

pub async fn permissions(
    State(st): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let p = Params::parse(q.as_deref());
    let limit = match limit(&p) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let sig = signature(&format!("permissions|{id}"));
    let offset = match decode_cursor(&p, &sig) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let tenant = read(&st.tenant);
    let s = match visible_space(&st, caller, &tenant, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let results: Vec<Value> = s
        .permissions
        .iter()
        .skip(offset)
        .take(limit)
        .map(|perm| permission_v2(perm, &tenant))
        .collect();
    let end = offset + results.len();
    let next = (end < s.permissions.len()).then(|| {
        format!(
            "/wiki/api/v2/spaces/{id}/permissions?limit={limit}&cursor={}",
            encode_cursor(end, &sig)
        )
    });
    page(&headers, results, next, false)
}

pub async fn space_role_mode(State(st): St) -> Response {
    match st.rbac {
        Some(mode) => ok(&json!({ "mode": mode.as_str() })),
        None => rbac_off(),
    }
}

pub async fn space_roles(
    State(st): St,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if st.rbac.is_none() {
        return rbac_off();
    }
    let p = Params::parse(q.as_deref());
    let limit = match limit(&p) {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Some(sid) = p.get("space-id") {
        let tenant = read(&st.tenant);
        if let Err(r) = visible_space(&st, caller, &tenant, sid) {
            return r;
        }
    }
    let role_type = p.get("role-type").unwrap_or("").to_owned();
    let sig = signature(&format!("roles|{role_type}"));
    let offset = match decode_cursor(&p, &sig) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let all: Vec<Value> = ROLES
        .iter()
        .enumerate()
        .filter(|_| role_type.is_empty() || role_type == "SYSTEM")
        .map(|(i, (name, desc, perm))| {
            json!({ "id": role_id(i), "type": "SYSTEM", "name": name, "description": desc, "spacePermissions": [perm] })
        })
        .collect();
    let total = all.len();
    let results: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
    let end = offset + results.len();
    let next = (end < total).then(|| {
        format!(
            "/wiki/api/v2/space-roles?limit={limit}&cursor={}",
            encode_cursor(end, &sig)
        )
    });
    page(&headers, results, next, true)
}

pub async fn role_assignments(
    State(st): St,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if st.rbac.is_none() {
        return rbac_off();
    }
    let p = Params::parse(q.as_deref());
    let limit = match limit(&p) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let role_filter = p.get("role-id").unwrap_or("").to_owned();
    let pid_filter = p.get("principal-id").unwrap_or("").to_owned();
    let ptype_filter = p.get("principal-type").unwrap_or("").to_uppercase();
    let sig = signature(&format!(
        "ra|{id}|{role_filter}|{pid_filter}|{ptype_filter}"
    ));
    let offset = match decode_cursor(&p, &sig) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let tenant = read(&st.tenant);
    let s = match visible_space(&st, caller, &tenant, &id) {
        Ok(s) => s,
        Err(r) => return r,
    };
    // Assignments are derived from the space's user and group grants: stable and cheap.
    let mut seen = std::collections::HashSet::new();
    let all: Vec<Value> = s
        .permissions
        .iter()
        .filter(|perm| matches!(perm.kind, PrincipalKind::User | PrincipalKind::Group))
        .filter(|perm| seen.insert((perm.kind as u8, perm.principal)))
        .take(30)
        .map(|perm| {
            let ptype = if perm.kind == PrincipalKind::User { "USER" } else { "GROUP" };
            (ptype, tenant.principal_id(perm), role_id(perm.principal as usize % ROLES.len()))
        })
        .filter(|(ptype, pid, role)| {
            (role_filter.is_empty() || role_filter == *role)
                && (pid_filter.is_empty() || pid_filter == *pid)
                && (ptype_filter.is_empty() || ptype_filter == *ptype)
        })
        .map(|(ptype, pid, role)| {
            json!({ "principal": { "principalType": ptype, "principalId": pid }, "roleId": role })
        })
        .collect();
    let total = all.len();
    let results: Vec<Value> = all.into_iter().skip(offset).take(limit).collect();
    let end = offset + results.len();
    let next = (end < total).then(|| {
        format!(
            "/wiki/api/v2/spaces/{id}/role-assignments?limit={limit}&cursor={}",
            encode_cursor(end, &sig)
        )
    });
    page(&headers, results, next, true)
}

pub async fn users_bulk(State(st): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let ids: Option<Vec<String>> = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("accountIds")?
            .as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_owned))
            .collect()
    });
    let Some(ids) = ids else {
        return v2_bad_request("accountIds is required");
    };
    if ids.is_empty() || ids.len() > 250 {
        return v2_bad_request("accountIds must contain between 1 and 250 ids");
    }
    let tenant = read(&st.tenant);
    let results: Vec<Value> = ids
        .iter()
        .filter_map(|id| tenant.user(id))
        .map(user_v2)
        .collect();
    page(&headers, results, None, false)
}

pub async fn tenant_info(State(st): St) -> Response {
    ok(&json!({ "cloudId": read(&st.tenant).cloud_id }))
}
