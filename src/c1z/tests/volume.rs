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

/// Peak resident set size of this process, from `/proc/self/status` (Linux only).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The shape of the large benchmark tenant: 50k users, 5k groups (one with 43k
/// members, the others with 64), 35 group grants and 70 user grants per space,
/// every 20th space granting one permission to the big group. At 2,000 spaces
/// that expands to ~8.8M grants; `C1Z_VOLUME_SPACES` scales it down linearly
/// (expansion is proportional to the number of spaces).
#[test]
#[ignore = "very slow: millions of expanded grants; run in release"]
fn benchmark_tenant_shape() {
    const USERS: usize = 50_000;
    const GROUPS: usize = 5_000;
    const BIG: usize = 43_000;
    const SMALL: usize = 64;
    const GROUP_GRANTS: usize = 35;
    const USER_GRANTS: usize = 70;
    const NOUNS: [&str; 5] = ["attachment", "blogpost", "comment", "page", "space"];
    const VERBS: [&str; 8] = [
        "administer",
        "archive",
        "create",
        "delete",
        "export",
        "read",
        "restrict_content",
        "update",
    ];
    // RUST_LOG=confluence_operator::c1z=debug shows where the finish spends its time.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let spaces: usize = std::env::var("C1Z_VOLUME_SPACES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(dir.path());
    let start = Instant::now();
    let mut w = SnapshotWriter::create(&out, options()).expect("create");
    let mut expected = 0u64;
    let mut fill = || -> crate::c1z::Result<()> {
        for u in 0..USERS {
            w.put_user(&user(&format!("u{u}"), &format!("User {u}"), None, true))?;
        }
        for g in 0..GROUPS {
            w.put_group(&group(&format!("g{g}"), &format!("Group {g}")))?;
            let members = if g == 0 { BIG } else { SMALL };
            for m in 0..members {
                let u = if g == 0 {
                    m
                } else {
                    (g * 131 + m * 17) % USERS
                };
                w.put_membership(&format!("g{g}"), &format!("u{u}"))?;
            }
        }
        for s in 0..spaces {
            let sid = s.to_string();
            w.put_space(&space(&sid, &format!("Space {s}")))?;
            for k in 0..GROUP_GRANTS {
                let (noun, verb) = (NOUNS[k / 8], VERBS[k % 8]);
                let g = if s % 20 == 0 && k == 0 {
                    0
                } else {
                    1 + (s * GROUP_GRANTS + k) % (GROUPS - 1)
                };
                expected += if g == 0 { BIG } else { SMALL } as u64;
                w.put_space_permission(&perm(&sid, "group", &format!("g{g}"), verb, noun))?;
            }
            for k in 0..USER_GRANTS {
                let (noun, verb) = (NOUNS[(k % 40) / 8], VERBS[k % 8]);
                let uid = format!("u{}", (s * 7919 + k * 31) % USERS);
                w.put_space_permission(&perm(&sid, "user", &uid, verb, noun))?;
            }
        }
        Ok(())
    };
    fill().expect("fill");
    let filled = start.elapsed();
    let before_finish = Instant::now();
    let info = w.finish().expect("finish");
    let finish = before_finish.elapsed();
    if let Ok(keep) = std::env::var("C1Z_VOLUME_KEEP") {
        std::fs::copy(&out, keep).expect("keep");
    }
    println!(
        "spaces {spaces}: fill {filled:?}, finish {finish:?} ({:.0} expanded/s over finish), \
         {} grants ({} expanded of {expected} pairs), {} bytes, peak RSS {:?} KiB",
        info.expanded_grants as f64 / finish.as_secs_f64(),
        info.grants,
        info.expanded_grants,
        info.size_bytes,
        peak_rss_kib(),
    );
    assert!(info.expanded_grants <= expected);
    assert_eq!(info.resources.get("user"), Some(&(USERS as u64)));
}
