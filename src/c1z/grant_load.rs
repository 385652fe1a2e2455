//! Builds `v1_grants` and its seven indexes from a sealed [`GrantSpool`], straight
//! into the pages of the closed work database (see [`super::btree`]).
//!
//! Each index is written from keys in index order, so what matters is producing
//! that order cheaply. Rows arrive in runs of one entitlement and every key column is
//! a function of the row's entitlement (which also names its resource) and
//! principal, so:
//! - the entitlement and resource indexes need the few thousand entitlements and
//!   resources sorted, then each entitlement's rows in row-id or principal order
//!   (at most tens of thousands at a time);
//! - the unique grant-id index is the entitlement order again, since a grant id is
//!   `<entitlement>:<principal type>:<principal id>`; entitlements whose `<id>:` is a
//!   prefix of another's would interleave, and are sorted by the full ids instead;
//! - the principal index is a counting sort by principal, in slices of rows.
//!
//! SQLite's `ON CONFLICT DO NOTHING` used to drop a grant whose id repeated an
//! earlier one's (ids can collide through the `:` separators); the unique index
//! pass finds such rows and every structure leaves them out, the first one kept.
//!
//! [`GrantSpool`]: super::grant_spool::GrantSpool

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use super::btree::{IndexBuilder, PageFile, TableBuilder, Value, encode_record};
use super::grant_spool::{PrincipalKey, RecordFile, Run, SealedSpool};
use super::{C1zError, Result};

/// Buffer of the sequential reads of the spool files.
const READ_BUFFER: usize = 1 << 20;
/// Rows between two looks at the cancellation token.
const CANCEL_EVERY: u32 = 1 << 16;
/// Row ids the principal index places per pass over the principal file (4 MiB; a
/// pass over the file of a large tenant's 10 M rows takes tens of milliseconds).
const PRINCIPAL_SLICE: usize = 1 << 20;

/// Root pages of `v1_grants` and its indexes, as SQLite created them (empty).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrantRoots {
    table: u32,
    external_sync: u32,
    resource: u32,
    entitlement_principal: u32,
    entitlement_sync_grant: u32,
    sync_expansion: u32,
    sync_needs_expansion: u32,
    principal: u32,
}

/// The indexes [`load`] fills, by name; any other index on `v1_grants` is refused.
const INDEX_NAMES: [&str; 7] = [
    "idx_grants_external_sync_v1",
    "idx_grants_resource_type_id_resource_id_v1",
    "idx_grants_entitlement_id_principal_id_v1",
    "idx_grants_entitlement_sync_grant_v1",
    "idx_grants_sync_expansion_v1",
    "idx_grants_sync_needs_expansion_v1",
    "idx_grants_principal_id_v1",
];

impl GrantRoots {
    /// Reads the root pages from the schema; fails if `v1_grants` has an index this
    /// module does not know how to fill.
    pub(crate) fn read(conn: &Connection) -> Result<Self> {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'v1_grants'",
        )?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for name in names {
            let name = name?;
            if !INDEX_NAMES.contains(&name.as_str()) {
                return Err(C1zError::UnknownGrantIndex(name));
            }
        }
        let root = |name: &str| -> Result<u32> {
            Ok(conn.query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = ?1",
                [name],
                |r| r.get(0),
            )?)
        };
        Ok(Self {
            table: root("v1_grants")?,
            external_sync: root(INDEX_NAMES[0])?,
            resource: root(INDEX_NAMES[1])?,
            entitlement_principal: root(INDEX_NAMES[2])?,
            entitlement_sync_grant: root(INDEX_NAMES[3])?,
            sync_expansion: root(INDEX_NAMES[4])?,
            sync_needs_expansion: root(INDEX_NAMES[5])?,
            principal: root(INDEX_NAMES[6])?,
        })
    }
}

