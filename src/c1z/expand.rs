//! Grant rows of one space entitlement, with the group grants expanded to the groups'
//! members (§4.4 of the format notes).
//!
//! Expansion works one entitlement at a time, in memory, as soon as everything it
//! depends on is in: the space's permissions and the member lists of the groups the
//! entitlement is granted to. The writer calls it during the fetch whenever a space or
//! a group completes, so that little is left for the end. Every row comes out final
//! (sources complete), so nothing is ever read back or rewritten; the rows of one
//! entitlement come out sorted by grant id.
//!
//! For an expandable grant of entitlement D to group G (source S = `group:G:member`)
//! and each member U of G, D is granted to U:
//! - no direct grant of D to U: one new grant with the full entitlement D,
//!   `sources = {S…}` (every group granting D that U belongs to) and a
//!   `GrantImmutable` annotation;
//! - a direct grant exists: its sources are `{D, S…}`.
//!
//! Groups never listed have no stored `member` entitlement and are not expanded. The
//! group grants themselves stay as they are (`needs_expansion` remains 1, as in the
//! reference).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message;

use super::Result;
use super::members::Members;
use super::model::{self, GROUP, SPACE, USER};
use super::proto::{
    self, Entitlement, Grant, GrantExpandable, GrantImmutable, GrantSource, GrantSources, Resource,
};
use super::time::format_go_timestamp;

/// One row of `v1_grants`, borrowed for the insert.
pub(crate) struct GrantRow<'a> {
    pub(crate) resource_type_id: &'a str,
    pub(crate) resource_id: &'a str,
    pub(crate) entitlement_id: &'a str,
    pub(crate) principal_type: &'a str,
    pub(crate) principal_id: &'a str,
    pub(crate) external_id: &'a str,
    /// The bare `GrantExpandable` of an expandable grant.
    pub(crate) expansion: Option<&'a [u8]>,
    pub(crate) data: &'a [u8],
    pub(crate) discovered_at: &'a str,
}

/// The direct grants of one space entitlement (`<verb>-<noun>`), held until they can be
/// written with their expansion.
#[derive(Debug)]
pub(crate) struct PendingEntitlement {
    pub(crate) verb: &'static str,
    pub(crate) noun: &'static str,
    /// Groups granted the entitlement.
    pub(crate) groups: Principals,
    /// Accounts granted the entitlement.
    pub(crate) users: Principals,
}

/// Principals of one entitlement and when each was first seen.
///
/// A large tenant holds a hundred thousand or more of these at once while the member
/// walk runs (an entitlement waits for its groups), most with one or two entries. A
/// map allocated a half-kilobyte node for each of them — tens of megabytes of peak
/// memory — so the entries are kept as a plain list while the space's permissions
/// arrive and put in id order once they are all in ([`Principals::seal`]).
#[derive(Debug, Default)]
pub(crate) struct Principals {
    /// (id, discovered_at), in arrival order until sealed, then by id, each id once.
    /// The time is formatted when the row is written: as text it took a second
    /// allocation per entry.
    entries: Vec<(Box<str>, DateTime<Utc>)>,
}

impl Principals {
    /// Records a sighting; of several sightings of one id the first is kept.
    pub(crate) fn add(&mut self, id: &str, discovered_at: DateTime<Utc>) {
        self.entries.push((id.into(), discovered_at));
    }

    /// Sorts the entries by id, keeping each id's first sighting. Done once, when no
    /// more can come; reading in id order ([`Principals::iter`]) needs it.
    pub(crate) fn seal(&mut self) {
        // Stable: among equal ids the first sighting stays first, and is the one kept.
        self.entries.sort_by(|a, b| a.0.cmp(&b.0));
        self.entries.dedup_by(|later, earlier| later.0 == earlier.0);
        self.entries.shrink_to_fit();
    }

    /// (id, discovered_at), by id once sealed.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, DateTime<Utc>)> {
        self.entries.iter().map(|(id, at)| (&**id, *at))
    }

    /// The ids, in any order before sealing.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _)| &**id)
    }

    /// Entries (before sealing, an id seen twice counts twice).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

impl PendingEntitlement {
    pub(crate) fn new(verb: &'static str, noun: &'static str) -> Self {
        Self {
            verb,
            noun,
            groups: Principals::default(),
            users: Principals::default(),
        }
    }

    /// Puts both principal lists in id order; see [`Principals::seal`].
    pub(crate) fn seal(&mut self) {
        self.groups.seal();
        self.users.seal();
    }

