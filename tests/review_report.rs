//! The access-review report from real snapshots of the fake's medium preset: the HTML
//! rendered offline by headless Chromium (Debian's `chromium`, installed by
//! `tests/tools/chromium.sh` from `make test`) and checked in the DOM it produces, with a
//! screenshot under target/; the CSV read back with the csv crate.

mod sync_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use confluence_operator::c1z::SnapshotDb;
use confluence_operator::review::html::{MAX_SPACES_PER_USER, PAGE_SIZE};
use confluence_operator::sync::{SyncOptions, run_sync};
use fake_confluence::{FakeConfig, FakeConfluence, Preset};
use html_escape::encode_text;
use tokio_util::sync::CancellationToken;

use sync_support::client;

fn operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confluence-operator"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run the operator binary");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Where the page and its screenshot are kept for people to look at.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("review-report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Two medium-preset snapshots with one membership added in between, kept in `dir`:
/// (old, new, the new member, the group).
async fn snapshots(dir: &Path) -> (PathBuf, PathBuf, String, String) {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Medium))
        .await
        .unwrap();
    let old = dir.join("old.c1z");
    let c = client(&fake);
    run_sync(&c, &SyncOptions::default(), &old, &CancellationToken::new())
        .await
        .unwrap();
    let db = SnapshotDb::open(&old).unwrap();
    // An enabled user on the first page of the report, and a group they are not in.
    let user = db
        .users()
        .unwrap()
        .iter()
        .unwrap()
        .take(PAGE_SIZE)
        .map(|u| u.unwrap())
        .find(|u| !u.disabled)
        .expect("an enabled user");
    let member_of: BTreeSet<String> = db.groups_of(&user.id).unwrap().into_iter().collect();
    let group = db
        .groups()
        .unwrap()
        .iter()
        .unwrap()
        .map(|g| g.unwrap().id)
        .find(|g| !member_of.contains(g))
        .expect("a group to join");
    c.add_group_member(&group, &user.id).await.unwrap();
    let new = dir.join("new.c1z");
    run_sync(&c, &SyncOptions::default(), &new, &CancellationToken::new())
        .await
        .unwrap();
    fake.stop().await;
    (old, new, user.id, group)
}

/// The text of the element whose opening tag contains `marker`, up to `end`.
fn element<'a>(dom: &'a str, marker: &str, end: &str) -> &'a str {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in the DOM"));
    let len = dom[start..].find(end).expect("element end");
    &dom[start..start + len]
}

