//! Pure pagination rules (§5): when to stop, how to find the next cursor.

use std::collections::HashSet;

use url::Url;

/// Why a walk ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A page had no rows (v1 end marker; `search/user` never sends `next`).
    EmptyPage,
    /// v1 `group`/`membersByGroupId`: no `next` and fewer rows than asked for.
    LastPage,
    /// v2: no `next` link in the body or the `Link` header.
    NoNextLink,
    /// A page began with an id already seen as a page's first id (or a cursor came
    /// back again): the server is not advancing, so the walk stops instead of looping.
    RepeatedPage,
    /// The endpoint is not available on this site (space roles answer 404 when the
    /// site is not entitled); the walk yields nothing.
    NotAvailable,
}

/// How a v1 offset walk decides it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum V1EndRule {
    /// Stop only on an empty page (`search/user`: silent cap, never a `next`).
    EmptyPageOnly,
    /// Also stop when `next` is absent and the page is short (`group`,
    /// `membersByGroupId`, which send `next` while rows remain).
    ShortPageWithoutNext,
}

/// Decides whether a v1 walk continues after a page; the caller then advances `start`
/// by `rows` — never by `limit`, since pages can be silently capped (§5 quirk 1).
pub(crate) fn v1_stop(
    rule: V1EndRule,
    limit: u32,
    rows: usize,
    has_next: bool,
) -> Option<StopReason> {
    if rows == 0 {
        return Some(StopReason::EmptyPage);
    }
    match rule {
        V1EndRule::ShortPageWithoutNext if !has_next && rows < limit as usize => {
            Some(StopReason::LastPage)
        }
        _ => None,
    }
}

/// Remembers each page's first id to stop a walk that does not advance.
#[derive(Debug, Default)]
pub(crate) struct RepeatGuard {
    seen: HashSet<String>,
}

impl RepeatGuard {
    /// Records `first_id`; returns true when it was already a page's first id.
    pub(crate) fn repeats(&mut self, first_id: Option<&str>) -> bool {
        match first_id {
            Some(id) => !self.seen.insert(id.to_owned()),
            None => false,
        }
    }
}

/// Resolves a `next` link (§5 join rule): absolute URLs as they are; `/wiki/...` onto
/// the API root (site origin or gateway root); other `/...` onto `_links.base`
/// (`.../wiki`), or onto the root's `/wiki` when `base` is missing.
pub(crate) fn join_next(
    api_root: &Url,
    links_base: Option<&str>,
    next: &str,
) -> Result<Url, url::ParseError> {
    if let Ok(absolute) = Url::parse(next) {
        return Ok(absolute);
    }
    let root = api_root.as_str().trim_end_matches('/');
    let joined = if next == "/wiki" || next.starts_with("/wiki/") || next.starts_with("/wiki?") {
        format!("{root}{next}")
    } else {
        let base = links_base
            .map(|b| b.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("{root}/wiki"));
        let sep = if next.starts_with('/') { "" } else { "/" };
        format!("{base}{sep}{next}")
    };
    Url::parse(&joined)
}

/// The `rel="next"` target of a `Link` header, if any.
pub(crate) fn link_header_next(value: &str) -> Option<String> {
    // Entries are `<target>; param; param`, separated by commas; targets may contain
    // commas only inside the angle brackets, so split on `<` boundaries.
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let close = after.find('>')?;
        let target = &after[..close];
        let params_end = after[close..].find('<').map_or(after.len(), |i| close + i);
        let params = &after[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            let Some((key, val)) = p.split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && val
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &after[params_end..];
    }
    None
}

