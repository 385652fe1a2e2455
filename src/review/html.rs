//! `report`: one self-contained HTML page for a reviewer (inline CSS, a few lines of
//! inline JS for paging, nothing fetched). Sections: summary, changes since the previous
//! snapshot, admins, disabled users who still hold access, and every user with groups
//! and effective space permissions.
//!
//! Size stays usable on large tenants: users are written in pages of [`PAGE_SIZE`]
//! (only one shown at a time), each user lists at most [`MAX_SPACES_PER_USER`] spaces
//! (the CSV has everything), and the admin, disabled and change lists are capped.
//! Users are streamed once; their rows go to a temporary file while the callouts
//! are collected, then the page is assembled.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use super::ReviewError;
use super::access::{ChangeIndex, SPACE_ADMIN, UserAccess, group_names};
use super::output::{summary_line, text_line};
use crate::c1z::SnapshotDb;

/// Users per page.
pub const PAGE_SIZE: usize = 200;
/// Spaces listed per user; the rest are counted.
pub const MAX_SPACES_PER_USER: usize = 10;
/// Entries of each callout list (admins, disabled with access, changes).
pub const MAX_LISTED: usize = 500;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d2125}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\
dl.summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(11em,1fr));gap:.6em}\
dl.summary div{background:#f4f5f7;padding:.6em;border-radius:4px}\
dl.summary dt{font-size:.85em;color:#555}dl.summary dd{margin:0;font-size:1.5em;font-weight:600}\
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #e4e4e4;padding:.3em .5em;\
text-align:left;vertical-align:top}th{background:#fafafa}.muted{color:#6b778c}\
.tag{display:inline-block;border-radius:3px;padding:0 .35em;font-size:.8em;margin-left:.3em}\
.admin{background:#ffebe6;color:#bf2600}.disabled{background:#dfe1e6;color:#42526e}\
.new{background:#e3fcef;color:#006644}ins{background:#e3fcef;text-decoration:none}\
del{background:#ffebe6}tr.changed>td:first-child{border-left:3px solid #36b37e}\
ul.perms{margin:0;padding-left:1.1em}nav.pager{margin:.6em 0}nav.pager button{margin-right:.4em}\
code{font-size:.9em}";

const SCRIPT: &str = "(function(){var pages=document.querySelectorAll('tbody.page');\
var n=pages.length,cur=0,label=document.getElementById('page-label');\
function show(i){if(n===0)return;cur=Math.max(0,Math.min(n-1,i));\
for(var j=0;j<n;j++){pages[j].hidden=(j!==cur);}\
label.textContent='Page '+(cur+1)+' of '+n;}\
document.getElementById('page-prev').onclick=function(){show(cur-1);};\
document.getElementById('page-next').onclick=function(){show(cur+1);};\
document.getElementById('page-go').onchange=function(e){show(parseInt(e.target.value,10)-1);};\
show(0);document.body.setAttribute('data-ready','1');})();";

/// What went into a report, for callers and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportStats {
    /// Users listed.
    pub users: u64,
    /// Pages of users.
    pub pages: u64,
    /// Users holding Space Admin or an admin-style group.
    pub admins: u64,
    /// Disabled users still holding memberships or permissions.
    pub disabled_with_access: u64,
}

/// Callouts gathered while the users stream by.
#[derive(Default)]
struct Callouts {
    admins: String,
    disabled: String,
    stats: ReportStats,
    disabled_users: u64,
}

/// Writes the report of `db` (with changes since `previous`, when given) to `out`.
pub fn write_report(
    db: &SnapshotDb,
    previous: Option<&SnapshotDb>,
    out: &mut dyn Write,
) -> Result<ReportStats, ReviewError> {
    let changes = previous.map(|p| ChangeIndex::build(p, db)).transpose()?;
    let names = group_names(db)?;
    let (memberships, user_grants, group_grants) = db.grant_counts()?;
    let spaces = db.spaces()?.iter()?.count();

    let mut rows = BufWriter::new(tempfile::tempfile()?);
    let mut callouts = Callouts::default();
    let mut row = String::new();
    for (i, user) in db.users()?.iter()?.enumerate() {
        let access = UserAccess::load(db, &names, user?)?;
        if i.is_multiple_of(PAGE_SIZE) {
            if i > 0 {
                rows.write_all(b"</tbody>")?;
            }
            let hidden = if i == 0 { "" } else { " hidden" };
            write!(rows, "<tbody class=\"page\"{hidden}>")?;
            callouts.stats.pages += 1;
        }
        callouts.note(&access);
        row.clear();
        user_row(&mut row, &access, changes.as_ref());
        rows.write_all(row.as_bytes())?;
    }
    if callouts.stats.users > 0 {
        rows.write_all(b"</tbody>")?;
    }
    let mut rows = rows.into_inner().map_err(|e| e.into_error())?;
    rows.rewind()?;

    let mut head = String::new();
    page_head(&mut head, db, previous);
    let counts = [
        ("users", "Users", callouts.stats.users),
        ("disabled", "Disabled users", callouts.disabled_users),
        ("groups", "Groups", names.len() as u64),
        ("spaces", "Spaces", spaces as u64),
        ("memberships", "Group memberships", memberships),
        (
            "user-permissions",
            "Effective space permissions of users",
            user_grants,
        ),
        (
            "group-permissions",
            "Space permissions of groups",
            group_grants,
        ),
        ("admins", "Admins", callouts.stats.admins),
        (
            "disabled-with-access",
            "Disabled users with access",
            callouts.stats.disabled_with_access,
        ),
    ];
    head.push_str("<section id=\"summary\"><h2>Summary</h2><dl class=\"summary\">");
    for (id, label, n) in counts {
        let _ = write!(
            head,
            "<div><dt>{label}</dt><dd id=\"count-{id}\">{n}</dd></div>"
        );
    }
    head.push_str("</dl></section>");
    if let Some(changes) = &changes {
        changes_section(&mut head, changes);
    }
    callout_section(
        &mut head,
        "admins",
        "Admins",
        "Users with Space Admin (administer-space) on any space, or in a group whose name marks administrators.",
        &callouts.admins,
        callouts.stats.admins,
    );
    callout_section(
        &mut head,
        "disabled-with-access",
        "Disabled users who still hold access",
        "Deactivated or unlicensed accounts that are still group members or hold space permissions.",
        &callouts.disabled,
        callouts.stats.disabled_with_access,
    );
    let _ = write!(
        head,
        "<section id=\"users\"><h2>Users</h2><p class=\"muted\">{} users in pages of {PAGE_SIZE}; \
         at most {MAX_SPACES_PER_USER} spaces are listed per user (the CSV report lists every \
         grant).</p><nav class=\"pager\"><button id=\"page-prev\" type=\"button\">Previous</button>\
         <button id=\"page-next\" type=\"button\">Next</button><label>Go to page \
         <input id=\"page-go\" type=\"number\" min=\"1\" max=\"{}\" value=\"1\"></label> \
         <span id=\"page-label\">Page 1 of {}</span></nav><table id=\"user-table\"><thead><tr>\
         <th>User</th><th>Groups</th><th>Space permissions (and through which group)</th>\
         </tr></thead>",
        callouts.stats.users,
        callouts.stats.pages.max(1),
        callouts.stats.pages.max(1)
    );
    out.write_all(head.as_bytes())?;
    io::copy(&mut rows, out)?;
    writeln!(
        out,
        "</table></section><script>{SCRIPT}</script></body></html>"
    )?;
    Ok(callouts.stats)
}

impl Callouts {
    fn note(&mut self, a: &UserAccess) {
        self.stats.users += 1;
        if a.user.disabled {
            self.disabled_users += 1;
        }
        if a.is_admin() {
            self.stats.admins += 1;
            if self.stats.admins as usize <= MAX_LISTED {
                let groups: Vec<&str> = a
                    .groups
                    .iter()
                    .filter(|g| super::access::is_admin_group(&g.name))
                    .map(|g| g.name.as_str())
                    .collect();
                let _ = write!(
                    self.admins,
                    "<li data-user=\"{}\">{} — Space Admin on {} spaces{}</li>",
                    attr(&a.user.id),
                    text(&a.user.name),
                    a.admin_spaces(),
                    if groups.is_empty() {
                        String::new()
                    } else {
                        format!("; admin groups: {}", text(&groups.join(", ")))
                    }
                );
            }
        }
        if a.user.disabled && a.has_access() {
            self.stats.disabled_with_access += 1;
            if self.stats.disabled_with_access as usize <= MAX_LISTED {
                let _ = write!(
                    self.disabled,
                    "<li data-user=\"{}\">{} — {} groups, {} space permissions</li>",
                    attr(&a.user.id),
                    text(&a.user.name),
                    a.groups.len(),
                    a.grants.len()
                );
            }
        }
    }
}

fn page_head(out: &mut String, db: &SnapshotDb, previous: Option<&SnapshotDb>) {
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Confluence access review — sync {}</title><style>{STYLE}</style></head><body>\
         <h1>Confluence access review</h1><p class=\"muted\">Snapshot sync <code id=\"sync-id\">{}</code>",
        text(db.sync_id()),
        text(db.sync_id())
    );
    if let Some(p) = previous {
        let _ = write!(
            out,
            ", compared with sync <code id=\"previous-sync-id\">{}</code>",
            text(p.sync_id())
        );
    }
    out.push_str(".</p>");
}

fn changes_section(out: &mut String, changes: &ChangeIndex) {
    let _ = write!(
        out,
        "<section id=\"changes\"><h2>Changes since the previous snapshot</h2><p>{}</p><ul>",
        text(&summary_line(&changes.counts))
    );
    for change in changes.changes.iter().take(MAX_LISTED) {
        let _ = write!(out, "<li><code>{}</code></li>", text(&text_line(change)));
    }
    out.push_str("</ul>");
    if changes.changes.len() > MAX_LISTED {
        let _ = write!(
            out,
            "<p class=\"muted\">… and {} more: run <code>confluence-operator diff</code> for all.</p>",
            changes.changes.len() - MAX_LISTED
        );
    }
    out.push_str("</section>");
}

fn callout_section(out: &mut String, id: &str, title: &str, about: &str, items: &str, n: u64) {
    let _ = write!(
        out,
        "<section id=\"{id}\"><h2>{title} ({n})</h2><p class=\"muted\">{about}</p><ul>{items}</ul>"
    );
    if n as usize > MAX_LISTED {
        let _ = write!(
            out,
            "<p class=\"muted\">… and {} more (see the Users table or the CSV report).</p>",
            n as usize - MAX_LISTED
        );
    }
    out.push_str("</section>");
}

fn user_row(out: &mut String, a: &UserAccess, changes: Option<&ChangeIndex>) {
    let u = &a.user;
    let changed = changes.is_some_and(|c| c.touches(&u.id));
    let _ = write!(
        out,
        "<tr data-user=\"{}\"{}><td><strong class=\"user-name\">{}</strong>",
        attr(&u.id),
        if changed { " class=\"changed\"" } else { "" },
        text(&u.name)
    );
    if u.disabled {
        out.push_str("<span class=\"tag disabled\">disabled</span>");
    }
    if a.is_admin() {
        out.push_str("<span class=\"tag admin\">admin</span>");
    }
    if changes.is_some_and(|c| c.user_added(&u.id)) {
        out.push_str("<span class=\"tag new\">new</span>");
    } else if changes.is_some_and(|c| c.status_changed(&u.id)) {
        out.push_str("<span class=\"tag new\">status changed</span>");
    }
    let _ = write!(
        out,
        "<br><span class=\"muted\">{}</span><br><code class=\"muted\">{}</code></td><td class=\"groups\">",
        text(u.email.as_deref().unwrap_or("")),
        text(&u.id)
    );
    for (i, g) in a.groups.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let added = changes.is_some_and(|c| c.membership_added(&u.id, &g.id));
        let (open, close) = if added { ("<ins>", "</ins>") } else { ("", "") };
        let _ = write!(
            out,
            "{open}<span class=\"group\" data-group=\"{}\">{}</span>{close}",
            attr(&g.id),
            text(&g.name)
        );
    }
    if let Some(c) = changes {
        for g in c.memberships_removed(&u.id) {
            let _ = write!(out, " <del class=\"group\">{}</del>", text(&g.name));
        }
    }
    out.push_str("</td><td><ul class=\"perms\">");
    permissions_cell(out, a, changes);
    out.push_str("</ul></td></tr>");
}

/// One `<li>` per space: its permissions, then the routes to them (directly, through
/// which groups) once per space — repeating the groups per permission made the page
/// several times larger without telling a reviewer more.
fn permissions_cell(out: &mut String, a: &UserAccess, changes: Option<&ChangeIndex>) {
    let uid = &a.user.id;
    let mut spaces = 0usize;
    let mut i = 0;
    while i < a.grants.len() {
        let space = &a.grants[i].space_id;
        let end = a.grants[i..]
            .iter()
            .position(|g| &g.space_id != space)
            .map_or(a.grants.len(), |n| i + n);
        spaces += 1;
        if spaces <= MAX_SPACES_PER_USER {
            space_item(out, a, &a.grants[i..end], changes);
        }
        i = end;
    }
    if spaces > MAX_SPACES_PER_USER {
        let _ = write!(
            out,
            "<li class=\"muted\">… and {} more spaces (see the CSV report)</li>",
            spaces - MAX_SPACES_PER_USER
        );
    }
    if let Some(c) = changes {
        for (space, permission) in c.grants_removed(uid) {
            let _ = write!(
                out,
                "<li><del>{}: {}</del></li>",
                text(&space.name),
                text(permission)
            );
        }
    }
}

fn space_item(
    out: &mut String,
    a: &UserAccess,
    grants: &[crate::c1z::SpaceGrantEntry],
    changes: Option<&ChangeIndex>,
) {
    let Some(first) = grants.first() else {
        return;
    };
    let _ = write!(
        out,
        "<li data-space=\"{}\">{}: ",
        attr(&first.space_id),
        text(&first.space_name)
    );
    let mut direct = false;
    let mut via: Vec<&str> = Vec::new();
    for (k, g) in grants.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        let added = changes.is_some_and(|c| c.grant_added(&a.user.id, &g.space_id, &g.permission));
        let (open, close) = match (added, g.permission == SPACE_ADMIN) {
            (true, _) => ("<ins>", "</ins>"),
            (false, true) => ("<b class=\"admin\">", "</b>"),
            (false, false) => ("", ""),
        };
        let _ = write!(out, "{open}{}{close}", text(&g.permission));
        direct |= g.direct;
        for id in &g.via_groups {
            if !via.contains(&id.as_str()) {
                via.push(id);
            }
        }
    }
    if !via.is_empty() {
        let names: Vec<&str> = via
            .iter()
            .map(|id| {
                a.groups
                    .iter()
                    .find(|x| x.id == *id)
                    .map_or(*id, |x| x.name.as_str())
            })
            .collect();
        let also = if direct { "direct; " } else { "" };
        let _ = write!(
            out,
            " <span class=\"muted\">({also}via {})</span>",
            text(&names.join(", "))
        );
    }
    out.push_str("</li>");
}

/// Writes the report to a file path through a buffer (the CLI's path).
pub fn write_report_file(
    db: &SnapshotDb,
    previous: Option<&SnapshotDb>,
    file: File,
) -> Result<ReportStats, ReviewError> {
    let mut out = BufWriter::new(file);
    let stats = write_report(db, previous, &mut out)?;
    out.flush()?;
    Ok(stats)
}
