//! Page walkers: one request per page, rows handed to the caller page by page so memory
//! stays bounded however large the tenant.

use std::sync::Arc;

use futures::Stream;
use serde::de::DeserializeOwned;
use url::Url;

use super::envelope::{V1Page, V2Page};
use super::errors::ConfluenceError;
use super::http::Transport;
use super::models::{Group, SearchResult, Space, SpacePermission, SpaceRole, User};
use super::pagination::{PageFacts, StopReason, V1EndRule, WalkProgress, v1_stop, v2_next_cursor};
use super::stats::Route;

/// A row type that can be paged: it names the id used to detect a stuck walk.
pub trait PageRow: DeserializeOwned + Send + 'static {
    /// The row's identity (group id, accountId, space id, ...), if present.
    fn row_key(&self) -> Option<&str>;
}

impl PageRow for Group {
    fn row_key(&self) -> Option<&str> {
        self.id.as_deref()
    }
}
impl PageRow for User {
    fn row_key(&self) -> Option<&str> {
        self.account_id.as_deref()
    }
}
impl PageRow for SearchResult {
    fn row_key(&self) -> Option<&str> {
        self.user.as_ref().and_then(|u| u.account_id.as_deref())
    }
}
impl PageRow for Space {
    fn row_key(&self) -> Option<&str> {
        self.id.as_deref()
    }
}
impl PageRow for SpacePermission {
    fn row_key(&self) -> Option<&str> {
        self.id.as_deref()
    }
}
impl PageRow for SpaceRole {
    fn row_key(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

/// How the pager asks for the next page.
#[derive(Debug)]
enum Position {
    /// v1: `start` advances by the rows actually returned.
    Offset { start: u64, rule: V1EndRule },
    /// v2: opaque cursor from the previous page.
    Cursor { cursor: Option<String> },
}

/// Summary of a finished walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkSummary {
    /// Requests made (one per page, retries not counted).
    pub pages: usize,
    /// Rows handed to the caller.
    pub rows: u64,
    /// Why the walk ended.
    pub stop: StopReason,
}

/// Walks one collection page by page. Created by the client's list methods.
pub struct Pager<R> {
    transport: Arc<Transport>,
    route: Route,
    /// The request without paging parameters.
    url: Url,
    limit: u32,
    position: Position,
    /// 404 on the first page means "not available" instead of an error.
    absent_is_empty: bool,
    progress: WalkProgress,
    pages: usize,
    rows: u64,
    stop: Option<StopReason>,
    _rows: std::marker::PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for Pager<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No URL: it may hold ids; the route template says enough.
        f.debug_struct("Pager")
            .field("route", &self.route.template())
            .field("limit", &self.limit)
            .field("pages", &self.pages)
            .field("rows", &self.rows)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl<R: PageRow> Pager<R> {
    pub(crate) fn v1(
        transport: Arc<Transport>,
        route: Route,
        url: Url,
        limit: u32,
        rule: V1EndRule,
    ) -> Self {
        Self::new(
            transport,
            route,
            url,
            limit,
            Position::Offset { start: 0, rule },
        )
    }

    pub(crate) fn v2(transport: Arc<Transport>, route: Route, url: Url, limit: u32) -> Self {
        Self::new(
            transport,
            route,
            url,
            limit,
            Position::Cursor { cursor: None },
        )
    }

    fn new(
        transport: Arc<Transport>,
        route: Route,
        url: Url,
        limit: u32,
        position: Position,
    ) -> Self {
        Self {
            transport,
            route,
            url,
            limit,
            position,
            absent_is_empty: false,
            progress: WalkProgress::new(limit),
            pages: 0,
            rows: 0,
            stop: None,
            _rows: std::marker::PhantomData,
        }
    }

    pub(crate) fn absent_is_empty(mut self) -> Self {
        self.absent_is_empty = true;
        self
    }

    /// Why the walk ended, once it has.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }

    /// Pages requested so far.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// The next non-empty page, or `None` when the walk is over. After an error the
    /// same page may be asked for again.
    ///
    /// A walk that stops advancing (a link sent twice, pages without new rows, far more
    /// rows than announced, the page cap) is an error, never an early end: a partial
    /// listing must not pass for a complete one.
    pub async fn next_page(&mut self) -> Result<Option<Vec<R>>, ConfluenceError> {
        while self.stop.is_none() {
            if self.pages >= self.transport.max_pages {
                return Err(ConfluenceError::PageLimitExceeded {
                    route: self.route.template(),
                    pages: self.transport.max_pages,
                });
            }
            self.pages += 1;
            let rows = match self.position {
                Position::Offset { .. } => self.fetch_v1().await?,
                Position::Cursor { .. } => self.fetch_v2().await?,
            };
            let Some(rows) = rows else { continue };
            if !rows.is_empty() {
                self.rows += rows.len() as u64;
                return Ok(Some(rows));
            }
        }
        Ok(None)
    }

    /// Feeds every page to `on_page`, stopping at the first error.
    pub async fn for_each_page<E, F>(mut self, mut on_page: F) -> Result<WalkSummary, E>
    where
        E: From<ConfluenceError>,
        F: FnMut(Vec<R>) -> Result<(), E>,
    {
        while let Some(rows) = self.next_page().await? {
            on_page(rows)?;
        }
        Ok(WalkSummary {
            pages: self.pages,
            rows: self.rows,
            stop: self.stop.unwrap_or(StopReason::EmptyPage),
        })
    }

    /// The walk as a stream of pages.
    pub fn into_stream(self) -> impl Stream<Item = Result<Vec<R>, ConfluenceError>> + Send {
        futures::stream::try_unfold(self, |mut pager| async move {
            Ok(pager.next_page().await?.map(|rows| (rows, pager)))
        })
    }

    /// Fetches one v1 page; `Ok(None)` never happens here but keeps both arms alike.
    async fn fetch_v1(&mut self) -> Result<Option<Vec<R>>, ConfluenceError> {
        let Position::Offset { start, rule } = self.position else {
            return Ok(None);
        };
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("start", &start.to_string())
            .append_pair("limit", &self.limit.to_string());
        let page = match self.transport.get_json::<V1Page<R>>(self.route, url).await {
            Ok(fetched) => fetched.value,
            Err(e) => return self.absent_or(e),
        };
        let rows = self.results(page.results)?;
        let next = page
            .links
            .as_ref()
            .and_then(|l| l.next.as_deref())
            .filter(|n| !n.is_empty());
        // `next` is only a signal: its `start` can under-count (§5 quirk 3), so the
        // offset is always our own `start + rows`.
        self.stop = v1_stop(rule, self.limit, rows.len(), next.is_some());
        if self.stop.is_none() {
            // `search/user` echoes the page size as `totalSize`; only the routes that
            // end on a short page mean the walk's total by it.
            let total = match rule {
                V1EndRule::ShortPageWithoutNext => page.total_size,
                V1EndRule::EmptyPageOnly => None,
            };
            let facts = PageFacts {
                rows: rows.len(),
                link: next,
                total,
            };
            self.check_progress(facts, &rows)?;
        }
        self.position = Position::Offset {
            start: start + rows.len() as u64,
            rule,
        };
        Ok(Some(rows))
    }

    async fn fetch_v2(&mut self) -> Result<Option<Vec<R>>, ConfluenceError> {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &self.limit.to_string());
            if let Position::Cursor {
                cursor: Some(c), ..
            } = &self.position
            {
                q.append_pair("cursor", c);
            }
        }
        let fetched = match self.transport.get_json::<V2Page<R>>(self.route, url).await {
            Ok(fetched) => fetched,
            Err(e) => return self.absent_or(e),
        };
        let links = fetched.value.links.unwrap_or_default();
        let link_header = fetched
            .headers
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok());
        let next = v2_next_cursor(
            self.transport.root(),
            links.next.as_deref(),
            links.base.as_deref(),
            link_header,
        )
        .map_err(|detail| self.malformed(detail))?;
        let rows = self.results(fetched.value.results)?;
        match next {
            None => self.stop = Some(StopReason::NoNextLink),
            Some(c) => {
                let facts = PageFacts {
                    rows: rows.len(),
                    link: Some(&c),
                    total: None,
                };
                self.check_progress(facts, &rows)?;
                self.position = Position::Cursor { cursor: Some(c) };
            }
        }
        Ok(Some(rows))
    }

    /// Fails the walk when the page after which it would continue shows no progress.
    fn check_progress(&mut self, facts: PageFacts<'_>, rows: &[R]) -> Result<(), ConfluenceError> {
        self.progress
            .after_page(facts, rows.iter().map(PageRow::row_key))
            .map_err(|stuck| self.malformed(format!("{stuck} after {} pages", self.pages)))
    }

    fn results(&self, results: Option<Vec<R>>) -> Result<Vec<R>, ConfluenceError> {
        results.ok_or_else(|| self.malformed("page without `results`".into()))
    }

    fn malformed(&self, detail: String) -> ConfluenceError {
        ConfluenceError::Malformed {
            method: self.route.method(),
            route: self.route.template(),
            detail,
        }
    }

    fn absent_or(&mut self, e: ConfluenceError) -> Result<Option<Vec<R>>, ConfluenceError> {
        if self.absent_is_empty && self.pages == 1 && matches!(e, ConfluenceError::NotFound(_)) {
            self.stop = Some(StopReason::NotAvailable);
            return Ok(Some(Vec::new()));
        }
        Err(e)
    }
}
