//! Grant storage and the expansion of group grants to group members (§4.4 of
//! the format notes), done in SQL so that memory stays bounded.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::Result;
use super::model;
use super::proto::{
    self, Entitlement, Grant, GrantExpandable, GrantImmutable, GrantSource, GrantSources, Resource,
    ResourceId,
};
use super::time::format_go_timestamp;

/// Upserts a grant row. `expansion` is the already-stripped `GrantExpandable`
/// (the grant's `data` must not carry it); with at least one non-blank
/// entitlement id it is stored bare and the row is flagged `needs_expansion`.
pub(crate) fn insert_grant(
    conn: &Connection,
    grant: &Grant,
    expansion: Option<&GrantExpandable>,
    sync_id: &str,
    discovered_at: &str,
) -> Result<()> {
    let ent = grant.entitlement.as_ref();
    let resource = ent
        .and_then(|e| e.resource.as_ref())
        .and_then(|r| r.id.clone())
        .unwrap_or_default();
    let principal = grant
        .principal
        .as_ref()
        .and_then(|p| p.id.clone())
        .unwrap_or_default();
    let expansion = expansion
        .filter(|e| e.entitlement_ids.iter().any(|id| !id.trim().is_empty()))
        .map(Message::encode_to_vec);
    conn.prepare_cached(
        "INSERT INTO v1_grants (resource_type_id, resource_id, entitlement_id,
             principal_resource_type_id, principal_resource_id, external_id, expansion,
             needs_expansion, data, sync_id, discovered_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (external_id, sync_id) DO UPDATE SET data = excluded.data",
    )?
    .execute(params![
        resource.resource_type,
        resource.resource,
        ent.map(|e| e.id.as_str()).unwrap_or(""),
        principal.resource_type,
        principal.resource,
        grant.id,
        expansion,
        expansion.is_some(),
        grant.encode_to_vec(),
        sync_id,
        discovered_at
    ])?;
    Ok(())
}

/// Rows between two readings of the clock during expansion: `discovered_at` has
/// millisecond-ish resolution, so reading and formatting it per row only costs time.
const CLOCK_EVERY: u64 = 4096;

