//! Bulk loading of SQLite B-trees from rows already in key order.
//!
//! Inserting through SQLite costs about 2 µs per row and per B-tree, far too much for
//! ten million grants and their seven indexes. Rows that are already sorted can go
//! straight into pages instead: SQLite creates the database (schema, empty trees,
//! the small tables) and closes it; [`PageFile`] reopens the file, the builders
//! append their pages past its end and put each tree's top node into the tree's
//! existing root page (the number `sqlite_master` knows), and [`PageFile::finish`]
//! patches the header. SQLite then sees an ordinary, valid database.
//!
//! Trees are built bottom-up in one pass, keeping one open page per level. Leaves and
//! interior pages are packed full. A level writes a full page only once its next
//! entry has arrived, so at the end the last page of a level can still lend its last
//! cell to the following page: every interior page needs at least one cell besides
//! its right-most child pointer. The format is described in
//! <https://www.sqlite.org/fileformat2.html>.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

#[cfg(test)]
mod tests;

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// First bytes of a rollback journal that still holds a transaction to roll back.
const JOURNAL_MAGIC: [u8; 8] = [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7];
const DB_HEADER_LEN: usize = 100;

const TABLE_LEAF: u8 = 0x0D;
const TABLE_INTERIOR: u8 = 0x05;
const INDEX_LEAF: u8 = 0x0A;
const INDEX_INTERIOR: u8 = 0x02;
const LEAF_HEADER: usize = 8;
const INTERIOR_HEADER: usize = 12;
/// SQLite reserves at least this much room for any cell (it needs it to turn a freed
/// cell into a freeblock), and `integrity_check` counts cells that size.
const MIN_CELL: usize = 4;
const CELL_POINTER: usize = 2;
/// SQLite's largest page number (its page count limit).
const MAX_PAGE_NO: u32 = 0xFFFF_FFFE;
/// File offset of SQLite's lock bytes (`PENDING_BYTE`). SQLite never puts the page
/// holding it in any tree or the freelist, and `integrity_check` counts it as taken,
/// so a file that grows past 1 GiB must skip that page.
const LOCK_BYTE_OFFSET: u64 = 0x4000_0000;
/// Payload sizes beyond this cannot be read back by SQLite, whose blobs are limited
/// to `i32` lengths.
const MAX_PAYLOAD: usize = i32::MAX as usize;

/// One column value of a record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Null,
    Integer(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// Appends the SQLite record encoding of `values` to `out` (header-size varint, serial
/// types, body; schema format 4, so 0 and 1 use serial types 8 and 9; integers in the
/// smallest serial type that holds them; text 2n+13, blob 2n+12).
pub(crate) fn encode_record(values: &[Value<'_>], out: &mut Vec<u8>) {
    let types_len: usize = values.iter().map(|v| varint_len(serial_type(v))).sum();
    push_varint(out, record_header_len(types_len) as u64);
    for value in values {
        push_varint(out, serial_type(value));
    }
    for value in values {
        match *value {
            Value::Null => {}
            Value::Integer(i) => out.extend_from_slice(&i.to_be_bytes()[8 - int_width(i).1..]),
            Value::Text(s) => out.extend_from_slice(s.as_bytes()),
            Value::Blob(b) => out.extend_from_slice(b),
        }
    }
}

/// The header length counts its own size varint, which may grow with it.
fn record_header_len(types_len: usize) -> usize {
    let mut size_len = 1;
    while varint_len((types_len + size_len) as u64) > size_len {
        size_len += 1;
    }
    types_len + size_len
}

fn serial_type(value: &Value<'_>) -> u64 {
    match *value {
        Value::Null => 0,
        Value::Integer(i) => int_width(i).0,
        Value::Text(s) => 2 * s.len() as u64 + 13,
        Value::Blob(b) => 2 * b.len() as u64 + 12,
    }
}

/// Serial type and body length of an integer. Serial types 8 and 9 (the constants 0
/// and 1, without a body) exist from schema format 4 on, which [`PageFile::open`]
/// insists on.
fn int_width(i: i64) -> (u64, usize) {
    match i {
        0 => (8, 0),
        1 => (9, 0),
        -0x80..=0x7f => (1, 1),
        -0x8000..=0x7fff => (2, 2),
        -0x80_0000..=0x7f_ffff => (3, 3),
        -0x8000_0000..=0x7fff_ffff => (4, 4),
        -0x8000_0000_0000..=0x7fff_ffff_ffff => (5, 6),
        _ => (6, 8),
    }
}

/// Largest value that still fits SQLite's 8-byte varint form (7 bits per byte).
const VARINT_8_MAX: u64 = (1 << 56) - 1;

fn varint_len(v: u64) -> usize {
    if v > VARINT_8_MAX {
        9
    } else {
        let bits = (64 - v.leading_zeros() as usize).max(1);
        bits.div_ceil(7)
    }
}

/// Writes SQLite's varint of `v` (big-endian groups of 7 bits, except that a 9th
/// byte carries 8) to the front of `buf`; returns its length.
fn put_varint(v: u64, buf: &mut [u8; 9]) -> usize {
    if v > VARINT_8_MAX {
        buf[8] = v as u8;
        let mut rest = v >> 8;
        for byte in buf[..8].iter_mut().rev() {
            *byte = (rest as u8 & 0x7f) | 0x80;
            rest >>= 7;
        }
        return 9;
    }
    let len = varint_len(v);
    let mut rest = v;
    for (i, byte) in buf[..len].iter_mut().enumerate().rev() {
        let more = if i + 1 < len { 0x80 } else { 0 };
        *byte = (rest as u8 & 0x7f) | more;
        rest >>= 7;
    }
    len
}

fn push_varint(out: &mut Vec<u8>, v: u64) {
    // Most serial types and header sizes are below 128.
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let mut buf = [0; 9];
    let len = put_varint(v, &mut buf);
    out.extend_from_slice(&buf[..len]);
}

/// Reads a varint from the front of `bytes`: value and length, None if cut short.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..8 {
        let byte = *bytes.get(i)?;
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    Some(((v << 8) | u64::from(*bytes.get(8)?), 9))
}

fn invalid_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn be32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        b.copy_from_slice(src);
    }
    u32::from_be_bytes(b)
}

