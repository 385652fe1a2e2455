//! `SnapshotWriter`: streams records into a SQLite work file and turns it into a c1z.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::container;
use super::expand;
use super::ksuid::new_ksuid;
use super::model::{self, GROUP, SPACE, USER};
use super::proto::{self, GrantExpandable, Resource};
use super::records::{
    ALL_NOUNS, ALL_VERBS, GroupRecord, SpacePermissionRecord, SpaceRecord, SpaceRoleRecord,
    UserRecord,
};
use super::schema::{AFTER_EXPANSION, BEFORE_EXPANSION, SCHEMA};
use super::time::format_go_timestamp;
use super::{C1zError, Result};

/// Rows per transaction: large enough to amortise commits, small enough to keep
/// the page cache from growing without bound.
const BATCH: usize = 20_000;

/// Name of the work database inside the work directory.
const WORK_DB: &str = "snapshot.db";
/// Scratch database for expansion bookkeeping; never part of the snapshot.
const SCRATCH_DB: &str = "scratch.db";
/// SQLite virtual-machine steps between two looks at the cancellation token: often
/// enough that index builds and grant expansion stop within milliseconds.
const CANCEL_CHECK_STEPS: std::ffi::c_int = 10_000;

/// Options of one snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    /// Space permission nouns (`--noun`); values must come from [`ALL_NOUNS`].
    /// Entitlements follow the reference order whatever the order given here.
    pub nouns: Vec<String>,
    /// Space permission verbs (`--verb`); values must come from [`ALL_VERBS`].
    pub verbs: Vec<String>,
    /// Start of the sync (defaults to `clock()` at creation). It is the KSUID's
    /// time and the `started_at` of the sync run.
    pub started_at: Option<DateTime<Utc>>,
    /// Source of `discovered_at` and `ended_at`; injectable for tests.
    pub clock: fn() -> DateTime<Utc>,
    /// The sync id (a KSUID, see [`super::new_ksuid`]), when the caller chose it up front
    /// (e.g. to name the output file after it); drawn from `started_at` otherwise.
    pub sync_id: Option<String>,
    /// Cancelling it stops the writer at the next check, even inside grant expansion,
    /// index builds or compression: [`SnapshotWriter::finish`] then fails with
    /// [`C1zError::Cancelled`] and leaves nothing behind.
    pub cancel: CancellationToken,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            nouns: ALL_NOUNS.iter().map(|s| s.to_string()).collect(),
            verbs: ALL_VERBS.iter().map(|s| s.to_string()).collect(),
            started_at: None,
            clock: Utc::now,
            sync_id: None,
            cancel: CancellationToken::new(),
        }
    }
}

/// What a finished snapshot contains and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The KSUID of the sync.
    pub sync_id: String,
    /// The final file.
    pub path: PathBuf,
    /// Size of the final file in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the final file, lower-case hex.
    pub sha256: String,
    /// Resources per resource type id (types without resources are absent).
    pub resources: BTreeMap<String, u64>,
    /// Number of entitlements.
    pub entitlements: u64,
    /// Number of grants, expanded ones included.
    pub grants: u64,
    /// Group membership grants.
    pub membership_grants: u64,
    /// Direct space permission grants (to users and groups; expansion not counted).
    pub space_permission_grants: u64,
    /// User resources whose status is DISABLED.
    pub disabled_users: u64,
    /// Grants created by expanding group grants to their members.
    pub expanded_grants: u64,
    /// Space permissions ignored: principal not `user`/`group`, or verb/noun not selected.
    pub skipped_permissions: u64,
    /// Users ignored because their `accountType` is not `atlassian`.
    pub skipped_users: u64,
}

/// Row counts of a finished snapshot.
struct Counts {
    resources: BTreeMap<String, u64>,
    entitlements: u64,
    grants: u64,
    group_grants: u64,
    space_grants: u64,
    disabled_users: u64,
}

