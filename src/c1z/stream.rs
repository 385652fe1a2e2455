//! Streaming reads of a snapshot for comparisons and reports: users, memberships and
//! space-permission grants come out one row at a time, ordered by their external id,
//! so two snapshots can be merge-joined without holding either tenant in memory.
//!
//! The order is SQLite's BINARY collation of `external_id`, which is byte order, the
//! same as Rust's `str` ordering: a merge-join may compare keys with `Ord`.

use std::path::Path;

use prost::Message;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Rows, Statement};
use tempfile::TempDir;

use super::container::{self, MAX_DECODED_SIZE};
use super::model::{GROUP, SPACE, USER};
use super::proto::{GrantSources, Resource, ResourceStatus, UserTrait, from_any};
use super::{C1zError, Result};

/// A snapshot decompressed into a private temporary directory (removed on drop) and
/// opened read-only.
pub struct SnapshotDb {
    conn: Connection,
    sync_id: String,
    _dir: TempDir,
}

/// A user as a review sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    /// The accountId.
    pub id: String,
    /// The display name.
    pub name: String,
    /// The primary email, when the site shows it.
    pub email: Option<String>,
    /// No product access (deactivated or unlicensed).
    pub disabled: bool,
}

/// A group or space: id and display name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedEntry {
    /// The resource id.
    pub id: String,
    /// The display name.
    pub name: String,
}

/// A user's membership of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipEntry {
    /// The grant's external id (the merge key).
    pub key: String,
    /// The group id.
    pub group_id: String,
    /// The member's accountId.
    pub account_id: String,
}

/// A space permission held by a user or a group, directly or through groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceGrantEntry {
    /// The grant's external id (the merge key).
    pub key: String,
    /// The space id.
    pub space_id: String,
    /// The space's display name (carried in the grant itself).
    pub space_name: String,
    /// `<verb>-<noun>`, e.g. `read-space`.
    pub permission: String,
    /// `user` or `group`.
    pub principal_type: String,
    /// The accountId or group id.
    pub principal_id: String,
    /// Granted to the principal itself in Confluence.
    pub direct: bool,
    /// Ids of the groups through which a user holds it (grant expansion), sorted.
    pub via_groups: Vec<String>,
}

/// A prepared query whose rows map to `T`; [`Query::iter`] streams them.
pub struct Query<'c, T> {
    stmt: Statement<'c>,
    sync_id: &'c str,
    map: fn(&Row<'_>) -> Result<T>,
}

/// The rows of a [`Query`], one at a time.
pub struct QueryRows<'s, T> {
    rows: Rows<'s>,
    map: fn(&Row<'_>) -> Result<T>,
}

impl<T> Query<'_, T> {
    /// Starts the query.
    pub fn iter(&mut self) -> Result<QueryRows<'_, T>> {
        Ok(QueryRows {
            rows: self.stmt.query([self.sync_id])?,
            map: self.map,
        })
    }
}

impl<T> Iterator for QueryRows<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        match self.rows.next() {
            Ok(Some(row)) => Some((self.map)(row)),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        }
    }
}

impl SnapshotDb {
    /// Decompresses `path` and opens its newest finished full sync. A file that is not
    /// a c1z snapshot is an error, never an empty tenant.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| C1zError::io("create temp dir", "", e))?;
        let db = dir.path().join("snapshot.db");
        container::decompress(path, &db, MAX_DECODED_SIZE)?;
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        // The order readers use to pick "the" sync of a file (c1z-format §2).
        let sync_id: Option<String> = conn
            .query_row(
                "SELECT sync_id FROM v1_sync_runs WHERE ended_at IS NOT NULL AND sync_type = 'full' \
                 ORDER BY ended_at DESC, sync_id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let sync_id = sync_id.ok_or(C1zError::NoFinishedSync)?;
        Ok(Self {
            conn,
            sync_id,
            _dir: dir,
        })
    }

    /// The sync id the reads use.
    pub fn sync_id(&self) -> &str {
        &self.sync_id
    }

