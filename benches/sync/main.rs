//! Sync benchmark: prints figures, asserts nothing.
//!
//! Runs the sync engine against the fake Confluence server started as a separate process
//! (so the peak RSS printed is the sync's own), with per-request latency and a rate
//! limit, and compares the requests made with the pages the tenant needs. It also prints
//! the CPU time of both processes: where the fake shares the sync's cores, their sum
//! over the cores is the least wall time any run can take there.
//!
//! Each preset is then replayed with the reference connector's request pattern (see
//! `reference_pattern.rs`) against a fresh fake with the same settings, and both wall
//! times and their ratio are printed.
//!
//! Run with `make bench-sync`. Settings (environment): `BENCH_PRESETS` (`large,medium`),
//! `BENCH_REFERENCE` (`1`: every preset; `0`: none; or a list such as `medium` — the
//! replay takes minutes on the large preset), `BENCH_LATENCY_MS` (20), `BENCH_RATE_LIMIT` per route and second (200),
//! `BENCH_BURST` (100), `BENCH_CONCURRENCY` (8), `FAKE_CONFLUENCE_BIN` (the fake's
//! binary). `RUST_LOG=confluence_operator::c1z=debug` shows where the finish phase
//! spends its time; `BENCH_RSS_TRACE=1` prints every RSS sample (seconds, MiB) to
//! standard error, to see which phase holds the peak.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

mod reference_pattern;

use confluence_operator::confluence::{ClientConfig, ConfluenceClient};
use confluence_operator::sync::{SyncOptions, run_sync};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// The operator binary's allocator (see `src/main.rs`), so that peak RSS is the
/// operator's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Settings {
    presets: Vec<String>,
    /// Presets to replay the reference pattern on.
    reference: Vec<String>,
    latency_ms: u64,
    rate_limit: f64,
    burst: u32,
    concurrency: usize,
    fake_bin: String,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fake as a child process; killed on drop.
struct FakeProcess {
    child: Child,
    base_url: String,
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_fake(s: &Settings, preset: &str) -> Result<FakeProcess, String> {
    let mut child = Command::new(&s.fake_bin)
        .args(["--listen", "127.0.0.1:0", "--preset", preset])
        .args(["--latency-ms", &s.latency_ms.to_string()])
        .args([
            "--rate-limit",
            &s.rate_limit.to_string(),
            "--burst",
            &s.burst.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build it with `cargo build --release -p fake-confluence`)",
                s.fake_bin
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let base_url = line
        .trim()
        .strip_prefix("LISTENING ")
        .ok_or(format!("unexpected fake output {line:?}"))?
        .to_string();
    Ok(FakeProcess { child, base_url })
}

/// The fake's `/__fake/pages` key for a client route template.
fn page_key(route: &str) -> Option<&'static str> {
    let path = route.split_once(' ').map_or(route, |(_, p)| p);
    match path {
        "/wiki/rest/api/group" => Some("groups"),
        p if p.ends_with("/membersByGroupId") => Some("members"),
        "/wiki/rest/api/search/user" => Some("search"),
        "/wiki/api/v2/spaces" => Some("spaces"),
        p if p.ends_with("/permissions") => Some("permissions"),
        _ => None,
    }
}

/// Resets the peak RSS (`VmHWM`) so that each preset reports its own.
fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets the high-water mark.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn current_rss_mib() -> f64 {
    proc_status_mib("VmRSS:")
}

fn peak_rss_mib() -> f64 {
    proc_status_mib("VmHWM:")
}

/// CPU time (user + system, seconds) a process has used so far: `self` or a pid.
fn cpu_seconds(process: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is the first, utime the 12th, stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => {
            (user + system) as f64 / rustix::param::clock_ticks_per_second() as f64
        }
        _ => f64::NAN,
    }
}

/// CPU used by the sync (this process) and by the fake, read together.
#[derive(Clone, Copy)]
struct CpuSample {
    sync: f64,
    fake: f64,
}

impl CpuSample {
    fn read(fake_pid: &str) -> Self {
        Self {
            sync: cpu_seconds("self"),
            fake: cpu_seconds(fake_pid),
        }
    }
}

fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