/// An SQLite database file being extended with pages.
pub(crate) struct PageFile {
    file: File,
    page_size: usize,
    /// Pages the file held when opened; every root page is one of them.
    existing: u32,
    /// Highest page number handed out (or `existing`); builders on several threads
    /// share the file.
    last: AtomicU32,
}

impl PageFile {
    /// Opens a database file SQLite wrote and closed (rollback-journal mode, no
    /// pending journal): reads page size (header offset 16, value 1 means 65536) and
    /// page count (offset 28); refuses (io::ErrorKind::InvalidData) a file whose
    /// freelist is not empty, or whose header is not an SQLite 3 header, or whose
    /// reserved bytes per page (offset 20) are not 0.
    ///
    /// Also refused, because the appended pages would be wrong for them: WAL mode
    /// (the WAL may hold newer pages), auto-vacuum (it needs pointer-map entries for
    /// every page), text encodings other than UTF-8, schema formats other than 4
    /// (serial types 8 and 9), and a hot rollback journal (SQLite would play it back
    /// over the new pages).
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut header = [0; DB_HEADER_LEN];
        file.read_exact_at(&mut header, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                invalid_data(format!("{} is too short for a database", path.display()))
            } else {
                e
            }
        })?;
        let page_size = check_header(&header)
            .map_err(|why| invalid_data(format!("{}: {why}", path.display())))?;
        check_no_hot_journal(path)?;
        let existing = header_page_count(&header, file.metadata()?.len(), page_size);
        if existing == 0 {
            return Err(invalid_data(format!("{} has no pages", path.display())));
        }
        Ok(Self {
            file,
            page_size,
            existing,
            last: AtomicU32::new(existing),
        })
    }

    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    /// A fresh page number past the end of the file (never the lock-byte page).
    pub(crate) fn allocate(&self) -> u32 {
        // Past the limit every call returns the same number, which `write_page` refuses.
        let next = |n: u32| {
            let page = n.saturating_add(1);
            if page == self.lock_byte_page() {
                page.saturating_add(1)
            } else {
                page
            }
        };
        let update =
            self.last
                .fetch_update(AtomicOrdering::Relaxed, AtomicOrdering::Relaxed, |n| {
                    Some(next(n))
                });
        let (Ok(previous) | Err(previous)) = update;
        next(previous)
    }

    /// The page that holds [`LOCK_BYTE_OFFSET`]; left a hole in the file.
    fn lock_byte_page(&self) -> u32 {
        u32::try_from(LOCK_BYTE_OFFSET / self.page_size as u64 + 1).unwrap_or(u32::MAX)
    }

    fn last(&self) -> u32 {
        self.last.load(AtomicOrdering::Relaxed)
    }

    /// Writes one full page (len == page_size) at `page_no` (1-based). Use positioned
    /// writes (std::os::unix::fs::FileExt::write_all_at); pages are mostly written in
    /// increasing order.
    pub(crate) fn write_page(&self, page_no: u32, page: &[u8]) -> io::Result<()> {
        if page.len() != self.page_size {
            return Err(invalid_input(format!(
                "page of {} bytes in a file of {}-byte pages",
                page.len(),
                self.page_size
            )));
        }
        // Page 1 starts with the file header and holds the schema: never ours.
        let last = self.last();
        if page_no < 2 || page_no > last || page_no > MAX_PAGE_NO {
            return Err(invalid_input(format!(
                "page {page_no} is not a page of this file (1..={})",
                last.min(MAX_PAGE_NO)
            )));
        }
        if page_no == self.lock_byte_page() {
            return Err(invalid_input(format!(
                "page {page_no} holds SQLite's lock bytes"
            )));
        }
        self.file.write_all_at(page, self.offset(page_no))
    }

    /// Patches the header: database size in pages (offset 28) = highest page number
    /// allocated or existing; file change counter (offset 24) incremented and
    /// version-valid-for (offset 92) set equal to it, so SQLite trusts the size field.
    /// Then flushes (no fsync needed).
    pub(crate) fn finish(mut self) -> io::Result<()> {
        let last = self.last();
        if last > MAX_PAGE_NO {
            return Err(invalid_input("more pages than SQLite allows".to_string()));
        }
        let needed = self.offset(last) + self.page_size as u64;
        if self.file.metadata()?.len() < needed {
            return Err(invalid_input(format!(
                "pages up to {last} were allocated but not all written"
            )));
        }
        let mut counter = [0; 4];
        self.file.read_exact_at(&mut counter, 24)?;
        let counter = u32::from_be_bytes(counter).wrapping_add(1).to_be_bytes();
        let mut counter_and_size = [0; 8];
        counter_and_size[..4].copy_from_slice(&counter);
        counter_and_size[4..].copy_from_slice(&last.to_be_bytes());
        self.file.write_all_at(&counter_and_size, 24)?;
        self.file.write_all_at(&counter, 92)?;
        self.file.flush()
    }

    /// A copy of one of the pages the file held when opened.
    pub(crate) fn read_existing_page(&self, page_no: u32) -> io::Result<Vec<u8>> {
        if page_no < 1 || page_no > self.existing {
            return Err(invalid_input(format!(
                "page {page_no} is not an existing page (1..={})",
                self.existing
            )));
        }
        let mut page = vec![0; self.page_size];
        self.file.read_exact_at(&mut page, self.offset(page_no))?;
        Ok(page)
    }

    /// Drops every page appended since the file was opened, to build again from the
    /// same start. Root pages the builders filled must be put back by the caller
    /// (from [`Self::read_existing_page`] copies): the file cannot know them.
    pub(crate) fn discard_appended(&mut self) -> io::Result<()> {
        self.file
            .set_len(u64::from(self.existing) * self.page_size as u64)?;
        self.last = AtomicU32::new(self.existing);
        Ok(())
    }

    fn offset(&self, page_no: u32) -> u64 {
        u64::from(page_no - 1) * self.page_size as u64
    }

    /// Makes sure `root` is one of the file's own pages and still the empty leaf
    /// SQLite created: overwriting a filled tree would orphan its pages.
    fn check_empty_root(&self, root: u32, leaf_kind: u8) -> io::Result<()> {
        if root < 2 || root > self.existing {
            return Err(invalid_input(format!(
                "root page {root} is not an existing page (2..={})",
                self.existing
            )));
        }
        let mut header = [0; LEAF_HEADER];
        self.file.read_exact_at(&mut header, self.offset(root))?;
        if header[0] != leaf_kind || header[3..5] != [0, 0] {
            return Err(invalid_input(format!(
                "root page {root} is not an empty leaf of type {leaf_kind:#04x}"
            )));
        }
        Ok(())
    }
}

