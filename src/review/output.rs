//! The `diff` command's output: one line per change (text), or one JSON document whose
//! `changes` array is written as the changes are found, so a large diff never sits in
//! memory.

use std::io::Write;
use std::path::Path;

use super::diff::{Change, ChangeCounts, Named, Principal, UserRef, diff_snapshots};
use super::{ReviewError, open};

/// Output formats of `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffFormat {
    /// Lines for people.
    Text,
    /// One JSON object: `{"old":…,"new":…,"changes":[…],"counts":{…}}`.
    Json,
}

/// Compares the snapshot files `old` and `new` and writes the changes to `out`.
pub fn write_diff(
    old: &Path,
    new: &Path,
    format: DiffFormat,
    out: &mut dyn Write,
) -> Result<ChangeCounts, ReviewError> {
    let (a, b) = (open(old)?, open(new)?);
    match format {
        DiffFormat::Text => {
            writeln!(
                out,
                "Changes from sync {} to sync {}",
                a.sync_id(),
                b.sync_id()
            )?;
            let counts = diff_snapshots(&a, &b, &mut |change| {
                writeln!(out, "{}", text_line(&change))?;
                Ok(())
            })?;
            writeln!(out, "{}", summary_line(&counts))?;
            Ok(counts)
        }
        DiffFormat::Json => {
            write!(
                out,
                "{{\"old\":{{\"syncId\":{}}},\"new\":{{\"syncId\":{}}},\"changes\":[",
                serde_json::to_string(a.sync_id())?,
                serde_json::to_string(b.sync_id())?
            )?;
            let mut first = true;
            let counts = diff_snapshots(&a, &b, &mut |change| {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                serde_json::to_writer(&mut *out, &change)?;
                Ok(())
            })?;
            write!(out, "],\"counts\":{}}}", serde_json::to_string(&counts)?)?;
            writeln!(out)?;
            Ok(counts)
        }
    }
}

/// `N users added, …` — every count, zero or not, so scripts can read it too.
pub fn summary_line(c: &ChangeCounts) -> String {
    format!(
        "Summary: {} users added, {} removed, {} enabled, {} disabled; \
         {} memberships added, {} removed; {} space permissions added, {} removed",
        c.users_added,
        c.users_removed,
        c.users_enabled,
        c.users_disabled,
        c.memberships_added,
        c.memberships_removed,
        c.permissions_added,
        c.permissions_removed
    )
}

/// One change as a line. Names from the snapshot are quoted with control characters
/// escaped, so a crafted display name cannot forge lines or terminal sequences.
pub fn text_line(change: &Change) -> String {
    let sign = match change {
        Change::UserAdded { .. }
        | Change::MembershipAdded { .. }
        | Change::PermissionAdded { .. } => '+',
        _ => '-',
    };
    match change {
        Change::UserAdded { user } | Change::UserRemoved { user } => {
            format!("{sign} user {}", user_text(user))
        }
        Change::UserEnabled { user } => format!("~ user enabled {}", user_text(user)),
        Change::UserDisabled { user } => format!("~ user disabled {}", user_text(user)),
        Change::MembershipAdded { group, user } | Change::MembershipRemoved { group, user } => {
            format!(
                "{sign} member of group {}: {}",
                named_text(group),
                user_text(user)
            )
        }
        Change::PermissionAdded {
            space,
            permission,
            principal,
            direct,
            via_groups,
        }
        | Change::PermissionRemoved {
            space,
            permission,
            principal,
            direct,
            via_groups,
        } => format!(
            "{sign} permission {permission:?} on space {}: {}{}",
            named_text(space),
            principal_text(principal),
            via_text(*direct, via_groups)
        ),
    }
}

fn user_text(u: &UserRef) -> String {
    match &u.email {
        Some(email) => format!("{:?} <{}> ({})", u.name, esc(email), esc(&u.id)),
        None => format!("{:?} ({})", u.name, esc(&u.id)),
    }
}

fn named_text(n: &Named) -> String {
    format!("{:?} ({})", n.name, esc(&n.id))
}

fn principal_text(p: &Principal) -> String {
    format!("{} {:?} ({})", esc(&p.principal_type), p.name, esc(&p.id))
}

fn via_text(direct: bool, via: &[Named]) -> String {
    if via.is_empty() {
        return String::new();
    }
    let groups: Vec<String> = via.iter().map(named_text).collect();
    let also = if direct { "directly and " } else { "" };
    format!(" ({also}via {})", groups.join(", "))
}

/// Ids are plain in practice; escape anyway, they come from the file.
fn esc(s: &str) -> String {
    s.escape_debug().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::review::{Named, Principal, UserRef};

    #[test]
    fn each_change_line_carries_its_sign() {
        let user = UserRef {
            id: "u1".into(),
            name: "Ann".into(),
            email: None,
        };
        let group = Named {
            id: "g1".into(),
            name: "Admins".into(),
        };
        let permission = |added: bool| {
            let (space, permission) = (
                Named {
                    id: "100".into(),
                    name: "Eng".into(),
                },
                "read-space".to_string(),
            );
            let principal = Principal {
                principal_type: "user".into(),
                id: "u1".into(),
                name: "Ann".into(),
            };
            if added {
                Change::PermissionAdded {
                    space,
                    permission,
                    principal,
                    direct: true,
                    via_groups: vec![],
                }
            } else {
                Change::PermissionRemoved {
                    space,
                    permission,
                    principal,
                    direct: true,
                    via_groups: vec![],
                }
            }
        };
        let lines: Vec<String> = [
            Change::UserAdded { user: user.clone() },
            Change::UserRemoved { user: user.clone() },
            Change::UserEnabled { user: user.clone() },
            Change::UserDisabled { user: user.clone() },
            Change::MembershipAdded {
                group: group.clone(),
                user: user.clone(),
            },
            Change::MembershipRemoved {
                group,
                user: user.clone(),
            },
            permission(true),
            permission(false),
        ]
        .iter()
        .map(text_line)
        .collect();
        let starts: Vec<&str> = lines
            .iter()
            .map(|l| l.split(" \"").next().unwrap_or_default())
            .collect();
        assert_eq!(
            starts,
            [
                "+ user",
                "- user",
                "~ user enabled",
                "~ user disabled",
                "+ member of group",
                "- member of group",
                "+ permission",
                "- permission",
            ],
            "{lines:#?}"
        );
    }
}
