//! Shared fixtures.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Timelike, Utc};

use crate::c1z::{
    GroupRecord, Snapshot, SnapshotInfo, SnapshotOptions, SnapshotWriter, SpacePermissionRecord,
    SpaceRecord, UserRecord,
};

/// A fixed clock with a fraction, so the trimmed layout shows up in rows.
pub(super) fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 22, 10, 15, 3)
        .single()
        .and_then(|t| t.with_nanosecond(123_400_000))
        .expect("valid time")
}

/// The start time used by [`options`].
pub(super) fn started() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 8, 22, 10, 0, 0)
        .single()
        .expect("valid time")
}

/// Default options with fixed times.
pub(super) fn options() -> SnapshotOptions {
    SnapshotOptions {
        started_at: Some(started()),
        clock: fixed_now,
        ..SnapshotOptions::default()
    }
}

pub(super) fn out_path(dir: &Path) -> PathBuf {
    dir.join("snap.c1z")
}

pub(super) fn user(id: &str, name: &str, email: Option<&str>, enabled: bool) -> UserRecord {
    UserRecord {
        account_id: id.into(),
        display_name: name.into(),
        email: email.map(Into::into),
        account_type: "atlassian".into(),
        enabled,
    }
}

pub(super) fn group(id: &str, name: &str) -> GroupRecord {
    GroupRecord {
        id: id.into(),
        name: name.into(),
        group_type: "group".into(),
    }
}

pub(super) fn space(id: &str, name: &str) -> SpaceRecord {
    SpaceRecord {
        id: id.into(),
        name: name.into(),
    }
}

pub(super) fn perm(
    space: &str,
    ptype: &str,
    pid: &str,
    key: &str,
    target: &str,
) -> SpacePermissionRecord {
    SpacePermissionRecord {
        space_id: space.into(),
        principal_type: ptype.into(),
        principal_id: pid.into(),
        operation_key: key.into(),
        target_type: target.into(),
    }
}

/// Writes a snapshot with `fill` and reads it back.
pub(super) fn build(
    fill: impl FnOnce(&mut SnapshotWriter) -> crate::c1z::Result<()>,
) -> (tempfile::TempDir, SnapshotInfo, Snapshot) {
    build_with(options(), fill)
}

/// Like [`build`] with explicit options.
pub(super) fn build_with(
    options: SnapshotOptions,
    fill: impl FnOnce(&mut SnapshotWriter) -> crate::c1z::Result<()>,
) -> (tempfile::TempDir, SnapshotInfo, Snapshot) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = out_path(dir.path());
    let mut writer = SnapshotWriter::create(&out, options).expect("create");
    fill(&mut writer).expect("fill");
    let info = writer.finish().expect("finish");
    let snap = Snapshot::open(&out).expect("open");
    (dir, info, snap)
}
