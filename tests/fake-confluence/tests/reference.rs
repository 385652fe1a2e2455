//! Replays the request sequence of the reference connector (baton-confluence) over raw
//! HTTP: the same paths, parameters and headers, the same paging decisions, and checks
//! that every field it parses is present. The reference's ids must then equal the truth.

mod common;

use std::collections::BTreeSet;

use common::{Api, arr, s, start};
use fake_confluence::{FakeConfig, Preset};
use serde_json::Value;

/// Page sizes the reference sends: the documented ones, and the ones of the client
/// version whose `genURL`/`genURLWithPaginationCursor` cap limits at 50.
struct Sizes {
    groups: usize,
    members: usize,
    search: usize,
    spaces: usize,
    permissions: usize,
}

const DOCUMENTED: Sizes = Sizes {
    groups: 200,
    members: 200,
    search: 200,
    spaces: 200,
    permissions: 100,
};
const CAPPED_CLIENT: Sizes = Sizes {
    groups: 50,
    members: 100,
    search: 200,
    spaces: 50,
    permissions: 50,
};

/// GET as the reference does: Basic auth plus its write headers on every request. The
/// SDK's `WithJSONResponse` rejects any answer (errors included) whose Content-Type is
/// not JSON before the connector sees its status, so every answer must be JSON.
async fn get(api: &Api, path: &str) -> reqwest::Response {
    let c = api.fake.credential();
    let r = api
        .http
        .get(api.url(path))
        .basic_auth(&c.email, Some(&c.token))
        .header("Accept", "application/json")
        .header("X-Atlassian-Token", "no-check")
        .header("Content-Type", "application/json")
        .send()
        .await
        .expect("request");
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ctype.starts_with("application/json"), "GET {path}: {ctype}");
    r
}

