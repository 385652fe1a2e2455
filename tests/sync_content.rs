//! The snapshot's content is pinned: a sync of the fake's medium preset with a fixed
//! clock and sync id must decode to exactly the rows recorded here, whatever the order
//! pages arrive in and however the writer gets there (expansion during the fetch, bulk
//! index builds, multithreaded compression). A change to the writer that alters any
//! row, column or index definition fails this test.
//!
//! Row ids are left out: the fetch runs walks concurrently, so insertion order (and with
//! it the integer primary key) already differs from run to run.
//!
//! The same content must come out of a sync under a tight rate limit, which the client
//! meets by pacing itself from the budget headers rather than by running into 429s.

mod sync_support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use confluence_operator::c1z::SnapshotOptions;
use confluence_operator::sync::SyncReport;
use confluence_operator::sync::{SyncOptions, run_sync};
use fake_confluence::{FakeConfig, FakeConfluence, Preset, RateLimitConfig};
use rusqlite::types::ValueRef;
use sha2::{Digest, Sha256};
use sync_support::client;
use tokio_util::sync::CancellationToken;

/// Per table (and the schema): rows and the SHA-256 of their canonical encoding,
/// recorded from the writer as it was before the finish phase was reworked.
const PINNED: &[(&str, u64, &str)] = &[
    (
        "schema",
        23,
        "4f0f7316ca734cd6d4ba57e593016e2971c1f4f76d7879c2d72e5784006df92d",
    ),
    (
        "v1_assets",
        0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    (
        "v1_connector_sessions",
        0,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    (
        "v1_entitlements",
        12500,
        "51d7748359109acbbacf9e41e14e156295deb16e34932f34d52e5a4260522258",
    ),
    (
        "v1_grants",
        572033,
        "038f78045c6128e40476363de9e278391fd2b238e8980dc7ff9439eee6794fc2",
    ),
    (
        "v1_resource_types",
        5,
        "fcb9590008c1c0a3daf059e1717fede0b7a1cce5b0a1c13ad24fc136cda0465b",
    ),
    (
        "v1_resources",
        5338,
        "bef79ec11bd1af24461845b8f33d7d2fce7945156e5334832b5654939e0583ef",
    ),
    (
        "v1_sync_runs",
        1,
        "1aeaec2783d489ad1210a1bac8421d8cd09f6b3c5eb4a409929cbd1e97b47641",
    ),
];

fn fixed_clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5)
        .single()
        .unwrap_or_default()
}

/// Tables in the order they are reported, with the columns that identify a row.
const TABLES: &[&str] = &[
    "v1_resource_types",
    "v1_resources",
    "v1_entitlements",
    "v1_grants",
    "v1_sync_runs",
    "v1_assets",
    "v1_connector_sessions",
];

/// Feeds one SQLite value into the hash, typed and length-prefixed so that no two
/// different rows can encode alike.
fn hash_value(hash: &mut Sha256, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => hash.update([0u8]),
        ValueRef::Integer(i) => {
            hash.update([1u8]);
            hash.update(i.to_le_bytes());
        }
        ValueRef::Real(f) => {
            hash.update([2u8]);
            hash.update(f.to_le_bytes());
        }
        ValueRef::Text(t) => {
            hash.update([3u8]);
            hash.update((t.len() as u64).to_le_bytes());
            hash.update(t);
        }
        ValueRef::Blob(b) => {
            hash.update([4u8]);
            hash.update((b.len() as u64).to_le_bytes());
            hash.update(b);
        }
    }
}