/// Streams one sync into a c1z v1 file with bounded memory.
///
/// Rows go straight into a SQLite file in a hidden work directory next to the
/// output; only groups and spaces are kept in memory, because every grant
/// embeds its full resource. Call [`SnapshotWriter::finish`] to publish the file.
/// Dropping the writer instead (error, cancellation) removes the work directory
/// and never touches the output path.
///
/// Order matters in one way: a group must be put before its memberships and a
/// space before its permissions.
pub struct SnapshotWriter {
    // Field order matters: the connection must close before the directory goes.
    conn: Connection,
    out: PathBuf,
    sync_id: String,
    started_at: DateTime<Utc>,
    clock: fn() -> DateTime<Utc>,
    verbs: Vec<&'static str>,
    nouns: Vec<&'static str>,
    groups: HashMap<String, Resource>,
    spaces: HashMap<String, Resource>,
    pending: usize,
    skipped_permissions: u64,
    skipped_users: u64,
    cancel: CancellationToken,
    work: TempDir,
}

/// Keeps the values of `all` that `chosen` lists, in the order of `all`.
fn select(
    all: &[&'static str],
    chosen: &[String],
    err: fn(String) -> C1zError,
) -> Result<Vec<&'static str>> {
    if let Some(unknown) = chosen.iter().find(|c| !all.contains(&c.as_str())) {
        return Err(err(unknown.clone()));
    }
    Ok(all
        .iter()
        .copied()
        .filter(|a| chosen.iter().any(|c| c == a))
        .collect())
}

impl SnapshotWriter {
    /// Starts a snapshot that [`finish`](Self::finish) will write to `output_path`.
    ///
    /// The parent directory must exist; the work files live in a hidden
    /// directory inside it. All five resource types are written here.
    pub fn create(output_path: &Path, options: SnapshotOptions) -> Result<Self> {
        let nouns = select(&ALL_NOUNS, &options.nouns, C1zError::UnknownNoun)?;
        let verbs = select(&ALL_VERBS, &options.verbs, C1zError::UnknownVerb)?;
        container::tmp_path(output_path)?;
        let dir = container::parent_dir(output_path)?;
        let work = tempfile::Builder::new()
            .prefix(container::WORK_DIR_PREFIX)
            .tempdir_in(&dir)
            .map_err(|e| C1zError::io("create work directory in", &dir, e))?;
        let conn = Connection::open(work.path().join(WORK_DB))?;
        // The work file is thrown away on any failure, so durability and a
        // rollback journal only cost time; DELETE mode is restored in finish.
        conn.execute_batch(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -32768;",
        )?;
        let scratch = work.path().join(SCRATCH_DB);
        // A lossy path could make SQLite create the scratch file somewhere else.
        let scratch = scratch
            .to_str()
            .ok_or_else(|| C1zError::InvalidOutputPath(output_path.to_path_buf()))?;
        conn.execute("ATTACH DATABASE ?1 AS scratch", [scratch])?;
        conn.execute_batch(
            "PRAGMA scratch.journal_mode = OFF; PRAGMA scratch.synchronous = OFF;
             PRAGMA scratch.cache_size = -16384;",
        )?;
        conn.set_prepared_statement_cache_capacity(32);
        conn.execute_batch(SCHEMA)?;
        let cancel = options.cancel.clone();
        // A long statement (index build, expansion join) interrupts itself once the
        // token is cancelled; the caller then sees `Cancelled`, not a SQLite error.
        conn.progress_handler(CANCEL_CHECK_STEPS, Some(move || cancel.is_cancelled()));
        let started_at = options.started_at.unwrap_or_else(options.clock);
        let sync_id = match options.sync_id {
            Some(id) => id,
            None => new_ksuid(started_at)?,
        };
        let writer = Self {
            conn,
            out: output_path.to_path_buf(),
            sync_id,
            started_at,
            clock: options.clock,
            verbs,
            nouns,
            groups: HashMap::new(),
            spaces: HashMap::new(),
            pending: 0,
            skipped_permissions: 0,
            skipped_users: 0,
            cancel: options.cancel,
            work,
        };
        writer.conn.execute_batch("BEGIN")?;
        for rt in model::resource_types() {
            let now = writer.now();
            writer
                .conn
                .prepare_cached(
                    "INSERT INTO v1_resource_types (external_id, data, sync_id, discovered_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (external_id, sync_id) DO UPDATE SET data = excluded.data",
                )?
                .execute(params![rt.id, rt.encode_to_vec(), writer.sync_id, now])?;
        }
        Ok(writer)
    }

