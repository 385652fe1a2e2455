//! The c1z v1 container: magic + one zstd frame holding the SQLite file, written
//! atomically next to its final path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use rustix::fs::{FallocateFlags, fallocate};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::{C1zError, Result};

/// The 5-byte c1z v1 magic `C1ZF\0`.
pub const MAGIC: [u8; 5] = *b"C1ZF\0";

/// zstd compression level: the fastest standard level. Snapshots are highly
/// repetitive (ratio about 10 at level 1 and at level 3 alike on the large preset),
/// so higher levels cost a third more time for nothing; every level is safe for
/// every reader.
const LEVEL: i32 = 1;

/// Largest window (log2) readers accept: they cap decoder memory at 128 MiB.
pub const MAX_WINDOW_LOG: u32 = 27;

/// The window log used for writing, pinned so that a library upgrade cannot silently
/// exceed [`MAX_WINDOW_LOG`].
const WINDOW_LOG: u32 = 21;

/// Reader cap on the decompressed size (sdk v0.24+ default, 10 GiB).
pub const MAX_DECODED_SIZE: u64 = 10 << 30;

/// What [`write_atomic`] produced.
pub(crate) struct Written {
    pub(crate) size_bytes: u64,
    pub(crate) sha256: String,
}

/// Writer that hashes and counts everything passing through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Reads through to `inner` until the token is cancelled, then fails every read, so a
/// long compression stops within one buffer.
struct CancellableReader<'a, R> {
    inner: R,
    cancel: &'a CancellationToken,
}

impl<R: Read> Read for CancellableReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            // Not `Interrupted`: io::copy would retry that forever.
            return Err(io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}

/// Bytes of the work database between two hole punches (see [`ConsumingReader`]).
const PUNCH_EVERY: u64 = 256 << 20;

/// Reads the work database once, front to back, and gives the space of what it has
/// read back to the file system on the way (a hole punched every [`PUNCH_EVERY`]
/// bytes). On a large tenant the file has gigabytes of dirty or freshly written
/// pages: freeing them in slices while zstd works returns the space as the output
/// grows and keeps the kernel from writing back what nobody will read again. The
/// freeing costs about what removing the whole file at the end did (seconds for 8 GB
/// on a disk mounted with `discard`, a punch blocking up to a fraction of a second),
/// so it runs on a thread of its own ([`Puncher`]): done by the reading thread, it
/// left zstd's workers without input for that long at every punch. A file system
/// without hole punching keeps the pages until removal.
struct ConsumingReader {
    file: File,
    punch_every: u64,
    read: u64,
    /// Offset up to which the puncher has been asked to free the file.
    requested: u64,
    puncher: Option<Puncher>,
}

impl ConsumingReader {
    fn new(file: File, punch_every: u64) -> Self {
        let puncher = file.try_clone().ok().and_then(Puncher::start);
        Self {
            file,
            punch_every,
            read: 0,
            requested: 0,
            puncher,
        }
    }

    /// Waits for the punches asked for; returns how many bytes from the start were
    /// freed, or `None` when the file system does not punch holes.
    #[cfg(test)]
    fn finish(mut self) -> Option<u64> {
        self.puncher.take().and_then(Puncher::finish)
    }
}

impl Read for ConsumingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read - self.requested >= self.punch_every
            && let Some(puncher) = &self.puncher
        {
            if puncher.upto.send(self.read).is_ok() {
                self.requested = self.read;
            } else {
                // Punching failed and stopped: only an optimisation, the removal
                // frees the file anyway.
                self.puncher = None;
            }
        }
        Ok(n)
    }
}

/// The thread that punches holes behind a [`ConsumingReader`], freeing the file from
/// its start up to the last offset it was sent (offsets that queue up while a punch
/// runs are done in one).
struct Puncher {
    upto: mpsc::Sender<u64>,
    thread: JoinHandle<Option<u64>>,
}