/// Validates the database header; returns the page size or why the file is refused.
fn check_header(h: &[u8; DB_HEADER_LEN]) -> Result<usize, &'static str> {
    if &h[..16] != SQLITE_MAGIC {
        return Err("not an SQLite 3 database");
    }
    let page_size = match u16::from_be_bytes([h[16], h[17]]) {
        1 => 65_536,
        n => usize::from(n),
    };
    if !page_size.is_power_of_two() || !(512..=65_536).contains(&page_size) {
        return Err("invalid page size");
    }
    if h[18] != 1 || h[19] != 1 {
        return Err("not in rollback-journal mode");
    }
    if h[20] != 0 {
        return Err("pages have reserved bytes");
    }
    if be32(h, 32) != 0 || be32(h, 36) != 0 {
        return Err("the freelist is not empty");
    }
    if be32(h, 44) != 4 {
        return Err("schema format is not 4");
    }
    if be32(h, 52) != 0 {
        return Err("auto-vacuum is on");
    }
    if be32(h, 56) != 1 {
        return Err("text encoding is not UTF-8");
    }
    Ok(page_size)
}

/// The header's page count, unless an old writer left it stale (the change counter
/// and version-valid-for differ): SQLite then goes by the file size, and so do we.
fn header_page_count(h: &[u8; DB_HEADER_LEN], file_len: u64, page_size: usize) -> u32 {
    let in_header = be32(h, 28);
    if in_header != 0 && be32(h, 24) == be32(h, 92) {
        in_header
    } else {
        u32::try_from(file_len / page_size as u64).unwrap_or(u32::MAX)
    }
}

