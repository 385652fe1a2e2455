//! Access-review benchmark: prints figures, asserts nothing.
//!
//! On a snapshot of the fake's large preset (synced here from the `fake-confluence`
//! binary, or `BENCH_SNAPSHOT=FILE` to reuse one): the time, output size and peak RSS of
//! the HTML report, the CSV report and a full diff pass (the snapshot against itself,
//! which walks every row of both), then how long headless Chromium takes to load the
//! page when `chromium` is installed.
//!
//! Run with `make bench-review`. Settings (environment): `BENCH_PRESET` (large),
//! `BENCH_SNAPSHOT`, `FAKE_CONFLUENCE_BIN` (the fake's binary).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use confluence_operator::confluence::{ClientConfig, ConfluenceClient};
use confluence_operator::review::{self, csv_report, html};
use confluence_operator::sync::{SyncOptions, run_sync};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn mib(path: &Path) -> f64 {
    std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / (1024.0 * 1024.0))
}

/// Syncs the preset from a fake process into `out`.
fn sync_preset(preset: &str, out: &Path) -> Result<(), String> {
    let bin = std::env::var("FAKE_CONFLUENCE_BIN")
        .unwrap_or_else(|_| "target/release/fake-confluence".to_string());
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--preset", preset])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e}"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let base = line
        .trim()
        .strip_prefix("LISTENING ")
        .ok_or_else(|| format!("unexpected first line {line:?}"))?
        .to_string();
    let url = url::Url::parse(&base).map_err(|e| e.to_string())?;
    let config = ClientConfig::new(
        url,
        "admin@example.com",
        SecretString::from("test-token".to_string()),
    );
    let client = ConfluenceClient::new(config).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let result = runtime.block_on(run_sync(
        &client,
        &SyncOptions::default(),
        out,
        &CancellationToken::new(),
    ));
    let _ = child.kill();
    let _ = child.wait();
    result.map_err(|e| e.to_string())?;
    println!(
        "sync ({preset}): {:.1} s, snapshot {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(out)
    );
    Ok(())
}

fn main() -> Result<(), String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let preset = std::env::var("BENCH_PRESET").unwrap_or_else(|_| "large".to_string());
    let dir = PathBuf::from("target/tmp/review-bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let snapshot = match std::env::var("BENCH_SNAPSHOT") {
        Ok(path) => PathBuf::from(path),
        Err(_) => {
            let path = dir.join(format!("{preset}.c1z"));
            if !path.exists() {
                sync_preset(&preset, &path)?;
            }
            path
        }
    };

    let t = Instant::now();
    let db = review::open(&snapshot).map_err(|e| e.to_string())?;
    println!("open (decompress): {:.1} s", t.elapsed().as_secs_f64());

    let page = dir.join("review.html");
    let t = Instant::now();
    let file = File::create(&page).map_err(|e| e.to_string())?;
    let stats = html::write_report_file(&db, None, file).map_err(|e| e.to_string())?;
    println!(
        "html report: {:.1} s, {:.1} MiB, {} users in {} pages, {} admins, {} disabled with access; peak RSS so far {:.0} MiB",
        t.elapsed().as_secs_f64(),
        mib(&page),
        stats.users,
        stats.pages,
        stats.admins,
        stats.disabled_with_access,
        peak_rss_mib()
    );

    let csv = dir.join("review.csv");
    let t = Instant::now();
    let mut out = BufWriter::new(File::create(&csv).map_err(|e| e.to_string())?);
    let rows = csv_report::write_csv(&db, &mut out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    println!(
        "csv report: {:.1} s, {:.1} MiB, {rows} rows; peak RSS so far {:.0} MiB",
        t.elapsed().as_secs_f64(),
        mib(&csv),
        peak_rss_mib()
    );

    let other = review::open(&snapshot).map_err(|e| e.to_string())?;
    let t = Instant::now();
    let counts = review::count_changes(&db, &other).map_err(|e| e.to_string())?;
    println!(
        "diff (full pass, snapshot against itself): {:.1} s, empty: {}; peak RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        counts.is_empty(),
        peak_rss_mib()
    );

    let t = Instant::now();
    let profile = dir.join("chromium-profile");
    match Command::new("chromium")
        .args(["--headless", "--disable-gpu", "--no-sandbox", "--dump-dom"])
        .args([
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!(
            "file://{}",
            std::fs::canonicalize(&page)
                .map_err(|e| e.to_string())?
                .display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) => {
            let dom = String::from_utf8_lossy(&out.stdout);
            println!(
                "chromium load + script + DOM dump: {:.1} s, script finished: {}",
                t.elapsed().as_secs_f64(),
                dom.contains("data-ready=\"1\"")
            );
        }
        Err(e) => println!("chromium not run: {e}"),
    }
    Ok(())
}