async fn get_json(api: &Api, path: &str) -> Value {
    let r = get(api, path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    let v: Value = r.json().await.expect("json");
    v
}

/// Newer reference versions reject a list page without `_links`.
fn v1_list(page: &Value) {
    for f in ["start", "limit", "size", "results"] {
        assert!(page.get(f).is_some(), "v1 list has {f}");
    }
    assert!(page["_links"].is_object(), "v1 list has _links");
}

fn user_fields(u: &Value) {
    for f in ["accountId", "accountType", "displayName", "email"] {
        assert!(u[f].is_string(), "user.{f} is a string: {u}");
    }
    assert!(
        u["operations"].is_array(),
        "expand=operations gives operations"
    );
}

/// `extractPaginationCursor`: the `cursor` query parameter of `_links.next`.
fn cursor_of(page: &Value) -> Option<String> {
    let next = page["_links"].get("next")?.as_str()?;
    let url = reqwest::Url::parse(&format!("http://x{next}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.into_owned())
}

#[derive(Default)]
struct Seen {
    users: BTreeSet<String>,
    disabled: BTreeSet<String>,
    groups: BTreeSet<String>,
    memberships: BTreeSet<String>,
    spaces: BTreeSet<String>,
    grants: BTreeSet<String>,
}

async fn replay(api: &Api, sizes: &Sizes) -> Seen {
    let mut seen = Seen::default();

    // Validate: fails on an empty accountId.
    let me = get_json(api, "/wiki/rest/api/user/current").await;
    assert!(!s(&me["accountId"]).is_empty());

    // Space roles are listed in default mode too; 404 means "none".
    let roles = get(api, "/wiki/api/v2/space-roles?limit=100").await;
    assert_eq!(roles.status(), 404);

    // Groups: `start` is empty on the first page; next iff `_links.next`; start += len.
    let mut token = String::new();
    let mut groups = Vec::new();
    loop {
        let page = get_json(
            api,
            &format!("/wiki/rest/api/group?limit={}&start={token}", sizes.groups),
        )
        .await;
        v1_list(&page);
        for g in arr(&page["results"]) {
            for f in ["type", "name", "id"] {
                assert!(g[f].is_string(), "group.{f}");
            }
            groups.push(s(&g["id"]).to_owned());
        }
        if page["_links"].get("next").is_none() {
            break;
        }
        token = (token.parse::<usize>().unwrap_or(0) + arr(&page["results"]).len()).to_string();
    }
    seen.groups.extend(groups.iter().cloned());

    // Members of every group, with operations.
    for gid in &groups {
        let mut token = String::new();
        loop {
            let page = get_json(
                api,
                &format!(
                    "/wiki/rest/api/group/{gid}/membersByGroupId?expand=operations&limit={}&start={token}",
                    sizes.members
                ),
            )
            .await;
            v1_list(&page);
            for u in arr(&page["results"]) {
                user_fields(u);
                if u["accountType"] != "atlassian" {
                    continue;
                }
                let id = s(&u["accountId"]).to_owned();
                seen.memberships
                    .insert(format!("group:{gid}:member:user:{id}"));
                if arr(&u["operations"]).is_empty() {
                    seen.disabled.insert(id.clone());
                }
                seen.users.insert(id);
            }
            if page["_links"].get("next").is_none() {
                break;
            }
            token = (token.parse::<usize>().unwrap_or(0) + arr(&page["results"]).len()).to_string();
        }
    }

    // Users from CQL search; stops when a page is shorter than the requested size.
    let mut token = String::new();
    loop {
        let page = get_json(
            api,
            &format!(
                "/wiki/rest/api/search/user?cql=type%3Duser&expand=operations&limit={}&start={token}",
                sizes.search
            ),
        )
        .await;
        assert!(page["_links"].is_object());
        let rows = arr(&page["results"]);
        for r in rows {
            user_fields(&r["user"]);
            if r["user"]["accountType"] == "atlassian" {
                seen.users.insert(s(&r["user"]["accountId"]).to_owned());
            }
        }
        if rows.len() < sizes.search {
            break;
        }
        token = (token.parse::<usize>().unwrap_or(0) + rows.len()).to_string();
    }

    // Spaces: cursor taken from `_links.next`.
    let mut cursor: Option<String> = None;
    let mut spaces = Vec::new();
    loop {
        let mut path = format!("/wiki/api/v2/spaces?limit={}", sizes.spaces);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(api, &path).await;
        assert!(page["_links"].is_object());
        for sp in arr(&page["results"]) {
            for f in ["id", "key", "name", "type"] {
                assert!(sp[f].is_string(), "space.{f}");
            }
            spaces.push(s(&sp["id"]).to_owned());
        }
        cursor = cursor_of(&page);
        if cursor.is_none() {
            break;
        }
    }
    seen.spaces.extend(spaces.iter().cloned());

    // Permissions of every space; only user/group principals inside the matrix count.
    let verbs = [
        "administer",
        "archive",
        "create",
        "delete",
        "export",
        "read",
        "restrict_content",
        "update",
    ];
    let nouns = ["attachment", "blogpost", "comment", "page", "space"];
    for sid in &spaces {
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!(
                "/wiki/api/v2/spaces/{sid}/permissions?limit={}",
                sizes.permissions
            );
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = get_json(api, &path).await;
            assert!(page["_links"].is_object());
            for p in arr(&page["results"]) {
                assert!(p["id"].is_string());
                let kind = s(&p["principal"]["type"]);
                let pid = s(&p["principal"]["id"]);
                let key = s(&p["operation"]["key"]);
                let target = s(&p["operation"]["targetType"]);
                if (kind == "user" || kind == "group")
                    && verbs.contains(&key)
                    && nouns.contains(&target)
                {
                    seen.grants
                        .insert(format!("space:{sid}:{key}-{target}:{kind}:{pid}"));
                }
            }
            cursor = cursor_of(&page);
            if cursor.is_none() {
                break;
            }
        }
    }
    seen
}

#[tokio::test]
async fn reference_request_sequence() {
    let api = start(FakeConfig::preset(Preset::Small)).await;
    let truth = api.fake.truth();
    let v = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>();
    for sizes in [&DOCUMENTED, &CAPPED_CLIENT] {
        let seen = replay(&api, sizes).await;
        // The small tenant's search results fit in one capped page, so even the
        // reference's first-page-only search finds every searchable user.
        assert_eq!(v(&seen.users), truth.users.ids);
        assert_eq!(v(&seen.disabled), truth.users.disabled_ids);
        assert_eq!(v(&seen.groups), truth.groups.ids);
        assert_eq!(v(&seen.memberships), truth.memberships.ids);
        assert_eq!(v(&seen.spaces), truth.spaces.ids);
        assert_eq!(v(&seen.grants), truth.space_permissions.ids);
    }
    let stats = api.fake.stats();
    assert_eq!(stats.route_total("GET", "/wiki/api/v2/space-roles"), 2);
    assert!(
        stats.by_route.keys().all(|k| !k.contains("unmatched")),
        "every reference request is routed: {:?}",
        stats.by_route.keys()
    );
}

/// Under the real 100-row cap, a search-only user past the first page is invisible to
/// the reference but part of the truth (design §6 pages on until an empty page).
#[tokio::test]
async fn reference_search_stops_after_the_capped_first_page() {
    let mut cfg = FakeConfig::preset(Preset::Small);
    cfg.data.users = 300;
    let api = start(cfg).await;
    let page = get_json(
        &api,
        "/wiki/rest/api/search/user?cql=type%3Duser&expand=operations&limit=200&start=",
    )
    .await;
    let rows = arr(&page["results"]).len();
    assert_eq!(rows, 100);
    assert!(rows < 200, "the reference stops here");
    let second = get_json(
        &api,
        "/wiki/rest/api/search/user?cql=type%3Duser&expand=operations&limit=200&start=100",
    )
    .await;
    assert!(!arr(&second["results"]).is_empty(), "but more users exist");
}
