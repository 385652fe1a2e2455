//! Pure pagination rules (§5): when to stop, how to find the next cursor, and when a
//! walk has stopped making progress.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

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

/// Consecutive pages without a single new id that a walk tolerates. Offsets can shift
/// while groups change (§5 quirk 6), which repeats a few rows, but a whole page of known
/// rows several times in a row means the server is not advancing.
pub(crate) const MAX_STALE_PAGES: u32 = 3;

/// Why a walk is judged not to advance. Ending such a walk early would present a partial
/// listing as complete, so the caller fails it instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stuck {
    /// The v2 cursor or the v1 `next` link of this page was already sent in this walk.
    RepeatedLink,
    /// This many pages in a row brought no id the walk had not already seen.
    NoNewRows { pages: u32 },
    /// The walk has far more rows than the largest `totalSize` the server announced.
    BeyondTotal { rows: u64, total: u64 },
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RepeatedLink => f.write_str("pagination is not advancing: a next link came back"),
            Self::NoNewRows { pages } => write!(
                f,
                "pagination is not advancing: {pages} pages in a row brought no new row"
            ),
            Self::BeyondTotal { rows, total } => write!(
                f,
                "pagination is not advancing: {rows} rows walked but the server announced {total}"
            ),
        }
    }
}

/// What one page of a continuing walk shows about progress.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PageFacts<'a> {
    /// Rows in the page.
    pub(crate) rows: usize,
    /// The v2 cursor or v1 `next` link that leads on, when the server sent one.
    pub(crate) link: Option<&'a str>,
    /// The page's `totalSize`, where the route means the walk's total by it.
    pub(crate) total: Option<u64>,
}

/// Watches one walk for the signs of a server that does not advance (§5): a link sent
/// twice, pages without a new id, more rows than announced. Only the pages after which
/// the walk continues are shown to it; the page that ends a walk needs no judging.
///
/// Ids and links are kept as keyed hashes: memory stays at a few bytes per row however
/// long the ids a server sends, and the random key keeps a server from choosing
/// collisions. A collision could only make one row look already seen.
#[derive(Debug)]
pub(crate) struct WalkProgress {
    hasher: RandomState,
    ids: HashSet<u64>,
    links: HashSet<u64>,
    limit: u32,
    rows: u64,
    stale_pages: u32,
    max_total: Option<u64>,
}

impl WalkProgress {
    /// A fresh walk asking for pages of `limit` rows.
    pub(crate) fn new(limit: u32) -> Self {
        Self {
            hasher: RandomState::new(),
            ids: HashSet::new(),
            links: HashSet::new(),
            limit,
            rows: 0,
            stale_pages: 0,
            max_total: None,
        }
    }