    /// The `<verb>-<noun>` slug.
    pub(crate) fn slug(&self) -> String {
        format!("{}-{}", self.verb, self.noun)
    }
}

/// Rows between two readings of the clock for expanded grants: `discovered_at` has
/// millisecond-ish resolution, so reading and formatting it per row only costs time.
const CLOCK_EVERY: u64 = 4096;

/// The `discovered_at` of expanded grants.
pub(crate) struct ExpansionClock {
    clock: fn() -> DateTime<Utc>,
    rows: u64,
    now: String,
}

impl ExpansionClock {
    pub(crate) fn new(clock: fn() -> DateTime<Utc>) -> Self {
        Self {
            clock,
            rows: 0,
            now: String::new(),
        }
    }

    fn tick(&mut self) -> &str {
        if self.rows.is_multiple_of(CLOCK_EVERY) {
            self.now = format_go_timestamp((self.clock)());
        }
        self.rows += 1;
        &self.now
    }
}

/// What one entitlement's rows came to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    /// Direct grants (to users and groups).
    pub(crate) direct: u64,
    /// Grants created by expansion.
    pub(crate) expanded: u64,
}

/// Writes every grant of entitlement `pending` of `space` through `emit`, sorted by
/// grant id: the group grants, then the user grants, direct and expanded together.
pub(crate) fn entitlement_rows(
    space: &Resource,
    space_id: &str,
    pending: &PendingEntitlement,
    members: &Members,
    clock: &mut ExpansionClock,
    mut emit: impl FnMut(&GrantRow<'_>) -> Result<()>,
) -> Result<Written> {
    let space_rid = model::rid(SPACE, space_id);
    let ent_id = model::entitlement_id(&space_rid, &pending.slug());
    let mut written = Written::default();
    let mut data = Vec::new();

    // The expansion's inputs: (member, source) pairs of every listed granting group.
    let mut sources: Vec<String> = Vec::new();
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for (group_id, discovered_at) in pending.groups.iter() {
        let discovered_at = format_go_timestamp(discovered_at);
        let principal = model::rid(GROUP, group_id);
        let grant = model::grant(space, ent_id.clone(), principal, vec![]);
        let source = model::entitlement_id(&model::rid(GROUP, group_id), "member");
        // The reference annotates group grants with GrantExpandable; the SDK strips it
        // from `data` and keeps the bare message in `expansion`, so do that directly.
        let expansion = GrantExpandable {
            entitlement_ids: vec![source.clone()],
            ..Default::default()
        }
        .encode_to_vec();
        data.clear();
        grant.encode_raw(&mut data);
        emit(&GrantRow {
            resource_type_id: SPACE,
            resource_id: space_id,
            entitlement_id: &ent_id,
            principal_type: GROUP,
            principal_id: group_id,
            external_id: &grant.id,
            expansion: Some(&expansion),
            data: &data,
            discovered_at: &discovered_at,
        })?;
        written.direct += 1;
        if let Some(group_members) = members.of(group_id) {
            let index = sources.len() as u32;
            sources.push(source);
            pairs.extend(group_members.iter().map(|m| (*m, index)));
        }
    }
    // By account id, then by source: one run per user, runs in grant id order. Each
    // complete group's members come sorted by account id, and the groups in source
    // order, so a stable sort by account merges those runs (and passes over a single
    // one) instead of sorting from scratch.
    pairs.sort_by(|a, b| members.account(a.0).cmp(members.account(b.0)));
    pairs.dedup();

    let entitlement = (!pairs.is_empty())
        .then(|| model::space_entitlement(space, &space_rid, pending.verb, pending.noun));
    let field = entitlement
        .as_ref()
        .map(entitlement_field)
        .unwrap_or_default();
    let immutable = vec![proto::to_any(&GrantImmutable::default())];
    let mut direct_users = pending.users.iter().peekable();
    let mut runs = pairs.chunk_by(|a, b| a.0 == b.0).peekable();
    loop {
        // Merge the direct user grants and the expansion runs by account id.
        let next_direct = direct_users.peek().map(|(id, _)| *id);
        let next_run = runs.peek().map(|run| members.account(run[0].0));
        let (account, direct, run) = match (next_direct, next_run) {
            (None, None) => break,
            (Some(d), Some(r)) if d == r => (d.to_string(), direct_users.next(), runs.next()),
            (Some(d), Some(r)) if d < r => (d.to_string(), direct_users.next(), None),
            (Some(d), None) => (d.to_string(), direct_users.next(), None),
            (_, Some(r)) => (r.to_string(), None, runs.next()),
        };
        let run_sources = || -> BTreeMap<String, GrantSource> {
            run.unwrap_or_default()
                .iter()
                .filter_map(|(_, s)| sources.get(*s as usize))
                .map(|s| (s.clone(), GrantSource { is_direct: true }))
                .collect()
        };
        let principal = model::rid(USER, &account);
        data.clear();
        let direct_discovered_at;
        let (id, discovered_at) = match direct {
            Some((_, at)) => {
                let mut grant = model::grant(space, ent_id.clone(), principal, vec![]);
                let mut added = run_sources();
                if !added.is_empty() {
                    // A direct grant records itself as a source next to the groups.
                    added.insert(ent_id.clone(), GrantSource { is_direct: true });
                    grant.sources = Some(GrantSources { sources: added });
                }
                grant.encode_raw(&mut data);
                written.direct += 1;
                direct_discovered_at = format_go_timestamp(at);
                (grant.id, direct_discovered_at.as_str())
            }
            None => {
                let grant = Grant {
                    entitlement: None,
                    id: model::grant_id(&ent_id, &principal),
                    principal: Some(Resource {
                        id: Some(principal),
                        ..Default::default()
                    }),
                    annotations: immutable.clone(),
                    sources: Some(GrantSources {
                        sources: run_sources(),
                    }),
                };
                data.extend_from_slice(&field);
                grant.encode_raw(&mut data);
                written.expanded += 1;
                (grant.id, clock.tick())
            }
        };
        emit(&GrantRow {
            resource_type_id: SPACE,
            resource_id: space_id,
            entitlement_id: &ent_id,
            principal_type: USER,
            principal_id: &account,
            external_id: &id,
            expansion: None,
            data: &data,
            discovered_at,
        })?;
    }
    Ok(written)
}

/// The encoding of `Grant { entitlement: Some(ent), ..Default::default() }`: field 1.
/// prost writes fields in tag order, so this prefix followed by the encoding of a grant
/// without its entitlement is exactly the encoding of the whole grant.
pub(crate) fn entitlement_field(ent: &Entitlement) -> Vec<u8> {
    Grant {
        entitlement: Some(ent.clone()),
        ..Default::default()
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c1z::records::SpaceRecord;

    #[test]
    fn principals_come_out_by_id_with_each_first_sighting() {
        let mut p = Principals::default();
        let at = |n: i64| DateTime::from_timestamp(n, 0).unwrap_or_default();
        for (id, n) in [("b", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5)] {
            p.add(id, at(n));
        }
        assert_eq!(p.len(), 5, "repeats count until sealed");
        p.seal();
        assert_eq!(
            p.iter().collect::<Vec<_>>(),
            [("a", at(2)), ("b", at(1)), ("c", at(4))]
        );
        assert_eq!(p.ids().collect::<Vec<_>>(), ["a", "b", "c"]);
        p.seal();
        assert_eq!(p.len(), 3, "sealing twice changes nothing");
    }

    /// Expansion writes `entitlement_field(D)` followed by the grant encoded
    /// without its entitlement; that must be byte for byte the full encoding.
    #[test]
    fn spliced_entitlement_encodes_like_the_whole_grant() {
        let space = model::space_resource(&SpaceRecord {
            id: "42".into(),
            name: "Space with a long enough name to need a two-byte length".into(),
        });
        let ent = model::space_entitlement(&space, &model::rid("space", "42"), "read", "page");
        let principal = model::rid("user", "5b10ac8d82e05b22cc7d4ef5");
        let grant = Grant {
            entitlement: Some(ent.clone()),
            principal: Some(Resource {
                id: Some(principal.clone()),
                ..Default::default()
            }),
            id: model::grant_id(&ent.id, &principal),
            annotations: vec![proto::to_any(&GrantImmutable::default())],
            sources: Some(GrantSources {
                sources: BTreeMap::from([(
                    "group:g1:member".to_string(),
                    GrantSource { is_direct: true },
                )]),
            }),
        };
        let mut spliced = entitlement_field(&ent);
        Grant {
            entitlement: None,
            ..grant.clone()
        }
        .encode_raw(&mut spliced);
        assert!(
            ent.encoded_len() > 127,
            "the length prefix spans several bytes"
        );
        assert_eq!(spliced, grant.encode_to_vec());
    }
}
