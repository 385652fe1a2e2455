//! v1 routes (`/wiki/rest/api/...`): current user, groups, members, user search,
//! single/bulk users, a user's groups, and membership writes (§3).

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::cql::{self, CqlError};
use crate::model::{AccountStatus, AccountType, User};
use crate::params::Params;
use crate::state::{AppState, read, write};
use crate::truth::searchable;
use crate::views::{group_v1, ok, user_v1, v1_error, v1_server_error, wiki_base};

type St = State<Arc<AppState>>;

fn bad_number(v: &str) -> Response {
    v1_error(
        StatusCode::BAD_REQUEST,
        &format!("java.lang.NumberFormatException: For input string: \"{v}\""),
    )
}

/// The account a credential acts as: the n-th generated user, or a stand-in when the
/// tenant has fewer users (the empty tenant).
pub fn account_of(state: &AppState, credential: usize) -> User {
    let tenant = read(&state.tenant);
    if let Some(u) = tenant.users.get(credential) {
        return u.clone();
    }
    let email = state
        .credentials
        .get(credential)
        .map(|c| c.email.clone())
        .unwrap_or_default();
    let h: String = Sha256::digest(email.as_bytes())
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    User {
        account_id: h,
        account_type: AccountType::Atlassian,
        status: AccountStatus::Active,
        name: "Site Admin".into(),
        public_name: "Site Admin".into(),
        email,
        email_visible: true,
        is_guest: false,
        locale: "en_US",
        time_zone: "Europe/London",
        personal_space: None,
    }
}

pub async fn current_user(
    State(st): St,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let base = wiki_base(&headers);
    let p = Params::parse(q.as_deref());
    match caller {
        Caller::Anonymous => ok(&json!({
            "type": "anonymous",
            "profilePicture": { "path": "/wiki/s/-1/_/images/icons/profilepics/anonymous.svg", "width": 48, "height": 48, "isDefault": true },
            "displayName": "Anonymous",
            "operations": [],
            "_links": { "base": base, "context": "/wiki" }
        })),
        Caller::Credential(i) => ok(&user_v1(
            &account_of(&st, i),
            &base,
            p.expands("operations"),
        )),
    }
}

fn links(base: &str, self_path: &str, next: Option<String>) -> Value {
    let mut l = json!({ "base": base, "context": "/wiki", "self": format!("{base}{self_path}") });
    if let Some(n) = next {
        l["next"] = Value::String(n);
    }
    l
}

pub async fn groups(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let base = wiki_base(&headers);
    let p = Params::parse(q.as_deref());
    let (start, limit) = match (p.number("start", 0), p.number("limit", 200)) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(v), _) | (_, Err(v)) => return bad_number(&v),
    };
    let quirks = st.quirks();
    let tenant = read(&st.tenant);
    // accessType semantics are unverified; admin groups are the plausible answer.
    let filtered: Vec<&crate::model::Group> = match p.get("accessType") {
        Some("admin") | Some("site-admin") => tenant
            .groups
            .iter()
            .filter(|g| g.name == "site-admins" || g.name == "org-admins")
            .collect(),
        _ => tenant.groups.iter().collect(),
    };
    let page: Vec<Value> = filtered
        .iter()
        .skip(start)
        .take(limit.min(quirks.group_page_cap))
        .map(|g| group_v1(g, &base))
        .collect();
    let size = page.len();
    let rows_remain = size > 0 && start + size < filtered.len();
    let next = (rows_remain || quirks.group_next_always).then(|| {
        format!(
            "/rest/api/group?next=true&limit={limit}&start={}",
            start + size
        )
    });
    let mut body = json!({
        "results": page, "start": start, "limit": limit, "size": size,
        "_links": links(&base, "/rest/api/group", next)
    });
    if p.flag("shouldReturnTotalSize") {
        body["totalSize"] = json!(filtered.len());
    }
    ok(&body)
}

