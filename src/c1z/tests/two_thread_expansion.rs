//! Entitlements left to expand at the end are shared by two threads; the snapshot
//! must be exactly what one thread writes, row ids included.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::support::{group, options, out_path, perm, space, user};
use crate::c1z::container;
use crate::c1z::{MAX_DECODED_SIZE, SnapshotInfo, SnapshotOptions, SnapshotWriter};

/// Every `v1_grants` row, all columns as stored, by row id; and the integrity check.
fn grant_rows(dir: &std::path::Path) -> (Vec<Vec<Value>>, String) {
    let db = dir.join("decoded.db");
    container::decompress(&out_path(dir), &db, MAX_DECODED_SIZE).expect("decompress");
    let conn = Connection::open(&db).expect("open");
    let mut stmt = conn
        .prepare("SELECT * FROM v1_grants ORDER BY id")
        .expect("prepare");
    let columns = stmt.column_count();
    let rows = stmt
        .query_map([], |r| (0..columns).map(|i| r.get::<_, Value>(i)).collect())
        .expect("query")
        .collect::<Result<Vec<Vec<Value>>, _>>()
        .expect("rows");
    let integrity = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    (rows, integrity)
}

/// Groups of different sizes granted on several spaces next to direct user grants;
/// no member walk is declared complete, so everything is expanded at the end.
fn write(parallel_min_rows: u64) -> (tempfile::TempDir, SnapshotInfo) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SnapshotOptions {
        sync_id: Some("2HGZKILB0p90YxcSlIxGLTumLkc".into()),
        ..options()
    };
    let mut w = SnapshotWriter::create(&out_path(dir.path()), options).expect("create");
    w.parallel_expansion_min_rows = parallel_min_rows;
    let mut fill = || -> crate::c1z::Result<()> {
        for u in 0..300 {
            w.put_user(&user(&format!("u{u:03}"), &format!("User {u}"), None, true))?;
        }
        for g in 0..6 {
            w.put_group(&group(&format!("g{g}"), &format!("Group {g}")))?;
            for m in (0..300).filter(|m| m % (g + 2) == 0) {
                w.put_membership(&format!("g{g}"), &format!("u{:03}", (m * 7 + g) % 300))?;
            }
        }
        for s in 0..8 {
            let sid = format!("{}", 100 + s);
            w.put_space(&space(&sid, &format!("Space {s}")))?;
            for (k, verb) in ["read", "create", "delete"].iter().enumerate() {
                w.put_space_permission(&perm(
                    &sid,
                    "group",
                    &format!("g{}", (s + k) % 6),
                    verb,
                    "page",
                ))?;
                w.put_space_permission(&perm(
                    &sid,
                    "group",
                    &format!("g{}", (s * 3 + k) % 6),
                    verb,
                    "page",
                ))?;
                w.put_space_permission(&perm(
                    &sid,
                    "user",
                    &format!("u{:03}", s * 11 + k),
                    verb,
                    "page",
                ))?;
            }
            w.space_complete(&sid)?;
        }
        Ok(())
    };
    fill().expect("fill");
    let info = w.finish().expect("finish");
    (dir, info)
}

#[test]
fn two_threads_write_what_one_writes() {
    let (one_dir, one) = write(u64::MAX);
    let (two_dir, two) = write(0);
    let (one_rows, one_integrity) = grant_rows(one_dir.path());
    let (two_rows, two_integrity) = grant_rows(two_dir.path());
    assert_eq!(
        (one_integrity.as_str(), two_integrity.as_str()),
        ("ok", "ok")
    );
    assert!(
        one.expanded_grants > 500,
        "{} expanded",
        one.expanded_grants
    );
    assert_eq!(
        (one.grants, one.expanded_grants, one.space_permission_grants),
        (two.grants, two.expanded_grants, two.space_permission_grants)
    );
    assert_eq!(one_rows.len(), two_rows.len());
    for (a, b) in one_rows.iter().zip(&two_rows) {
        assert_eq!(a, b);
    }
}
