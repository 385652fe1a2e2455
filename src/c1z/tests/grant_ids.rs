//! Grant ids that collide or interleave through their `:` separators. The grant
//! loader orders the unique grant index by whole ids and, as SQLite's
//! `ON CONFLICT DO NOTHING` did, keeps only the first row of a repeated id.

use rusqlite::Connection;

use super::support::{build, group, out_path, perm, space};
use crate::c1z::MAX_DECODED_SIZE;
use crate::c1z::container;

/// `PRAGMA integrity_check` of the published snapshot's database.
fn integrity(dir: &std::path::Path) -> String {
    let db = dir.join("decoded.db");
    container::decompress(&out_path(dir), &db, MAX_DECODED_SIZE).expect("decompress");
    let conn = Connection::open(&db).expect("open");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check")
}

#[test]
fn a_repeated_grant_id_keeps_the_first_row_and_interleaved_ids_stay_ordered() {
    // `group:g:member` + `:user:x:member:user:y` and `group:g:member:user:x:member` +
    // `:user:y` spell the same grant id; the two groups' other ids interleave.
    let (dir, info, snap) = build(|w| {
        w.put_group(&group("g", "G"))?;
        w.put_group(&group("g:member:user:x", "H"))?;
        w.put_membership("g", "a")?;
        w.put_membership("g", "x:member:user:y")?;
        w.put_membership("g:member:user:x", "y")?;
        w.put_membership("g:member:user:x", "b")?;
        w.put_membership("g", "z")?;
        w.put_space(&space("100", "Eng"))?;
        w.put_space_permission(&perm("100", "group", "g", "read", "space"))?;
        w.put_space_permission(&perm("100", "user", "a", "read", "space"))
    });
    assert_eq!(integrity(dir.path()), "ok");
    // Counted as written, as before: the repeat is dropped by the table's unique key.
    assert_eq!(info.membership_grants, 5);
    let memberships: Vec<(&str, &str)> = snap
        .grants
        .iter()
        .filter(|g| g.resource_type_id == "group")
        .map(|g| (g.external_id.as_str(), g.principal_resource_id.as_str()))
        .collect();
    assert_eq!(memberships.len(), 4, "{memberships:?}");
    let repeated = "group:g:member:user:x:member:user:y";
    let kept: Vec<_> = memberships
        .iter()
        .filter(|(id, _)| *id == repeated)
        .collect();
    assert_eq!(kept, [&(repeated, "x:member:user:y")], "the first row wins");
    // The expansion of the space grant to group g's members is in as well.
    assert!(
        snap.grants
            .iter()
            .any(|g| g.external_id == "space:100:read-space:user:z"),
        "expanded grant"
    );
}