fn check_no_hot_journal(path: &Path) -> io::Result<()> {
    let mut journal = OsString::from(path.as_os_str());
    journal.push("-journal");
    let file = match File::open(&journal) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut magic = [0; 8];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) if magic == JOURNAL_MAGIC => Err(invalid_data(format!(
            "{} has a pending rollback journal",
            path.display()
        ))),
        Err(e) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
        _ => Ok(()),
    }
}

/// Payload limits of one page size (reserved bytes are 0, so usable size = page size).
#[derive(Clone, Copy)]
struct Geometry {
    page_size: usize,
    valid: bool,
    table_max_local: usize,
    index_max_local: usize,
    min_local: usize,
}

impl Geometry {
    fn new(page_size: usize) -> Self {
        let valid = page_size.is_power_of_two() && (512..=65_536).contains(&page_size);
        let u = if valid { page_size } else { 512 };
        Self {
            page_size,
            valid,
            table_max_local: u - 35,
            index_max_local: (u - 12) * 64 / 255 - 23,
            min_local: (u - 12) * 32 / 255 - 23,
        }
    }

    fn check(&self) -> io::Result<()> {
        if self.valid {
            Ok(())
        } else {
            Err(invalid_input(format!(
                "invalid page size {}",
                self.page_size
            )))
        }
    }

    /// Bytes of a payload kept in the cell itself; the rest goes to overflow pages.
    fn local_len(&self, payload: usize, max_local: usize) -> usize {
        if payload <= max_local {
            return payload;
        }
        // SQLite's choice: fill the last overflow page as far as possible while
        // keeping between min_local and max_local bytes in the cell.
        let surplus = self.min_local + (payload - self.min_local) % (self.page_size - 4);
        if surplus <= max_local {
            surplus
        } else {
            self.min_local
        }
    }
}

fn check_payload_len(len: usize) -> io::Result<()> {
    if len > MAX_PAYLOAD {
        return Err(invalid_input(format!(
            "payload of {len} bytes is too large"
        )));
    }
    Ok(())
}

/// Room a cell takes in the content area.
fn cell_space(len: usize) -> usize {
    len.max(MIN_CELL)
}

fn is_interior(kind: u8) -> bool {
    kind == TABLE_INTERIOR || kind == INDEX_INTERIOR
}

/// One B-tree page being filled: cell pointers grow up from the page header, cell
/// content grows down from the end of the page, without gaps (SQLite's integrity
/// check counts any gap as fragmentation, which the header would have to declare).
struct Page {
    buf: Vec<u8>,
    kind: u8,
    header: usize,
    cells: usize,
    /// Start of the cell content area.
    top: usize,
    /// Length of the most recent cell, without padding, for `pop_cell`.
    last_len: usize,
}

impl Page {
    fn new(kind: u8, page_size: usize) -> Self {
        Self {
            buf: vec![0; page_size],
            kind,
            header: if is_interior(kind) {
                INTERIOR_HEADER
            } else {
                LEAF_HEADER
            },
            cells: 0,
            top: page_size,
            last_len: 0,
        }
    }

    fn interior(&self) -> bool {
        self.header == INTERIOR_HEADER
    }

    fn clear(&mut self) {
        self.buf.fill(0);
        self.cells = 0;
        self.top = self.buf.len();
    }

    fn fits(&self, len: usize) -> bool {
        let used = self.header + CELL_POINTER * self.cells;
        cell_space(len) + CELL_POINTER <= self.top.saturating_sub(used)
    }

    /// Adds the cell made of `parts` in order (so callers need not assemble it).
    fn push_cell(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let len = parts.iter().map(|p| p.len()).sum();
        if !self.fits(len) {
            return Err(io::Error::other(format!(
                "cell of {len} bytes does not fit its page"
            )));
        }
        let start = self.top - cell_space(len);
        let mut dst = &mut self.buf[start..self.top];
        for part in parts {
            let (head, rest) = dst.split_at_mut(part.len());
            head.copy_from_slice(part);
            dst = rest;
        }
        dst.fill(0);
        let pointer = self.header + CELL_POINTER * self.cells;
        // The content area starts at most at page size - MIN_CELL, below 65536.
        self.buf[pointer..pointer + CELL_POINTER].copy_from_slice(&(start as u16).to_be_bytes());
        self.cells += 1;
        self.top = start;
        self.last_len = len;
        Ok(())
    }

    /// Takes the most recent cell off the page into `out`; the page keeps at least one.
    fn pop_cell(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if self.cells < 2 {
            return Err(io::Error::other("a full page with fewer than two cells"));
        }
        out.clear();
        out.extend_from_slice(&self.buf[self.top..self.top + self.last_len]);
        let end = self.top + cell_space(self.last_len);
        self.buf[self.top..end].fill(0);
        self.top = end;
        self.cells -= 1;
        let pointer = self.header + CELL_POINTER * self.cells;
        self.buf[pointer..pointer + CELL_POINTER].fill(0);
        Ok(())
    }

