//! A tenant-sized run; ignored by default because it takes minutes in debug builds.
//! Run with `cargo test --lib c1z::tests::volume -- --ignored --nocapture`.

use std::time::Instant;

use super::support::{group, options, out_path, perm, space, user};
use crate::c1z::SnapshotWriter;

#[test]
#[ignore = "slow: 50k users, ~700k grants"]
fn fifty_thousand_users_and_hundreds_of_thousands_of_grants() {
    const USERS: usize = 50_000;
    const GROUPS: usize = 250;
    const MEMBERS: usize = 800;
    const SPACES: usize = 500;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(dir.path());
    let start = Instant::now();
    let mut w = SnapshotWriter::create(&out, options()).expect("create");
    let mut fill = || -> crate::c1z::Result<()> {
        for u in 0..USERS {
            w.put_user(&user(&format!("u{u}"), &format!("User {u}"), None, true))?;
        }
        for g in 0..GROUPS {
            w.put_group(&group(&format!("g{g}"), &format!("Group {g}")))?;
            for m in 0..MEMBERS {
                w.put_membership(&format!("g{g}"), &format!("u{}", (g * 97 + m) % USERS))?;
            }
        }
        for s in 0..SPACES {
            let sid = s.to_string();
            w.put_space(&space(&sid, &format!("Space {s}")))?;
            w.put_space_permission(&perm(
                &sid,
                "group",
                &format!("g{}", s % GROUPS),
                "read",
                "space",
            ))?;
            for verb in ["read", "create", "update"] {
                for u in 0..60 {
                    let uid = format!("u{}", (s * 31 + u) % USERS);
                    w.put_space_permission(&perm(&sid, "user", &uid, verb, "page"))?;
                }
            }
        }
        Ok(())
    };
    fill().expect("fill");
    let filled = start.elapsed();
    let info = w.finish().expect("finish");
    println!(
        "fill {filled:?}, total {:?}: {} grants ({} expanded), {} entitlements, {} bytes",
        start.elapsed(),
        info.grants,
        info.expanded_grants,
        info.entitlements,
        info.size_bytes,
    );
    assert_eq!(info.expanded_grants, (SPACES * MEMBERS) as u64);
    assert_eq!(info.resources.get("user"), Some(&(USERS as u64)));
}
