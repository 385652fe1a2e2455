//! Request counters, keyed by route template so no real id ever becomes a label.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every call the client makes. The template is fixed per route, which keeps ids out of
/// logs, errors and metrics by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    CurrentUser,
    TenantInfo,
    Groups,
    GroupMembers,
    SearchUsers,
    Spaces,
    SpacePermissions,
    SpaceRoles,
    GroupById,
    User,
    UserGroups,
    AddMember,
    RemoveMember,
}

impl Route {
    const ALL: [Route; 13] = [
        Route::CurrentUser,
        Route::TenantInfo,
        Route::Groups,
        Route::GroupMembers,
        Route::SearchUsers,
        Route::Spaces,
        Route::SpacePermissions,
        Route::SpaceRoles,
        Route::GroupById,
        Route::User,
        Route::UserGroups,
        Route::AddMember,
        Route::RemoveMember,
    ];

    /// HTTP method.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Route::AddMember => "POST",
            Route::RemoveMember => "DELETE",
            _ => "GET",
        }
    }

    /// Whether repeating the request after a lost answer is harmless. An add is not
    /// retried blindly: the caller re-reads the membership first (§6).
    pub(crate) fn idempotent(self) -> bool {
        self != Route::AddMember
    }

    /// Path template, ids as `{id}`.
    pub(crate) fn template(self) -> &'static str {
        match self {
            Route::CurrentUser => "/wiki/rest/api/user/current",
            Route::TenantInfo => "/_edge/tenant_info",
            Route::Groups => "/wiki/rest/api/group",
            Route::GroupMembers => "/wiki/rest/api/group/{id}/membersByGroupId",
            Route::SearchUsers => "/wiki/rest/api/search/user",
            Route::Spaces => "/wiki/api/v2/spaces",
            Route::SpacePermissions => "/wiki/api/v2/spaces/{id}/permissions",
            Route::SpaceRoles => "/wiki/api/v2/space-roles",
            Route::GroupById => "/wiki/rest/api/group/by-id",
            Route::User => "/wiki/rest/api/user",
            Route::UserGroups => "/wiki/rest/api/user/memberof",
            Route::AddMember | Route::RemoveMember => "/wiki/rest/api/group/userByGroupId",
        }
    }

    /// How many routes there are.
    pub(crate) const COUNT: usize = Route::ALL.len();

    /// A dense index, for per-route tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP attempts per `"METHOD /route/{template}"`, retries included.
    pub requests_by_route: BTreeMap<String, u64>,
    /// Attempts repeated after a failure (any cause).
    pub retries: u64,
    /// 429 answers (and 503s with `Retry-After`, which are handled alike).
    pub rate_limited_429: u64,
    /// 5xx answers, connection failures, timeouts and broken bodies.
    pub transient_errors: u64,
    /// Answers carrying `X-RateLimit-NearLimit: true`.
    pub near_limit: u64,
}

/// Live counters shared by every clone of a client.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: [AtomicU64; Route::ALL.len()],
    retries: AtomicU64,
    rate_limited: AtomicU64,
    transient: AtomicU64,
    near_limit: AtomicU64,
}

impl Counters {
    pub(crate) fn request(&self, route: Route) {
        self.requests[route.index()].fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn transient(&self) {
        self.transient.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn near_limit(&self) {
        self.near_limit.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ClientStats {
        let requests_by_route = Route::ALL
            .iter()
            .filter_map(|&r| {
                let n = self.requests[r.index()].load(Ordering::Relaxed);
                (n > 0).then(|| (format!("{} {}", r.method(), r.template()), n))
            })
            .collect();
        ClientStats {
            requests_by_route,
            retries: self.retries.load(Ordering::Relaxed),
            rate_limited_429: self.rate_limited.load(Ordering::Relaxed),
            transient_errors: self.transient.load(Ordering::Relaxed),
            near_limit: self.near_limit.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_keys_are_templates_and_indices_are_distinct() {
        let c = Counters::default();
        c.request(Route::GroupMembers);
        c.request(Route::GroupMembers);
        c.request(Route::Spaces);
        c.retry();
        let s = c.snapshot();
        assert_eq!(
            s.requests_by_route
                .get("GET /wiki/rest/api/group/{id}/membersByGroupId"),
            Some(&2)
        );
        assert_eq!(s.requests_by_route.get("GET /wiki/api/v2/spaces"), Some(&1));
        assert_eq!(s.requests_by_route.len(), 2);
        assert_eq!(s.retries, 1);
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