/// The cursor to request next on a v2 walk, from `_links.next` or else the `Link`
/// header. `Ok(None)` ends the walk; a `next` without a `cursor` parameter is an error
/// (the walk would otherwise restart from the first page).
pub(crate) fn v2_next_cursor(
    api_root: &Url,
    body_next: Option<&str>,
    links_base: Option<&str>,
    link_header: Option<&str>,
) -> Result<Option<String>, String> {
    let next = match body_next.filter(|n| !n.is_empty()) {
        Some(n) => n.to_owned(),
        None => match link_header.and_then(link_header_next) {
            Some(n) => n,
            None => return Ok(None),
        },
    };
    // The cursor is taken out and the request rebuilt from the client's own root, so a
    // `next` naming another host can never receive the credentials.
    let url =
        join_next(api_root, links_base, &next).map_err(|e| format!("unusable next link: {e}"))?;
    url.query_pairs()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| Some(v.into_owned()))
        .filter(|c| c.as_deref().is_some_and(|c| !c.is_empty()))
        .ok_or_else(|| "next link without a cursor".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("static test url")
    }

    #[test]
    fn v1_stop_rules_follow_section_5() {
        use StopReason::*;
        use V1EndRule::*;
        // (rule, limit, rows, has_next) -> expected
        let table = [
            (ShortPageWithoutNext, 200, 0, true, Some(EmptyPage)),
            (ShortPageWithoutNext, 200, 0, false, Some(EmptyPage)),
            (ShortPageWithoutNext, 200, 17, false, Some(LastPage)),
            (ShortPageWithoutNext, 200, 200, false, None), // full page, no next: one more ask
            (ShortPageWithoutNext, 200, 17, true, None),   // short page is not the end
            (EmptyPageOnly, 100, 100, false, None),
            (EmptyPageOnly, 100, 3, false, None), // search/user: only empty ends it
            (EmptyPageOnly, 100, 0, false, Some(EmptyPage)),
        ];
        for (rule, limit, rows, next, want) in table {
            assert_eq!(
                v1_stop(rule, limit, rows, next),
                want,
                "{rule:?} {limit} {rows} {next}"
            );
        }
    }

    #[test]
    fn repeat_guard_trips_on_a_seen_first_id() {
        let mut g = RepeatGuard::default();
        assert!(!g.repeats(Some("a")));
        assert!(!g.repeats(Some("b")));
        assert!(!g.repeats(None));
        assert!(g.repeats(Some("a")));
    }

    #[test]
    fn join_next_follows_the_join_rule() {
        let site = url("https://acme.atlassian.net");
        let gw = url("https://api.atlassian.com/ex/confluence/c1d");
        let base = Some("https://acme.atlassian.net/wiki");
        let cases = [
            // v1: relative to /wiki, joined onto _links.base
            (
                &site,
                base,
                "/rest/api/group?next=true&limit=5&start=5",
                "https://acme.atlassian.net/wiki/rest/api/group?next=true&limit=5&start=5",
            ),
            (
                &site,
                None,
                "/rest/api/group?start=5",
                "https://acme.atlassian.net/wiki/rest/api/group?start=5",
            ),
            (
                &gw,
                Some("https://api.atlassian.com/ex/confluence/c1d/wiki"),
                "/rest/api/group?start=5",
                "https://api.atlassian.com/ex/confluence/c1d/wiki/rest/api/group?start=5",
            ),
            // v2: starts with /wiki, joined onto the root (origin or gateway)
            (
                &site,
                base,
                "/wiki/api/v2/spaces?limit=1&cursor=abc",
                "https://acme.atlassian.net/wiki/api/v2/spaces?limit=1&cursor=abc",
            ),
            (
                &gw,
                None,
                "/wiki/api/v2/spaces?cursor=abc",
                "https://api.atlassian.com/ex/confluence/c1d/wiki/api/v2/spaces?cursor=abc",
            ),
            // absolute stays absolute
            (
                &site,
                base,
                "https://other.example/wiki/x",
                "https://other.example/wiki/x",
            ),
        ];
        for (root, base, next, want) in cases {
            assert_eq!(
                join_next(root, base, next).map(String::from).as_deref(),
                Ok(want),
                "{next}"
            );
        }
    }

    #[test]
    fn link_header_next_is_found_among_other_rels() {
        let h = r#"</wiki/api/v2/spaces?cursor=abc%2C1>; rel="next", <https://acme.atlassian.net/wiki>; rel="base""#;
        assert_eq!(
            link_header_next(h).as_deref(),
            Some("/wiki/api/v2/spaces?cursor=abc%2C1")
        );
        let h =
            r#"<https://acme.atlassian.net/wiki>; rel="base", </wiki/api/v2/x?cursor=z>; rel=next"#;
        assert_eq!(
            link_header_next(h).as_deref(),
            Some("/wiki/api/v2/x?cursor=z")
        );
        assert_eq!(link_header_next(r#"<https://a/wiki>; rel="base""#), None);
        assert_eq!(link_header_next(""), None);
        assert_eq!(link_header_next("garbage"), None);
    }

    #[test]
    fn v2_cursor_comes_from_body_then_link_header() {
        let root = url("https://acme.atlassian.net");
        let from_body = v2_next_cursor(
            &root,
            Some("/wiki/api/v2/spaces?limit=250&cursor=b%3D%3D"),
            None,
            None,
        );
        assert_eq!(from_body, Ok(Some("b==".to_owned())));
        let from_link = v2_next_cursor(
            &root,
            None,
            None,
            Some(r#"</wiki/api/v2/spaces?cursor=L1>; rel="next""#),
        );
        assert_eq!(from_link, Ok(Some("L1".to_owned())));
        assert_eq!(v2_next_cursor(&root, None, None, None), Ok(None));
        assert_eq!(v2_next_cursor(&root, Some(""), None, None), Ok(None));
        assert!(v2_next_cursor(&root, Some("/wiki/api/v2/spaces?limit=5"), None, None).is_err());
    }
}