/// Expands every grant flagged `needs_expansion`: for expandable grant G
/// (entitlement D, source entitlement S = `group:X:member`) and each grant M of
/// S (principal U), D is granted to U.
///
/// - No grant of D to U yet: a new grant with the full stored entitlement D,
///   `sources = {S: direct}` and a `GrantImmutable` annotation.
/// - A grant exists (direct, or from another group): its sources gain `S`,
///   after `D` itself when they were empty.
///
/// Sources with no stored entitlement are skipped. The expandable grants stay
/// unchanged (`needs_expansion` remains 1, as in the reference). Returns the
/// number of grants created. Must run inside a transaction, while
/// `v1_grants` has a unique index on `(external_id, sync_id)`.
pub(crate) fn expand_grants(
    conn: &Connection,
    sync_id: &str,
    clock: fn() -> DateTime<Utc>,
) -> Result<u64> {
    // Edges and the member grants they expand are copied into the attached
    // scratch database first: the pairs are then streamed straight from a join
    // over scratch tables while v1_grants is written, which never reads a table
    // that is being modified, and sees the grants as they were before expansion.
    conn.execute_batch(
        "CREATE TABLE scratch.expand_edges (
             seq integer primary key,
             entitlement_id text not null,
             source_entitlement_id text not null);
         CREATE TABLE scratch.expand_members (
             id integer primary key,
             entitlement_id text not null,
             principal_resource_type_id text not null,
             principal_resource_id text not null);",
    )?;
    collect_edges(conn, sync_id)?;
    // Only members of sources that have a stored entitlement are expanded. The
    // grant row id is kept so that members come out in grant order.
    conn.execute(
        "INSERT INTO scratch.expand_members (id, entitlement_id, principal_resource_type_id,
             principal_resource_id)
         SELECT m.id, m.entitlement_id, m.principal_resource_type_id, m.principal_resource_id
         FROM main.v1_grants m
         WHERE m.sync_id = ?1
           AND m.entitlement_id IN (
               SELECT e.source_entitlement_id FROM scratch.expand_edges e
               WHERE EXISTS (SELECT 1 FROM main.v1_entitlements s
                             WHERE s.external_id = e.source_entitlement_id AND s.sync_id = ?1))",
        [sync_id],
    )?;
    conn.execute_batch(
        "CREATE INDEX scratch.expand_members_by_source
             ON expand_members (entitlement_id, id);",
    )?;

    let mut created = 0u64;
    let immutable = vec![proto::to_any(&GrantImmutable::default())];
    let mut current: Option<Expanding> = None;
    let mut now = String::new();
    let mut data = Vec::new();
    // Edges in grant order, each with its members in grant order: the same
    // order as the reference, driven by the primary key and the index above.
    let mut pairs = conn.prepare(
        "SELECT e.entitlement_id, e.source_entitlement_id, m.principal_resource_type_id,
                m.principal_resource_id
         FROM scratch.expand_edges e
         JOIN scratch.expand_members m ON m.entitlement_id = e.source_entitlement_id
         ORDER BY e.seq, m.id",
    )?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO main.v1_grants (resource_type_id, resource_id, entitlement_id,
             principal_resource_type_id, principal_resource_id, external_id, expansion,
             needs_expansion, data, sync_id, discovered_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, 0, ?7, ?8, ?9)
         ON CONFLICT (external_id, sync_id) DO NOTHING",
    )?;
    let mut rows = pairs.query([])?;
    let mut seen = 0u64;
    while let Some(row) = rows.next()? {
        let ent_id: String = row.get(0)?;
        let source: String = row.get(1)?;
        let principal = ResourceId {
            resource_type: row.get(2)?,
            resource: row.get(3)?,
            ..Default::default()
        };
        if seen.is_multiple_of(CLOCK_EVERY) {
            now = format_go_timestamp(clock());
        }
        seen += 1;
        let id = model::grant_id(&ent_id, &principal);
        if current.as_ref().is_none_or(|c| c.id != ent_id) {
            current = Some(Expanding::load(conn, &ent_id, sync_id)?);
        }
        let Some(Expanding {
            target: Some(target),
            ..
        }) = current.as_ref()
        else {
            // The expandable grant points at an entitlement never written: nothing
            // to embed, but grants that already exist still gain the source.
            add_source(conn, &id, &ent_id, &source, sync_id)?;
            continue;
        };
        let grant = Grant {
            entitlement: None,
            principal: Some(Resource {
                id: Some(principal),
                ..Default::default()
            }),
            id,
            annotations: immutable.clone(),
            sources: Some(GrantSources {
                sources: BTreeMap::from([(source.clone(), GrantSource { is_direct: true })]),
            }),
        };
        data.clear();
        data.extend_from_slice(&target.field);
        // Writing into a Vec cannot run out of space, so encode_raw cannot fail.
        grant.encode_raw(&mut data);
        let principal = grant.principal.as_ref().and_then(|p| p.id.as_ref());
        let inserted = insert.execute(params![
            target.resource.resource_type,
            target.resource.resource,
            ent_id,
            principal.map(|p| p.resource_type.as_str()),
            principal.map(|p| p.resource.as_str()),
            grant.id,
            data,
            sync_id,
            now
        ])?;
        if inserted == 0 {
            // Already granted (directly or through an earlier group): add the source.
            add_source(conn, &grant.id, &ent_id, &source, sync_id)?;
        } else {
            created += 1;
        }
    }
    drop(rows);
    drop(pairs);
    conn.execute_batch("DROP TABLE scratch.expand_members; DROP TABLE scratch.expand_edges;")?;
    Ok(created)
}

