//! Endpoint behaviour and Confluence quirks, driven with raw HTTP.

mod common;

use std::collections::BTreeSet;

use common::{Api, arr, s, start};
use fake_confluence::{
    AuthFailureMode, Credential, DataConfig, FakeConfig, Preset, RbacMode, Truth,
};
use reqwest::Method;
use serde_json::{Value, json};

fn data(users: usize, groups: usize, spaces: usize) -> FakeConfig {
    FakeConfig::with_data(DataConfig {
        users,
        groups,
        spaces,
        ..DataConfig::preset(Preset::Small)
    })
}

async fn group_named(api: &Api, name: &str) -> Value {
    let page = api.json("/wiki/rest/api/group?limit=1000").await;
    arr(&page["results"])
        .iter()
        .find(|g| g["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("group {name} exists"))
}

#[tokio::test]
async fn current_user_is_a_known_account() {
    let api = start(FakeConfig::default()).await;
    let me = api
        .json("/wiki/rest/api/user/current?expand=operations")
        .await;
    assert_eq!(me["type"], "known");
    assert!(!s(&me["accountId"]).is_empty());
    assert_eq!(me["accountType"], "atlassian");
    assert_eq!(me["email"], Credential::DEFAULT_EMAIL);
    assert_eq!(me["operations"][0]["operation"], "use");
    let plain = api.json("/wiki/rest/api/user/current").await;
    assert!(plain.get("operations").is_none());
    assert_eq!(plain["_expandable"]["operations"], "");
}

#[tokio::test]
async fn auth_failure_v1_403_json_by_default() {
    let api = start(FakeConfig::default()).await;
    let r = api.anon("/wiki/rest/api/user/current").await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert!(s(&body["message"]).contains("caller cannot access Confluence"));
    let r = api
        .http
        .get(api.url("/wiki/rest/api/group"))
        .basic_auth(Credential::DEFAULT_EMAIL, Some("wrong"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["message"],
        "Current user not permitted to use Confluence"
    );
    assert_eq!(body["statusCode"], 403);
}

#[tokio::test]
async fn auth_failure_v1_401_text_mode() {
    let mut cfg = FakeConfig::default();
    cfg.quirks.v1_auth_failure = AuthFailureMode::Unauthorized401Text;
    let api = start(cfg).await;
    let r = api.anon("/wiki/rest/api/user/current").await;
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert!(
        r.text()
            .await
            .expect("body")
            .starts_with("Basic authentication with passwords is deprecated")
    );
}

#[tokio::test]
async fn auth_failure_v2_is_404_not_found() {
    let api = start(FakeConfig::default()).await;
    let r = api.anon("/wiki/api/v2/spaces").await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body,
        json!({"errors":[{"status":404,"code":"NOT_FOUND","title":"Not Found","detail":null}]})
    );
}

#[tokio::test]
async fn anonymous_site_answers_user_current_as_anonymous() {
    let mut cfg = FakeConfig::default();
    cfg.quirks.anonymous_site = true;
    let api = start(cfg).await;
    let r = api.anon("/wiki/rest/api/user/current").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["type"], "anonymous");
    assert!(body.get("accountId").is_none());
    // Only the credential check is anonymous; data still needs credentials.
    assert_eq!(api.anon("/wiki/rest/api/group").await.status(), 403);
}

#[tokio::test]
async fn scoped_token_needs_the_gateway() {
    let mut cfg = FakeConfig::default();
    cfg.credentials.push(Credential {
        scoped: true,
        ..Credential::new("scoped@example.com", "scoped-token", false)
    });
    let api = start(cfg).await;
    let site = api
        .http
        .get(api.url("/wiki/rest/api/user/current"))
        .basic_auth("scoped@example.com", Some("scoped-token"))
        .send()
        .await
        .expect("request");
    assert_eq!(site.status(), 401);
    assert!(site.text().await.expect("body").contains("HTTP Status 401"));
    let gateway = format!(
        "/ex/confluence/{}/wiki/rest/api/user/current",
        api.fake.cloud_id()
    );
    let gw = api
        .http
        .get(api.url(&gateway))
        .basic_auth("scoped@example.com", Some("scoped-token"))
        .send()
        .await
        .expect("request");
    assert_eq!(gw.status(), 200);
    let wrong_cloud = api
        .get("/ex/confluence/00000000-0000-4000-8000-000000000000/wiki/rest/api/user/current")
        .await;
    assert_eq!(wrong_cloud.status(), 404);
}

#[tokio::test]
async fn wrong_site_host_gets_html_404() {
    let mut cfg = FakeConfig::default();
    cfg.quirks.site_host = Some("acme.atlassian.net".into());
    let api = start(cfg).await;
    let r = api.get("/wiki/rest/api/user/current").await;
    assert_eq!(r.status(), 404);
    assert!(r.text().await.expect("body").contains("Page Unavailable"));
    // No /wiki, or the server path: 404 as on a real site.
    let api = start(FakeConfig::default()).await;
    assert_eq!(api.get("/rest/api/user/current").await.status(), 404);
    assert_eq!(api.get("/confluence/rest/api/group").await.status(), 404);
}

#[tokio::test]
async fn tenant_info_needs_no_auth() {
    let api = start(FakeConfig::default()).await;
    let r = api.anon("/_edge/tenant_info").await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["cloudId"], api.fake.cloud_id());
}

