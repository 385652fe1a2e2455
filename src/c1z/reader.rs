//! Reading a c1z v1 file back: for tests and checks, not for production volumes
//! (every row is decoded into memory).

use std::path::Path;

use prost::Message;
use rusqlite::{Connection, OpenFlags, Row};

use super::container::{self, MAX_DECODED_SIZE};
use super::proto::{Entitlement, Grant, GrantExpandable, Resource, ResourceType};
use super::{C1zError, Result};

/// A `v1_resource_types` row.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceTypeRow {
    /// Row id.
    pub id: i64,
    /// The type id.
    pub external_id: String,
    /// Decoded `data`.
    pub data: ResourceType,
    /// Sync id.
    pub sync_id: String,
    /// Discovery time as stored.
    pub discovered_at: String,
}

/// A `v1_resources` row.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceRow {
    /// Row id.
    pub id: i64,
    /// Resource type id.
    pub resource_type_id: String,
    /// `<type>:<id>`.
    pub external_id: String,
    /// Parent type, if any.
    pub parent_resource_type_id: Option<String>,
    /// Parent id, if any.
    pub parent_resource_id: Option<String>,
    /// Decoded `data`.
    pub data: Resource,
    /// Sync id.
    pub sync_id: String,
    /// Discovery time as stored.
    pub discovered_at: String,
}

/// A `v1_entitlements` row.
#[derive(Clone, Debug, PartialEq)]
pub struct EntitlementRow {
    /// Row id.
    pub id: i64,
    /// Resource type id.
    pub resource_type_id: String,
    /// Resource id.
    pub resource_id: String,
    /// Entitlement id.
    pub external_id: String,
    /// Decoded `data`.
    pub data: Entitlement,
    /// Sync id.
    pub sync_id: String,
    /// Discovery time as stored.
    pub discovered_at: String,
}

/// A `v1_grants` row.
#[derive(Clone, Debug, PartialEq)]
pub struct GrantRow {
    /// Row id.
    pub id: i64,
    /// Resource type id of the entitlement's resource.
    pub resource_type_id: String,
    /// Resource id of the entitlement's resource.
    pub resource_id: String,
    /// Entitlement id.
    pub entitlement_id: String,
    /// Principal type.
    pub principal_resource_type_id: String,
    /// Principal id.
    pub principal_resource_id: String,
    /// Grant id.
    pub external_id: String,
    /// Raw `expansion` bytes.
    pub expansion: Option<Vec<u8>>,
    /// `expansion` decoded.
    pub expandable: Option<GrantExpandable>,
    /// `needs_expansion` column.
    pub needs_expansion: bool,
    /// Decoded `data`.
    pub data: Grant,
    /// Sync id.
    pub sync_id: String,
    /// Discovery time as stored.
    pub discovered_at: String,
}

/// A `v1_sync_runs` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRunRow {
    /// Row id.
    pub id: i64,
    /// Sync id.
    pub sync_id: String,
    /// Start time as stored.
    pub started_at: String,
    /// End time as stored (`None` = in progress).
    pub ended_at: Option<String>,
    /// Progress token.
    pub sync_token: String,
    /// `full`, `partial`, ….
    pub sync_type: String,
    /// Parent sync.
    pub parent_sync_id: String,
    /// Linked sync.
    pub linked_sync_id: String,
    /// `supports_diff` column.
    pub supports_diff: i64,
    /// `grants_backfilled` column.
    pub grants_backfilled: i64,
    /// Cached stats JSON.
    pub stats: Option<String>,
    /// `ingest_invariant_generation`.
    pub ingest_invariant_generation: String,
    /// `ingest_invariant_coverage`.
    pub ingest_invariant_coverage: String,
    /// `ingest_invariant_mode`.
    pub ingest_invariant_mode: String,
}

/// One column as SQLite reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Declared type.
    pub decl_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// Default value expression.
    pub default: Option<String>,
    /// Part of the primary key.
    pub primary_key: bool,
}