/// The entitlement being expanded, encoded once for all its new grants.
struct Expanding {
    /// The entitlement id.
    id: String,
    /// `None` when no entitlement with this id was stored.
    target: Option<Target>,
}

/// What every new grant of one entitlement shares.
struct Target {
    /// The resource of the entitlement (the row's `resource_*` columns).
    resource: ResourceId,
    /// `Grant` field 1 (tag, length, entitlement bytes). prost writes fields in
    /// tag order, so this prefix followed by the encoding of the same grant
    /// without its entitlement is exactly the encoding of the whole grant.
    field: Vec<u8>,
}

impl Expanding {
    fn load(conn: &Connection, id: &str, sync_id: &str) -> Result<Self> {
        let target = load_entitlement(conn, id, sync_id)?.map(|ent| Target {
            resource: ent
                .resource
                .as_ref()
                .and_then(|r| r.id.clone())
                .unwrap_or_default(),
            field: entitlement_field(&ent),
        });
        Ok(Self {
            id: id.to_string(),
            target,
        })
    }
}

/// The encoding of `Grant { entitlement: Some(ent), ..Default::default() }`.
pub(crate) fn entitlement_field(ent: &Entitlement) -> Vec<u8> {
    Grant {
        entitlement: Some(ent.clone()),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Copies (entitlement, source entitlement) of every expandable grant into the
/// scratch table, in grant order.
fn collect_edges(conn: &Connection, sync_id: &str) -> Result<()> {
    let mut select = conn.prepare(
        "SELECT entitlement_id, expansion FROM main.v1_grants
         WHERE sync_id = ?1 AND needs_expansion = 1 AND expansion IS NOT NULL ORDER BY id",
    )?;
    let mut insert = conn.prepare(
        "INSERT INTO scratch.expand_edges (entitlement_id, source_entitlement_id) VALUES (?1, ?2)",
    )?;
    let mut rows = select.query([sync_id])?;
    while let Some(row) = rows.next()? {
        let ent_id: String = row.get(0)?;
        let blob: Vec<u8> = row.get(1)?;
        let expandable = GrantExpandable::decode(blob.as_slice())?;
        for source in expandable.entitlement_ids {
            if !source.trim().is_empty() {
                insert.execute(params![ent_id, source])?;
            }
        }
    }
    Ok(())
}

/// Adds `source` to the sources of grant `id` if it exists; returns whether it did.
fn add_source(
    conn: &Connection,
    id: &str,
    ent_id: &str,
    source: &str,
    sync_id: &str,
) -> Result<bool> {
    let existing: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT id, data FROM main.v1_grants WHERE external_id = ?1 AND sync_id = ?2",
        )?
        .query_row(params![id, sync_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((row_id, data)) = existing else {
        return Ok(false);
    };
    let mut grant = Grant::decode(data.as_slice())?;
    let sources = &mut grant.sources.get_or_insert_with(Default::default).sources;
    if sources.is_empty() {
        // A direct grant records itself as a source before the group is added.
        sources.insert(ent_id.to_string(), GrantSource { is_direct: true });
    }
    sources.insert(source.to_string(), GrantSource { is_direct: true });
    conn.prepare_cached("UPDATE main.v1_grants SET data = ?1 WHERE id = ?2")?
        .execute(params![grant.encode_to_vec(), row_id])?;
    Ok(true)
}

/// The stored entitlement `id`, if any.
fn load_entitlement(conn: &Connection, id: &str, sync_id: &str) -> Result<Option<Entitlement>> {
    let data: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT data FROM main.v1_entitlements WHERE external_id = ?1 AND sync_id = ?2",
        )?
        .query_row(params![id, sync_id], |r| r.get(0))
        .optional()?;
    Ok(match data {
        Some(d) => Some(Entitlement::decode(d.as_slice())?),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::c1z::records::SpaceRecord;

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