    /// Users in accountId order.
    pub fn users(&self) -> Result<Query<'_, UserEntry>> {
        self.query(
            "SELECT data FROM v1_resources WHERE resource_type_id = 'user' AND sync_id = ?1 \
             ORDER BY external_id",
            |row| user_entry(&decode_blob::<Resource>(row, 0)?),
        )
    }

    /// Groups in id order.
    pub fn groups(&self) -> Result<Query<'_, NamedEntry>> {
        self.query(
            "SELECT data FROM v1_resources WHERE resource_type_id = 'group' AND sync_id = ?1 \
             ORDER BY external_id",
            |row| named_entry(&decode_blob::<Resource>(row, 0)?),
        )
    }

    /// Spaces in id order.
    pub fn spaces(&self) -> Result<Query<'_, NamedEntry>> {
        self.query(
            "SELECT data FROM v1_resources WHERE resource_type_id = 'space' AND sync_id = ?1 \
             ORDER BY external_id",
            |row| named_entry(&decode_blob::<Resource>(row, 0)?),
        )
    }

    /// Group memberships of users in grant-id order (group, then user).
    pub fn memberships(&self) -> Result<Query<'_, MembershipEntry>> {
        self.query(
            "SELECT external_id, resource_id, principal_resource_id FROM v1_grants \
             WHERE resource_type_id = 'group' AND principal_resource_type_id = 'user' \
             AND sync_id = ?1 ORDER BY external_id",
            |row| {
                Ok(MembershipEntry {
                    key: row.get(0)?,
                    group_id: row.get(1)?,
                    account_id: row.get(2)?,
                })
            },
        )
    }

    /// Space permissions of users and groups in grant-id order (space, permission,
    /// principal), including those users hold through groups.
    pub fn space_grants(&self) -> Result<Query<'_, SpaceGrantEntry>> {
        self.query(
            "SELECT external_id, resource_id, entitlement_id, principal_resource_type_id, \
             principal_resource_id, data FROM v1_grants \
             WHERE resource_type_id = 'space' AND principal_resource_type_id IN ('user', 'group') \
             AND sync_id = ?1 ORDER BY external_id",
            space_grant_entry,
        )
    }

    /// Space grants held by one principal, for look-ups by user or group.
    pub fn space_grants_of(&self, principal_type: &str, id: &str) -> Result<Vec<SpaceGrantEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT external_id, resource_id, entitlement_id, principal_resource_type_id, \
             principal_resource_id, data FROM v1_grants \
             WHERE principal_resource_type_id = ?1 AND principal_resource_id = ?2 \
             AND +resource_type_id = 'space' AND +sync_id = ?3 ORDER BY external_id",
        )?;
        let mut rows = stmt.query([principal_type, id, &self.sync_id])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(space_grant_entry(row)?);
        }
        Ok(out)
    }

    // In the per-principal look-ups below, the unary `+` keeps SQLite from answering by
    // the (resource_type_id, resource_id) index: without statistics it may pick that
    // one and scan every space grant once per user (hours on a large tenant) instead of
    // seeking the principal index.

    /// Ids of the groups `account_id` is a member of, in id order.
    pub fn groups_of(&self, account_id: &str) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT resource_id FROM v1_grants \
             WHERE principal_resource_type_id = 'user' AND principal_resource_id = ?1 \
             AND +resource_type_id = 'group' AND +sync_id = ?2 ORDER BY resource_id",
        )?;
        let rows = stmt.query_map([account_id, &self.sync_id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Row counts: memberships of users, space grants of users (effective, including
    /// those through groups) and space grants of groups.
    pub fn grant_counts(&self) -> Result<(u64, u64, u64)> {
        let count = |sql: &str| -> Result<u64> {
            let n: i64 = self.conn.query_row(sql, [&self.sync_id], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok((
            count(
                "SELECT count(*) FROM v1_grants WHERE resource_type_id = 'group' \
                 AND principal_resource_type_id = 'user' AND sync_id = ?1",
            )?,
            count(
                "SELECT count(*) FROM v1_grants WHERE resource_type_id = 'space' \
                 AND principal_resource_type_id = 'user' AND sync_id = ?1",
            )?,
            count(
                "SELECT count(*) FROM v1_grants WHERE resource_type_id = 'space' \
                 AND principal_resource_type_id = 'group' AND sync_id = ?1",
            )?,
        ))
    }

    /// The user with `account_id`, if the snapshot has it.
    pub fn user(&self, account_id: &str) -> Result<Option<UserEntry>> {
        self.resource(USER, account_id)?
            .map(|r| user_entry(&r))
            .transpose()
    }

    /// The display name of a group, if the snapshot has it.
    pub fn group_name(&self, group_id: &str) -> Result<Option<String>> {
        Ok(self.resource(GROUP, group_id)?.map(|r| r.display_name))
    }

    /// The display name of a space, if the snapshot has it.
    pub fn space_name(&self, space_id: &str) -> Result<Option<String>> {
        Ok(self.resource(SPACE, space_id)?.map(|r| r.display_name))
    }

    fn resource(&self, resource_type: &str, id: &str) -> Result<Option<Resource>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT data FROM v1_resources WHERE external_id = ?1 AND sync_id = ?2",
        )?;
        let key = format!("{resource_type}:{id}");
        let blob: Option<Vec<u8>> = stmt
            .query_row([key.as_str(), self.sync_id.as_str()], |r| r.get(0))
            .optional()?;
        blob.map(|b| Resource::decode(b.as_slice()).map_err(C1zError::from))
            .transpose()
    }

    fn query<T>(&self, sql: &str, map: fn(&Row<'_>) -> Result<T>) -> Result<Query<'_, T>> {
        Ok(Query {
            stmt: self.conn.prepare(sql)?,
            sync_id: &self.sync_id,
            map,
        })
    }
}

fn decode_blob<M: Message + Default>(row: &Row<'_>, index: usize) -> Result<M> {
    let blob = row.get_ref(index)?;
    let bytes = blob.as_blob().map_err(rusqlite::Error::from)?;
    Ok(M::decode(bytes)?)
}

fn named_entry(resource: &Resource) -> Result<NamedEntry> {
    let id = resource.id.as_ref().ok_or(C1zError::MissingId)?;
    Ok(NamedEntry {
        id: id.resource.clone(),
        name: resource.display_name.clone(),
    })
}

fn user_entry(resource: &Resource) -> Result<UserEntry> {
    let named = named_entry(resource)?;
    let email = resource
        .annotations
        .iter()
        .filter_map(|any| from_any::<UserTrait>(any).and_then(|t| t.ok()))
        .flat_map(|t| t.emails)
        .find(|e| e.is_primary || !e.address.is_empty())
        .map(|e| e.address);
    Ok(UserEntry {
        id: named.id,
        name: named.name,
        email,
        // The user's state is the resource status (the trait's status is always ENABLED
        // in the reference's files).
        disabled: resource.status.as_ref().map(|s| s.status)
            == Some(ResourceStatus::Disabled as i32),
    })
}

/// The parts of a stored `Grant` a review reads: the entitlement's resource name and the
/// sources. prost skips every other field without decoding it, which matters when a
/// report walks millions of expanded grants, each carrying a whole Resource.
#[derive(Clone, PartialEq, prost::Message)]
struct GrantLite {
    #[prost(message, optional, tag = "1")]
    entitlement: Option<EntitlementLite>,
    #[prost(message, optional, tag = "5")]
    sources: Option<GrantSources>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntitlementLite {
    #[prost(message, optional, tag = "1")]
    resource: Option<ResourceNameLite>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceNameLite {
    #[prost(string, tag = "3")]
    display_name: String,
}

fn space_grant_entry(row: &Row<'_>) -> Result<SpaceGrantEntry> {
    let key: String = row.get(0)?;
    let space_id: String = row.get(1)?;
    let entitlement_id: String = row.get(2)?;
    let grant: GrantLite = decode_blob(row, 5)?;
    let prefix = format!("{SPACE}:{space_id}:");
    let permission = entitlement_id
        .strip_prefix(&prefix)
        .unwrap_or(&entitlement_id)
        .to_string();
    let space_name = grant
        .entitlement
        .and_then(|e| e.resource)
        .map(|r| r.display_name)
        .unwrap_or_default();
    // Expansion (c1z-format §4.4): sources are empty on a plain direct grant; an expanded
    // grant lists `group:<gid>:member`, and a direct grant that expansion also reached
    // lists its own entitlement id as well.
    let sources = grant.sources.map(|s| s.sources).unwrap_or_default();
    let direct = sources.is_empty() || sources.contains_key(&entitlement_id);
    let via_groups = sources
        .keys()
        .filter_map(|k| k.strip_prefix("group:")?.strip_suffix(":member"))
        .map(str::to_string)
        .collect();
    Ok(SpaceGrantEntry {
        key,
        space_id,
        space_name,
        permission,
        principal_type: row.get(3)?,
        principal_id: row.get(4)?,
        direct,
        via_groups,
    })
}
