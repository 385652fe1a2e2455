//! Grant rows on their way to `v1_grants`, kept outside SQLite until the end.
//!
//! A large tenant has millions of (mostly expanded) grants, and SQLite's insert path
//! costs microseconds per row for the table and each of its seven indexes. So the
//! writer hands every grant row to a [`GrantSpool`] instead: the row is encoded once
//! as an SQLite record and appended to a work file, and only what the indexes are
//! ordered by is kept — which entitlement and principal each row has, as small
//! numbers. At the end [`super::grant_load`] builds the table and its indexes from
//! this, page by page, in key order.
//!
//! Row ids are given in arrival order, starting at 1. Rows arrive in runs of one
//! entitlement (a space entitlement's rows all at once, a group's members a page at a
//! time), which is what lets the loader order most indexes without sorting rows.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::btree::{Value, encode_record};
use super::expand::GrantRow;
use super::{C1zError, Result};

/// Buffer of each work file: one write call per this many bytes.
const WRITE_BUFFER: usize = 1 << 20;
/// zstd level of the record file. Rows of one entitlement repeat its whole encoding,
/// so even zstd's fastest levels shrink the file about tenfold: gigabytes fewer to
/// write and read back, for less CPU than the page cache's writeback would cost.
const RECORDS_LEVEL: i32 = -1;

/// Extension of the file of encoded rows, zstd-compressed: per row a little-endian
/// `u32` length, then the record.
const RECORDS_EXTENSION: &str = "records";
/// Extension of the file of the rows' principal numbers: a little-endian `u32` per row.
const PRINCIPALS_EXTENSION: &str = "principals";

/// An entitlement grants are made on, and the resource it belongs to.
///
/// Spools hold one per entitlement and principal of the sync (about 140,000 on a
/// large tenant) for the whole sync, so ids are shared with the lookup maps and
/// resource types (a handful) with each other, instead of each copied.
#[derive(Debug)]
pub(crate) struct EntitlementKey<S = Arc<str>> {
    pub(crate) id: S,
    pub(crate) resource_type: S,
    pub(crate) resource_id: S,
}

/// A principal grants are made to.
#[derive(Debug)]
pub(crate) struct PrincipalKey {
    pub(crate) resource_type: Arc<str>,
    pub(crate) id: Arc<str>,
}

/// Consecutive rows of one entitlement: row ids `first ..= first + len - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Run {
    pub(crate) entitlement: u32,
    pub(crate) first: u32,
    pub(crate) len: u32,
}

impl Run {
    pub(crate) fn rows(&self) -> std::ops::Range<u32> {
        self.first..self.first + self.len
    }
}

/// Collects grant rows during the sync.
pub(crate) struct GrantSpool {
    records_path: PathBuf,
    principals_path: PathBuf,
    records: zstd::stream::Encoder<'static, BufWriter<File>>,
    principals: BufWriter<File>,
    rows: u32,
    entitlements: Vec<EntitlementKey>,
    entitlement_numbers: HashMap<Arc<str>, u32>,
    principal_keys: Vec<PrincipalKey>,
    /// Principal type → principal id → number (two levels so lookups borrow `&str`).
    principal_numbers: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
    /// Every resource type seen (a handful), shared by the keys.
    resource_types: Vec<Arc<str>>,
    runs: Vec<Run>,
    /// Row ids of group grants (those with an `expansion`), ascending.
    expandable: Vec<u32>,
    scratch: Vec<u8>,
}

/// A record file and the rows it holds.
pub(crate) struct RecordFile {
    pub(crate) path: PathBuf,
    pub(crate) rows: u32,
}

/// A spool whose files are complete, ready for [`super::grant_load`].
pub(crate) struct SealedSpool {
    /// The record files, rows in row id order across them.
    pub(crate) record_files: Vec<RecordFile>,
    pub(crate) principals_path: PathBuf,
    pub(crate) rows: u32,
    pub(crate) entitlements: Vec<EntitlementKey>,
    pub(crate) principals: Vec<PrincipalKey>,
    pub(crate) runs: Vec<Run>,
    pub(crate) expandable: Vec<u32>,
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    let file = File::create(path).map_err(|e| C1zError::io("create", path, e))?;
    Ok(BufWriter::with_capacity(WRITE_BUFFER, file))
}