/// A table and its columns in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnInfo>,
}

/// An explicitly created index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexInfo {
    /// Index name.
    pub name: String,
    /// Indexed table.
    pub table: String,
    /// `UNIQUE`.
    pub unique: bool,
    /// The `WHERE` condition of a partial index, lower-cased.
    pub where_clause: Option<String>,
    /// Indexed columns in order.
    pub columns: Vec<String>,
}

/// A decoded c1z v1 file.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Tables in `sqlite_master` order (creation order).
    pub tables: Vec<TableInfo>,
    /// Explicit indexes in creation order.
    pub indexes: Vec<IndexInfo>,
    /// Whether the file header marks the database as WAL (it must not).
    pub wal_header: bool,
    /// Resource types by row id.
    pub resource_types: Vec<ResourceTypeRow>,
    /// Resources by row id.
    pub resources: Vec<ResourceRow>,
    /// Entitlements by row id.
    pub entitlements: Vec<EntitlementRow>,
    /// Grants by row id.
    pub grants: Vec<GrantRow>,
    /// Sync runs by row id.
    pub sync_runs: Vec<SyncRunRow>,
    /// Rows in `v1_assets`.
    pub assets: u64,
    /// Rows in `v1_connector_sessions`.
    pub connector_sessions: u64,
}

impl Snapshot {
    /// Checks the magic, decompresses into a private temporary copy (window
    /// ≤ 2^27, at most [`MAX_DECODED_SIZE`] bytes) and decodes every row.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| C1zError::io("create temp dir", "", e))?;
        let db = dir.path().join("snapshot.db");
        container::decompress(path, &db, MAX_DECODED_SIZE)?;
        let wal_header = {
            let bytes = std::fs::read(&db).map_err(|e| C1zError::io("read", &db, e))?;
            // Header bytes 18/19 are 2 in WAL mode, 1 for rollback journals.
            bytes.get(18) == Some(&2)
        };
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Self {
            tables: tables(&conn)?,
            indexes: indexes(&conn)?,
            wal_header,
            resource_types: rows(
                &conn,
                "SELECT id, external_id, data, sync_id, discovered_at FROM v1_resource_types",
                |r| {
                    Ok(ResourceTypeRow {
                        id: r.get(0)?,
                        external_id: r.get(1)?,
                        data: decode(r, 2)?,
                        sync_id: r.get(3)?,
                        discovered_at: r.get(4)?,
                    })
                },
            )?,
            resources: rows(
                &conn,
                "SELECT id, resource_type_id, external_id, parent_resource_type_id,
                        parent_resource_id, data, sync_id, discovered_at FROM v1_resources",
                |r| {
                    Ok(ResourceRow {
                        id: r.get(0)?,
                        resource_type_id: r.get(1)?,
                        external_id: r.get(2)?,
                        parent_resource_type_id: r.get(3)?,
                        parent_resource_id: r.get(4)?,
                        data: decode(r, 5)?,
                        sync_id: r.get(6)?,
                        discovered_at: r.get(7)?,
                    })
                },
            )?,
            entitlements: rows(
                &conn,
                "SELECT id, resource_type_id, resource_id, external_id, data, sync_id,
                        discovered_at FROM v1_entitlements",
                |r| {
                    Ok(EntitlementRow {
                        id: r.get(0)?,
                        resource_type_id: r.get(1)?,
                        resource_id: r.get(2)?,
                        external_id: r.get(3)?,
                        data: decode(r, 4)?,
                        sync_id: r.get(5)?,
                        discovered_at: r.get(6)?,
                    })
                },
            )?,
            grants: rows(
                &conn,
                "SELECT id, resource_type_id, resource_id, entitlement_id,
                        principal_resource_type_id, principal_resource_id, external_id,
                        expansion, needs_expansion, data, sync_id, discovered_at FROM v1_grants",
                |r| {
                    let expansion: Option<Vec<u8>> = r.get(7)?;
                    let expandable = match &expansion {
                        Some(b) => Some(GrantExpandable::decode(b.as_slice()).map_err(bad_blob)?),
                        None => None,
                    };
                    Ok(GrantRow {
                        id: r.get(0)?,
                        resource_type_id: r.get(1)?,
                        resource_id: r.get(2)?,
                        entitlement_id: r.get(3)?,
                        principal_resource_type_id: r.get(4)?,
                        principal_resource_id: r.get(5)?,
                        external_id: r.get(6)?,
                        expansion,
                        expandable,
                        needs_expansion: r.get::<_, i64>(8)? != 0,
                        data: decode(r, 9)?,
                        sync_id: r.get(10)?,
                        discovered_at: r.get(11)?,
                    })
                },
            )?,
            sync_runs: rows(
                &conn,
                "SELECT id, sync_id, started_at, ended_at, sync_token, sync_type,
                        parent_sync_id, linked_sync_id, supports_diff, grants_backfilled,
                        stats, ingest_invariant_generation, ingest_invariant_coverage,
                        ingest_invariant_mode FROM v1_sync_runs",
                |r| {
                    Ok(SyncRunRow {
                        id: r.get(0)?,
                        sync_id: r.get(1)?,
                        started_at: r.get(2)?,
                        ended_at: r.get(3)?,
                        sync_token: r.get(4)?,
                        sync_type: r.get(5)?,
                        parent_sync_id: r.get(6)?,
                        linked_sync_id: r.get(7)?,
                        supports_diff: r.get(8)?,
                        grants_backfilled: r.get(9)?,
                        stats: r.get(10)?,
                        ingest_invariant_generation: r.get(11)?,
                        ingest_invariant_coverage: r.get(12)?,
                        ingest_invariant_mode: r.get(13)?,
                    })
                },
            )?,
            assets: count(&conn, "v1_assets")?,
            connector_sessions: count(&conn, "v1_connector_sessions")?,
        })
    }
}

