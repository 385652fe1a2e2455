//! `SnapshotWriter`: streams records into a SQLite work file and turns it into a c1z.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use super::container;
use super::expand::{ExpansionClock, GrantRow, PendingEntitlement};
use super::finish_expansion::{self, Leftover, Target};
use super::grant_load::{self, GrantRoots};
use super::grant_spool::GrantSpool;
use super::ksuid::new_ksuid;
use super::members::Members;
use super::model::{self, GROUP, USER};
use super::proto::{self, Resource};
use super::records::{
    ALL_NOUNS, ALL_VERBS, GroupRecord, SpacePermissionRecord, SpaceRecord, SpaceRoleRecord,
    UserRecord,
};
use super::schema::{GRANT_INDEXES, SCHEMA};
use super::time::format_go_timestamp;
use super::{C1zError, Result};

/// Rows per transaction in the tables SQLite writes itself (resources, entitlements;
/// grants go through the spool). Without a journal a commit only writes the dirty
/// pages out, and the page cache is bounded by `cache_size` whatever the
/// transaction's size, so large transactions just save rewriting hot index pages.
const BATCH: usize = 250_000;

/// Page size of the work database. The grant loader writes gigabytes of B-tree
/// pages: large ones mean fewer pages, levels and page headers (and fewer writes);
/// every SQLite reader handles any page size.
const PAGE_SIZE: u32 = 65_536;

/// Name of the work database inside the work directory.
const WORK_DB: &str = "snapshot.db";
/// Name of the grant spool's files in the work directory.
const GRANT_SPOOL: &str = "grants";
/// SQLite virtual-machine steps between two looks at the cancellation token: often
/// enough that any statement stops within milliseconds.
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

/// Row counts of a finished snapshot read back from the database (grants are counted
/// as they are written).
struct Counts {
    resources: BTreeMap<String, u64>,
    entitlements: u64,
    disabled_users: u64,
}

/// Grants written so far, by kind.
#[derive(Debug, Default)]
struct GrantCounts {
    memberships: u64,
    space_direct: u64,
    expanded: u64,
}

/// A space whose permissions are being collected.
struct SpaceState {
    resource: Resource,
    /// All its permissions are in ([`SnapshotWriter::space_complete`]).
    complete: bool,
    /// Entitlements (by slug) whose grants are not written yet.
    pending: BTreeMap<String, PendingEntitlement>,
}

impl SpaceState {
    /// Marks the permissions all in and puts each pending entitlement's principals in
    /// id order, which expansion reads them in.
    fn complete(&mut self) {
        self.complete = true;
        self.pending.values_mut().for_each(PendingEntitlement::seal);
    }
}

/// What keeps an entitlement's grants from being written.
enum Blocker {
    /// A granting group's member walk is still open.
    Group(String),
    /// A granting group is not listed (yet): it may still be.
    Listing,
}

/// Rows written since the last commit; commits when the batch is full.
struct Batch {
    rows: usize,
}

impl Batch {
    fn wrote(&mut self, conn: &Connection) -> Result<()> {
        self.rows += 1;
        if self.rows >= BATCH {
            conn.execute_batch("COMMIT; BEGIN")?;
            self.rows = 0;
        }
        Ok(())
    }
}