    /// The sync id (a KSUID) every row carries.
    pub fn sync_id(&self) -> &str {
        &self.sync_id
    }

    /// Writes a user. Only `atlassian` accounts are kept (others are counted in
    /// [`SnapshotInfo::skipped_users`]); a repeated account id replaces the
    /// earlier row's data but keeps its id and `discovered_at`.
    ///
    /// Memberships carry only ids, so the caller must not put memberships of
    /// non-`atlassian` accounts.
    pub fn put_user(&mut self, user: &UserRecord) -> Result<()> {
        if user.account_type != model::ATLASSIAN_ACCOUNT {
            self.skipped_users += 1;
            return Ok(());
        }
        let resource = model::user_resource(user);
        self.insert_resource(&resource)
    }

    /// Writes a group and its `member` entitlement. Put it before its memberships.
    pub fn put_group(&mut self, group: &GroupRecord) -> Result<()> {
        let resource = model::group_resource(group);
        let id = model::rid(GROUP, &group.id);
        self.insert_resource(&resource)?;
        self.insert_entitlement(&model::group_member_entitlement(&resource, &id))?;
        self.groups.insert(group.id.clone(), resource);
        Ok(())
    }

    /// Writes the grant `group:<group_id>:member` → `user:<account_id>`.
    ///
    /// The group must have been put first ([`C1zError::UnknownGroup`] otherwise):
    /// the grant embeds the full group resource. The account is not checked
    /// against the users written, as in the reference.
    pub fn put_membership(&mut self, group_id: &str, account_id: &str) -> Result<()> {
        let group = self
            .groups
            .get(group_id)
            .ok_or_else(|| C1zError::UnknownGroup(group_id.to_string()))?;
        let id = model::rid(GROUP, group_id);
        let grant = model::grant(
            group,
            model::entitlement_id(&id, "member"),
            model::rid(USER, account_id),
            vec![],
        );
        self.insert_grant(&grant, None)
    }

    /// Writes a space and its permission entitlements (the selected verb × noun matrix).
    pub fn put_space(&mut self, space: &SpaceRecord) -> Result<()> {
        let resource = model::space_resource(space);
        let id = model::rid(SPACE, &space.id);
        self.insert_resource(&resource)?;
        for noun in self.nouns.clone() {
            for verb in self.verbs.clone() {
                let ent = model::space_entitlement(&resource, &id, verb, noun);
                self.insert_entitlement(&ent)?;
            }
        }
        self.spaces.insert(space.id.clone(), resource);
        Ok(())
    }

    /// Writes the grant of one space permission.
    ///
    /// Ignored (and counted in [`SnapshotInfo::skipped_permissions`]) unless the
    /// principal type is exactly `user` or `group` and the operation key and
    /// target type are among the selected verbs and nouns. Group grants are
    /// stored for expansion to the group's members in [`finish`](Self::finish).
    /// The space must have been put first ([`C1zError::UnknownSpace`] otherwise).
    pub fn put_space_permission(&mut self, perm: &SpacePermissionRecord) -> Result<()> {
        let space = self
            .spaces
            .get(&perm.space_id)
            .ok_or_else(|| C1zError::UnknownSpace(perm.space_id.clone()))?;
        let selected = self.verbs.contains(&perm.operation_key.as_str())
            && self.nouns.contains(&perm.target_type.as_str());
        let principal_type = match perm.principal_type.as_str() {
            USER => USER,
            GROUP => GROUP,
            _ => "",
        };
        if !selected || principal_type.is_empty() {
            self.skipped_permissions += 1;
            return Ok(());
        }
        let slug = format!("{}-{}", perm.operation_key, perm.target_type);
        let ent_id = model::entitlement_id(&model::rid(SPACE, &perm.space_id), &slug);
        let grant = model::grant(
            space,
            ent_id,
            model::rid(principal_type, &perm.principal_id),
            vec![],
        );
        // The reference annotates group grants with GrantExpandable; the SDK strips
        // it from `data` and keeps the bare message in `expansion`, so do that directly.
        let expansion = (principal_type == GROUP).then(|| GrantExpandable {
            entitlement_ids: vec![model::entitlement_id(
                &model::rid(GROUP, &perm.principal_id),
                "member",
            )],
            ..Default::default()
        });
        self.insert_grant(&grant, expansion.as_ref())
    }

