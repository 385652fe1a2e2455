//! The container and the atomic publish.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;

use sha2::{Digest, Sha256};

use super::support::{build, group, options, out_path, perm, space, user};
use crate::c1z::{C1zError, MAGIC, MAX_WINDOW_LOG, Snapshot, SnapshotWriter};

/// Window size the frame header announces (single-segment frames: the content size).
fn frame_window(frame: &[u8]) -> u64 {
    assert_eq!(&frame[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
    let descriptor = frame[4];
    let single_segment = descriptor & 0x20 != 0;
    assert!(!single_segment, "streamed frames declare a window");
    let wd = frame[5];
    let log = 10 + u64::from(wd >> 3);
    let base = 1u64 << log;
    base + (base / 8) * u64::from(wd & 7)
}

#[test]
fn magic_single_frame_and_round_trip() {
    let (dir, info, snap) = build(|w| w.put_user(&user("u1", "Ann", None, true)));
    let bytes = fs::read(out_path(dir.path())).expect("read");
    assert_eq!(&bytes[..5], &MAGIC);
    assert_eq!(&bytes[..5], b"C1ZF\0");
    let frame = &bytes[5..];
    assert!(frame_window(frame) <= 1 << MAX_WINDOW_LOG);
    let frame_len = zstd::zstd_safe::find_frame_compressed_size(frame).expect("frame size");
    assert_eq!(
        frame_len,
        frame.len(),
        "exactly one frame, nothing after it"
    );
    let mut db = Vec::new();
    zstd::stream::Decoder::new(frame)
        .and_then(|mut d| d.read_to_end(&mut db))
        .expect("decode");
    assert_eq!(&db[..16], b"SQLite format 3\0");
    assert_eq!((db[18], db[19]), (1, 1), "rollback-journal file, not WAL");
    assert_eq!(info.size_bytes, bytes.len() as u64);
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(info.sha256, digest);
    assert_eq!(info.path, out_path(dir.path()));
    assert_eq!(snap.resources.len(), 1);
}

#[test]
fn published_file_is_0644_and_nothing_else_is_left() {
    let (dir, _info, _snap) = build(|_| Ok(()));
    let out = out_path(dir.path());
    let mode = fs::metadata(&out).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("snap.c1z")]);
}

#[test]
fn dropping_a_writer_leaves_the_old_file_and_no_temp_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(dir.path());
    fs::write(&out, b"previous snapshot").expect("seed");
    let mut w = SnapshotWriter::create(&out, options()).expect("create");
    w.put_user(&user("u1", "Ann", None, true)).expect("put");
    drop(w);
    assert_eq!(fs::read(&out).expect("read"), b"previous snapshot");
    let count = fs::read_dir(dir.path()).expect("ls").count();
    assert_eq!(count, 1, "work directory removed");
}

#[test]
fn failed_publish_removes_the_tmp_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(dir.path());
    // A directory at the output path makes the final rename fail.
    fs::create_dir(&out).expect("mkdir");
    fs::write(out.join("keep"), b"x").expect("seed");
    let w = SnapshotWriter::create(&out, options()).expect("create");
    let err = w.finish().err();
    assert!(
        matches!(err, Some(C1zError::Io { op: "rename", .. })),
        "{err:?}"
    );
    assert_eq!(fs::read(out.join("keep")).expect("read"), b"x");
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("snap.c1z")]);
}

#[test]
fn finish_replaces_an_existing_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(dir.path());
    fs::write(&out, b"old").expect("seed");
    let w = SnapshotWriter::create(&out, options()).expect("create");
    let info = w.finish().expect("finish");
    let snap = Snapshot::open(&out).expect("open");
    assert_eq!(snap.sync_runs[0].sync_id, info.sync_id);
}

