//! The fewest requests a correct client needs to read the whole tenant, per collection,
//! so benchmarks can tell "every page fetched once" from waste.
//!
//! A v1 offset collection needs one page per `limit` rows, plus one more when the last
//! page is exactly full (Confluence may omit `next` on it, so only a short or empty page
//! proves the end) — and `search/user`, which never sends `next` and caps pages at 100,
//! always needs its closing empty page. A v2 cursor collection needs one page per
//! `limit` rows (`next` is reliable), at least one.

use serde::{Deserialize, Serialize};

use crate::model::Tenant;
use crate::truth::searchable;

/// Page sizes the client uses.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PageLimits {
    pub groups: usize,
    pub members: usize,
    pub search: usize,
    pub spaces: usize,
    pub permissions: usize,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            groups: 200,
            members: 200,
            search: 100,
            spaces: 250,
            permissions: 250,
        }
    }
}

/// Requests needed per collection (`GET /__fake/pages`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PagesNeeded {
    pub groups: u64,
    pub members: u64,
    pub search: u64,
    pub spaces: u64,
    pub permissions: u64,
    pub total: u64,
}

fn v1_pages(rows: usize, limit: usize) -> u64 {
    let limit = limit.max(1);
    (rows / limit + 1) as u64
}

fn v2_pages(rows: usize, limit: usize) -> u64 {
    rows.div_ceil(limit.max(1)).max(1) as u64
}

pub fn pages_needed(
    tenant: &Tenant,
    limits: PageLimits,
    search_page_cap: usize,
    search_ceiling: usize,
    hide_suspended: bool,
    space_visible: &dyn Fn(&str) -> bool,
) -> PagesNeeded {
    let members: u64 = tenant
        .groups
        .iter()
        .map(|g| {
            let listed = g
                .members
                .iter()
                .filter_map(|&m| tenant.users.get(m as usize))
                .filter(|u| !(hide_suspended && u.suspended()))
                .count();
            v1_pages(listed, limits.members)
        })
        .sum();
    let searchable = tenant
        .users
        .iter()
        .filter(|u| searchable(u, "none"))
        .count()
        .min(search_ceiling);
    let search_page = limits.search.min(search_page_cap.max(1));
    let visible: Vec<_> = tenant
        .spaces
        .iter()
        .filter(|s| space_visible(&s.key))
        .collect();
    let permissions: u64 = visible
        .iter()
        .map(|s| v2_pages(s.permissions.len(), limits.permissions))
        .sum();
    let mut pages = PagesNeeded {
        groups: v1_pages(tenant.groups.len(), limits.groups),
        members,
        // Never a `next` link: the closing empty page is always needed.
        search: (searchable.div_ceil(search_page) + 1) as u64,
        spaces: v2_pages(visible.len(), limits.spaces),
        permissions,
        total: 0,
    };
    pages.total = pages.groups + pages.members + pages.search + pages.spaces + pages.permissions;
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_needs_a_closing_page_only_when_the_last_is_full() {
        assert_eq!(v1_pages(0, 200), 1);
        assert_eq!(v1_pages(199, 200), 1);
        assert_eq!(v1_pages(200, 200), 2);
        assert_eq!(v1_pages(450, 200), 3);
    }

    #[test]
    fn v2_needs_at_least_one_page() {
        assert_eq!(v2_pages(0, 250), 1);
        assert_eq!(v2_pages(250, 250), 1);
        assert_eq!(v2_pages(251, 250), 2);
    }
}