fn shown_count(dom: &str, id: &str) -> u64 {
    let marker = format!("id=\"count-{id}\">");
    let el = element(dom, &marker, "</dd>");
    el[marker.len()..].parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_renders_in_chromium_and_csv_has_one_row_per_grant() {
    sync_support::init();
    let which = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .unwrap();
    assert!(
        which.status.success(),
        "chromium is not installed: run tests/tools/chromium.sh (make test does)"
    );
    let out = artefacts();
    let (old, new, joiner, joined) = snapshots(&out).await;
    let page = out.join("review.html");
    let _ = std::fs::remove_file(&page);
    run_ok(
        operator()
            .arg("report")
            .arg(&new)
            .arg("--previous")
            .arg(&old)
            .arg("--output")
            .arg(&page),
    );
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing for a browser to fetch.
    for needle in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(needle), "{needle} in the report");
    }

    // Headless Chromium, no network: every host unresolvable, every proxy dead.
    let shot = out.join("review.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let browser = |extra: &[String]| {
        Command::new("chromium")
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--disable-extensions",
                "--proxy-server=127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("run chromium")
    };
    let rendered = browser(&["--dump-dom".to_string()]);
    assert!(rendered.status.success(), "chromium failed");
    let dom = String::from_utf8(rendered.stdout).unwrap();
    let log = String::from_utf8_lossy(&rendered.stderr);
    assert!(!log.contains("Uncaught"), "console errors:\n{log}");
    // The inline script ran to its end.
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page script did not finish"
    );

    // Counts shown equal the snapshot's.
    let db = SnapshotDb::open(&new).unwrap();
    let (memberships, user_grants, group_grants) = db.grant_counts().unwrap();
    let users: Vec<_> = db
        .users()
        .unwrap()
        .iter()
        .unwrap()
        .map(|u| u.unwrap())
        .collect();
    assert_eq!(shown_count(&dom, "users"), users.len() as u64);
    assert_eq!(
        shown_count(&dom, "disabled"),
        users.iter().filter(|u| u.disabled).count() as u64
    );
    assert_eq!(
        shown_count(&dom, "groups"),
        db.groups().unwrap().iter().unwrap().count() as u64
    );
    assert_eq!(
        shown_count(&dom, "spaces"),
        db.spaces().unwrap().iter().unwrap().count() as u64
    );
    assert_eq!(shown_count(&dom, "memberships"), memberships);
    assert_eq!(shown_count(&dom, "user-permissions"), user_grants);
    assert_eq!(shown_count(&dom, "group-permissions"), group_grants);
    assert!(shown_count(&dom, "admins") > 0);
    let pages = users.len().div_ceil(PAGE_SIZE);
    assert!(dom.contains(&format!("Page 1 of {pages}")), "pager label");

    // The changed user's row: every group (the new one marked), every space listed.
    let row = element(&dom, &format!("<tr data-user=\"{joiner}\""), "</tr>");
    assert!(row.contains("class=\"changed\""), "{row}");
    let mut groups = db.groups_of(&joiner).unwrap();
    assert!(groups.contains(&joined));
    groups.sort();
    for g in &groups {
        let name = db.group_name(g).unwrap().unwrap();
        assert!(
            row.contains(&format!("data-group=\"{g}\">{}</span>", encode_text(&name))),
            "group {name} missing from {row}"
        );
    }
    assert!(
        row.contains(&format!(
            "<ins><span class=\"group\" data-group=\"{joined}\">"
        )),
        "the new membership is not highlighted: {row}"
    );
    let grants = db.space_grants_of("user", &joiner).unwrap();
    let spaces: BTreeSet<&str> = grants.iter().map(|g| g.space_id.as_str()).collect();
    for (i, s) in spaces.iter().enumerate() {
        let listed = row.contains(&format!("data-space=\"{s}\""));
        assert_eq!(listed, i < MAX_SPACES_PER_USER, "space {s} in {row}");
    }
    // The changes section lists the membership.
    let changes = element(&dom, "<section id=\"changes\"", "</section>");
    assert!(changes.contains("1 memberships added"), "{changes}");

    // A screenshot for people to look at.
    let shot_arg = format!("--screenshot={}", shot.display());
    let taken = browser(&[shot_arg, "--window-size=1280,1800".to_string()]);
    assert!(taken.status.success(), "chromium screenshot failed");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");

    // The CSV: a standard reader, one row per effective grant of a user.
    let csv_path = out.join("review.csv");
    run_ok(
        operator()
            .arg("report")
            .arg(&new)
            .args(["--format", "csv", "--output"])
            .arg(&csv_path),
    );
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "user_id",
            "user_name",
            "user_email",
            "user_status",
            "resource_type",
            "resource_id",
            "resource_name",
            "permission",
            "via",
            "via_group_ids"
        ]
    );
    let mut rows = 0u64;
    let mut joiner_rows = BTreeSet::new();
    for record in reader.records() {
        let record = record.unwrap();
        assert_eq!(record.len(), 10);
        rows += 1;
        if &record[0] == joiner.as_str() {
            joiner_rows.insert((
                record[4].to_string(),
                record[5].to_string(),
                record[7].to_string(),
            ));
        }
    }
    // Every membership, and every space permission of a listed user: a permission
    // naming an account the sync could not list (an app, say) has no user to hang on.
    let listed: BTreeSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut unlisted = 0u64;
    for g in db.space_grants().unwrap().iter().unwrap() {
        let g = g.unwrap();
        if g.principal_type == "user" && !listed.contains(g.principal_id.as_str()) {
            unlisted += 1;
        }
    }
    assert_eq!(rows, memberships + user_grants - unlisted);
    let mut expected = BTreeSet::new();
    for g in &groups {
        expected.insert(("group".to_string(), g.clone(), "member".to_string()));
    }
    for g in &grants {
        expected.insert((
            "space".to_string(),
            g.space_id.clone(),
            g.permission.clone(),
        ));
    }
    assert_eq!(
        joiner_rows
            .symmetric_difference(&expected)
            .collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "the CSV rows of {joiner} differ from the snapshot"
    );
}
