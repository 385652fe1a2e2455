//! `fake-confluence`: the fake Confluence Cloud server as a program.
//! Prints exactly one line, `LISTENING http://127.0.0.1:PORT`, once it accepts requests.

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use fake_confluence::{
    AuthFailureMode, Credential, DataConfig, FakeConfig, FakeConfluence, FaultKind, FaultRule,
    Latency, Preset, RateLimitConfig, RbacMode,
};

/// Answers are built as JSON values of many small maps: glibc's allocator spent about
/// 40 % of the server's time on them, CPU a benchmark's sync on the same cores lost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "A fake Confluence Cloud REST API")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Data preset: small (100/20/10), medium (5k/500/300), large (50k/5k/2k).
    #[arg(long, default_value = "small")]
    preset: String,
    /// Data seed; the same seed and sizes always give the same tenant.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long)]
    users: Option<usize>,
    #[arg(long)]
    groups: Option<usize>,
    #[arg(long)]
    spaces: Option<usize>,
    /// Give this percentage of users a personal space in addition to --spaces
    /// (default: half of --spaces are personal).
    #[arg(long)]
    personal_spaces_per_user: Option<u8>,
    /// EMAIL:TOKEN[:admin], repeatable. Default: admin@example.com:test-token:admin.
    #[arg(long = "credentials")]
    credentials: Vec<String>,
    /// Fixed delay before every API answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Token-bucket refill rate per (credential, method, route); off when absent.
    #[arg(long)]
    rate_limit: Option<f64>,
    /// Bucket size for --rate-limit (default: 10 × RPS).
    #[arg(long)]
    burst: Option<u32>,
    /// Probability of a transient fault (503/502/504/500/reset) on each API request.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// v1 answer to bad credentials: 403-json or 401-text.
    #[arg(long, default_value = "403-json")]
    auth_failure: String,
    /// Serve space roles in this mode (PRE_ROLES, ROLES_TRANSITION, ROLES); 404 when absent.
    #[arg(long)]
    rbac: Option<String>,
    /// Answer user/current for bad or missing credentials as an anonymous user.
    #[arg(long)]
    anonymous_site: bool,
}

fn config(args: Args) -> anyhow::Result<FakeConfig> {
    let preset: Preset = args.preset.parse()?;
    let mut data = DataConfig::preset(preset);
    data.seed = args.seed;
    data.users = args.users.unwrap_or(data.users);
    data.groups = args.groups.unwrap_or(data.groups);
    data.spaces = args.spaces.unwrap_or(data.spaces);
    data.personal_spaces_per_user_percent = args.personal_spaces_per_user;
    let mut cfg = FakeConfig::with_data(data);
    cfg.listen = args.listen;
    if !args.credentials.is_empty() {
        cfg.credentials = args
            .credentials
            .iter()
            .map(|c| c.parse::<Credential>())
            .collect::<Result<_, _>>()?;
    }
    cfg.latency = Latency {
        fixed_ms: args.latency_ms,
        jitter_ms: 0,
    };
    if let Some(rps) = args.rate_limit {
        anyhow::ensure!(rps > 0.0, "--rate-limit must be positive");
        cfg.rate_limit = Some(RateLimitConfig {
            refill_per_sec: rps,
            capacity: args.burst.unwrap_or((rps * 10.0).ceil() as u32).max(1),
            ..RateLimitConfig::default()
        });
    }
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.fault_rate),
        "--fault-rate must be within 0..=1"
    );
    if args.fault_rate > 0.0 {
        cfg.faults.push(FaultRule {
            probability: args.fault_rate,
            ..FaultRule::always(None, FaultKind::Transient)
        });
    }
    cfg.quirks.v1_auth_failure = args.auth_failure.parse::<AuthFailureMode>()?;
    cfg.quirks.anonymous_site = args.anonymous_site;
    cfg.rbac = match args.rbac.as_deref() {
        None => None,
        Some("PRE_ROLES") => Some(RbacMode::PreRoles),
        Some("ROLES_TRANSITION") => Some(RbacMode::RolesTransition),
        Some("ROLES") => Some(RbacMode::Roles),
        Some(other) => anyhow::bail!("unknown --rbac mode {other:?}"),
    };
    Ok(cfg)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let fake = FakeConfluence::start(config(Args::parse())?).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "LISTENING {}", fake.base_url())?;
        out.flush()?;
    }
    tokio::signal::ctrl_c().await?;
    fake.stop().await;
    Ok(())
}
