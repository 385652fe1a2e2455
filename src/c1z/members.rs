//! Group member lists, kept in memory for expansion: every account id once, and each
//! group's members as small numbers.
//!
//! A large tenant has hundreds of thousands of memberships but only tens of thousands
//! of accounts, so a membership costs four bytes here instead of a string.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{C1zError, Result};

/// One group's members.
#[derive(Debug, Default)]
struct GroupMembers {
    /// Account numbers, each once: in the order first seen while the walk is open,
    /// by account id once complete.
    members: Vec<u32>,
    /// What `members` holds, while the walk is open; dropped once complete.
    seen: Option<HashSet<u32>>,
}

/// Listed groups and their members.
#[derive(Debug, Default)]
pub(crate) struct Members {
    numbers: HashMap<Arc<str>, u32>,
    accounts: Vec<Arc<str>>,
    groups: HashMap<String, GroupMembers>,
}

impl Members {
    /// Records a listed group (its `member` entitlement is stored).
    pub(crate) fn list_group(&mut self, group_id: &str) {
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| GroupMembers {
                members: Vec::new(),
                seen: Some(HashSet::new()),
            });
    }

    /// Whether the group was listed.
    pub(crate) fn is_listed(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Whether the group's member list is final.
    pub(crate) fn is_complete(&self, group_id: &str) -> bool {
        self.groups.get(group_id).is_some_and(|g| g.seen.is_none())
    }

    /// Adds a member; `Ok(false)` when it was already one. The group must be listed and
    /// still open.
    pub(crate) fn add(&mut self, group_id: &str, account_id: &str) -> Result<bool> {
        let number = match self.numbers.get(account_id) {
            Some(n) => *n,
            None => {
                let n =
                    u32::try_from(self.accounts.len()).map_err(|_| C1zError::TooManyAccounts)?;
                let account: Arc<str> = Arc::from(account_id);
                self.accounts.push(account.clone());
                self.numbers.insert(account, n);
                n
            }
        };
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or_else(|| C1zError::UnknownGroup(group_id.to_string()))?;
        let seen = group
            .seen
            .as_mut()
            .ok_or_else(|| C1zError::GroupComplete(group_id.to_string()))?;
        if !seen.insert(number) {
            return Ok(false);
        }
        group.members.push(number);
        Ok(true)
    }

    /// Declares the group's member list final and sorts it by account id; unknown
    /// groups are ignored.
    pub(crate) fn complete(&mut self, group_id: &str) {
        if let Some(group) = self.groups.get_mut(group_id) {
            close(group, &self.accounts);
        }
    }

    /// Declares every member list final.
    pub(crate) fn complete_all(&mut self) {
        for group in self.groups.values_mut() {
            close(group, &self.accounts);
        }
    }

    /// The members of a listed group, as account numbers, by account id once the
    /// group is complete; `None` if never listed.
    pub(crate) fn of(&self, group_id: &str) -> Option<&[u32]> {
        self.groups.get(group_id).map(|g| g.members.as_slice())
    }

    /// The account id behind a number from [`Members::of`].
    pub(crate) fn account(&self, number: u32) -> &str {
        self.accounts
            .get(number as usize)
            .map(|a| &**a)
            .unwrap_or_default()
    }
}

/// Expansion walks members in account id order: sorting each list once here saves
/// sorting it again for every entitlement the group holds.
fn close(group: &mut GroupMembers, accounts: &[Arc<str>]) {
    if group.seen.take().is_some() {
        let account = |n: &u32| accounts.get(*n as usize).map(|a| &**a).unwrap_or_default();
        group
            .members
            .sort_unstable_by(|a, b| account(a).cmp(account(b)));
        group.members.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names<'a>(m: &'a Members, group: &str) -> Vec<&'a str> {
        m.of(group)
            .expect("listed")
            .iter()
            .map(|n| m.account(*n))
            .collect()
    }

    #[test]
    fn members_are_kept_once_and_sorted_by_account_once_complete() {
        let mut m = Members::default();
        m.list_group("g1");
        m.list_group("g2");
        assert!(m.add("g1", "b").expect("add"));
        assert!(m.add("g1", "a").expect("add"));
        assert!(
            !m.add("g1", "b").expect("again"),
            "a repeat is no new member"
        );
        assert!(m.add("g2", "b").expect("add"));
        assert_eq!(names(&m, "g1"), ["b", "a"], "first seen while open");
        assert_eq!(names(&m, "g2"), ["b"]);
        assert_eq!(m.of("g3"), None);
        m.complete("g1");
        assert_eq!(names(&m, "g1"), ["a", "b"]);
        assert!(m.add("g2", "0").expect("add"));
        m.complete_all();
        assert_eq!(names(&m, "g2"), ["0", "b"]);
    }

    #[test]
    fn a_complete_group_takes_no_more_members() {
        let mut m = Members::default();
        m.list_group("g1");
        assert!(!m.is_complete("g1"));
        m.complete("g1");
        assert!(m.is_complete("g1") && m.is_listed("g1"));
        assert!(matches!(m.add("g1", "a"), Err(C1zError::GroupComplete(_))));
        assert!(matches!(m.add("nope", "a"), Err(C1zError::UnknownGroup(_))));
        assert!(
            !m.is_complete("nope"),
            "an unlisted group is never complete"
        );
    }
}
