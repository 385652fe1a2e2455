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
/// number of grants created. Must run inside a transaction.
pub(crate) fn expand_grants(
    conn: &Connection,
    sync_id: &str,
    clock: fn() -> DateTime<Utc>,
) -> Result<u64> {
    // Bookkeeping lives in the attached scratch database, so iterating it while
    // writing v1_grants never reads a table that is being modified.
    conn.execute_batch(
        "CREATE TABLE scratch.expand_edges (
             seq integer primary key,
             entitlement_id text not null,
             source_entitlement_id text not null);
         CREATE TABLE scratch.expand_pairs (
             seq integer primary key,
             entitlement_id text not null,
             source_entitlement_id text not null,
             principal_resource_type_id text not null,
             principal_resource_id text not null);",
    )?;
    collect_edges(conn, sync_id)?;
    conn.execute(
        "INSERT INTO scratch.expand_pairs (entitlement_id, source_entitlement_id,
             principal_resource_type_id, principal_resource_id)
         SELECT e.entitlement_id, e.source_entitlement_id,
                m.principal_resource_type_id, m.principal_resource_id
         FROM scratch.expand_edges e
         JOIN main.v1_grants m ON m.entitlement_id = e.source_entitlement_id AND m.sync_id = ?1
         WHERE EXISTS (SELECT 1 FROM main.v1_entitlements s
                       WHERE s.external_id = e.source_entitlement_id AND s.sync_id = ?1)
         ORDER BY e.seq, m.id",
        [sync_id],
    )?;

    let mut created = 0u64;
    // Pairs arrive grouped by expandable grant, so one cached entitlement suffices.
    let mut cached: Option<Entitlement> = None;
    let mut pairs = conn.prepare(
        "SELECT entitlement_id, source_entitlement_id, principal_resource_type_id,
                principal_resource_id
         FROM scratch.expand_pairs ORDER BY seq",
    )?;
    let mut rows = pairs.query([])?;
    while let Some(row) = rows.next()? {
        let ent_id: String = row.get(0)?;
        let source: String = row.get(1)?;
        let principal = ResourceId {
            resource_type: row.get(2)?,
            resource: row.get(3)?,
            ..Default::default()
        };
        let id = model::grant_id(&ent_id, &principal);
        if add_source(conn, &id, &ent_id, &source, sync_id)? {
            continue;
        }
        if cached.as_ref().is_none_or(|e| e.id != ent_id) {
            cached = load_entitlement(conn, &ent_id, sync_id)?;
        }
        let Some(ent) = cached.as_ref().filter(|e| e.id == ent_id) else {
            // The expandable grant points at an entitlement never written: nothing to embed.
            continue;
        };
        let grant = Grant {
            entitlement: Some(ent.clone()),
            principal: Some(Resource {
                id: Some(principal),
                ..Default::default()
            }),
            id,
            annotations: vec![proto::to_any(&GrantImmutable::default())],
            sources: Some(GrantSources {
                sources: BTreeMap::from([(source, GrantSource { is_direct: true })]),
            }),
        };
        insert_grant(conn, &grant, None, sync_id, &format_go_timestamp(clock()))?;
        created += 1;
    }
    drop(rows);
    drop(pairs);
    conn.execute_batch("DROP TABLE scratch.expand_pairs; DROP TABLE scratch.expand_edges;")?;
    Ok(created)
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