/// Streams one sync into a c1z v1 file with bounded memory.
///
/// Rows go straight into a SQLite file in a hidden work directory next to the
/// output. Kept in memory: groups and spaces (every grant embeds its full resource),
/// member lists as account numbers, and the permissions of each space entitlement
/// until its grants can be written expanded. Call [`SnapshotWriter::finish`] to
/// publish the file. Dropping the writer instead (error, cancellation) removes the
/// work directory and never touches the output path.
///
/// Order matters in one way: a group must be put before its memberships and a
/// space before its permissions.
///
/// Group grants expand to the groups' members. A caller that says when a group's
/// member walk is over ([`group_complete`](Self::group_complete)), when a space's
/// permissions are all in ([`space_complete`](Self::space_complete)) and when the
/// group list is complete ([`groups_listed`](Self::groups_listed)) lets the writer
/// expand during the fetch: each entitlement whose inputs are all in becomes ready,
/// and [`write_ready`](Self::write_ready) writes one (the caller does so whenever it
/// has nothing else to put). What is left is expanded in [`finish`](Self::finish).
/// The snapshot is the same either way.
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
    members: Members,
    spaces: HashMap<String, SpaceState>,
    /// Space ids in the order put, for a deterministic finish.
    space_order: Vec<String>,
    /// Entitlements (space id, slug) waiting for a group's member walk, by group id.
    waiting: HashMap<String, Vec<(String, String)>>,
    /// Entitlements waiting for the group list to be complete.
    waiting_for_listing: Vec<(String, String)>,
    /// Entitlements nothing holds back any more, in the order they became ready.
    ready: VecDeque<(String, String)>,
    groups_listed: bool,
    expansion_clock: ExpansionClock,
    /// Rows (estimated) left to expand at the end from which two threads share them.
    pub(crate) parallel_expansion_min_rows: u64,
    grants: GrantCounts,
    batch: Batch,
    /// Every grant row, until [`grant_load`] builds `v1_grants` from them at the end.
    spool: GrantSpool,
    grant_roots: GrantRoots,
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
        conn.execute_batch(&format!(
            "PRAGMA page_size = {PAGE_SIZE}; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             PRAGMA cache_size = -8192; PRAGMA locking_mode = EXCLUSIVE;"
        ))?;
        conn.set_prepared_statement_cache_capacity(32);
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(GRANT_INDEXES)?;
        let grant_roots = GrantRoots::read(&conn)?;
        let spool = GrantSpool::create(work.path(), GRANT_SPOOL)?;
        let cancel = options.cancel.clone();
        // A statement running when the token is cancelled interrupts itself; the caller
        // sees `Cancelled` (see `finish` and the sync's writer thread). Since grants
        // bypass SQLite no statement here runs long, so this mostly cuts a commit short.
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
            members: Members::default(),
            spaces: HashMap::new(),
            space_order: Vec::new(),
            waiting: HashMap::new(),
            waiting_for_listing: Vec::new(),
            ready: VecDeque::new(),
            groups_listed: false,
            expansion_clock: ExpansionClock::new(options.clock),
            parallel_expansion_min_rows: finish_expansion::PARALLEL_MIN_ROWS,
            grants: GrantCounts::default(),
            batch: Batch { rows: 0 },
            spool,
            grant_roots,
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
        self.members.list_group(&group.id);
        Ok(())
    }

    /// Writes the grant `group:<group_id>:member` → `user:<account_id>`; a repeat is
    /// ignored.
    ///
    /// The group must have been put first ([`C1zError::UnknownGroup`] otherwise):
    /// the grant embeds the full group resource. The account is not checked
    /// against the users written, as in the reference.
    pub fn put_membership(&mut self, group_id: &str, account_id: &str) -> Result<()> {
        let group = self
            .groups
            .get(group_id)
            .ok_or_else(|| C1zError::UnknownGroup(group_id.to_string()))?;
        if !self.members.add(group_id, account_id)? {
            return Ok(());
        }
        let ent_id = model::entitlement_id(&model::rid(GROUP, group_id), "member");
        let grant = model::grant(group, ent_id.clone(), model::rid(USER, account_id), vec![]);
        let now = self.now();
        self.spool.push(
            &self.sync_id,
            &GrantRow {
                resource_type_id: GROUP,
                resource_id: group_id,
                entitlement_id: &ent_id,
                principal_type: USER,
                principal_id: account_id,
                external_id: &grant.id,
                expansion: None,
                data: &grant.encode_to_vec(),
                discovered_at: &now,
            },
        )?;
        self.grants.memberships += 1;
        Ok(())
    }

    /// Declares a group's member list complete: its grants can be expanded from now
    /// on, and a later membership of it is refused ([`C1zError::GroupComplete`]).
    pub fn group_complete(&mut self, group_id: &str) -> Result<()> {
        self.members.complete(group_id);
        for (space_id, slug) in self.waiting.remove(group_id).unwrap_or_default() {
            self.try_write(&space_id, &slug)?;
        }
        Ok(())
    }

    /// Declares the group list complete: a group not put by now never will be, so
    /// grants to it need not wait for it.
    pub fn groups_listed(&mut self) -> Result<()> {
        self.groups_listed = true;
        for (space_id, slug) in std::mem::take(&mut self.waiting_for_listing) {
            self.try_write(&space_id, &slug)?;
        }
        Ok(())
    }

    /// Writes a space and its permission entitlements (the selected verb × noun matrix).
    pub fn put_space(&mut self, space: &SpaceRecord) -> Result<()> {
        let resource = model::space_resource(space);
        let id = model::rid(model::SPACE, &space.id);
        self.insert_resource(&resource)?;
        for noun in self.nouns.clone() {
            for verb in self.verbs.clone() {
                let ent = model::space_entitlement(&resource, &id, verb, noun);
                self.insert_entitlement(&ent)?;
            }
        }
        match self.spaces.get_mut(&space.id) {
            // Put again: the newer resource, and the permissions already taken are kept.
            Some(state) => state.resource = resource,
            None => {
                self.space_order.push(space.id.clone());
                self.spaces.insert(
                    space.id.clone(),
                    SpaceState {
                        resource,
                        complete: false,
                        pending: BTreeMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Takes one space permission; its grant is written once the space is complete and
    /// the groups it is granted to are walked (see [`expand`]).
    ///
    /// Ignored (and counted in [`SnapshotInfo::skipped_permissions`]) unless the
    /// principal type is exactly `user` or `group` and the operation key and
    /// target type are among the selected verbs and nouns. A repeat is ignored. The
    /// space must have been put first ([`C1zError::UnknownSpace`] otherwise) and not
    /// declared complete ([`C1zError::SpaceComplete`]).
    pub fn put_space_permission(&mut self, perm: &SpacePermissionRecord) -> Result<()> {
        let verb = self
            .verbs
            .iter()
            .copied()
            .find(|v| *v == perm.operation_key);
        let noun = self.nouns.iter().copied().find(|n| *n == perm.target_type);
        let now = (self.clock)();
        let space = self
            .spaces
            .get_mut(&perm.space_id)
            .ok_or_else(|| C1zError::UnknownSpace(perm.space_id.clone()))?;
        if space.complete {
            return Err(C1zError::SpaceComplete(perm.space_id.clone()));
        }
        let (Some(verb), Some(noun)) = (verb, noun) else {
            self.skipped_permissions += 1;
            return Ok(());
        };
        let entitlement = space
            .pending
            .entry(format!("{verb}-{noun}"))
            .or_insert_with(|| PendingEntitlement::new(verb, noun));
        let principals = match perm.principal_type.as_str() {
            USER => &mut entitlement.users,
            GROUP => &mut entitlement.groups,
            _ => {
                self.skipped_permissions += 1;
                return Ok(());
            }
        };
        principals.add(&perm.principal_id, now);
        Ok(())
    }

    /// Declares a space's permissions complete: its grants are written as soon as the
    /// groups they expand to are walked, and a later permission of it is refused.
    pub fn space_complete(&mut self, space_id: &str) -> Result<()> {
        let Some(space) = self.spaces.get_mut(space_id) else {
            return Ok(());
        };
        space.complete();
        let slugs: Vec<String> = space.pending.keys().cloned().collect();
        for slug in slugs {
            self.try_write(space_id, &slug)?;
        }
        Ok(())
    }

    /// Whether some entitlement is ready to be written by [`write_ready`](Self::write_ready).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Writes the grants of the oldest ready entitlement, expanded (up to tens of
    /// thousands of rows for an entitlement granted to a large group).
    pub fn write_ready(&mut self) -> Result<()> {
        self.check_cancelled()?;
        if let Some((space_id, slug)) = self.ready.pop_front() {
            self.write_entitlement(&space_id, &slug)?;
        }
        Ok(())
    }

    /// Writes a space role resource (it has no entitlements or grants).
    pub fn put_space_role(&mut self, role: &SpaceRoleRecord) -> Result<()> {
        self.insert_resource(&model::space_role_resource(role))
    }

    /// Writes the grants still held (everything is complete now), builds the last
    /// index, records the finished full sync run, closes the database in
    /// `journal_mode=DELETE`, and publishes it: magic + one zstd frame (level 1, multithreaded)
    /// written to `<out>.tmp` (mode 0644), fsynced and renamed over `<out>`. On error
    /// nothing is left behind and an existing `<out>` is untouched.
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
        let started = std::time::Instant::now();
        self.check_cancelled()?;
        self.groups_listed = true;
        self.members.complete_all();
        self.waiting.clear();
        self.waiting_for_listing.clear();
        self.ready.clear();
        let tail_spool = self.expand_leftovers()?;
        // What expansion needed is dead weight from here on, through the grant load
        // and the compression.
        self.members = Members::default();
        self.spaces = HashMap::new();
        let expanded_at_end = started.elapsed();
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
            grants,
            spool,
            grant_roots,
            ..
        } = self;
        // Readers expect a plain rollback-journal file with nothing pending beside it.
        let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(C1zError::JournalMode(mode));
        }
        conn.close().map_err(|(_, e)| e)?;
        // The grants go in last, as pages of their own behind what SQLite wrote.
        let spool = spool.seal_with(tail_spool)?;
        grant_load::load(
            &spool,
            &work.path().join(WORK_DB),
            &grant_roots,
            &sync_id,
            &cancel,
        )?;
        spool.remove()?;
        let indexed = started.elapsed();
        let written = container::write_atomic(&work.path().join(WORK_DB), &out, &cancel)?;
        drop(work);
        tracing::debug!(
            expansion_ms = expanded_at_end.as_millis() as u64,
            indexes_ms = (indexed - expanded_at_end).as_millis() as u64,
            compression_ms = (started.elapsed() - indexed).as_millis() as u64,
            "snapshot finished"
        );
        Ok(SnapshotInfo {
            sync_id,
            path: out,
            size_bytes: written.size_bytes,
            sha256: written.sha256,
            resources: counts.resources,
            entitlements: counts.entitlements,
            grants: grants.memberships + grants.space_direct + grants.expanded,
            membership_grants: grants.memberships,
            space_permission_grants: grants.space_direct,
            disabled_users: counts.disabled_users,
            expanded_grants: grants.expanded,
            skipped_permissions,
            skipped_users,
        })
    }

    /// Expands every entitlement still pending, in space order (see
    /// [`finish_expansion`]); returns the second thread's spool, if one was used.
    fn expand_leftovers(&mut self) -> Result<Option<GrantSpool>> {
        let mut pending = Vec::new();
        for space_id in std::mem::take(&mut self.space_order) {
            if let Some(space) = self.spaces.get_mut(&space_id) {
                if !space.complete {
                    space.complete();
                }
                let entitlements = std::mem::take(&mut space.pending);
                pending.push((space_id, entitlements));
            }
        }
        let leftovers: Vec<Leftover<'_>> = pending
            .into_iter()
            .filter_map(|(space_id, entitlements)| {
                let (id, space) = self.spaces.get_key_value(&space_id)?;
                Some(entitlements.into_values().map(|pending| Leftover {
                    space: &space.resource,
                    space_id: id.as_str(),
                    pending,
                }))
            })
            .flatten()
            .collect();
        let (written, tail) = finish_expansion::expand_all(
            leftovers,
            Target {
                sync_id: &self.sync_id,
                members: &self.members,
                spool: &mut self.spool,
                clock: &mut self.expansion_clock,
                work_dir: self.work.path(),
                cancel: &self.cancel,
                now: self.clock,
                parallel_min_rows: self.parallel_expansion_min_rows,
            },
        )?;
        self.grants.space_direct += written.direct;
        self.grants.expanded += written.expanded;
        Ok(tail)
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

    /// What keeps entitlement `pending` from being written, if anything.
    fn blocker(&self, pending: &PendingEntitlement) -> Option<Blocker> {
        for group_id in pending.groups.ids() {
            if self.members.is_listed(group_id) {
                if !self.members.is_complete(group_id) {
                    return Some(Blocker::Group(group_id.to_string()));
                }
            } else if !self.groups_listed {
                return Some(Blocker::Listing);
            }
        }
        None
    }

    /// Queues the entitlement for writing if nothing holds it back; otherwise waits for
    /// the first thing that does.
    fn try_write(&mut self, space_id: &str, slug: &str) -> Result<()> {
        let Some(space) = self.spaces.get(space_id) else {
            return Ok(());
        };
        let Some(pending) = space.pending.get(slug).filter(|_| space.complete) else {
            return Ok(());
        };
        let entry = (space_id.to_string(), slug.to_string());
        match self.blocker(pending) {
            Some(Blocker::Group(group_id)) => self.waiting.entry(group_id).or_default().push(entry),
            Some(Blocker::Listing) => self.waiting_for_listing.push(entry),
            None => self.ready.push_back(entry),
        }
        Ok(())
    }

    /// Writes every grant of one space entitlement, expanded.
    fn write_entitlement(&mut self, space_id: &str, slug: &str) -> Result<()> {
        let Some(pending) = self
            .spaces
            .get_mut(space_id)
            .and_then(|space| space.pending.remove(slug))
        else {
            return Ok(());
        };
        let Some((space_id, space)) = self.spaces.get_key_value(space_id) else {
            return Ok(());
        };
        let leftover = Leftover {
            space: &space.resource,
            space_id,
            pending,
        };
        let written = finish_expansion::expand_run(
            [leftover],
            &self.sync_id,
            &self.members,
            &mut self.spool,
            &mut self.expansion_clock,
            &self.cancel,
        )?;
        self.grants.space_direct += written.direct;
        self.grants.expanded += written.expanded;
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
        self.batch.wrote(&self.conn)
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
        self.batch.wrote(&self.conn)
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
        let entitlements: Option<i64> = self
            .conn
            .query_row(
                "SELECT count(*) FROM v1_entitlements WHERE sync_id = ?1",
                [&self.sync_id],
                |r| r.get(0),
            )
            .optional()?;
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
        Ok(Counts {
            resources,
            entitlements: entitlements
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0),
            disabled_users,
        })
    }
}
