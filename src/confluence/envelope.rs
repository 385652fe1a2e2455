//! Page envelopes of v1 (offset) and v2 (cursor) list endpoints (§3, §4).

use serde::Deserialize;

/// A v1 page: `{results, start, limit, size, _links{base, context, next}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct V1Page<T> {
    /// The rows; `None` means the answer was not a page at all.
    pub results: Option<Vec<T>>,
    /// Echoed offset.
    pub start: Option<u64>,
    /// Echoed limit (echoed unchanged even when the server capped the page).
    pub limit: Option<u64>,
    /// Rows in this page.
    pub size: Option<u64>,
    /// Rows in the whole collection, sent only when asked for (`search/user` sends the
    /// page size instead).
    #[serde(rename = "totalSize")]
    pub total_size: Option<u64>,
    /// Links.
    #[serde(rename = "_links")]
    pub links: Option<V1Links>,
}

/// `_links` of a v1 page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct V1Links {
    /// `https://{site}.atlassian.net/wiki`.
    pub base: Option<String>,
    /// `/wiki`.
    pub context: Option<String>,
    /// Next page, relative to `base`; absent on the last page or never sent.
    pub next: Option<String>,
}

/// A v2 page: `{results, _links{next, base}}` (+ a `Link` header).
#[derive(Debug, Clone, Deserialize)]
pub struct V2Page<T> {
    /// The rows; `None` means the answer was not a page at all.
    pub results: Option<Vec<T>>,
    /// Links.
    #[serde(rename = "_links")]
    pub links: Option<V2Links>,
}

/// `_links` of a v2 page.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct V2Links {
    /// Next page, starting with `/wiki/`; absent on the last page.
    pub next: Option<String>,
    /// `https://{site}.atlassian.net/wiki`.
    pub base: Option<String>,
}
