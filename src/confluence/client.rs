//! The public client: construction and one method per Confluence call.

use std::fmt;
use std::sync::Arc;

use url::Url;

use super::config::ClientConfig;
use super::errors::ConfluenceError;
use super::http::Transport;
use super::models::{
    CurrentUser, Group, SearchResult, Space, SpacePermission, SpaceRole, SpaceType, TenantInfo,
    User,
};
use super::pager::Pager;
use super::pagination::V1EndRule;
use super::stats::{ClientStats, Route};

/// Page size for `group` (its default; the maximum is undocumented).
pub const GROUPS_PAGE_LIMIT: u32 = 200;
/// Page size for `membersByGroupId`; above 200 the server answers 400.
pub const MEMBERS_PAGE_LIMIT: u32 = 200;
/// Page size for `search/user`; the server silently caps pages at 100.
pub const SEARCH_PAGE_LIMIT: u32 = 100;
/// Page size for v2 lists (1–250).
pub const V2_PAGE_LIMIT: u32 = 250;

/// A Confluence Cloud REST client. Cheap to clone; clones share the connection pool,
/// the in-flight cap, the rate-limit pause and the counters.
#[derive(Clone)]
pub struct ConfluenceClient {
    pub(super) inner: Arc<Transport>,
}

impl fmt::Debug for ConfluenceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfluenceClient")
            .field("root", &self.inner.root().as_str())
            .finish_non_exhaustive()
    }
}

impl ConfluenceClient {
    /// Builds a client. Fails on an unusable base URL or when no process-wide rustls
    /// crypto provider has been installed.
    pub fn new(config: ClientConfig) -> Result<Self, ConfluenceError> {
        Ok(Self {
            inner: Arc::new(Transport::new(&config)?),
        })
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> ClientStats {
        self.inner.stats()
    }

    /// Checks the credentials: `GET /wiki/rest/api/user/current?expand=operations`.
    ///
    /// Only a `known` account with a non-empty `accountId` is accepted: a public site
    /// may answer bogus credentials with the anonymous user (§2.1).
    pub async fn current_user(&self) -> Result<CurrentUser, ConfluenceError> {
        let url = self.url(
            &["wiki", "rest", "api", "user", "current"],
            &[("expand", "operations")],
        )?;
        let user: User = self.inner.get_json(Route::CurrentUser, url).await?.value;
        if user.kind.as_deref() != Some("known") {
            return Err(ConfluenceError::NotAuthenticated {
                reason: format!(
                    "user/current answered with user type `{}`, not `known`",
                    user.kind.as_deref().unwrap_or("")
                ),
            });
        }
        match user.account_id.clone().filter(|id| !id.trim().is_empty()) {
            Some(account_id) => Ok(CurrentUser { account_id, user }),
            None => Err(ConfluenceError::NotAuthenticated {
                reason: "user/current answered without an accountId".into(),
            }),
        }
    }

    /// `GET /_edge/tenant_info` (unauthenticated): tells an existing site from a wrong
    /// one before the credentials are tried. Site hosts only; the gateway has none.
    pub async fn tenant_info(&self) -> Result<TenantInfo, ConfluenceError> {
        let url = self.url(&["_edge", "tenant_info"], &[])?;
        Ok(self.inner.get_json(Route::TenantInfo, url).await?.value)
    }

    /// All groups: `GET /wiki/rest/api/group`, offset pages of 200.
    pub fn groups(&self) -> Result<Pager<Group>, ConfluenceError> {
        let url = self.url(&["wiki", "rest", "api", "group"], &[])?;
        Ok(Pager::v1(
            self.inner.clone(),
            Route::Groups,
            url,
            GROUPS_PAGE_LIMIT,
            V1EndRule::ShortPageWithoutNext,
        ))
    }

    /// A group's members: `GET /wiki/rest/api/group/{id}/membersByGroupId`,
    /// `expand=operations`, offset pages of 200. An unknown id yields no rows.
    pub fn group_members(&self, group_id: &str) -> Result<Pager<User>, ConfluenceError> {
        let url = self.url(
            &["wiki", "rest", "api", "group", group_id, "membersByGroupId"],
            &[("expand", "operations")],
        )?;
        Ok(Pager::v1(
            self.inner.clone(),
            Route::GroupMembers,
            url,
            MEMBERS_PAGE_LIMIT,
            V1EndRule::ShortPageWithoutNext,
        ))
    }

    /// Licensed users from CQL search: `GET /wiki/rest/api/search/user?cql=type=user`,
    /// `expand=operations`, pages of 100 until an empty page (the endpoint never sends
    /// `next`). Each result's user is in [`SearchResult::user`].
    pub fn search_users(&self) -> Result<Pager<SearchResult>, ConfluenceError> {
        let url = self.url(
            &["wiki", "rest", "api", "search", "user"],
            &[("cql", "type=user"), ("expand", "operations")],
        )?;
        Ok(Pager::v1(
            self.inner.clone(),
            Route::SearchUsers,
            url,
            SEARCH_PAGE_LIMIT,
            V1EndRule::EmptyPageOnly,
        ))
    }

    /// Spaces the account can view: `GET /wiki/api/v2/spaces`, cursor pages of 250,
    /// optionally of one type only. Skipping personal spaces is the caller's business.
    pub fn spaces(&self, kind: Option<&SpaceType>) -> Result<Pager<Space>, ConfluenceError> {
        let query: Vec<(&str, &str)> = kind.map(|k| ("type", k.as_str())).into_iter().collect();
        let url = self.url(&["wiki", "api", "v2", "spaces"], &query)?;
        Ok(Pager::v2(
            self.inner.clone(),
            Route::Spaces,
            url,
            V2_PAGE_LIMIT,
        ))
    }

    /// A space's permissions: `GET /wiki/api/v2/spaces/{id}/permissions`, cursor pages
    /// of 250.
    pub fn space_permissions(
        &self,
        space_id: &str,
    ) -> Result<Pager<SpacePermission>, ConfluenceError> {
        let url = self.url(
            &["wiki", "api", "v2", "spaces", space_id, "permissions"],
            &[],
        )?;
        Ok(Pager::v2(
            self.inner.clone(),
            Route::SpacePermissions,
            url,
            V2_PAGE_LIMIT,
        ))
    }

    /// Space roles: `GET /wiki/api/v2/space-roles` (optionally for one space), cursor
    /// pages of 250. A 404 means the site has no roles: the walk ends with
    /// [`super::StopReason::NotAvailable`] and no rows.
    pub fn space_roles(&self, space_id: Option<&str>) -> Result<Pager<SpaceRole>, ConfluenceError> {
        let query: Vec<(&str, &str)> = space_id.map(|id| ("space-id", id)).into_iter().collect();
        let url = self.url(&["wiki", "api", "v2", "space-roles"], &query)?;
        Ok(Pager::v2(self.inner.clone(), Route::SpaceRoles, url, V2_PAGE_LIMIT).absent_is_empty())
    }

    /// Builds `root/segments...?query`, percent-encoding every segment so that an id
    /// from a response can never change the path.
    pub(super) fn url(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url, ConfluenceError> {
        let mut url = self.inner.root().clone();
        url.path_segments_mut()
            .map_err(|()| ConfluenceError::InvalidConfig {
                reason: "base URL cannot take a path".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }
}