    /// Fills in the page header; `right_child` is ignored on leaves.
    fn seal(&mut self, right_child: u32) -> &[u8] {
        self.buf[0] = self.kind;
        self.buf[1..3].fill(0);
        self.buf[3..5].copy_from_slice(&(self.cells as u16).to_be_bytes());
        // An empty 64 KiB page has its content area at 65536, written as 0.
        self.buf[5..7].copy_from_slice(&((self.top & 0xffff) as u16).to_be_bytes());
        self.buf[7] = 0;
        if self.interior() {
            self.buf[8..12].copy_from_slice(&right_child.to_be_bytes());
        }
        &self.buf
    }
}

/// One level of a tree under construction. Its entries are (child page, separator)
/// pairs; on the leaf level the child is unused and the separator is the cell. On
/// interior levels an entry becomes the cell `child ++ separator`, except the last
/// entry of a page, whose child becomes the right-most pointer and whose separator
/// goes up to the parent level. Index separators are index cells (payload size,
/// local payload, overflow page) and move between levels as they are, overflow chain
/// included; table separators are the largest rowid of the child, as a varint.
struct Level {
    page: Page,
    /// An entry arrived that did not fit the full page; the page waits to learn
    /// whether more entries follow before being written.
    pending: bool,
    pending_child: u32,
    pending_sep: Vec<u8>,
    written: u64,
}

impl Level {
    fn new(kind: u8, page_size: usize) -> Self {
        Self {
            page: Page::new(kind, page_size),
            pending: false,
            pending_child: 0,
            pending_sep: Vec::new(),
            written: 0,
        }
    }

    /// Adds an entry; returns the page written out to make room, whose separator is
    /// then left in `pending_sep` for the parent level.
    fn push(&mut self, file: &PageFile, child: u32, sep: &[u8]) -> io::Result<Option<u32>> {
        let child_bytes = child.to_be_bytes();
        let prefix: &[u8] = if self.page.interior() {
            &child_bytes
        } else {
            &[]
        };
        if self.pending {
            let page_no = self.write_new(file, self.pending_child)?;
            self.pending = false;
            self.page.clear();
            self.page.push_cell(&[prefix, sep])?;
            return Ok(Some(page_no));
        }
        if self.page.fits(prefix.len() + sep.len()) {
            self.page.push_cell(&[prefix, sep])?;
        } else {
            self.pending = true;
            self.pending_child = child;
            self.pending_sep.clear();
            self.pending_sep.extend_from_slice(sep);
        }
        Ok(None)
    }

    fn write_new(&mut self, file: &PageFile, right_child: u32) -> io::Result<u32> {
        let page_no = file.allocate();
        self.write(file, page_no, right_child)?;
        Ok(page_no)
    }

    fn write(&mut self, file: &PageFile, page_no: u32, right_child: u32) -> io::Result<()> {
        file.write_page(page_no, self.page.seal(right_child))?;
        self.written += 1;
        Ok(())
    }
}

/// What `Levels::finish` built, for tests.
#[derive(Debug, Default)]
struct Shape {
    /// Levels including the leaves; 1 when the root is a leaf.
    height: usize,
    /// Levels (0 = leaves) whose last page had to take a cell from the page before.
    tail_fixups: Vec<usize>,
}

/// The levels of one tree, leaves first.
struct Levels {
    interior_kind: u8,
    page_size: usize,
    levels: Vec<Level>,
}

impl Levels {
    fn new(leaf_kind: u8, interior_kind: u8, page_size: usize) -> Self {
        Self {
            interior_kind,
            page_size,
            levels: vec![Level::new(leaf_kind, page_size)],
        }
    }

    fn level(&mut self, level: usize) -> io::Result<&mut Level> {
        if level == self.levels.len() {
            self.levels
                .push(Level::new(self.interior_kind, self.page_size));
        }
        self.levels
            .get_mut(level)
            .ok_or_else(|| io::Error::other(format!("B-tree level {level} skipped")))
    }

    /// Adds an entry to `level` and carries written pages up the tree.
    fn push(&mut self, file: &PageFile, level: usize, child: u32, sep: &[u8]) -> io::Result<()> {
        let written = self.level(level)?.push(file, child, sep)?;
        self.carry(file, level, written)
    }