/// The B-trees of `v1_grants`. Each needs to know the rows the unique index leaves
/// out and nothing else from the others.
#[derive(Debug, Clone, Copy)]
enum Tree {
    // The discriminants number `TREES` slots.
    ExternalSync,
    Table,
    Resource,
    EntitlementPrincipal,
    EntitlementSyncGrant,
    SyncExpansion,
    SyncNeedsExpansion,
    Principal,
}
const TREES: usize = 8;

/// Writes every spooled grant into the closed database at `db`; returns the rows
/// written (repeated grant ids left out).
///
/// The trees are built on one thread per core: they only read the spool and write
/// pages of their own. Every tree must leave out the rows whose grant id repeats an
/// earlier one's, which only the unique index finds; such ids need `:` inside ids and
/// are rare, so all trees are built at once on the guess that there are none, and
/// built again, knowing them, when the unique index found some.
pub(crate) fn load(
    spool: &SealedSpool,
    db: &Path,
    roots: &GrantRoots,
    sync_id: &str,
    cancel: &CancellationToken,
) -> Result<u64> {
    let started = Instant::now();
    let mut loader = Loader::new(spool, db, sync_id, cancel)?;
    let ordered = started.elapsed();
    // Longest first, so that the last tree to start is a short one.
    let trees = [
        (Tree::Table, roots.table),
        (Tree::EntitlementPrincipal, roots.entitlement_principal),
        (Tree::ExternalSync, roots.external_sync),
        (Tree::Principal, roots.principal),
        (Tree::Resource, roots.resource),
        (Tree::EntitlementSyncGrant, roots.entitlement_sync_grant),
        (Tree::SyncExpansion, roots.sync_expansion),
        (Tree::SyncNeedsExpansion, roots.sync_needs_expansion),
    ];
    let empty_roots = trees
        .iter()
        .map(|(_, root)| Ok((*root, loader.file.read_existing_page(*root)?)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| C1zError::io("read", db, e))?;
    let mut built = loader.build_all(&trees)?;
    let first_try = started.elapsed();
    let repeated = loader.take_repeated();
    let rebuilt = !repeated.is_empty();
    if rebuilt {
        loader
            .start_over(&empty_roots)
            .map_err(|e| C1zError::io("write", db, e))?;
        loader.skipped = repeated;
        built = loader.build_all(&trees)?;
    }
    let mut ms = [0u64; TREES];
    let mut rows = 0;
    for b in &built {
        ms[b.tree as usize] = b.elapsed.as_millis() as u64;
        if let Tree::Table = b.tree {
            rows = b.rows;
        }
    }
    tracing::debug!(
        rows,
        orders_ms = ordered.as_millis() as u64,
        trees_ms = (first_try - ordered).as_millis() as u64,
        rebuilt_ms = (started.elapsed() - first_try).as_millis() as u64,
        rebuilt,
        unique_index_ms = ms[Tree::ExternalSync as usize],
        table_ms = ms[Tree::Table as usize],
        entitlement_principal_ms = ms[Tree::EntitlementPrincipal as usize],
        entitlement_sync_grant_ms = ms[Tree::EntitlementSyncGrant as usize],
        resource_ms = ms[Tree::Resource as usize],
        principal_ms = ms[Tree::Principal as usize],
        "grants loaded"
    );
    let Loader { file, .. } = loader;
    file.finish().map_err(|e| C1zError::io("write", db, e))?;
    Ok(rows)
}

/// One tree built: how long it took, and its rows (the table's count; keys of an
/// index).
struct Built {
    tree: Tree,
    rows: u64,
    elapsed: std::time::Duration,
}

/// Orders of the entitlements and principals, as positions.
struct Orders {
    /// Entitlement numbers by entitlement id.
    entitlements: Vec<u32>,
    /// Principal number → rank by (type, id).
    principal_rank: Vec<u32>,
    /// Principal numbers by (type, id).
    principals: Vec<u32>,
    /// Principal number → rank by `type:id`, the end of a grant id.
    suffix_rank: Vec<u32>,
}

impl Orders {
    fn new(spool: &SealedSpool) -> Self {
        let ents = &spool.entitlements;
        let mut entitlements: Vec<u32> = (0..ents.len() as u32).collect();
        entitlements.sort_unstable_by(|a, b| ents[*a as usize].id.cmp(&ents[*b as usize].id));
        let keys = &spool.principals;
        let mut principals: Vec<u32> = (0..keys.len() as u32).collect();
        principals.sort_unstable_by(|a, b| {
            let (a, b) = (&keys[*a as usize], &keys[*b as usize]);
            (&*a.resource_type, &*a.id).cmp(&(&*b.resource_type, &*b.id))
        });
        let mut by_suffix = principals.clone();
        by_suffix.sort_by(|a, b| cmp_suffix(&keys[*a as usize], &keys[*b as usize]));
        Self {
            entitlements,
            principal_rank: ranks(&principals),
            principals,
            suffix_rank: ranks(&by_suffix),
        }
    }
}

/// Position of each number in `order`.
fn ranks(order: &[u32]) -> Vec<u32> {
    let mut rank = vec![0; order.len()];
    for (position, n) in order.iter().enumerate() {
        rank[*n as usize] = position as u32;
    }
    rank
}

/// Compares `type:id` of two principals without building the strings.
fn cmp_suffix(a: &PrincipalKey, b: &PrincipalKey) -> Ordering {
    let a_bytes = a.resource_type.bytes().chain(*b":").chain(a.id.bytes());
    a_bytes.cmp(b.resource_type.bytes().chain(*b":").chain(b.id.bytes()))
}

/// Compares `<a>:` with `<b>:`.
fn cmp_with_colon(a: &str, b: &str) -> Ordering {
    a.bytes().chain(*b":").cmp(b.bytes().chain(*b":"))
}

/// Whether `<longer>:` starts with `<head>:`, i.e. their grant ids can interleave.
fn extends(head: &str, longer: &str) -> bool {
    longer.len() > head.len()
        && longer.starts_with(head)
        && longer.as_bytes().get(head.len()) == Some(&b':')
}

struct Loader<'a> {
    spool: &'a SealedSpool,
    file: PageFile,
    principals: File,
    db: &'a Path,
    sync_id: &'a str,
    cancel: &'a CancellationToken,
    orders: Orders,
    /// Runs sorted by entitlement, then row id.
    runs: Vec<Run>,
    /// `runs[starts[e]..starts[e + 1]]` are entitlement e's runs.
    starts: Vec<usize>,
    /// Row ids left out (repeated grant ids), ascending.
    skipped: Vec<u32>,
    /// Row ids whose grant id repeats an earlier one's, as the unique index found
    /// them (with `skipped` empty), ascending.
    repeated: Mutex<Vec<u32>>,
}

