//! Group membership of one user: look-ups by id and the two writes (add, remove) that
//! just-in-time grants need. Writes need a site administrator's credentials.

use serde_json::json;

use super::client::ConfluenceClient;
use super::envelope::V1Page;
use super::errors::ConfluenceError;
use super::models::{Group, User};
use super::stats::Route;

/// Page size of `user/memberof` (its maximum).
const MEMBER_OF_PAGE_LIMIT: usize = 200;

impl ConfluenceClient {
    /// One group by id: `GET /wiki/rest/api/group/by-id?id=`. An unknown id is
    /// [`ConfluenceError::NotFound`].
    pub async fn group_by_id(&self, group_id: &str) -> Result<Group, ConfluenceError> {
        let url = self.url(
            &["wiki", "rest", "api", "group", "by-id"],
            &[("id", group_id)],
        )?;
        Ok(self.inner.get_json(Route::GroupById, url).await?.value)
    }

    /// One user by account id: `GET /wiki/rest/api/user?accountId=&expand=operations`.
    /// Deactivated accounts are returned too; an unknown id is
    /// [`ConfluenceError::NotFound`] (some sites answer 400).
    pub async fn user_by_account_id(&self, account_id: &str) -> Result<User, ConfluenceError> {
        let url = self.url(
            &["wiki", "rest", "api", "user"],
            &[("accountId", account_id), ("expand", "operations")],
        )?;
        Ok(self.inner.get_json(Route::User, url).await?.value)
    }

    /// Whether the user is a member of the group, from the user's side
    /// (`GET /wiki/rest/api/user/memberof`): one short walk instead of the group's
    /// whole member list. The endpoint never sends `next`, so the walk ends at the
    /// first page shorter than the limit.
    pub async fn is_member(
        &self,
        group_id: &str,
        account_id: &str,
    ) -> Result<bool, ConfluenceError> {
        let limit = MEMBER_OF_PAGE_LIMIT.to_string();
        let mut start = 0usize;
        for _ in 0..self.inner.max_pages {
            let offset = start.to_string();
            let url = self.url(
                &["wiki", "rest", "api", "user", "memberof"],
                &[
                    ("accountId", account_id),
                    ("start", &offset),
                    ("limit", &limit),
                ],
            )?;
            let page: V1Page<Group> = self.inner.get_json(Route::UserGroups, url).await?.value;
            let groups = page.results.ok_or_else(|| ConfluenceError::Malformed {
                method: Route::UserGroups.method(),
                route: Route::UserGroups.template(),
                detail: "the answer has no `results`".into(),
            })?;
            if groups.iter().any(|g| g.id.as_deref() == Some(group_id)) {
                return Ok(true);
            }
            if groups.len() < MEMBER_OF_PAGE_LIMIT {
                return Ok(false);
            }
            start += groups.len();
        }
        Err(ConfluenceError::PageLimitExceeded {
            route: Route::UserGroups.template(),
            pages: self.inner.max_pages,
        })
    }

    /// Adds the user to the group: `POST /wiki/rest/api/group/userByGroupId?groupId=`
    /// with `{"accountId"}`. An "already a member" 400 counts as success. A transient
    /// failure is returned, not retried: the add may have happened, so the caller
    /// re-reads the membership before trying again.
    pub async fn add_group_member(
        &self,
        group_id: &str,
        account_id: &str,
    ) -> Result<(), ConfluenceError> {
        let url = self.url(
            &["wiki", "rest", "api", "group", "userByGroupId"],
            &[("groupId", group_id)],
        )?;
        let body = json!({ "accountId": account_id });
        match self.inner.write(Route::AddMember, url, Some(body)).await {
            Err(ConfluenceError::BadRequest(context))
                if context
                    .detail
                    .to_ascii_lowercase()
                    .contains("already a member") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Removes the user from the group:
    /// `DELETE /wiki/rest/api/group/userByGroupId?groupId=&accountId=`. Confluence
    /// answers 204 whether or not the user was a member, so repeating it is safe.
    pub async fn remove_group_member(
        &self,
        group_id: &str,
        account_id: &str,
    ) -> Result<(), ConfluenceError> {
        let url = self.url(
            &["wiki", "rest", "api", "group", "userByGroupId"],
            &[("groupId", group_id), ("accountId", account_id)],
        )?;
        self.inner.write(Route::RemoveMember, url, None).await
    }
}