fn looks_like_uuid(s: &str) -> bool {
    s.len() == 36
        && s.chars().enumerate().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

pub async fn group_by_id(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(q.as_deref());
    let Some(id) = p.get("id") else {
        return v1_error(StatusCode::BAD_REQUEST, "id is required");
    };
    if !looks_like_uuid(id) {
        return v1_error(StatusCode::BAD_REQUEST, &format!("Invalid group id: {id}"));
    }
    let tenant = read(&st.tenant);
    match tenant.group_position(id).and_then(|i| tenant.groups.get(i)) {
        Some(g) => ok(&group_v1(g, &wiki_base(&headers))),
        None => v1_error(
            StatusCode::NOT_FOUND,
            &format!("No group found with id : {id}"),
        ),
    }
}

pub async fn members(
    State(st): St,
    Path(group_id): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let base = wiki_base(&headers);
    let p = Params::parse(q.as_deref());
    let (start, limit) = match (p.number("start", 0), p.number("limit", 200)) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(v), _) | (_, Err(v)) => return bad_number(&v),
    };
    let quirks = st.quirks();
    let max = quirks.members_max_limit;
    if limit > max {
        return v1_error(
            StatusCode::BAD_REQUEST,
            &format!("Maximum limit is {max}, but got {limit}"),
        );
    }
    let expand = p.expands("operations");
    let tenant = read(&st.tenant);
    let all: &[u32] = tenant
        .group_position(&group_id)
        .and_then(|i| tenant.groups.get(i))
        .map(|g| g.members.as_slice())
        .unwrap_or(&[]);
    let members: Vec<&User> = all
        .iter()
        .filter_map(|&m| tenant.users.get(m as usize))
        .filter(|u| !(quirks.hide_suspended_members && u.suspended()))
        .collect();
    let page: Vec<Value> = members
        .iter()
        .skip(start)
        .take(limit)
        .map(|u| user_v1(u, &base, expand))
        .collect();
    let size = page.len();
    let self_path = format!("/rest/api/group/{group_id}/membersByGroupId");
    let expand_param = p
        .get("expand")
        .map(|e| format!("&expand={e}"))
        .unwrap_or_default();
    let next = (size > 0 && start + size < members.len()).then(|| {
        format!(
            "{self_path}?next=true{expand_param}&limit={limit}&start={}",
            start + size
        )
    });
    let mut body = json!({
        "results": page, "start": start, "limit": limit, "size": size,
        "_links": links(&base, &self_path, next)
    });
    if p.flag("shouldReturnTotalSize") {
        body["totalSize"] = json!(members.len());
    }
    ok(&body)
}

pub async fn search_user(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let base = wiki_base(&headers);
    let p = Params::parse(q.as_deref());
    let Some(cql_text) = p.get("cql") else {
        return v1_error(StatusCode::BAD_REQUEST, "cql is required");
    };
    let query = match cql::parse(cql_text) {
        Ok(q) => q,
        Err(CqlError::EmptyFuzzy) => {
            return v1_server_error(
                "java.lang.IllegalArgumentException: fuzzy query value must not be empty",
            );
        }
        Err(CqlError::Syntax(e)) => {
            return v1_error(
                StatusCode::BAD_REQUEST,
                &format!("Could not parse cql : {cql_text} ({e})"),
            );
        }
    };
    let (start, limit) = match (p.number("start", 0), p.number("limit", 25)) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(v), _) | (_, Err(v)) => return bad_number(&v),
    };
    let quirks = st.quirks();
    let filter = p.get("sitePermissionTypeFilter").unwrap_or("none");
    let expand = p.expands("operations");
    let tenant = read(&st.tenant);
    let page: Vec<Value> = tenant
        .users
        .iter()
        .filter(|u| searchable(u, filter))
        .take(quirks.search_ceiling)
        .filter(|u| query.matches(u))
        .skip(start)
        .take(limit.min(quirks.search_page_cap))
        .map(|u| {
            json!({
                "user": user_v1(u, &base, expand),
                "title": u.display_name(),
                "excerpt": "",
                "url": format!("/people/{}", u.account_id),
                "breadcrumbs": [],
                "entityType": "user",
                "iconCssClass": "aui-icon content-type-profile",
                "lastModified": "2025-02-18T04:08:03.579Z",
                "score": 0.0
            })
        })
        .collect();
    let size = page.len();
    ok(&json!({
        "results": page, "start": start, "limit": limit, "size": size, "totalSize": size,
        "cqlQuery": cql_text, "searchDuration": 12,
        "_links": { "base": base, "context": "/wiki" }
    }))
}