    /// Hands a page just written at `level` to the level above, as far as that
    /// writes pages in turn.
    fn carry(
        &mut self,
        file: &PageFile,
        mut level: usize,
        mut written: Option<u32>,
    ) -> io::Result<()> {
        while let Some(page_no) = written {
            level += 1;
            self.level(level)?;
            let (below, above) = self.levels.split_at_mut(level);
            match (below.last(), above.first_mut()) {
                (Some(below), Some(above)) => {
                    written = above.push(file, page_no, &below.pending_sep)?;
                }
                _ => return Err(io::Error::other("B-tree level missing")),
            }
        }
        Ok(())
    }

    /// Writes the last page of every level, the top one into `root`.
    fn finish(mut self, file: &PageFile, root: u32) -> io::Result<Shape> {
        let mut shape = Shape::default();
        let mut right_child = 0;
        for level in 0.. {
            if self.level(level)?.pending {
                self.lend_tail(file, level)?;
                shape.tail_fixups.push(level);
            }
            let current = self.level(level)?;
            if current.written == 0 {
                current.write(file, root, right_child)?;
                shape.height = level + 1;
                break;
            }
            right_child = current.write_new(file, right_child)?;
        }
        Ok(shape)
    }

    /// The last entry at `level` did not fit the full page and nothing follows it: the
    /// full page gives up its last cell so the entry can start a page that is not
    /// empty. The page then ends with that cell's child and separator instead.
    fn lend_tail(&mut self, file: &PageFile, level: usize) -> io::Result<()> {
        let current = self.level(level)?;
        let mut last = Vec::new();
        current.page.pop_cell(&mut last)?;
        let (child, sep) = if current.page.interior() {
            (be32(&last, 0), last.get(4..).unwrap_or_default())
        } else {
            (0, &last[..])
        };
        let page_no = current.write_new(file, child)?;
        current.page.clear();
        current.pending = false;
        let child_bytes = current.pending_child.to_be_bytes();
        let prefix: &[u8] = if current.page.interior() {
            &child_bytes
        } else {
            &[]
        };
        current.page.push_cell(&[prefix, &current.pending_sep])?;
        self.push(file, level + 1, page_no, sep)
    }
}

/// The page buffer of overflow chains, kept apart from the tree's open pages.
struct Spill {
    page: Vec<u8>,
}

impl Spill {
    fn new(page_size: usize) -> Self {
        Self {
            page: vec![0; page_size],
        }
    }

    /// Writes the part of a payload that does not stay in its cell to a new overflow
    /// chain; returns the chain's first page.
    fn write_chain(&mut self, file: &PageFile, mut rest: &[u8]) -> io::Result<u32> {
        let first = file.allocate();
        let room = self.page.len() - 4;
        let mut page_no = first;
        loop {
            let (chunk, after) = rest.split_at(rest.len().min(room));
            let next = if after.is_empty() { 0 } else { file.allocate() };
            self.page[..4].copy_from_slice(&next.to_be_bytes());
            self.page[4..4 + chunk.len()].copy_from_slice(chunk);
            self.page[4 + chunk.len()..].fill(0);
            file.write_page(page_no, &self.page)?;
            if after.is_empty() {
                return Ok(first);
            }
            page_no = next;
            rest = after;
        }
    }
}

/// Builds a table B-tree (intkey) from rows in strictly increasing rowid order.
pub(crate) struct TableBuilder {
    root: u32,
    geometry: Geometry,
    levels: Levels,
    spill: Spill,
    rows: u64,
    last_rowid: i64,
    root_checked: bool,
}

impl TableBuilder {
    pub(crate) fn new(root_page: u32, page_size: usize) -> Self {
        let geometry = Geometry::new(page_size);
        let page_size = if geometry.valid { page_size } else { 0 };
        Self {
            root: root_page,
            geometry,
            levels: Levels::new(TABLE_LEAF, TABLE_INTERIOR, page_size),
            spill: Spill::new(page_size),
            rows: 0,
            last_rowid: 0,
            root_checked: false,
        }
    }

    /// `record` is an encoded record (see encode_record). Errors (InvalidInput) if rowid
    /// is not greater than the previous one.
    pub(crate) fn push(&mut self, file: &PageFile, rowid: i64, record: &[u8]) -> io::Result<()> {
        self.prepare(file)?;
        if self.rows > 0 && rowid <= self.last_rowid {
            return Err(invalid_input(format!(
                "rowid {rowid} after {}: rows must come in increasing rowid order",
                self.last_rowid
            )));
        }
        check_payload_len(record.len())?;
        // The cell goes straight into the page from its parts: records are the bulk
        // of the data, and a copy less is noticeable.
        let mut size = [0; 9];
        let size_len = put_varint(record.len() as u64, &mut size);
        let mut key = [0; 9];
        let key_len = put_varint(rowid as u64, &mut key);
        let local_len = self
            .geometry
            .local_len(record.len(), self.geometry.table_max_local);
        let (local, rest) = record.split_at(local_len);
        let overflow_len = if rest.is_empty() { 0 } else { 4 };

        // A table leaf is written as soon as a row does not fit: the row starts the
        // next leaf, so no leaf is ever left empty.
        let leaf = self.levels.level(0)?;
        if !leaf
            .page
            .fits(size_len + key_len + local_len + overflow_len)
        {
            let page_no = leaf.write_new(file, 0)?;
            leaf.page.clear();
            let mut sep = [0; 9];
            let len = put_varint(self.last_rowid as u64, &mut sep);
            self.levels.push(file, 1, page_no, &sep[..len])?;
        }
        let first_overflow = if rest.is_empty() {
            0
        } else {
            self.spill.write_chain(file, rest)?
        };
        let overflow = first_overflow.to_be_bytes();
        self.levels.level(0)?.page.push_cell(&[
            &size[..size_len],
            &key[..key_len],
            local,
            &overflow[..overflow_len],
        ])?;
        self.rows += 1;
        self.last_rowid = rowid;
        Ok(())
    }