/// Rows and digest of every table (all columns but `id`, sorted) and of the schema.
fn digests(db: &Path) -> BTreeMap<String, (u64, String)> {
    let conn = rusqlite::Connection::open(db).expect("open decoded snapshot");
    // Every index agrees with its table, every page is well formed.
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok", "integrity of the decoded snapshot");
    let mut out = BTreeMap::new();
    let mut digest = |name: &str, sql: &str| {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).expect("query");
        let mut hash = Sha256::new();
        let mut count = 0u64;
        while let Some(row) = rows.next().expect("row") {
            for i in 0..columns {
                hash_value(&mut hash, row.get_ref(i).expect("value"));
            }
            count += 1;
        }
        let hex: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
        out.insert(name.to_string(), (count, hex));
    };
    digest(
        "schema",
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name",
    );
    for table in TABLES {
        let columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .expect("table info")
            .query_map([], |r| r.get::<_, String>(0))
            .expect("columns")
            .map(|c| c.expect("column"))
            .filter(|c| c != "id")
            .collect();
        let list = columns.join(", ");
        digest(
            table,
            &format!("SELECT {list} FROM {table} ORDER BY {list}"),
        );
    }
    out
}

/// Decodes a c1z (magic + zstd frame) into a plain SQLite file.
fn decode(c1z: &Path, db: &Path) {
    let mut file = std::fs::File::open(c1z).expect("open c1z");
    let mut magic = [0u8; 5];
    file.read_exact(&mut magic).expect("magic");
    assert_eq!(&magic, b"C1ZF\0");
    let mut decoder = zstd::stream::read::Decoder::new(file).expect("zstd");
    let mut out = std::fs::File::create(db).expect("create db");
    std::io::copy(&mut decoder, &mut out).expect("decompress");
}

/// Syncs the medium preset (optionally rate-limited) with the pinned clock and sync id;
/// returns the report and the decoded content's digests.
async fn medium_sync(
    rate_limit: Option<RateLimitConfig>,
) -> (SyncReport, BTreeMap<String, (u64, String)>) {
    let mut config = FakeConfig::preset(Preset::Medium);
    config.rate_limit = rate_limit;
    let fake = FakeConfluence::start(config).await.expect("fake starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("medium.c1z");
    let options = SyncOptions {
        timeout: Duration::from_secs(600),
        snapshot: SnapshotOptions {
            clock: fixed_clock,
            started_at: Some(fixed_clock()),
            sync_id: Some("2gGnYvxVXpLEfKIVnuvSSYjgMdO".to_string()),
            ..SnapshotOptions::default()
        },
        ..SyncOptions::default()
    };
    let report = run_sync(&client(&fake), &options, &out, &CancellationToken::new())
        .await
        .expect("sync");
    let db = dir.path().join("decoded.db");
    decode(&out, &db);
    (report, digests(&db))
}

fn assert_pinned(got: &BTreeMap<String, (u64, String)>) {
    let report: Vec<String> = got
        .iter()
        .map(|(name, (rows, hex))| format!("    (\"{name}\", {rows}, \"{hex}\"),"))
        .collect();
    let want: BTreeMap<String, (u64, String)> = PINNED
        .iter()
        .map(|(name, rows, hex)| (name.to_string(), (*rows, hex.to_string())))
        .collect();
    assert_eq!(
        got,
        &want,
        "decoded content differs from the pinned one; now:\n{}",
        report.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medium_preset_content_is_unchanged() {
    let (_, got) = medium_sync(None).await;
    assert_pinned(&got);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tight_rate_limit_is_met_by_pacing_with_the_same_content() {
    // 20 requests per second per route, burst 10: the member route alone needs 700
    // pages. Eight workers would run into the wall every few dozen milliseconds; paced
    // by the budget headers they rarely do.
    let (report, got) = medium_sync(Some(RateLimitConfig {
        capacity: 10,
        refill_per_sec: 20.0,
        ..RateLimitConfig::default()
    }))
    .await;
    assert_pinned(&got);
    eprintln!(
        "paced sync: {} requests, {} 429s, {} retries, {:.1} s",
        report.requests, report.rate_limited, report.retries, report.duration_seconds
    );
    // Measured on a 2-core machine: 22–32 429s in about 1,085 requests paced, 266 in
    // 1,325 with pacing switched off. The bound sits between the two.
    assert!(
        report.rate_limited * 15 <= report.requests,
        "{} 429s in {} requests",
        report.rate_limited,
        report.requests
    );
    // No page is fetched twice beyond the few retries those 429s cause.
    assert!(
        report.requests <= 1_057 + 1 + 1 + report.retries,
        "{} requests, {} retries",
        report.requests,
        report.retries
    );
}