async fn fetch_json(url: &str) -> Result<serde_json::Value, String> {
    let body = reqwest::get(url)
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

async fn bench_ours(s: &Settings, preset: &str) -> Result<f64, String> {
    reset_peak_rss();
    let fake = start_fake(s, preset)?;
    let url = url::Url::parse(&fake.base_url).map_err(|e| e.to_string())?;
    let mut config = ClientConfig::new(
        url,
        "admin@example.com",
        SecretString::from("test-token".to_string()),
    );
    config.max_in_flight = s.concurrency;
    let client = ConfluenceClient::new(config).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = dir.path().join("bench.c1z");
    let options = SyncOptions {
        concurrency: s.concurrency,
        ..SyncOptions::default()
    };
    // RSS and CPU every 100 ms, to tell the fetch's peak from the finish's and what
    // each phase cost both processes.
    let fake_pid = fake.child.id().to_string();
    let cpu_at_start = CpuSample::read(&fake_pid);
    let started = std::time::Instant::now();
    // (seconds since the start, RSS in MiB, CPU so far)
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        let fake_pid = fake_pid.clone();
        tokio::spawn(async move {
            loop {
                let sample = (
                    started.elapsed().as_secs_f64(),
                    current_rss_mib(),
                    CpuSample::read(&fake_pid),
                );
                if let Ok(mut s) = samples.lock() {
                    s.push(sample);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        })
    };
    let report = run_sync(&client, &options, &out, &CancellationToken::new())
        .await
        .map_err(|e| e.to_string())?;
    sampler.abort();
    let cpu_at_end = CpuSample::read(&fake_pid);
    // The last sample taken while fetching splits the CPU time between the phases.
    let cpu_at_fetch_end = samples.lock().ok().and_then(|s| {
        s.iter()
            .take_while(|(t, _, _)| *t <= report.fetch_seconds)
            .last()
            .map(|(_, _, cpu)| *cpu)
    });
    if std::env::var_os("BENCH_RSS_TRACE").is_some()
        && let Ok(s) = samples.lock()
    {
        for (t, r, _) in s.iter() {
            eprintln!("rss {t:.1} {r:.1}");
        }
    }
    let (fetch_rss, finish_rss) = samples.lock().map_or((f64::NAN, f64::NAN), |s| {
        let peak = |keep: &dyn Fn(f64) -> bool| {
            s.iter()
                .filter(|(t, _, _)| keep(*t))
                .map(|(_, r, _)| *r)
                .fold(0.0f64, f64::max)
        };
        (
            peak(&|t| t <= report.fetch_seconds),
            peak(&|t| t > report.fetch_seconds),
        )
    });

    let stats = fetch_json(&format!("{}/__fake/stats", fake.base_url)).await?;
    let needed = fetch_json(&format!("{}/__fake/pages", fake.base_url))
        .await
        .ok();
    println!(
        "== confluence-operator sync, preset {preset}, {} ms latency, {}/s per route (burst {}), concurrency {}",
        s.latency_ms, s.rate_limit, s.burst, s.concurrency
    );
    let finish_seconds = report.duration_seconds - report.fetch_seconds;
    println!(
        "wall time          {:>10.2} s (fetching {:.2} s, finishing the snapshot {:.2} s)",
        report.duration_seconds, report.fetch_seconds, finish_seconds
    );
    println!(
        "objects            users {} ({} disabled), groups {}, memberships {}, spaces {}, space permissions {}",
        report.counts.users,
        report.counts.disabled_users,
        report.counts.groups,
        report.counts.memberships,
        report.counts.spaces,
        report.counts.space_permissions
    );
    println!(
        "snapshot           {:.1} MiB, {} grants ({} expanded)",
        report.size_bytes as f64 / 1048576.0,
        report.counts.grants,
        report.counts.expanded_grants
    );
    println!(
        "requests           {} (retries {}, 429s seen by client {}, 429s sent by fake {})",
        report.requests, report.retries, report.rate_limited, stats["rateLimited"]
    );
    let mut worst_route_rate_bound = 0.0f64;
    for (route, n) in &report.requests_by_route {
        let want = page_key(route).and_then(|k| needed.as_ref().and_then(|p| p[k].as_u64()));
        let ratio = want.map(|w| {
            format!(
                "{:+.2}% vs {w} pages needed",
                (*n as f64 / w.max(1) as f64 - 1.0) * 100.0
            )
        });
        println!("  {route:<55} {n:>7}  {}", ratio.unwrap_or_default());
        worst_route_rate_bound = worst_route_rate_bound.max(*n as f64 / s.rate_limit);
    }
    if let Some(total) = needed.as_ref().and_then(|p| p["total"].as_u64()) {
        let paged: u64 = report
            .requests_by_route
            .iter()
            .filter(|(r, _)| page_key(r).is_some())
            .map(|(_, n)| n)
            .sum();
        println!(
            "paged requests     {paged} vs {total} needed ({:+.2}%, target within 1%)",
            (paged as f64 / total.max(1) as f64 - 1.0) * 100.0
        );
    }
    let latency_bound =
        report.requests as f64 * s.latency_ms as f64 / 1000.0 / s.concurrency as f64;
    let bound = latency_bound.max(worst_route_rate_bound);
    println!(
        "bound              {bound:.2} s = max(requests x latency / concurrency = {latency_bound:.2} s, busiest route / rate = {worst_route_rate_bound:.2} s)"
    );
    println!(
        "wall / bound       {:.2}x overall (target <= 1.6x), {:.2}x for fetching (target <= 1.1x)",
        report.duration_seconds / bound,
        report.fetch_seconds / bound
    );
    println!("finish             {finish_seconds:.2} s after the fetch (target <= 60 s)");
    println!("429s               {} (target <= 5)", report.rate_limited);
    println!("peak fake concurrency {}", stats["peakConcurrent"]);
    println!(
        "peak RSS (sync)    {:.1} MiB (target <= 100 MiB); sampled: {fetch_rss:.1} MiB while fetching, {finish_rss:.1} MiB while finishing",
        peak_rss_mib()
    );
    print_cpu(cpu_at_start, cpu_at_fetch_end, cpu_at_end);
    Ok(report.duration_seconds)
}

/// CPU time of the sync and of the fake, and the wall time those need at least on
/// this machine's cores: on a busy or slow machine a sync is CPU-bound, not
/// network-bound, and its wall time tells more about the machine than about it.
fn print_cpu(start: CpuSample, fetch_end: Option<CpuSample>, end: CpuSample) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sync = end.sync - start.sync;
    let fake = end.fake - start.fake;
    let split = fetch_end.map_or(String::new(), |f| {
        format!(
            " ({:.1} s fetching, {:.1} s finishing)",
            f.sync - start.sync,
            end.sync - f.sync
        )
    });
    println!(
        "CPU                sync {sync:.1} s{split}, fake {fake:.1} s: at least {:.2} s of wall time on {cores} cores",
        (sync + fake) / cores as f64
    );
}

async fn bench_reference(s: &Settings, preset: &str, ours: f64) -> Result<(), String> {
    let fake = start_fake(s, preset)?;
    let mut replay = reference_pattern::Replay::new(&fake.base_url);
    let theirs = replay.run().await?;
    println!("== reference connector request pattern (serial, members twice), preset {preset}");
    println!(
        "wall time          {:>10.2} s (fetch only), {} requests, {} 429s",
        theirs.as_secs_f64(),
        replay.requests,
        replay.throttled
    );
    println!(
        "speed-up           {:.1}x (confluence-operator's whole sync {ours:.2} s vs the reference pattern's fetch {:.2} s; target on medium >= 10x)",
        theirs.as_secs_f64() / ours,
        theirs.as_secs_f64()
    );
    Ok(())
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Off unless RUST_LOG asks: the figures below are the output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let settings = Settings {
        presets: std::env::var("BENCH_PRESETS")
            .unwrap_or_else(|_| "large,medium".into())
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        reference: match std::env::var("BENCH_REFERENCE").as_deref() {
            Err(_) | Ok("1") => vec!["large".into(), "medium".into()],
            Ok(list) => list.split(',').map(|p| p.trim().to_string()).collect(),
        },
        latency_ms: env_or("BENCH_LATENCY_MS", 20),
        rate_limit: env_or("BENCH_RATE_LIMIT", 200.0),
        burst: env_or("BENCH_BURST", 100),
        concurrency: env_or("BENCH_CONCURRENCY", 8),
        fake_bin: std::env::var("FAKE_CONFLUENCE_BIN")
            .unwrap_or_else(|_| format!("{target}/release/fake-confluence")),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async {
        for preset in &settings.presets {
            let ours = bench_ours(&settings, preset).await?;
            println!();
            if settings.reference.contains(preset) {
                bench_reference(&settings, preset, ours).await?;
                println!();
            }
        }
        Ok::<(), String>(())
    });
    if let Err(e) = result {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