    /// Writes the remaining pages and the top node into `root_page`. With no rows
    /// pushed, writes an empty leaf (type 0x0D) at the root. Returns rows pushed.
    pub(crate) fn finish(self, file: &PageFile) -> io::Result<u64> {
        self.finish_shape(file).map(|(rows, _)| rows)
    }

    fn finish_shape(mut self, file: &PageFile) -> io::Result<(u64, Shape)> {
        self.prepare(file)?;
        let shape = self.levels.finish(file, self.root)?;
        Ok((self.rows, shape))
    }

    fn prepare(&mut self, file: &PageFile) -> io::Result<()> {
        check_root_once(
            &mut self.root_checked,
            &self.geometry,
            file,
            self.root,
            TABLE_LEAF,
        )
    }
}

/// Before a builder's first page: its geometry is sound, matches the file, and its
/// root is the empty leaf of the right type SQLite created.
fn check_root_once(
    checked: &mut bool,
    geometry: &Geometry,
    file: &PageFile,
    root: u32,
    leaf_type: u8,
) -> io::Result<()> {
    if !*checked {
        geometry.check()?;
        check_same_page_size(file, geometry)?;
        file.check_empty_root(root, leaf_type)?;
        *checked = true;
    }
    Ok(())
}

fn check_same_page_size(file: &PageFile, geometry: &Geometry) -> io::Result<()> {
    if file.page_size() != geometry.page_size {
        return Err(invalid_input(format!(
            "builder for {}-byte pages, file of {}-byte pages",
            geometry.page_size,
            file.page_size()
        )));
    }
    Ok(())
}

/// Builds an index B-tree from keys in strictly increasing order (the caller sorts; an
/// index key is the encoded record of the indexed columns followed by the rowid).
///
/// Order is SQLite's for BINARY collation and ascending columns: NULL < integers <
/// text (memcmp, then length) < blob (same). `push` checks it and refuses keys out
/// of order, so indexes with other collations or DESC columns cannot be built here.
///
/// An indexed `INTEGER PRIMARY KEY` column (an alias of the rowid, stored as NULL in
/// the table's record) holds the rowid as an integer in the column's place, and the
/// rowid still follows at the end: `(entitlement_id, sync_id, id)` has the key
/// `[entitlement_id, sync_id, rowid, rowid]`. This is what SQLite writes, and
/// `PRAGMA integrity_check` reports every row missing from the index otherwise.
///
/// Partial indexes simply get the keys of the rows their `WHERE` clause accepts.
pub(crate) struct IndexBuilder {
    root: u32,
    geometry: Geometry,
    levels: Levels,
    spill: Spill,
    cell: Vec<u8>,
    /// The last key and its fields, which the next key must sort after.
    previous: Vec<u8>,
    previous_fields: Vec<Span>,
    fields: Vec<Span>,
    keys: u64,
    root_checked: bool,
}

impl IndexBuilder {
    pub(crate) fn new(root_page: u32, page_size: usize) -> Self {
        let geometry = Geometry::new(page_size);
        let page_size = if geometry.valid { page_size } else { 0 };
        Self {
            root: root_page,
            geometry,
            levels: Levels::new(INDEX_LEAF, INDEX_INTERIOR, page_size),
            spill: Spill::new(page_size),
            cell: Vec::new(),
            previous: Vec::new(),
            previous_fields: Vec::new(),
            fields: Vec::new(),
            keys: 0,
            root_checked: false,
        }
    }