    /// Writes a space role resource (it has no entitlements or grants).
    pub fn put_space_role(&mut self, role: &SpaceRoleRecord) -> Result<()> {
        self.insert_resource(&model::space_role_resource(role))
    }

    /// Expands group grants to their members, records the finished full sync
    /// run, closes the database in `journal_mode=DELETE`, and publishes it:
    /// magic + one zstd frame (level 3) written to `<out>.tmp` (mode 0644),
    /// fsynced and renamed over `<out>`. On error nothing is left behind and an
    /// existing `<out>` is untouched.
    pub fn finish(self) -> Result<SnapshotInfo> {
        let cancel = self.cancel.clone();
        match self.finish_inner() {
            // An interrupted statement or read reports itself as an error of its own
            // kind; the cancellation is what the caller needs to know.
            Err(_) if cancel.is_cancelled() => Err(C1zError::Cancelled),
            other => other,
        }
    }

    fn finish_inner(mut self) -> Result<SnapshotInfo> {
        self.check_cancelled()?;
        self.commit()?;
        self.conn.execute_batch("BEGIN")?;
        // The direct grants are all in: index them in one sorted pass each; the
        // rows expansion adds extend these indexes locally (see schema.rs).
        self.conn.execute_batch(BEFORE_EXPANSION)?;
        self.check_cancelled()?;
        let expanded_grants = expand::expand_grants(&self.conn, &self.sync_id, self.clock)?;
        self.check_cancelled()?;
        // Expansion would scatter this index's keys: build it sorted, at the end.
        self.conn.execute_batch(AFTER_EXPANSION)?;
        self.conn
            .prepare_cached(
                "INSERT INTO v1_sync_runs (sync_id, started_at, ended_at, sync_token, sync_type,
                     parent_sync_id, linked_sync_id, supports_diff, grants_backfilled, stats,
                     ingest_invariant_generation, ingest_invariant_coverage, ingest_invariant_mode)
                 VALUES (?1, ?2, ?3, '', 'full', '', '', 1, 1, NULL, '', '', '')",
            )?
            .execute(params![
                self.sync_id,
                format_go_timestamp(self.started_at),
                self.now()
            ])?;
        self.conn.execute_batch("COMMIT")?;
        let counts = self.counts()?;