impl Puncher {
    fn start(file: File) -> Option<Self> {
        let (upto, offsets) = mpsc::channel::<u64>();
        let thread = std::thread::Builder::new()
            .name("c1z-punch".to_string())
            .spawn(move || {
                let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
                let mut punched = 0;
                while let Ok(mut end) = offsets.recv() {
                    end = offsets.try_iter().fold(end, u64::max);
                    fallocate(&file, flags, punched, end - punched).ok()?;
                    punched = end;
                }
                Some(punched)
            })
            .ok()?;
        Some(Self { upto, thread })
    }

    fn finish(self) -> Option<u64> {
        let Self { upto, thread } = self;
        drop(upto);
        thread.join().ok().flatten()
    }
}

impl Drop for ConsumingReader {
    fn drop(&mut self) {
        // The file is removed next: let the punches asked for end first.
        if let Some(puncher) = self.puncher.take() {
            puncher.finish();
        }
    }
}

/// Removes the temporary file unless disarmed, so errors leave nothing behind.
struct TmpGuard<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for TmpGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: the error that got us here is more useful than this one.
            let _ = fs::remove_file(self.path);
        }
    }
}

/// `<out>.tmp`, in the same directory so the final rename is atomic.
pub(crate) fn tmp_path(out: &Path) -> Result<PathBuf> {
    let name = out
        .file_name()
        .ok_or_else(|| C1zError::InvalidOutputPath(out.to_path_buf()))?;
    let mut tmp = name.to_os_string();
    tmp.push(".tmp");
    Ok(out.with_file_name(tmp))
}

/// The directory `out` lives in (`.` for a bare file name).
pub(crate) fn parent_dir(out: &Path) -> Result<PathBuf> {
    if out.file_name().is_none() {
        return Err(C1zError::InvalidOutputPath(out.to_path_buf()));
    }
    Ok(match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    })
}

/// Compresses the SQLite work file `db` into `out` and removes `db`: writes
/// `<out>.tmp` (mode 0644), removes `db`, fsyncs `<out>.tmp`, renames it over `out`
/// and fsyncs the directory. On error the temporary file is removed and `out` is
/// untouched. A cancelled `cancel` stops the copy and fails with
/// [`C1zError::Cancelled`] before anything is renamed.
///
/// `db` goes before the fsync so that what is left of it (see [`ConsumingReader`]) is
/// not written back by the kernel while the fsync waits for the disk.
pub(crate) fn write_atomic(db: &Path, out: &Path, cancel: &CancellationToken) -> Result<Written> {
    let tmp = tmp_path(out)?;
    let dir = parent_dir(out)?;
    let mut guard = TmpGuard {
        path: &tmp,
        armed: true,
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| C1zError::io("create", &tmp, e))?;
    // The umask may have narrowed the mode; readers in other containers need 0644.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| C1zError::io("chmod", &tmp, e))?;
    // Read-write: punching holes needs a writable descriptor.
    let input = OpenOptions::new()
        .read(true)
        .write(true)
        .open(db)
        .map_err(|e| C1zError::io("open", db, e))?;
    let decoded = input
        .metadata()
        .map_err(|e| C1zError::io("stat", db, e))?
        .len();
    if decoded > MAX_DECODED_SIZE {
        // Still written: baton's cap is its readers' setting and can be raised.
        tracing::warn!(
            decoded_bytes = decoded,
            cap_bytes = MAX_DECODED_SIZE,
            "the snapshot decodes to more than baton's readers accept by default (raise \
             BATON_DECODER_MAX_DECODED_SIZE_MB where it is read); access grants by group \
             name or email cannot read it"
        );
    }
    let input = CancellableReader {
        inner: BufReader::with_capacity(READ_BUFFER, ConsumingReader::new(input, PUNCH_EVERY)),
        cancel,
    };
    let started = Instant::now();
    let (written, file) = match compress(input, file, &tmp) {
        Err(_) if cancel.is_cancelled() => return Err(C1zError::Cancelled),
        other => other?,
    };
    let compressed = started.elapsed();
    fs::remove_file(db).map_err(|e| C1zError::io("remove", db, e))?;
    let removed = started.elapsed();
    file.sync_all()
        .map_err(|e| C1zError::io("fsync", &tmp, e))?;
    tracing::debug!(
        compress_ms = compressed.as_millis() as u64,
        remove_ms = (removed - compressed).as_millis() as u64,
        fsync_ms = (started.elapsed() - removed).as_millis() as u64,
        "snapshot compressed"
    );
    if cancel.is_cancelled() {
        return Err(C1zError::Cancelled);
    }
    fs::rename(&tmp, out).map_err(|e| C1zError::io("rename", out, e))?;
    guard.armed = false;
    // Persist the rename itself; without this a crash could resurrect the old file.
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| C1zError::io("fsync", &dir, e))?;
    Ok(written)
}