/// One index being written on one thread: its builder and scratch key.
struct IndexOut<'a> {
    builder: IndexBuilder,
    file: &'a PageFile,
    db: &'a Path,
    stop: &'a CancellationToken,
    key: Vec<u8>,
    steps: Steps,
}

impl IndexOut<'_> {
    fn push(&mut self, values: &[Value<'_>]) -> Result<()> {
        self.key.clear();
        encode_record(values, &mut self.key);
        self.builder
            .push(self.file, &self.key)
            .map_err(|e| C1zError::io("write", self.db, e))?;
        self.steps.step(self.stop)
    }

    fn finish(self) -> Result<u64> {
        self.builder
            .finish(self.file)
            .map_err(|e| C1zError::io("write", self.db, e))
    }
}

/// Counts rows between two looks at the cancellation token.
#[derive(Default)]
struct Steps(u32);

impl Steps {
    fn step(&mut self, stop: &CancellationToken) -> Result<()> {
        self.0 = self.0.wrapping_add(1);
        if self.0.is_multiple_of(CANCEL_EVERY) && stop.is_cancelled() {
            return Err(C1zError::Cancelled);
        }
        Ok(())
    }
}

impl<'a> Loader<'a> {
    fn new(
        spool: &'a SealedSpool,
        db: &'a Path,
        sync_id: &'a str,
        cancel: &'a CancellationToken,
    ) -> Result<Self> {
        let file = PageFile::open(db).map_err(|e| C1zError::io("open", db, e))?;
        let principals = File::open(&spool.principals_path)
            .map_err(|e| C1zError::io("open", &spool.principals_path, e))?;
        let mut runs = spool.runs.clone();
        runs.sort_unstable();
        let mut starts = Vec::with_capacity(spool.entitlements.len() + 1);
        let mut next = 0;
        for e in 0..=spool.entitlements.len() as u32 {
            while next < runs.len() && runs[next].entitlement < e {
                next += 1;
            }
            starts.push(next);
        }
        Ok(Self {
            spool,
            file,
            principals,
            db,
            sync_id,
            cancel,
            orders: Orders::new(spool),
            runs,
            starts,
            skipped: Vec::new(),
            repeated: Mutex::new(Vec::new()),
        })
    }