        self.check_cancelled()?;
        let Self {
            conn,
            out,
            sync_id,
            skipped_permissions,
            skipped_users,
            cancel,
            work,
            ..
        } = self;
        conn.execute_batch("DETACH DATABASE scratch")?;
        // Readers expect a plain rollback-journal file with nothing pending beside it.
        let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(C1zError::JournalMode(mode));
        }
        conn.close().map_err(|(_, e)| e)?;
        let written = container::write_atomic(&work.path().join(WORK_DB), &out, &cancel)?;
        drop(work);
        Ok(SnapshotInfo {
            sync_id,
            path: out,
            size_bytes: written.size_bytes,
            sha256: written.sha256,
            resources: counts.resources,
            entitlements: counts.entitlements,
            grants: counts.grants,
            membership_grants: counts.group_grants,
            space_permission_grants: counts.space_grants.saturating_sub(expanded_grants),
            disabled_users: counts.disabled_users,
            expanded_grants,
            skipped_permissions,
            skipped_users,
        })
    }

    fn now(&self) -> String {
        format_go_timestamp((self.clock)())
    }

    fn check_cancelled(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(C1zError::Cancelled);
        }
        Ok(())
    }

    /// Counts one written row and commits when the batch is full.
    fn wrote(&mut self) -> Result<()> {
        self.pending += 1;
        if self.pending >= BATCH {
            self.commit()?;
            self.conn.execute_batch("BEGIN")?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.pending = 0;
        Ok(())
    }

    fn insert_resource(&mut self, resource: &Resource) -> Result<()> {
        let id = resource.id.clone().unwrap_or_default();
        let parent = resource.parent_resource_id.as_ref();
        let now = self.now();
        self.conn
            .prepare_cached(
                "INSERT INTO v1_resources (resource_type_id, external_id, parent_resource_type_id,
                     parent_resource_id, data, sync_id, discovered_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (external_id, sync_id) DO UPDATE SET data = excluded.data",
            )?
            .execute(params![
                id.resource_type,
                format!("{}:{}", id.resource_type, id.resource),
                parent.map(|p| p.resource_type.as_str()),
                parent.map(|p| p.resource.as_str()),
                resource.encode_to_vec(),
                self.sync_id,
                now
            ])?;
        self.wrote()
    }

    fn insert_entitlement(&mut self, ent: &proto::Entitlement) -> Result<()> {
        let id = ent
            .resource
            .as_ref()
            .and_then(|r| r.id.clone())
            .unwrap_or_default();
        let now = self.now();
        self.conn
            .prepare_cached(
                "INSERT INTO v1_entitlements (resource_type_id, resource_id, external_id, data,
                     sync_id, discovered_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (external_id, sync_id) DO UPDATE SET data = excluded.data",
            )?
            .execute(params![
                id.resource_type,
                id.resource,
                ent.id,
                ent.encode_to_vec(),
                self.sync_id,
                now
            ])?;
        self.wrote()
    }

    fn insert_grant(
        &mut self,
        grant: &proto::Grant,
        expansion: Option<&GrantExpandable>,
    ) -> Result<()> {
        let now = self.now();
        expand::insert_grant(&self.conn, grant, expansion, &self.sync_id, &now)?;
        self.wrote()
    }

    fn counts(&self) -> Result<Counts> {
        let mut resources = BTreeMap::new();
        let mut stmt = self.conn.prepare(
            "SELECT resource_type_id, count(*) FROM v1_resources WHERE sync_id = ?1
             GROUP BY resource_type_id",
        )?;
        let rows = stmt.query_map([&self.sync_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (ty, n) = row?;
            resources.insert(ty, u64::try_from(n).unwrap_or(0));
        }
        let count = |sql: &str| -> Result<u64> {
            let n: Option<i64> = self
                .conn
                .query_row(sql, [&self.sync_id], |r| r.get(0))
                .optional()?;
            Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
        };
        // A user's state lives only in its protobuf; decoding one row per user is cheap
        // next to the sync that produced them.
        let mut disabled_users = 0;
        let mut users = self.conn.prepare(
            "SELECT data FROM v1_resources WHERE sync_id = ?1 AND resource_type_id = ?2",
        )?;
        let mut rows = users.query(params![self.sync_id, USER])?;
        while let Some(row) = rows.next()? {
            let data: Vec<u8> = row.get(0)?;
            let resource = Resource::decode(data.as_slice())?;
            if resource.status.map(|s| s.status) == Some(proto::ResourceStatus::Disabled as i32) {
                disabled_users += 1;
            }
        }
        // Grants per resource type in one pass over the covering
        // (resource_type_id, resource_id) index. The work file only ever holds
        // this sync's rows, so filtering on sync_id would change nothing; it
        // would only force a lookup of every row in the multi-GB table.
        let mut grants = 0;
        let mut group_grants = 0;
        let mut space_grants = 0;
        let mut stmt = self.conn.prepare(
            "SELECT resource_type_id, count(*) FROM v1_grants GROUP BY resource_type_id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let n = u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0);
            grants += n;
            match row.get_ref(0)?.as_str().unwrap_or("") {
                GROUP => group_grants = n,
                SPACE => space_grants = n,
                _ => {}
            }
        }
        Ok(Counts {
            resources,
            entitlements: count("SELECT count(*) FROM v1_entitlements WHERE sync_id = ?1")?,
            grants,
            group_grants,
            space_grants,
            disabled_users,
        })
    }
}
