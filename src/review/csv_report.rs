//! `report --format csv`: one row per effective grant of a user — each group membership
//! and each space permission, direct or through groups — streamed user by user.

use std::io::Write;

use super::ReviewError;
use super::access::{UserAccess, group_names};
use crate::c1z::SnapshotDb;

/// The header row.
pub const HEADER: [&str; 10] = [
    "user_id",
    "user_name",
    "user_email",
    "user_status",
    "resource_type",
    "resource_id",
    "resource_name",
    "permission",
    "via",
    "via_group_ids",
];

/// Writes the CSV of `db` to `out`; returns the number of data rows.
pub fn write_csv(db: &SnapshotDb, out: &mut dyn Write) -> Result<u64, ReviewError> {
    let names = group_names(db)?;
    let mut w = csv::Writer::from_writer(out);
    w.write_record(HEADER)?;
    let mut rows = 0;
    for user in db.users()?.iter()? {
        let access = UserAccess::load(db, &names, user?)?;
        let u = &access.user;
        let status = if u.disabled { "disabled" } else { "enabled" };
        let email = u.email.as_deref().unwrap_or("");
        for g in &access.groups {
            w.write_record([
                &u.id, &u.name, email, status, "group", &g.id, &g.name, "member", "direct", "",
            ])?;
            rows += 1;
        }
        for g in &access.grants {
            // "direct; group A; group B": every route by which the user holds it.
            let mut via: Vec<&str> = Vec::new();
            if g.direct {
                via.push("direct");
            }
            let group_labels: Vec<String> = g
                .via_groups
                .iter()
                .map(|id| format!("group {}", names.get(id).map(String::as_str).unwrap_or(id)))
                .collect();
            via.extend(group_labels.iter().map(String::as_str));
            w.write_record([
                &u.id,
                &u.name,
                email,
                status,
                "space",
                &g.space_id,
                &g.space_name,
                &g.permission,
                &via.join("; "),
                &g.via_groups.join(" "),
            ])?;
            rows += 1;
        }
    }
    w.flush()?;
    Ok(rows)
}