/// Bytes of the database read at a time while compressing: multi-GB files in 8 KiB
/// reads cost more in system calls than in compression.
const READ_BUFFER: usize = 1 << 20;

/// Input bytes per zstd job (the minimum the library accepts is 512 KiB; a job
/// smaller than the window would waste it).
const JOB_SIZE: u32 = 2 << 20;

/// zstd worker threads: one per available core.
fn compression_workers() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(1))
        .unwrap_or(1)
}

/// Streams `input` into `file` behind the magic as a single zstd frame; returns the
/// file, flushed but not yet fsynced.
fn compress(mut input: impl Read, file: File, path: &Path) -> Result<(Written, File)> {
    let io_err = |e| C1zError::io("write", path, e);
    let mut out = HashingWriter {
        inner: io::BufWriter::new(file),
        hasher: Sha256::new(),
        written: 0,
    };
    out.write_all(&MAGIC).map_err(io_err)?;
    let mut encoder = zstd::stream::Encoder::new(out, LEVEL).map_err(io_err)?;
    // Worker threads compress consecutive jobs of the same single frame: the output
    // is still one frame with the same window, which every reader decodes alike.
    encoder.multithread(compression_workers()).map_err(io_err)?;
    // Each worker holds a job's input and output: small jobs keep that to a few MiB.
    encoder
        .set_parameter(zstd::stream::raw::CParameter::JobSize(JOB_SIZE))
        .map_err(io_err)?;
    encoder.window_log(WINDOW_LOG).map_err(io_err)?;
    encoder.include_checksum(true).map_err(io_err)?;
    io::copy(&mut input, &mut encoder).map_err(io_err)?;
    let mut out = encoder.finish().map_err(io_err)?;
    out.flush().map_err(io_err)?;
    let HashingWriter {
        inner,
        hasher,
        written,
    } = out;
    let file = inner.into_inner().map_err(|e| io_err(e.into_error()))?;
    let written = Written {
        size_bytes: written,
        sha256: hex(&hasher.finalize()),
    };
    Ok((written, file))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the magic of `src` and decompresses the rest into `dest`, refusing
/// windows above [`MAX_WINDOW_LOG`] and output above `limit` bytes.
pub(crate) fn decompress(src: &Path, dest: &Path, limit: u64) -> Result<u64> {
    let file = File::open(src).map_err(|e| C1zError::io("open", src, e))?;
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 5];
    reader.read_exact(&mut magic).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => C1zError::BadMagic,
        _ => C1zError::io("read", src, e),
    })?;
    if magic != MAGIC {
        return Err(C1zError::BadMagic);
    }
    let io_err = |e| C1zError::io("decompress", src, e);
    let mut decoder = zstd::stream::Decoder::with_buffer(reader).map_err(io_err)?;
    decoder.window_log_max(MAX_WINDOW_LOG).map_err(io_err)?;
    let out = File::create(dest).map_err(|e| C1zError::io("create", dest, e))?;
    let mut out = io::BufWriter::new(out);
    // One byte past the cap tells "exactly at the cap" from "over it".
    let copied = io::copy(&mut decoder.take(limit.saturating_add(1)), &mut out).map_err(io_err)?;
    if copied > limit {
        return Err(C1zError::TooLarge { limit });
    }
    out.flush().map_err(|e| C1zError::io("write", dest, e))?;
    Ok(copied)
}