    fn take_repeated(&mut self) -> Vec<u32> {
        std::mem::take(
            self.repeated
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Back to the database as it was before [`Self::build_all`]: appended pages
    /// dropped, root pages empty again.
    fn start_over(&mut self, empty_roots: &[(u32, Vec<u8>)]) -> std::io::Result<()> {
        self.file.discard_appended()?;
        for (root, page) in empty_roots {
            self.file.write_page(*root, page)?;
        }
        Ok(())
    }

    fn is_skipped(&self, rowid: u32) -> bool {
        !self.skipped.is_empty() && self.skipped.binary_search(&rowid).is_ok()
    }

    fn runs_of(&self, entitlement: u32) -> &[Run] {
        let e = entitlement as usize;
        &self.runs[self.starts[e]..self.starts[e + 1]]
    }

    /// (principal, row id) of every kept row of an entitlement, in row id order.
    fn rows_of(&self, entitlement: u32) -> Result<Vec<(u32, u32)>> {
        let mut rows = Vec::new();
        let mut bytes = Vec::new();
        for run in self.runs_of(entitlement) {
            bytes.resize(run.len as usize * 4, 0);
            self.principals
                .read_exact_at(&mut bytes, (u64::from(run.first) - 1) * 4)
                .map_err(|e| C1zError::io("read", &self.spool.principals_path, e))?;
            for (rowid, chunk) in run.rows().zip(bytes.chunks_exact(4)) {
                if !self.is_skipped(rowid) {
                    rows.push((
                        u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                        rowid,
                    ));
                }
            }
        }
        Ok(rows)
    }

    fn index<'s>(&'s self, root: u32, stop: &'s CancellationToken) -> IndexOut<'s> {
        IndexOut {
            builder: IndexBuilder::new(root, self.file.page_size()),
            file: &self.file,
            db: self.db,
            stop,
            key: Vec::new(),
            steps: Steps::default(),
        }
    }

    /// Builds `trees` on one thread per core (at most one per tree), each thread
    /// taking the next tree in the list when it is done with one. The first error
    /// stops the others; it is the one returned.
    fn build_all(&self, trees: &[(Tree, u32)]) -> Result<Vec<Built>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(trees.len());
        let next = AtomicUsize::new(0);
        let stop = self.cancel.child_token();
        let worker = || -> Result<Vec<Built>> {
            let mut built = Vec::new();
            while let Some((tree, root)) = trees.get(next.fetch_add(1, AtomicOrdering::Relaxed)) {
                let started = Instant::now();
                match self.build(*tree, *root, &stop) {
                    Ok(rows) => built.push(Built {
                        tree: *tree,
                        rows,
                        elapsed: started.elapsed(),
                    }),
                    Err(e) => {
                        stop.cancel();
                        return Err(e);
                    }
                }
            }
            Ok(built)
        };
        let results: Vec<Result<Vec<Built>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads).map(|_| scope.spawn(worker)).collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut built = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(mut b) => built.append(&mut b),
                // A thread stopped by another's failure reports `Cancelled`.
                Err(C1zError::Cancelled) if !self.cancel.is_cancelled() => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if self.cancel.is_cancelled() => Err(C1zError::Cancelled),
            None => Ok(built),
        }
    }

    fn build(&self, tree: Tree, root: u32, stop: &CancellationToken) -> Result<u64> {
        match tree {
            Tree::ExternalSync => self.external_sync_index(self.index(root, stop)),
            Tree::Table => self.table(root, stop),
            Tree::Resource => self.resource_index(self.index(root, stop)),
            Tree::EntitlementPrincipal => self.entitlement_principal_index(self.index(root, stop)),
            Tree::EntitlementSyncGrant => self.entitlement_sync_grant_index(self.index(root, stop)),
            Tree::SyncExpansion | Tree::SyncNeedsExpansion => {
                self.expandable_index(self.index(root, stop))
            }
            Tree::Principal => self.principal_index(self.index(root, stop)),
        }
    }

    /// `(external_id, sync_id)`, unique: finds the repeated grant ids on the way
    /// (rows already in `skipped` are not seen again).
    fn external_sync_index(&self, mut index: IndexOut<'_>) -> Result<u64> {
        let mut skipped = Vec::new();
        let spool = self.spool;
        let ents = &spool.entitlements;
        let mut order: Vec<u32> = (0..ents.len() as u32).collect();
        order.sort_unstable_by(|a, b| cmp_with_colon(&ents[*a as usize].id, &ents[*b as usize].id));
        let mut unique = UniqueKeys {
            sync_id: self.sync_id,
            previous: String::new(),
            skipped: &mut skipped,
        };
        let mut id = String::new();
        let mut i = 0;
        while i < order.len() {
            let head = &ents[order[i] as usize].id;
            let mut end = i + 1;
            while end < order.len() && extends(head, &ents[order[end] as usize].id) {
                end += 1;
            }
            if end == i + 1 {
                let mut own = self.rows_of(order[i])?;
                own.sort_unstable_by_key(|(p, rowid)| {
                    (self.orders.suffix_rank[*p as usize], *rowid)
                });
                for (p, rowid) in own {
                    let principal = &spool.principals[p as usize];
                    id.clear();
                    for part in [head, ":", &principal.resource_type, ":", &principal.id] {
                        id.push_str(part);
                    }
                    unique.push(&mut index, &id, rowid)?;
                }
            } else {
                // (grant id, row id) sorted: among equal ids the first row wins.
                let mut rows: Vec<(String, u32)> = Vec::new();
                for e in &order[i..end] {
                    let ent = &ents[*e as usize].id;
                    for (p, rowid) in self.rows_of(*e)? {
                        rows.push((grant_id(ent, &spool.principals[p as usize]), rowid));
                    }
                }
                rows.sort_unstable();
                for (grant, rowid) in rows {
                    unique.push(&mut index, &grant, rowid)?;
                }
            }
            i = end;
        }
        let keys = index.finish()?;
        skipped.sort_unstable();
        *self.repeated.lock().unwrap_or_else(PoisonError::into_inner) = skipped;
        Ok(keys)
    }

    /// The table itself, from the record files in row id order.
    fn table(&self, root: u32, stop: &CancellationToken) -> Result<u64> {
        let mut table = TableBuilder::new(root, self.file.page_size());
        let mut record = Vec::new();
        let mut len = [0u8; 4];
        let mut steps = Steps::default();
        let mut rowid = 0u32;
        for RecordFile { path, rows } in &self.spool.record_files {
            let file = File::open(path).map_err(|e| C1zError::io("open", path, e))?;
            let mut reader = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                READ_BUFFER,
                file,
            ))
            .map_err(|e| C1zError::io("decompress", path, e))?;
            for _ in 0..*rows {
                rowid += 1;
                reader
                    .read_exact(&mut len)
                    .and_then(|()| {
                        record.resize(u32::from_le_bytes(len) as usize, 0);
                        reader.read_exact(&mut record)
                    })
                    .map_err(|e| C1zError::io("read", path, e))?;
                if self.is_skipped(rowid) {
                    continue;
                }
                table
                    .push(&self.file, i64::from(rowid), &record)
                    .map_err(|e| C1zError::io("write", self.db, e))?;
                steps.step(stop)?;
            }
        }
        table
            .finish(&self.file)
            .map_err(|e| C1zError::io("write", self.db, e))
    }

    /// `(resource_type_id, resource_id)`: resources in order, each one's rows by row id.
    fn resource_index(&self, mut index: IndexOut<'_>) -> Result<u64> {
        let spool = self.spool;
        let mut resources: Vec<(&str, &str, Vec<u32>)> = Vec::new();
        let mut numbers: HashMap<(&str, &str), usize> = HashMap::new();
        for (e, ent) in spool.entitlements.iter().enumerate() {
            let key = (&*ent.resource_type, &*ent.resource_id);
            let n = *numbers.entry(key).or_insert_with(|| {
                resources.push((key.0, key.1, Vec::new()));
                resources.len() - 1
            });
            resources[n].2.push(e as u32);
        }
        resources.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        for (resource_type, resource_id, ents) in &resources {
            let mut runs: Vec<Run> = ents
                .iter()
                .flat_map(|e| self.runs_of(*e).iter().copied())
                .collect();
            runs.sort_unstable_by_key(|run| run.first);
            for rowid in runs.iter().flat_map(Run::rows) {
                if self.is_skipped(rowid) {
                    continue;
                }
                index.push(&[
                    Value::Text(resource_type),
                    Value::Text(resource_id),
                    Value::Integer(i64::from(rowid)),
                ])?;
            }
        }
        index.finish()
    }

    /// `(entitlement_id, principal_resource_type_id, principal_resource_id)`:
    /// entitlements in order, each one's rows by principal.
    fn entitlement_principal_index(&self, mut index: IndexOut<'_>) -> Result<u64> {
        let spool = self.spool;
        for e in &self.orders.entitlements {
            let ent = &spool.entitlements[*e as usize].id;
            let mut rows = self.rows_of(*e)?;
            rows.sort_unstable_by_key(|(p, _)| self.orders.principal_rank[*p as usize]);
            for (p, rowid) in rows {
                let principal = &spool.principals[p as usize];
                index.push(&[
                    Value::Text(ent),
                    Value::Text(&principal.resource_type),
                    Value::Text(&principal.id),
                    Value::Integer(i64::from(rowid)),
                ])?;
            }
        }
        index.finish()
    }

    /// `(entitlement_id, sync_id, id)`: entitlements in order, each one's rows by row
    /// id.
    fn entitlement_sync_grant_index(&self, mut index: IndexOut<'_>) -> Result<u64> {
        let spool = self.spool;
        for e in &self.orders.entitlements {
            let ent = &spool.entitlements[*e as usize].id;
            for rowid in self.runs_of(*e).iter().flat_map(Run::rows) {
                if self.is_skipped(rowid) {
                    continue;
                }
                // `id` is the row id (an INTEGER PRIMARY KEY), and the key ends with the
                // row id as every index key does.
                index.push(&[
                    Value::Text(ent),
                    Value::Text(self.sync_id),
                    Value::Integer(i64::from(rowid)),
                    Value::Integer(i64::from(rowid)),
                ])?;
            }
        }
        index.finish()
    }

    /// `(sync_id) where expansion is not null` and `(sync_id) where needs_expansion =
    /// 1`: both hold exactly the group grants.
    fn expandable_index(&self, mut index: IndexOut<'_>) -> Result<u64> {
        for rowid in &self.spool.expandable {
            if self.is_skipped(*rowid) {
                continue;
            }
            index.push(&[Value::Text(self.sync_id), Value::Integer(i64::from(*rowid))])?;
        }
        index.finish()
    }

    /// `(principal_resource_type_id, principal_resource_id)`: a counting sort by
    /// principal, one slice of principals (at most [`PRINCIPAL_SLICE`] rows, unless
    /// one principal alone has more) per pass over the principal file.
    fn principal_index(&self, mut index: IndexOut<'_>) -> Result<u64> {
        let spool = self.spool;
        let mut counts = vec![0usize; spool.principals.len()];
        self.scan_principals(index.stop, |_, p| counts[p as usize] += 1)?;
        let order = &self.orders.principals;
        let mut slot = vec![usize::MAX; spool.principals.len()];
        let mut placed: Vec<u32> = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut rows = 0;
            while end < order.len()
                && (end == start || rows + counts[order[end] as usize] <= PRINCIPAL_SLICE)
            {
                slot[order[end] as usize] = rows;
                rows += counts[order[end] as usize];
                end += 1;
            }
            placed.clear();
            placed.resize(rows, 0);
            self.scan_principals(index.stop, |rowid, p| {
                let s = &mut slot[p as usize];
                if *s != usize::MAX {
                    placed[*s] = rowid;
                    *s += 1;
                }
            })?;
            let mut next = 0;
            for p in &order[start..end] {
                let principal = &spool.principals[*p as usize];
                let count = counts[*p as usize];
                for rowid in &placed[next..next + count] {
                    index.push(&[
                        Value::Text(&principal.resource_type),
                        Value::Text(&principal.id),
                        Value::Integer(i64::from(*rowid)),
                    ])?;
                }
                next += count;
                slot[*p as usize] = usize::MAX;
            }
            start = end;
        }
        index.finish()
    }

    /// Calls `each(row id, principal)` for every kept row, in row id order.
    fn scan_principals(
        &self,
        stop: &CancellationToken,
        mut each: impl FnMut(u32, u32),
    ) -> Result<()> {
        let path = &self.spool.principals_path;
        let file = File::open(path).map_err(|e| C1zError::io("open", path, e))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let mut chunk = vec![0u8; READ_BUFFER];
        let mut rowid = 0u32;
        let mut left = self.spool.rows as usize * 4;
        while left > 0 {
            if stop.is_cancelled() {
                return Err(C1zError::Cancelled);
            }
            let n = left.min(chunk.len());
            reader
                .read_exact(&mut chunk[..n])
                .map_err(|e| C1zError::io("read", path, e))?;
            for bytes in chunk[..n].chunks_exact(4) {
                rowid += 1;
                if !self.is_skipped(rowid) {
                    each(
                        rowid,
                        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
                    );
                }
            }
            left -= n;
        }
        Ok(())
    }
}

/// Keys of the unique grant-id index: a key repeating the previous one is not
/// written, and its row is left out everywhere.
struct UniqueKeys<'a> {
    sync_id: &'a str,
    previous: String,
    skipped: &'a mut Vec<u32>,
}

impl UniqueKeys<'_> {
    fn push(&mut self, index: &mut IndexOut<'_>, grant: &str, rowid: u32) -> Result<()> {
        if grant == self.previous.as_str() {
            self.skipped.push(rowid);
            return Ok(());
        }
        index.push(&[
            Value::Text(grant),
            Value::Text(self.sync_id),
            Value::Integer(i64::from(rowid)),
        ])?;
        self.previous.clear();
        self.previous.push_str(grant);
        Ok(())
    }
}

/// `<entitlement>:<principal type>:<principal id>`.
fn grant_id(entitlement: &str, principal: &PrincipalKey) -> String {
    format!("{entitlement}:{}:{}", principal.resource_type, principal.id)
}