    pub(crate) fn push(&mut self, file: &PageFile, key: &[u8]) -> io::Result<()> {
        self.prepare(file)?;
        // Each key is parsed once; the previous key's fields are kept for the next.
        if !parse_record(key, &mut self.fields) {
            return Err(invalid_input("index key is not a valid record".to_string()));
        }
        if self.keys > 0
            && compare_parsed(&self.previous, &self.previous_fields, key, &self.fields)
                != Ordering::Less
        {
            return Err(invalid_input(
                "index keys must come in strictly increasing order".to_string(),
            ));
        }
        check_payload_len(key.len())?;
        // Built apart from the page: if it becomes a separator, it moves up as is.
        self.cell.clear();
        push_varint(&mut self.cell, key.len() as u64);
        let local_len = self
            .geometry
            .local_len(key.len(), self.geometry.index_max_local);
        let (local, rest) = key.split_at(local_len);
        self.cell.extend_from_slice(local);
        if !rest.is_empty() {
            let first = self.spill.write_chain(file, rest)?;
            self.cell.extend_from_slice(&first.to_be_bytes());
        }
        let written = self.levels.level(0)?.push(file, 0, &self.cell)?;
        self.levels.carry(file, 0, written)?;
        self.previous.clear();
        self.previous.extend_from_slice(key);
        std::mem::swap(&mut self.previous_fields, &mut self.fields);
        self.keys += 1;
        Ok(())
    }

    /// Like TableBuilder::finish; an empty index gets an empty leaf (0x0A) at the root.
    pub(crate) fn finish(self, file: &PageFile) -> io::Result<u64> {
        self.finish_shape(file).map(|(keys, _)| keys)
    }

    fn finish_shape(mut self, file: &PageFile) -> io::Result<(u64, Shape)> {
        self.prepare(file)?;
        let shape = self.levels.finish(file, self.root)?;
        Ok((self.keys, shape))
    }

    fn prepare(&mut self, file: &PageFile) -> io::Result<()> {
        check_root_once(
            &mut self.root_checked,
            &self.geometry,
            file,
            self.root,
            INDEX_LEAF,
        )
    }
}

/// A decoded record field, as far as index order needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Field<'a> {
    Null,
    Integer(i64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

impl Field<'_> {
    fn class(&self) -> u8 {
        match self {
            Field::Null => 0,
            Field::Integer(_) => 1,
            Field::Text(_) => 2,
            Field::Blob(_) => 3,
        }
    }
}

/// Where one field of a record lies: its serial type and its body bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    serial: u64,
    start: usize,
    end: usize,
}

/// Splits a record into its fields; false if it is malformed (or holds a real,
/// which `encode_record` never writes).
fn parse_record(record: &[u8], spans: &mut Vec<Span>) -> bool {
    spans.clear();
    let Some((header_len, len_len)) = read_varint(record) else {
        return false;
    };
    let Ok(header_len) = usize::try_from(header_len) else {
        return false;
    };
    let Some(mut header) = record.get(len_len..header_len) else {
        return false;
    };
    let mut start = header_len;
    while !header.is_empty() {
        let Some((serial, len)) = read_varint(header) else {
            return false;
        };
        header = &header[len..];
        let size = match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 => 8,
            7 | 10 | 11 => return false,
            n => match usize::try_from((n - 12) / 2) {
                Ok(size) => size,
                Err(_) => return false,
            },
        };
        let Some(end) = start.checked_add(size) else {
            return false;
        };
        spans.push(Span { serial, start, end });
        start = end;
    }
    start == record.len()
}

fn field_bytes(record: &[u8], span: Span) -> &[u8] {
    record.get(span.start..span.end).unwrap_or_default()
}

/// The value of a field found by `parse_record`.
fn field(record: &[u8], span: Span) -> Field<'_> {
    let bytes = field_bytes(record, span);
    match span.serial {
        0 => Field::Null,
        8 => Field::Integer(0),
        9 => Field::Integer(1),
        1..=6 => {
            // Big-endian two's complement: start from the sign, shift bytes in.
            let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
            let start = if negative { -1 } else { 0 };
            Field::Integer(bytes.iter().fold(start, |v, &b| (v << 8) | i64::from(b)))
        }
        n if n % 2 == 0 => Field::Blob(bytes),
        _ => Field::Text(bytes),
    }
}

fn compare_fields(a: Field<'_>, b: Field<'_>) -> Ordering {
    match (a, b) {
        (Field::Integer(x), Field::Integer(y)) => x.cmp(&y),
        (Field::Text(x), Field::Text(y)) | (Field::Blob(x), Field::Blob(y)) => x.cmp(y),
        _ => a.class().cmp(&b.class()),
    }
}

/// Orders two parsed records like an index with BINARY collation and ascending
/// columns.
fn compare_parsed(a: &[u8], a_fields: &[Span], b: &[u8], b_fields: &[Span]) -> Ordering {
    for (&x, &y) in a_fields.iter().zip(b_fields) {
        let order = if x.serial == y.serial && x.serial >= 12 {
            // Text or blob of the same length: the bytes decide.
            field_bytes(a, x).cmp(field_bytes(b, y))
        } else {
            compare_fields(field(a, x), field(b, y))
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a_fields.len().cmp(&b_fields.len())
}