pub async fn user(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(q.as_deref());
    let Some(id) = p.get("accountId") else {
        return v1_error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let tenant = read(&st.tenant);
    match tenant.user(id) {
        Some(u) => ok(&user_v1(u, &wiki_base(&headers), p.expands("operations"))),
        None => v1_error(
            StatusCode::NOT_FOUND,
            &format!("No user found with accountId : {id}"),
        ),
    }
}

pub async fn user_bulk(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let base = wiki_base(&headers);
    let p = Params::parse(q.as_deref());
    let ids = p.list("accountId");
    if ids.is_empty() {
        return v1_error(StatusCode::BAD_REQUEST, "accountId is required");
    }
    let expand = p.expands("operations");
    let tenant = read(&st.tenant);
    // Ids past the 100th are dropped without a word, as Confluence does.
    let results: Vec<Value> = ids
        .iter()
        .take(100)
        .filter_map(|id| tenant.user(id))
        .map(|u| user_v1(u, &base, expand))
        .collect();
    let size = results.len();
    ok(&json!({
        "results": results, "start": 0, "limit": 100, "size": size,
        "_links": { "base": base, "context": "/wiki" }
    }))
}

pub async fn member_of(State(st): St, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let base = wiki_base(&headers);
    let p = Params::parse(q.as_deref());
    let Some(id) = p.get("accountId") else {
        return v1_error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let (start, limit) = match (p.number("start", 0), p.number("limit", 200)) {
        (Ok(s), Ok(l)) => (s, l.min(200)),
        (Err(v), _) | (_, Err(v)) => return bad_number(&v),
    };
    let tenant = read(&st.tenant);
    let Some(&idx) = tenant.user_index.get(id) else {
        return v1_error(
            StatusCode::NOT_FOUND,
            &format!("No user found with accountId : {id}"),
        );
    };
    let page: Vec<Value> = tenant
        .groups
        .iter()
        .filter(|g| g.members.binary_search(&idx).is_ok())
        .skip(start)
        .take(limit)
        .map(|g| group_v1(g, &base))
        .collect();
    let size = page.len();
    // Deliberately no `next`: Confluence never sends one here.
    ok(&json!({
        "results": page, "start": start, "limit": limit, "size": size,
        "_links": { "base": base, "context": "/wiki", "self": format!("{base}/rest/api/user/memberof") }
    }))
}

/// Writes without `X-Atlassian-Token: no-check` fail Atlassian's XSRF filter.
fn xsrf_check(headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("x-atlassian-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("no-check"));
    (!ok).then(|| {
        (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain;charset=UTF-8")],
            "XSRF check failed",
        )
            .into_response()
    })
}

/// Membership writes need a site admin.
fn admin_check(st: &AppState, caller: Caller) -> Option<Response> {
    let admin = caller
        .credential()
        .and_then(|i| st.credentials.get(i))
        .is_some_and(|c| c.site_admin);
    (!admin).then(|| {
        v1_error(
            StatusCode::FORBIDDEN,
            "User is not permitted to manage group membership",
        )
    })
}

pub async fn add_member(
    State(st): St,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = xsrf_check(&headers) {
        return r;
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
    if !json_type {
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    if let Some(r) = admin_check(&st, caller) {
        return r;
    }
    let p = Params::parse(q.as_deref());
    let Some(group_id) = p.get("groupId") else {
        return v1_error(StatusCode::BAD_REQUEST, "groupId is required");
    };
    let account = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.get("accountId")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let Some(account) = account.filter(|a| !a.is_empty()) else {
        return v1_error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let quirks = st.quirks();
    let mut tenant = write(&st.tenant);
    let Some(g) = tenant.group_position(group_id) else {
        return v1_error(
            StatusCode::NOT_FOUND,
            &format!("No group found with id : {group_id}"),
        );
    };
    let Some(&u) = tenant.user_index.get(&account) else {
        return v1_error(
            StatusCode::from_u16(quirks.unknown_account_write_status)
                .unwrap_or(StatusCode::NOT_FOUND),
            &format!("No user found with accountId : {account}"),
        );
    };
    let Some(group) = tenant.groups.get_mut(g) else {
        return v1_server_error("java.lang.IllegalStateException: group vanished");
    };
    match group.members.binary_search(&u) {
        Ok(_) if quirks.existing_member_add_status == 400 => v1_error(
            StatusCode::BAD_REQUEST,
            "User is already a member of the group",
        ),
        Ok(_) => StatusCode::CREATED.into_response(),
        Err(pos) => {
            group.members.insert(pos, u);
            StatusCode::CREATED.into_response()
        }
    }
}

pub async fn remove_member(
    State(st): St,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Some(r) = xsrf_check(&headers).or_else(|| admin_check(&st, caller)) {
        return r;
    }
    let p = Params::parse(q.as_deref());
    let (Some(group_id), Some(account)) = (p.get("groupId"), p.get("accountId")) else {
        return v1_error(
            StatusCode::BAD_REQUEST,
            "groupId and accountId are required",
        );
    };
    let quirks = st.quirks();
    let mut tenant = write(&st.tenant);
    let Some(g) = tenant.group_position(group_id) else {
        return v1_error(
            StatusCode::NOT_FOUND,
            &format!("No group found with id : {group_id}"),
        );
    };
    let Some(&u) = tenant.user_index.get(account) else {
        return v1_error(
            StatusCode::from_u16(quirks.unknown_account_write_status)
                .unwrap_or(StatusCode::NOT_FOUND),
            &format!("No user found with accountId : {account}"),
        );
    };
    if let Some(group) = tenant.groups.get_mut(g)
        && let Ok(pos) = group.members.binary_search(&u)
    {
        group.members.remove(pos);
    }
    StatusCode::NO_CONTENT.into_response()
}