impl GrantSpool {
    /// A spool whose files live in `dir` (the writer's work directory), named
    /// `<name>.records` and `<name>.principals`.
    pub(crate) fn create(dir: &Path, name: &str) -> Result<Self> {
        let records_path = dir.join(format!("{name}.{RECORDS_EXTENSION}"));
        let principals_path = dir.join(format!("{name}.{PRINCIPALS_EXTENSION}"));
        let records = zstd::stream::Encoder::new(create(&records_path)?, RECORDS_LEVEL)
            .map_err(|e| C1zError::io("compress", &records_path, e))?;
        Ok(Self {
            records,
            principals: create(&principals_path)?,
            records_path,
            principals_path,
            rows: 0,
            entitlements: Vec::new(),
            entitlement_numbers: HashMap::new(),
            principal_keys: Vec::new(),
            principal_numbers: HashMap::new(),
            resource_types: Vec::new(),
            runs: Vec::new(),
            expandable: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Appends one row. Its `external_id` must be
    /// `<entitlement id>:<principal type>:<principal id>`: the loader orders the
    /// unique grant index by that composition instead of storing every id.
    pub(crate) fn push(&mut self, sync_id: &str, row: &GrantRow<'_>) -> Result<()> {
        if !is_grant_id(row) {
            return Err(C1zError::GrantId(row.external_id.to_string()));
        }
        let rowid = self.rows.checked_add(1).ok_or(C1zError::TooManyGrants)?;
        self.scratch.clear();
        encode_record(
            &[
                // `id integer primary key` is the row id; SQLite stores NULL for it.
                Value::Null,
                Value::Text(row.resource_type_id),
                Value::Text(row.resource_id),
                Value::Text(row.entitlement_id),
                Value::Text(row.principal_type),
                Value::Text(row.principal_id),
                Value::Text(row.external_id),
                row.expansion.map_or(Value::Null, Value::Blob),
                Value::Integer(i64::from(row.expansion.is_some())),
                Value::Blob(row.data),
                Value::Text(sync_id),
                Value::Text(row.discovered_at),
            ],
            &mut self.scratch,
        );
        let len = u32::try_from(self.scratch.len()).map_err(|_| C1zError::TooManyGrants)?;
        self.records
            .write_all(&len.to_le_bytes())
            .and_then(|()| self.records.write_all(&self.scratch))
            .map_err(|e| C1zError::io("write", &self.records_path, e))?;
        let principal = self.principal(row.principal_type, row.principal_id)?;
        self.principals
            .write_all(&principal.to_le_bytes())
            .map_err(|e| C1zError::io("write", &self.principals_path, e))?;
        let entitlement = self.entitlement(row)?;
        match self.runs.last_mut() {
            Some(run) if run.entitlement == entitlement && run.first + run.len == rowid => {
                run.len += 1;
            }
            _ => self.runs.push(Run {
                entitlement,
                first: rowid,
                len: 1,
            }),
        }
        if row.expansion.is_some() {
            self.expandable.push(rowid);
        }
        self.rows = rowid;
        Ok(())
    }

    /// Flushes the files and hands everything to the loader.
    pub(crate) fn seal(self) -> Result<SealedSpool> {
        self.seal_with(None)
    }

    /// Seals this spool with the rows of `tail` after its own, as if they had been
    /// pushed here: `tail`'s row ids follow this spool's, its entitlement and
    /// principal numbers are renumbered into this spool's, and its record file
    /// is read after this one's. Lets two threads fill two spools with consecutive
    /// stretches of rows.
    pub(crate) fn seal_with(mut self, tail: Option<GrantSpool>) -> Result<SealedSpool> {
        let mut record_files = vec![RecordFile {
            path: self.records_path.clone(),
            rows: self.rows,
        }];
        if let Some(tail) = tail {
            record_files.extend(self.append(tail)?);
        }
        let Self {
            records_path,
            principals_path,
            records,
            principals,
            rows,
            entitlements,
            principal_keys,
            runs,
            expandable,
            ..
        } = self;
        records
            .finish()
            .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
            .map_err(|e| C1zError::io("write", &records_path, e))?;
        principals
            .into_inner()
            .map_err(|e| C1zError::io("write", &principals_path, e.into_error()))?;
        Ok(SealedSpool {
            record_files,
            principals_path,
            rows,
            entitlements,
            principals: principal_keys,
            runs,
            expandable,
        })
    }

    /// Takes in `tail`'s rows (see [`GrantSpool::seal_with`]); returns its record
    /// files, complete, and removes its principal file.
    fn append(&mut self, tail: GrantSpool) -> Result<Vec<RecordFile>> {
        let sealed = tail.seal()?;
        let offset = self.rows;
        self.rows = offset
            .checked_add(sealed.rows)
            .ok_or(C1zError::TooManyGrants)?;
        let principal_numbers = sealed
            .principals
            .iter()
            .map(|key| self.principal(&key.resource_type, &key.id))
            .collect::<Result<Vec<u32>>>()?;
        let path = &sealed.principals_path;
        let mut reader = BufReader::with_capacity(
            WRITE_BUFFER,
            File::open(path).map_err(|e| C1zError::io("open", path, e))?,
        );
        let mut number = [0u8; 4];
        for _ in 0..sealed.rows {
            reader
                .read_exact(&mut number)
                .map_err(|e| C1zError::io("read", path, e))?;
            let ours = renumbered(&principal_numbers, u32::from_le_bytes(number), path)?;
            self.principals
                .write_all(&ours.to_le_bytes())
                .map_err(|e| C1zError::io("write", &self.principals_path, e))?;
        }
        std::fs::remove_file(path).map_err(|e| C1zError::io("remove", path, e))?;
        let entitlement_numbers = sealed
            .entitlements
            .iter()
            .map(|key| self.entitlement_number(key))
            .collect::<Result<Vec<u32>>>()?;
        for run in &sealed.runs {
            self.runs.push(Run {
                entitlement: renumbered(&entitlement_numbers, run.entitlement, path)?,
                first: run.first + offset,
                len: run.len,
            });
        }
        self.expandable
            .extend(sealed.expandable.iter().map(|rowid| rowid + offset));
        Ok(sealed.record_files)
    }

    fn entitlement(&mut self, row: &GrantRow<'_>) -> Result<u32> {
        // Rows come in runs of one entitlement: the last run usually answers.
        if let Some(run) = self.runs.last()
            && let Some(key) = self.entitlements.get(run.entitlement as usize)
            && *key.id == *row.entitlement_id
        {
            return Ok(run.entitlement);
        }
        self.entitlement_number(&EntitlementKey {
            id: row.entitlement_id,
            resource_type: row.resource_type_id,
            resource_id: row.resource_id,
        })
    }

    fn entitlement_number(&mut self, key: &EntitlementKey<impl AsRef<str>>) -> Result<u32> {
        if let Some(n) = self.entitlement_numbers.get(key.id.as_ref()) {
            return Ok(*n);
        }
        let n = u32::try_from(self.entitlements.len()).map_err(|_| C1zError::TooManyGrants)?;
        let id: Arc<str> = Arc::from(key.id.as_ref());
        let resource_type = self.resource_type(key.resource_type.as_ref());
        self.entitlements.push(EntitlementKey {
            id: id.clone(),
            resource_type,
            resource_id: Arc::from(key.resource_id.as_ref()),
        });
        self.entitlement_numbers.insert(id, n);
        Ok(n)
    }

    /// The shared copy of a resource type name.
    fn resource_type(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.resource_types.iter().find(|t| ***t == *name) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(name);
        self.resource_types.push(new.clone());
        new
    }

    fn principal(&mut self, resource_type: &str, id: &str) -> Result<u32> {
        if let Some(n) = self
            .principal_numbers
            .get(resource_type)
            .and_then(|ids| ids.get(id))
        {
            return Ok(*n);
        }
        let n = u32::try_from(self.principal_keys.len()).map_err(|_| C1zError::TooManyGrants)?;
        let resource_type = self.resource_type(resource_type);
        let id: Arc<str> = Arc::from(id);
        self.principal_keys.push(PrincipalKey {
            resource_type: resource_type.clone(),
            id: id.clone(),
        });
        self.principal_numbers
            .entry(resource_type)
            .or_default()
            .insert(id, n);
        Ok(n)
    }
}

/// The number `theirs` has in the spool a tail is appended to. A tail only names its
/// own entitlements and principals, so a miss means the tail is damaged.
fn renumbered(ours: &[u32], theirs: u32, tail: &Path) -> Result<u32> {
    ours.get(theirs as usize).copied().ok_or_else(|| {
        let why = format!("number {theirs} out of range");
        C1zError::io(
            "read",
            tail,
            io::Error::new(io::ErrorKind::InvalidData, why),
        )
    })
}

/// Whether the row's grant id is `<entitlement>:<principal type>:<principal id>`.
fn is_grant_id(row: &GrantRow<'_>) -> bool {
    let parts = [
        row.entitlement_id,
        ":",
        row.principal_type,
        ":",
        row.principal_id,
    ];
    let mut rest = row.external_id;
    for part in parts {
        match rest.strip_prefix(part) {
            Some(after) => rest = after,
            None => return false,
        }
    }
    rest.is_empty()
}

impl SealedSpool {
    /// Deletes the work files early: they are as large as the table built from them.
    pub(crate) fn remove(&self) -> Result<()> {
        let records = self.record_files.iter().map(|file| &file.path);
        for path in records.chain([&self.principals_path]) {
            std::fs::remove_file(path).map_err(|e| C1zError::io("remove", path, e))?;
        }
        Ok(())
    }
}