    /// Records a page after which the walk would continue; `ids` are its rows' ids
    /// (rows without one bring nothing verifiable). An error means the walk must fail.
    pub(crate) fn after_page<'i>(
        &mut self,
        facts: PageFacts<'_>,
        ids: impl IntoIterator<Item = Option<&'i str>>,
    ) -> Result<(), Stuck> {
        let mut new_ids = false;
        for id in ids.into_iter().flatten() {
            new_ids |= self.ids.insert(self.hasher.hash_one(id));
        }
        self.rows = self.rows.saturating_add(facts.rows as u64);
        if let Some(link) = facts.link
            && !self.links.insert(self.hasher.hash_one(link))
        {
            return Err(Stuck::RepeatedLink);
        }
        self.stale_pages = if new_ids { 0 } else { self.stale_pages + 1 };
        if self.stale_pages >= MAX_STALE_PAGES {
            return Err(Stuck::NoNewRows {
                pages: self.stale_pages,
            });
        }
        if let Some(total) = facts.total {
            self.max_total = Some(self.max_total.map_or(total, |t| t.max(total)));
        }
        // Rows shift while the walk runs, so the bound is generous: twice the largest
        // announced total plus one page.
        if let Some(total) = self.max_total
            && self.rows
                > total
                    .saturating_mul(2)
                    .saturating_add(u64::from(self.limit))
        {
            return Err(Stuck::BeyondTotal {
                rows: self.rows,
                total,
            });
        }
        Ok(())
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

    fn page(rows: usize, link: Option<&str>) -> PageFacts<'_> {
        PageFacts {
            rows,
            link,
            total: None,
        }
    }

    #[test]
    fn a_walk_that_advances_is_never_stuck() {
        let mut w = WalkProgress::new(2);
        for n in 0..100 {
            let ids = [format!("a{n}"), format!("b{n}")];
            let link = format!("/rest/api/group?next=true&limit=2&start={}", 2 * n + 2);
            assert_eq!(
                w.after_page(page(2, Some(&link)), ids.iter().map(|s| Some(s.as_str()))),
                Ok(()),
                "page {n}"
            );
        }
    }

    #[test]
    fn a_link_sent_twice_is_stuck_even_with_new_rows() {
        let mut w = WalkProgress::new(250);
        assert_eq!(w.after_page(page(1, Some("c1")), [Some("1")]), Ok(()));
        assert_eq!(w.after_page(page(1, Some("c2")), [Some("2")]), Ok(()));
        assert_eq!(
            w.after_page(page(1, Some("c1")), [Some("3")]),
            Err(Stuck::RepeatedLink)
        );
    }

    #[test]
    fn pages_without_a_new_id_are_tolerated_only_a_few_times_in_a_row() {
        let mut w = WalkProgress::new(200);
        assert_eq!(w.after_page(page(1, None), [Some("x")]), Ok(()));
        // A shifted offset can repeat rows; one new id resets the count.
        assert_eq!(w.after_page(page(1, None), [Some("x")]), Ok(()));
        assert_eq!(w.after_page(page(2, None), [Some("x"), Some("y")]), Ok(()));
        for _ in 1..MAX_STALE_PAGES {
            assert_eq!(w.after_page(page(1, None), [Some("y")]), Ok(()));
        }
        assert_eq!(
            w.after_page(page(1, None), [Some("x")]),
            Err(Stuck::NoNewRows {
                pages: MAX_STALE_PAGES
            })
        );
    }

    #[test]
    fn rows_without_ids_and_empty_pages_bring_nothing_new() {
        let mut w = WalkProgress::new(25);
        let mut last = Ok(());
        for n in 0..MAX_STALE_PAGES {
            let rows = if n % 2 == 0 { 0 } else { 3 };
            last = w.after_page(page(rows, None), vec![None; rows]);
        }
        assert_eq!(
            last,
            Err(Stuck::NoNewRows {
                pages: MAX_STALE_PAGES
            })
        );
    }

    #[test]
    fn a_walk_far_beyond_the_announced_total_is_stuck() {
        let mut w = WalkProgress::new(10);
        let total = Some(5);
        let mut n = 0u64;
        let mut next_page = |w: &mut WalkProgress| {
            let ids: Vec<String> = (0..10).map(|i| format!("{n}-{i}")).collect();
            n += 1;
            w.after_page(
                PageFacts {
                    rows: 10,
                    link: None,
                    total,
                },
                ids.iter().map(|s| Some(s.as_str())),
            )
        };
        // 2 × 5 + 10 = 20 rows are allowed for shifting rows.
        assert_eq!(next_page(&mut w), Ok(()));
        assert_eq!(next_page(&mut w), Ok(()));
        assert_eq!(
            next_page(&mut w),
            Err(Stuck::BeyondTotal { rows: 30, total: 5 })
        );
    }

    #[test]
    fn stuck_messages_say_pagination_is_not_advancing() {
        for stuck in [
            Stuck::RepeatedLink,
            Stuck::NoNewRows { pages: 3 },
            Stuck::BeyondTotal { rows: 9, total: 1 },
        ] {
            assert!(
                stuck.to_string().starts_with("pagination is not advancing"),
                "{stuck}"
            );
        }
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