#[tokio::test]
async fn groups_page_by_offset_with_relative_next() {
    let api = start(data(100, 23, 0)).await;
    let mut start_at = 0;
    let mut seen = Vec::new();
    let mut names = Vec::new();
    loop {
        let page = api
            .json(&format!("/wiki/rest/api/group?limit=10&start={start_at}"))
            .await;
        assert_eq!(page["start"], start_at);
        assert_eq!(page["limit"], 10);
        assert_eq!(page["_links"]["context"], "/wiki");
        assert_eq!(
            page["_links"]["base"],
            format!("{}/wiki", api.fake.base_url())
        );
        let results = arr(&page["results"]);
        assert_eq!(page["size"], results.len());
        for g in results {
            assert_eq!(g["type"], "group");
            seen.push(s(&g["id"]).to_owned());
            names.push(s(&g["name"]).to_owned());
        }
        start_at += results.len();
        match page["_links"].get("next") {
            Some(next) => assert_eq!(
                s(next),
                format!("/rest/api/group?next=true&limit=10&start={start_at}")
            ),
            None => break,
        }
    }
    assert_eq!(seen.len(), 23);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "groups are sorted by name");
    assert!(names.iter().any(|n| n == "confluence-users-acme-labs"));
    assert!(names.iter().any(|n| n == "jira-users-acme"));
}

#[tokio::test]
async fn groups_exactly_full_last_page_has_no_next() {
    let api = start(data(50, 20, 0)).await;
    let first = api.json("/wiki/rest/api/group?limit=10").await;
    assert!(first["_links"].get("next").is_some());
    let last = api.json("/wiki/rest/api/group?limit=10&start=10").await;
    assert_eq!(last["size"], 10);
    assert!(last["_links"].get("next").is_none());
    let beyond = api.json("/wiki/rest/api/group?limit=10&start=20").await;
    assert_eq!(beyond["size"], 0);
    let total = api
        .json("/wiki/rest/api/group?shouldReturnTotalSize=true")
        .await;
    assert_eq!(total["totalSize"], 20);
    assert_eq!(total["limit"], 200, "default limit");
}

#[tokio::test]
async fn groups_silent_cap_echoes_requested_limit() {
    let api = start(data(50, 20, 0)).await;
    api.fake.update_quirks(|q| q.group_page_cap = 3);
    let page = api.json("/wiki/rest/api/group?limit=10").await;
    assert_eq!(page["limit"], 10);
    assert_eq!(page["size"], 3);
    assert_eq!(
        page["_links"]["next"],
        "/rest/api/group?next=true&limit=10&start=3"
    );
}

#[tokio::test]
async fn groups_next_on_an_empty_page_when_toggled() {
    let api = start(data(50, 4, 0)).await;
    api.fake.update_quirks(|q| q.group_next_always = true);
    let last = api.json("/wiki/rest/api/group?limit=4").await;
    assert_eq!(
        last["_links"]["next"],
        "/rest/api/group?next=true&limit=4&start=4"
    );
    let empty = api.json("/wiki/rest/api/group?limit=4&start=4").await;
    assert_eq!(empty["size"], 0);
    assert!(
        empty["_links"].get("next").is_some(),
        "stop on the empty page"
    );
}