fn bad_blob(e: prost::DecodeError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
}

fn decode<M: Message + Default>(row: &Row<'_>, idx: usize) -> rusqlite::Result<M> {
    let blob: Vec<u8> = row.get(idx)?;
    M::decode(blob.as_slice()).map_err(bad_blob)
}

fn rows<T>(
    conn: &Connection,
    select: &str,
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare(&format!("{select} ORDER BY id"))?;
    let out = stmt
        .query_map([], f)?
        .collect::<rusqlite::Result<Vec<T>>>()?;
    Ok(out)
}

fn count(conn: &Connection, table: &str) -> Result<u64> {
    let n: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn tables(conn: &Connection) -> Result<Vec<TableInfo>> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for name in names {
        let mut cols = conn.prepare(
            "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid",
        )?;
        let columns = cols
            .query_map([&name], |r| {
                Ok(ColumnInfo {
                    name: r.get(0)?,
                    decl_type: r.get(1)?,
                    not_null: r.get::<_, i64>(2)? != 0,
                    default: r.get(3)?,
                    primary_key: r.get::<_, i64>(4)? != 0,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(TableInfo { name, columns });
    }
    Ok(out)
}

fn indexes(conn: &Connection) -> Result<Vec<IndexInfo>> {
    // Automatic indexes have no SQL; only explicitly created ones are listed.
    let mut stmt = conn.prepare(
        "SELECT name, tbl_name, sql FROM sqlite_master
         WHERE type = 'index' AND sql IS NOT NULL ORDER BY rowid",
    )?;
    let found = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for (name, table, sql) in found {
        let mut cols = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?;
        let columns = cols
            .query_map([&name], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let lower = sql.to_ascii_lowercase();
        out.push(IndexInfo {
            unique: lower.starts_with("create unique index"),
            where_clause: lower
                .split_once(" where ")
                .map(|(_, cond)| cond.trim().to_string()),
            name,
            table,
            columns,
        });
    }
    Ok(out)
}