/// Prefix of the hidden work directories writers create next to their output.
pub(crate) const WORK_DIR_PREFIX: &str = ".c1z-work-";

/// Removes what crashed writers left in `dir`: `.c1z-work-*` directories and
/// `*.c1z.tmp` files. Dropped writers clean up after themselves, but a killed
/// process cannot. Call it only while no writer targets `dir`. Returns the
/// number of entries removed.
pub fn remove_leftovers(dir: &Path) -> Result<u64> {
    let mut removed = 0;
    let entries = fs::read_dir(dir).map_err(|e| C1zError::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| C1zError::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(|e| C1zError::io("stat", &path, e))?;
        if file_type.is_dir() && name.starts_with(WORK_DIR_PREFIX) {
            fs::remove_dir_all(&path).map_err(|e| C1zError::io("remove", &path, e))?;
            removed += 1;
        } else if file_type.is_file() && name.ends_with(".c1z.tmp") {
            fs::remove_file(&path).map_err(|e| C1zError::io("remove", &path, e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressed(dir: &Path, content: &[u8]) -> PathBuf {
        let db = dir.join("in.db");
        let out = dir.join("out.c1z");
        fs::write(&db, content).expect("write");
        write_atomic(&db, &out, &CancellationToken::new()).expect("compress");
        out
    }

    #[test]
    fn consuming_reader_reads_everything_and_frees_what_it_read() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("work.db");
        let content: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
        fs::write(&path, &content).expect("write");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let mut reader = BufReader::with_capacity(64 << 10, ConsumingReader::new(file, 1 << 20));
        let mut back = Vec::new();
        reader.read_to_end(&mut back).expect("read");
        assert!(back == content, "every byte read back unchanged");
        let punched = reader.into_inner().finish();
        assert_eq!(
            fs::metadata(&path).expect("stat").len(),
            4 << 20,
            "size kept"
        );
        // `None`: this file system does not punch holes.
        if let Some(punched) = punched {
            assert!(punched >= 3 << 20, "punched {punched}");
            let allocated = fs::metadata(&path).expect("stat").blocks() * 512;
            assert!(allocated <= 1 << 20, "{allocated} bytes still allocated");
        }
    }

    #[test]
    fn decompress_enforces_the_size_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = compressed(dir.path(), &[7u8; 4096]);
        let dest = dir.path().join("back.db");
        assert_eq!(decompress(&out, &dest, 4096).expect("at the cap"), 4096);
        assert_eq!(fs::read(&dest).expect("read"), vec![7u8; 4096]);
        assert!(matches!(
            decompress(&out, &dest, 4095),
            Err(C1zError::TooLarge { limit: 4095 })
        ));
    }

    #[test]
    fn stale_tmp_is_overwritten_and_leftovers_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("out.c1z.tmp"), b"stale").expect("seed");
        let out = compressed(dir.path(), b"data");
        assert!(!tmp_path(&out).expect("tmp").exists());

        fs::create_dir(dir.path().join(".c1z-work-abc")).expect("mkdir");
        fs::write(dir.path().join(".c1z-work-abc/snapshot.db"), b"x").expect("seed");
        fs::write(dir.path().join("old.c1z.tmp"), b"x").expect("seed");
        assert_eq!(remove_leftovers(dir.path()).expect("clean"), 2);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        assert_eq!(names, ["out.c1z"], "the work database is consumed");
    }
}