#[tokio::test]
async fn group_by_id_found_unknown_and_malformed() {
    let api = start(FakeConfig::default()).await;
    let g = group_named(&api, "site-admins").await;
    let found = api
        .json(&format!("/wiki/rest/api/group/by-id?id={}", s(&g["id"])))
        .await;
    assert_eq!(found["name"], "site-admins");
    let unknown = api
        .get("/wiki/rest/api/group/by-id?id=00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.expect("json");
    assert_eq!(body["statusCode"], 404);
    assert_eq!(
        api.get("/wiki/rest/api/group/by-id?id=nope").await.status(),
        400
    );
}

#[tokio::test]
async fn members_limit_above_200_is_400() {
    let api = start(FakeConfig::default()).await;
    let g = group_named(&api, "confluence-users-acme").await;
    let path = format!(
        "/wiki/rest/api/group/{}/membersByGroupId?limit=201",
        s(&g["id"])
    );
    let r = api.get(&path).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("v1 json error");
    assert_eq!(body["statusCode"], 400);
    assert_eq!(api.json(&path.replace("201", "200")).await["limit"], 200);
}

#[tokio::test]
async fn members_hide_suspended_when_toggled() {
    let api = start(data(3000, 10, 0)).await;
    let g = group_named(&api, "confluence-users-acme").await;
    let walk = || {
        let api = &api;
        let gid = s(&g["id"]).to_owned();
        async move {
            let mut statuses = Vec::new();
            let mut start_at = 0;
            loop {
                let page = api
                    .json(&format!(
                        "/wiki/rest/api/group/{gid}/membersByGroupId?limit=200&start={start_at}"
                    ))
                    .await;
                let rows = arr(&page["results"]);
                statuses.extend(rows.iter().map(|u| s(&u["accountStatus"]).to_owned()));
                start_at += rows.len();
                if page["_links"].get("next").is_none() {
                    break;
                }
            }
            statuses
        }
    };
    let before = walk().await;
    assert!(before.iter().any(|st| st == "closed"));
    let truth_before = api.fake.truth();
    api.fake.update_quirks(|q| q.hide_suspended_members = true);
    let after = walk().await;
    assert!(after.iter().all(|st| st != "closed"));
    assert!(after.len() < before.len());
    assert!(api.fake.truth().memberships.count < truth_before.memberships.count);
}

#[tokio::test]
async fn members_of_unknown_group_is_an_empty_200() {
    let api = start(FakeConfig::default()).await;
    let page = api
        .json("/wiki/rest/api/group/00000000-0000-4000-8000-000000000000/membersByGroupId")
        .await;
    assert_eq!(page["size"], 0);
    assert!(arr(&page["results"]).is_empty());
    assert!(page["_links"].get("next").is_none());
}

#[tokio::test]
async fn members_expand_operations_and_deactivated() {
    let api = start(data(400, 12, 0)).await;
    let g = group_named(&api, "confluence-users-acme").await;
    let base = format!("/wiki/rest/api/group/{}/membersByGroupId", s(&g["id"]));
    let plain = api.json(&format!("{base}?limit=200")).await;
    let first = &arr(&plain["results"])[0];
    assert!(first.get("operations").is_none());
    assert_eq!(first["_expandable"]["operations"], "");
    let mut deactivated = 0;
    let mut start_at = 0;
    loop {
        let page = api
            .json(&format!(
                "{base}?expand=operations&limit=200&start={start_at}"
            ))
            .await;
        for u in arr(&page["results"]) {
            for field in [
                "accountId",
                "accountType",
                "email",
                "displayName",
                "publicName",
            ] {
                assert!(u.get(field).is_some(), "member has {field}");
            }
            let ops = arr(&u["operations"]);
            if u["accountStatus"] != "active" {
                deactivated += 1;
                assert!(ops.is_empty(), "deactivated => operations: []");
                assert!(s(&u["displayName"]).ends_with(" (Deactivated)"));
            } else {
                assert_eq!(ops[0]["targetType"], "application");
            }
        }
        start_at += arr(&page["results"]).len();
        if page["_links"].get("next").is_none() {
            break;
        }
    }
    assert!(deactivated > 0, "member lists include deactivated accounts");
}

#[tokio::test]
async fn edge_groups_empty_full_and_450() {
    let api = start(data(600, 12, 0)).await;
    let sizes = |n: &str| {
        let n = n.to_owned();
        let api = &api;
        async move {
            let g = group_named(api, &n).await;
            let mut sizes = Vec::new();
            let mut start_at = 0;
            loop {
                let page = api
                    .json(&format!(
                        "/wiki/rest/api/group/{}/membersByGroupId?limit=200&start={start_at}",
                        s(&g["id"])
                    ))
                    .await;
                let len = arr(&page["results"]).len();
                sizes.push(len);
                start_at += len;
                if page["_links"].get("next").is_none() {
                    break;
                }
            }
            sizes
        }
    };
    assert_eq!(sizes("edge-empty").await, vec![0]);
    assert_eq!(sizes("edge-full-400").await, vec![200, 200]);
    assert_eq!(sizes("edge-450").await, vec![200, 200, 50]);
}

#[tokio::test]
async fn search_user_caps_at_100_and_echoes_limit() {
    let api = start(data(300, 10, 0)).await;
    let page = api
        .json("/wiki/rest/api/search/user?cql=type%3Duser&limit=200&expand=operations")
        .await;
    assert_eq!(page["limit"], 200);
    assert_eq!(page["size"], 100);
    assert_eq!(page["totalSize"], 100, "totalSize is the page size");
    assert!(page["_links"].get("next").is_none(), "never a next link");
    let hit = &arr(&page["results"])[0];
    assert_eq!(hit["entityType"], "user");
    assert!(hit["user"]["operations"].is_array());
    let default = api.json("/wiki/rest/api/search/user?cql=type=user").await;
    assert_eq!(default["limit"], 25);
    assert_eq!(default["size"], 25);
    // A short page is not the end; an empty page is.
    let mut total = 0;
    let mut start_at = 0;
    loop {
        let p = api
            .json(&format!(
                "/wiki/rest/api/search/user?cql=type=user&limit=250&start={start_at}"
            ))
            .await;
        let n = arr(&p["results"]).len();
        if n == 0 {
            break;
        }
        total += n;
        start_at += n;
    }
    assert!(total > 100);
}

#[tokio::test]
async fn search_user_cql_subset() {
    let api = start(data(100, 10, 0)).await;
    let all = api
        .json("/wiki/rest/api/search/user?cql=type=user&limit=100")
        .await;
    let users: Vec<&Value> = arr(&all["results"]).iter().map(|r| &r["user"]).collect();
    let a = s(&users[0]["accountId"]).to_owned();
    let b = s(&users[1]["accountId"]).to_owned();
    let q = |cql: String| {
        let api = &api;
        async move {
            let url = reqwest::Url::parse_with_params(
                &api.url("/wiki/rest/api/search/user"),
                &[("cql", cql.as_str()), ("limit", "100")],
            )
            .expect("url");
            let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
            let page = api.json(&path).await;
            arr(&page["results"])
                .iter()
                .map(|r| s(&r["user"]["accountId"]).to_owned())
                .collect::<BTreeSet<_>>()
        }
    };
    assert_eq!(
        q(format!("user=\"{a}\"")).await,
        BTreeSet::from([a.clone()])
    );
    assert_eq!(
        q(format!("user.accountid=\"{b}\"")).await,
        BTreeSet::from([b.clone()])
    );
    assert_eq!(
        q(format!("user IN (\"{a}\", \"{b}\")")).await,
        BTreeSet::from([a.clone(), b.clone()])
    );
    assert_eq!(
        q(format!("user=\"{a}\" or user=\"{b}\"")).await,
        BTreeSet::from([a.clone(), b.clone()])
    );
    let first_word = s(&users[0]["displayName"])
        .split_whitespace()
        .next()
        .expect("a name")
        .to_lowercase();
    let prefix: String = first_word.chars().take(2).collect();
    let by_name = q(format!("user.fullname~\"{prefix}\"")).await;
    assert!(by_name.contains(&a));
    assert!(q("unknownfield=\"x\"".into()).await.is_empty());
    let empty_fuzzy = api
        .get("/wiki/rest/api/search/user?cql=user.fullname~%22%22")
        .await;
    assert_eq!(empty_fuzzy.status(), 500);
    assert_eq!(
        api.get("/wiki/rest/api/search/user?cql=type%3D")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn search_user_hides_deactivated_and_guests_by_default() {
    let api = start(data(400, 10, 0)).await;
    let walk = |filter: &'static str| {
        let api = &api;
        async move {
            let mut out = Vec::new();
            let mut start_at = 0;
            loop {
                let p = api
                    .json(&format!(
                        "/wiki/rest/api/search/user?cql=type=user&limit=100&start={start_at}{filter}"
                    ))
                    .await;
                let rows = arr(&p["results"]).clone();
                if rows.is_empty() {
                    break;
                }
                start_at += rows.len();
                out.extend(rows.into_iter().map(|r| r["user"].clone()));
            }
            out
        }
    };
    let default = walk("").await;
    assert!(default.iter().all(|u| u["accountStatus"] == "active"));
    assert!(default.iter().all(|u| u["isGuest"] == false));
    let all = walk("&sitePermissionTypeFilter=all").await;
    assert!(all.iter().any(|u| u["isGuest"] == true));
    assert!(all.iter().all(|u| u["accountStatus"] == "active"));
    let guests = walk("&sitePermissionTypeFilter=externalCollaborator").await;
    assert!(!guests.is_empty() && guests.iter().all(|u| u["isGuest"] == true));
}

#[tokio::test]
async fn user_lookup_includes_deactivated() {
    let api = start(data(400, 12, 0)).await;
    let g = group_named(&api, "confluence-users-acme").await;
    let page = api
        .json(&format!(
            "/wiki/rest/api/group/{}/membersByGroupId?limit=200&expand=operations",
            s(&g["id"])
        ))
        .await;
    let gone = arr(&page["results"])
        .iter()
        .find(|u| u["accountStatus"] != "active")
        .expect("a deactivated member in the first 200");
    let id = s(&gone["accountId"]);
    let u = api
        .json(&format!(
            "/wiki/rest/api/user?accountId={id}&expand=operations"
        ))
        .await;
    assert_eq!(u["accountId"], id);
    assert!(arr(&u["operations"]).is_empty());
    assert_eq!(
        api.get("/wiki/rest/api/user?accountId=nobody")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn user_bulk_takes_at_most_100_and_omits_unknown() {
    let api = start(data(300, 10, 0)).await;
    let page = api
        .json("/wiki/rest/api/search/user?cql=type=user&limit=100")
        .await;
    let mut ids: Vec<String> = arr(&page["results"])
        .iter()
        .map(|r| s(&r["user"]["accountId"]).to_owned())
        .collect();
    let more = api
        .json("/wiki/rest/api/search/user?cql=type=user&limit=100&start=100")
        .await;
    ids.extend(
        arr(&more["results"])
            .iter()
            .take(10)
            .map(|r| s(&r["user"]["accountId"]).to_owned()),
    );
    ids.insert(0, "unknown-account".into());
    let query: Vec<String> = ids.iter().map(|i| format!("accountId={i}")).collect();
    let bulk = api
        .json(&format!("/wiki/rest/api/user/bulk?{}", query.join("&")))
        .await;
    assert_eq!(bulk["size"], 99, "first 100 ids, one unknown");
    let comma = api
        .json(&format!(
            "/wiki/rest/api/user/bulk?accountId={},{}",
            ids[1], ids[2]
        ))
        .await;
    assert_eq!(comma["size"], 2);
}

#[tokio::test]
async fn memberof_lists_groups_without_next() {
    let api = start(FakeConfig::default()).await;
    let me = api.json("/wiki/rest/api/user/current").await;
    let page = api
        .json(&format!(
            "/wiki/rest/api/user/memberof?accountId={}&limit=1",
            s(&me["accountId"])
        ))
        .await;
    assert_eq!(page["size"], 1);
    assert!(page["_links"].get("next").is_none());
    assert!(page["results"][0].get("id").is_some() && page["results"][0].get("name").is_some());
}

#[tokio::test]
async fn spaces_cursor_pages_with_link_header() {
    let api = start(data(100, 5, 7)).await;
    let mut path = "/wiki/api/v2/spaces?limit=3".to_owned();
    let mut ids = Vec::new();
    loop {
        let r = api.get(&path).await;
        assert_eq!(r.status(), 200);
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let page: Value = r.json().await.expect("json");
        assert_eq!(
            page["_links"]["base"],
            format!("{}/wiki", api.fake.base_url())
        );
        for sp in arr(&page["results"]) {
            for f in [
                "id",
                "key",
                "name",
                "type",
                "status",
                "authorId",
                "homepageId",
            ] {
                assert!(sp.get(f).is_some(), "space has {f}");
            }
            ids.push(s(&sp["id"]).parse::<u64>().expect("numeric id"));
        }
        match page["_links"].get("next") {
            Some(next) => {
                let next = s(next).to_owned();
                assert!(next.starts_with("/wiki/api/v2/spaces?limit=3&cursor="));
                let link = link.expect("Link header with next");
                assert!(link.contains(&format!("<{next}>; rel=\"next\"")));
                assert!(link.contains("rel=\"base\""));
                path = next;
            }
            None => {
                assert!(link.is_none(), "no Link on the last page");
                break;
            }
        }
    }
    assert_eq!(ids.len(), 7);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id");
}

#[tokio::test]
async fn spaces_limits_filters_and_bad_cursor() {
    let api = start(data(100, 5, 12)).await;
    for bad in ["0", "251", "x"] {
        let r = api.get(&format!("/wiki/api/v2/spaces?limit={bad}")).await;
        assert_eq!(r.status(), 400, "limit={bad}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errors"][0]["code"], "INVALID_REQUEST_PARAMETER");
    }
    assert_eq!(
        api.get("/wiki/api/v2/spaces?cursor=garbage").await.status(),
        400
    );
    let all = api.json("/wiki/api/v2/spaces?limit=250").await;
    assert_eq!(arr(&all["results"]).len(), 12);
    let personal = api
        .json("/wiki/api/v2/spaces?type=personal&limit=250")
        .await;
    let truth = api.fake.truth();
    assert_eq!(arr(&personal["results"]).len(), truth.spaces.personal_count);
    let first = &arr(&all["results"])[0];
    let by_key = api
        .json(&format!("/wiki/api/v2/spaces?keys={}", s(&first["key"])))
        .await;
    assert_eq!(arr(&by_key["results"]).len(), 1);
    let by_id = api
        .json(&format!("/wiki/api/v2/spaces?ids={}", s(&first["id"])))
        .await;
    assert_eq!(by_id["results"][0]["id"], first["id"]);
    let one = api
        .json(&format!("/wiki/api/v2/spaces/{}", s(&first["id"])))
        .await;
    assert_eq!(one["key"], first["key"]);
    assert_eq!(api.get("/wiki/api/v2/spaces/1").await.status(), 404);
}

#[tokio::test]
async fn space_visibility_follows_the_credential() {
    let mut cfg = data(50, 5, 4);
    let probe = start(cfg.clone()).await;
    let all = probe.json("/wiki/api/v2/spaces").await;
    let key = s(&all["results"][0]["key"]).to_owned();
    let hidden_id = s(&all["results"][1]["id"]).to_owned();
    cfg.credentials[0].visible_spaces = Some(vec![key]);
    let api = start(cfg).await;
    let seen = api.json("/wiki/api/v2/spaces").await;
    assert_eq!(arr(&seen["results"]).len(), 1);
    assert_eq!(
        api.get(&format!("/wiki/api/v2/spaces/{hidden_id}/permissions"))
            .await
            .status(),
        404
    );
    assert_eq!(api.fake.truth().spaces.count, 1);
}

#[tokio::test]
async fn permissions_default_25_cursor_paged() {
    let mut cfg = data(100, 10, 1);
    cfg.data.personal_space_percent = 0;
    cfg.data.permissions_per_space = (60, 60);
    let api = start(cfg).await;
    let sid = api.fake.truth().spaces.ids[0].clone();
    let first = api
        .json(&format!("/wiki/api/v2/spaces/{sid}/permissions"))
        .await;
    assert_eq!(arr(&first["results"]).len(), 25);
    let p = &first["results"][0];
    assert!(p["id"].is_string());
    assert!(p["principal"]["type"].is_string() && p["principal"]["id"].is_string());
    assert!(p["operation"]["key"].is_string() && p["operation"]["targetType"].is_string());
    let mut count = 0;
    let mut kinds = BTreeSet::new();
    let mut path = format!("/wiki/api/v2/spaces/{sid}/permissions?limit=250");
    loop {
        let page = api.json(&path).await;
        for p in arr(&page["results"]) {
            kinds.insert(s(&p["principal"]["type"]).to_owned());
        }
        count += arr(&page["results"]).len();
        match page["_links"].get("next") {
            Some(n) => path = s(n).to_owned(),
            None => break,
        }
    }
    assert_eq!(count, 60);
    assert!(kinds.contains("user") && kinds.contains("group"));
    let small = api
        .json(&format!("/wiki/api/v2/spaces/{sid}/permissions?limit=20"))
        .await;
    let next = s(&small["_links"]["next"]);
    assert!(next.starts_with(&format!(
        "/wiki/api/v2/spaces/{sid}/permissions?limit=20&cursor="
    )));
}

#[tokio::test]
async fn space_roles_are_404_without_rbac() {
    let api = start(FakeConfig::default()).await;
    for p in [
        "/wiki/api/v2/space-role-mode",
        "/wiki/api/v2/space-roles?limit=1",
    ] {
        let r = api.get(p).await;
        assert_eq!(r.status(), 404, "{p}");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["errors"][0]["status"], 404);
    }
}

#[tokio::test]
async fn space_roles_with_rbac() {
    let api = start(FakeConfig {
        rbac: Some(RbacMode::Roles),
        ..FakeConfig::default()
    })
    .await;
    let mode = api.json("/wiki/api/v2/space-role-mode").await;
    assert_eq!(mode["mode"], "ROLES");
    let roles = api.json("/wiki/api/v2/space-roles?limit=100").await;
    let roles = arr(&roles["results"]);
    assert_eq!(roles.len(), 4);
    assert!(roles[0]["spacePermissions"].is_array());
    let sid = api.fake.truth().spaces.ids[0].clone();
    let all = api
        .json(&format!(
            "/wiki/api/v2/spaces/{sid}/role-assignments?limit=250"
        ))
        .await;
    let all = arr(&all["results"]).clone();
    assert!(!all.is_empty());
    let role = s(&all[0]["roleId"]).to_owned();
    let filtered = api
        .json(&format!(
            "/wiki/api/v2/spaces/{sid}/role-assignments?role-id={role}&limit=250"
        ))
        .await;
    let filtered = arr(&filtered["results"]);
    assert!(!filtered.is_empty() && filtered.iter().all(|a| a["roleId"] == role.as_str()));
    assert!(
        filtered
            .iter()
            .all(|a| ["USER", "GROUP"].contains(&s(&a["principal"]["principalType"])))
    );
}

#[tokio::test]
async fn users_bulk_v2_accepts_1_to_250() {
    let api = start(FakeConfig::default()).await;
    let me = api.json("/wiki/rest/api/user/current").await;
    let ok = api
        .req(Method::POST, "/wiki/api/v2/users-bulk")
        .json(&json!({ "accountIds": [me["accountId"], "unknown"] }))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.expect("json");
    assert_eq!(arr(&body["results"]).len(), 1);
    assert_eq!(body["results"][0]["accountStatus"], "active");
    for n in [0, 251] {
        let ids: Vec<String> = (0..n).map(|i| format!("id{i}")).collect();
        let r = api
            .req(Method::POST, "/wiki/api/v2/users-bulk")
            .json(&json!({ "accountIds": ids }))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 400, "{n} ids");
    }
}

#[tokio::test]
async fn membership_writes_follow_confluence() {
    let mut cfg = FakeConfig::default();
    cfg.credentials
        .push(Credential::new("reader@example.com", "reader-token", false));
    let api = start(cfg).await;
    let group = group_named(&api, "edge-empty").await;
    let gid = s(&group["id"]).to_owned();
    let me = api.json("/wiki/rest/api/user/current").await;
    let aid = s(&me["accountId"]).to_owned();
    let path = format!("/wiki/rest/api/group/userByGroupId?groupId={gid}");
    let body = json!({ "accountId": aid }).to_string();
    let post = |xsrf: bool, ctype: Option<&'static str>| {
        let mut r = api.req(Method::POST, &path).body(body.clone());
        if xsrf {
            r = r.header("X-Atlassian-Token", "no-check");
        }
        if let Some(c) = ctype {
            r = r.header("Content-Type", c);
        }
        r
    };
    let r = post(false, Some("application/json"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("body").contains("XSRF check failed"));
    let r = post(true, Some("text/plain")).send().await.expect("req");
    assert_eq!(r.status(), 415);
    let r = api
        .http
        .post(api.url(&path))
        .basic_auth("reader@example.com", Some("reader-token"))
        .header("X-Atlassian-Token", "no-check")
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 403, "site admin only");
    let r = post(true, Some("application/json"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 201);
    assert!(
        r.bytes().await.expect("body").is_empty(),
        "201 has an empty body"
    );
    assert!(api.fake.is_member(&gid, &aid));
    assert_eq!(api.fake.group_members(&gid), Some(vec![aid.clone()]));
    assert!(
        api.fake
            .truth()
            .memberships
            .ids
            .contains(&format!("group:{gid}:member:user:{aid}"))
    );
    let again = post(true, Some("application/json"))
        .send()
        .await
        .expect("req");
    assert_eq!(again.status(), 201, "existing member: 201");
    let unknown_group = api
        .req(
            Method::POST,
            "/wiki/rest/api/group/userByGroupId?groupId=00000000-0000-4000-8000-000000000000",
        )
        .header("X-Atlassian-Token", "no-check")
        .header("Content-Type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("req");
    assert_eq!(unknown_group.status(), 404);
    let unknown_user = api
        .req(Method::POST, &path)
        .header("X-Atlassian-Token", "no-check")
        .header("Content-Type", "application/json")
        .body(r#"{"accountId":"nobody"}"#)
        .send()
        .await
        .expect("req");
    assert_eq!(unknown_user.status(), 404);
    let del = format!("{path}&accountId={aid}");
    for _ in 0..2 {
        let r = api
            .req(Method::DELETE, &del)
            .header("X-Atlassian-Token", "no-check")
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 204, "204 member or not");
    }
    assert!(!api.fake.is_member(&gid, &aid));
    let r = api.req(Method::DELETE, &del).send().await.expect("req");
    assert_eq!(r.status(), 403, "DELETE needs the XSRF header too");
    let r = api
        .req(Method::DELETE, &format!("{path}&accountId=nobody"))
        .header("X-Atlassian-Token", "no-check")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn empty_tenant_is_served() {
    let api = start(FakeConfig::with_data(DataConfig::empty())).await;
    let me = api.json("/wiki/rest/api/user/current").await;
    assert!(!s(&me["accountId"]).is_empty());
    let groups = api.json("/wiki/rest/api/group").await;
    assert_eq!(groups["size"], 0);
    assert!(groups["_links"].get("next").is_none());
    let search = api.json("/wiki/rest/api/search/user?cql=type=user").await;
    assert_eq!(search["size"], 0);
    let spaces = api.json("/wiki/api/v2/spaces").await;
    assert!(arr(&spaces["results"]).is_empty());
    let truth = api.fake.truth();
    assert_eq!(
        (truth.users.count, truth.groups.count, truth.spaces.count),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn same_seed_same_truth_digest() {
    let a = start(FakeConfig::preset(Preset::Small)).await;
    let b = start(FakeConfig::preset(Preset::Small)).await;
    let (ta, tb) = (a.fake.truth(), b.fake.truth());
    assert_eq!(ta.digest, tb.digest);
    assert_eq!(ta, tb);
    let over_http: Truth = a.json("/__fake/truth").await.try_into_truth();
    assert_eq!(over_http, ta);
    let mut other = FakeConfig::preset(Preset::Small);
    other.data.seed = 2;
    let c = start(other).await;
    assert_ne!(c.fake.truth().digest, ta.digest);
}

trait IntoTruth {
    fn try_into_truth(self) -> Truth;
}

impl IntoTruth for Value {
    fn try_into_truth(self) -> Truth {
        serde_json::from_value(self).expect("truth JSON")
    }
}

/// Walks the whole tenant as design §6 describes and compares with the truth.
#[tokio::test]
async fn truth_matches_a_complete_raw_walk() {
    let mut cfg = data(400, 30, 20);
    cfg.data.permissions_per_space = (10, 80);
    let api = start(cfg).await;
    let truth = api.fake.truth();
    let mut users = BTreeSet::new();
    let mut disabled = BTreeSet::new();
    let mut groups = BTreeSet::new();
    let mut memberships = BTreeSet::new();
    let mut start_at = 0;
    loop {
        let page = api
            .json(&format!("/wiki/rest/api/group?limit=200&start={start_at}"))
            .await;
        let rows = arr(&page["results"]).clone();
        start_at += rows.len();
        for g in rows {
            let gid = s(&g["id"]).to_owned();
            groups.insert(gid.clone());
            let mut m_start = 0;
            loop {
                let mp = api
                    .json(&format!(
                        "/wiki/rest/api/group/{gid}/membersByGroupId?limit=200&start={m_start}&expand=operations"
                    ))
                    .await;
                let members = arr(&mp["results"]).clone();
                m_start += members.len();
                for u in members {
                    if u["accountType"] != "atlassian" {
                        continue;
                    }
                    let id = s(&u["accountId"]).to_owned();
                    memberships.insert(format!("group:{gid}:member:user:{id}"));
                    if arr(&u["operations"]).is_empty() {
                        disabled.insert(id.clone());
                    }
                    users.insert(id);
                }
                if mp["_links"].get("next").is_none() {
                    break;
                }
            }
        }
        if page["_links"].get("next").is_none() {
            break;
        }
    }
    let mut s_start = 0;
    loop {
        let page = api
            .json(&format!(
                "/wiki/rest/api/search/user?cql=type=user&limit=100&start={s_start}&expand=operations"
            ))
            .await;
        let rows = arr(&page["results"]).clone();
        if rows.is_empty() {
            break;
        }
        s_start += rows.len();
        for r in rows {
            if r["user"]["accountType"] == "atlassian" {
                users.insert(s(&r["user"]["accountId"]).to_owned());
            }
        }
    }
    let mut spaces = BTreeSet::new();
    let mut grants = BTreeSet::new();
    let mut path = "/wiki/api/v2/spaces?limit=250".to_owned();
    loop {
        let page = api.json(&path).await;
        for sp in arr(&page["results"]) {
            let sid = s(&sp["id"]).to_owned();
            spaces.insert(sid.clone());
            let mut ppath = format!("/wiki/api/v2/spaces/{sid}/permissions?limit=250");
            loop {
                let pp = api.json(&ppath).await;
                for p in arr(&pp["results"]) {
                    let kind = s(&p["principal"]["type"]);
                    let (key, target) =
                        (s(&p["operation"]["key"]), s(&p["operation"]["targetType"]));
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
                    if (kind == "user" || kind == "group")
                        && verbs.contains(&key)
                        && nouns.contains(&target)
                    {
                        grants.insert(format!(
                            "space:{sid}:{key}-{target}:{kind}:{}",
                            s(&p["principal"]["id"])
                        ));
                    }
                }
                match pp["_links"].get("next") {
                    Some(n) => ppath = s(n).to_owned(),
                    None => break,
                }
            }
        }
        match page["_links"].get("next") {
            Some(n) => path = s(n).to_owned(),
            None => break,
        }
    }
    let v = |set: BTreeSet<String>| set.into_iter().collect::<Vec<_>>();
    assert_eq!(v(users), truth.users.ids);
    assert_eq!(v(disabled), truth.users.disabled_ids);
    assert_eq!(v(groups), truth.groups.ids);
    assert_eq!(v(memberships), truth.memberships.ids);
    assert_eq!(v(spaces), truth.spaces.ids);
    assert_eq!(v(grants), truth.space_permissions.ids);
    assert!(truth.users.disabled_count > 0);
    assert!(truth.space_permissions.count > truth.space_permissions.count_excluding_personal);
}