#[test]
fn reader_rejects_bad_magic_and_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("bad.c1z");
    fs::write(&p, b"C1Z3\0rest").expect("write");
    assert!(matches!(Snapshot::open(&p), Err(C1zError::BadMagic)));
    fs::write(&p, b"C1").expect("write");
    assert!(matches!(Snapshot::open(&p), Err(C1zError::BadMagic)));
    fs::write(&p, b"C1ZF\0not zstd at all").expect("write");
    assert!(Snapshot::open(&p).is_err());
}

#[test]
fn missing_parent_directory_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("absent").join("x.c1z");
    assert!(matches!(
        SnapshotWriter::create(&out, options()),
        Err(C1zError::Io { .. })
    ));
}

/// The previous snapshot is still there, and nothing else: no work directory, no
/// temporary file.
fn assert_untouched(dir: &std::path::Path, out: &std::path::Path) {
    assert_eq!(fs::read(out).expect("read"), b"previous snapshot");
    let names: Vec<_> = fs::read_dir(dir)
        .expect("ls")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert_eq!(
        names,
        ["snap.c1z"],
        "no work directory or temporary file left"
    );
}

/// A writer (and its cancellation token) whose output already holds a snapshot.
fn writer_over_a_previous_snapshot() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    tokio_util::sync::CancellationToken,
    SnapshotWriter,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(dir.path());
    fs::write(&out, b"previous snapshot").expect("seed");
    let opts = options();
    let cancel = opts.cancel.clone();
    let writer = SnapshotWriter::create(&out, opts).expect("create");
    (dir, out, cancel, writer)
}

#[test]
fn a_cancelled_writer_publishes_nothing_and_cleans_up() {
    let (dir, out, cancel, mut writer) = writer_over_a_previous_snapshot();
    writer
        .put_user(&user("u1", "Ann", None, true))
        .expect("put user");
    cancel.cancel();
    assert!(matches!(writer.finish(), Err(C1zError::Cancelled)));
    assert_untouched(dir.path(), &out);
}

#[test]
fn a_sync_id_chosen_up_front_is_the_one_written() {
    let id = crate::c1z::new_ksuid(super::support::started()).expect("ksuid");
    let opts = crate::c1z::SnapshotOptions {
        sync_id: Some(id.clone()),
        ..options()
    };
    let (_dir, info, snap) =
        super::support::build_with(opts, |w| w.put_user(&user("u1", "Ann", None, true)));
    assert_eq!(info.sync_id, id);
    assert!(snap.resources.iter().all(|r| r.sync_id == id));
}

/// Expansion left for the finish (no completion signals) takes minutes here; a cancel
/// arriving in the middle of it stops the writer within one entitlement.
#[test]
fn a_cancel_during_the_finish_stops_it_promptly_and_leaves_nothing() {
    let (dir, out, cancel, mut writer) = writer_over_a_previous_snapshot();
    let mut fill = || -> crate::c1z::Result<()> {
        writer.put_group(&group("g1", "Everyone"))?;
        for m in 0..20_000 {
            writer.put_membership("g1", &format!("u{m}"))?;
        }
        for s in 0..20 {
            let sid = s.to_string();
            writer.put_space(&space(&sid, &format!("Space {s}")))?;
            for verb in crate::c1z::ALL_VERBS {
                for noun in crate::c1z::ALL_NOUNS {
                    writer.put_space_permission(&perm(&sid, "group", "g1", verb, noun))?;
                }
            }
        }
        Ok(())
    };
    fill().expect("fill");
    let finishing = std::thread::spawn(move || writer.finish());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !finishing.is_finished(),
        "16M grants cannot be written in 0.3 s"
    );
    let cancelled_at = std::time::Instant::now();
    cancel.cancel();
    let result = finishing.join().expect("writer thread");
    assert!(matches!(result, Err(C1zError::Cancelled)), "{result:?}");
    assert!(
        cancelled_at.elapsed() < std::time::Duration::from_secs(5),
        "stopped after {:?}",
        cancelled_at.elapsed()
    );
    assert_untouched(dir.path(), &out);
}
