//! The command line: `run`, `sync`, `crd`, `diff` and `report`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::site::SitePolicy;

/// Syncs Confluence Cloud users, groups, memberships, spaces and space permissions into
/// c1z snapshots that ConductorOne's baton tooling reads.
#[derive(Debug, Parser)]
#[command(name = "confluence-operator", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: watch ConfluenceConnector resources and sync their sites.
    Run(RunArgs),
    /// Sync one site once, without a cluster, and write a c1z snapshot.
    ///
    /// The API token is read from the environment variable CONFLUENCE_API_TOKEN or from
    /// --api-token-file; it is never accepted as a flag, so it cannot leak through the
    /// process list. Prints a JSON summary on success; exits non-zero with the error class
    /// on failure.
    Sync(SyncArgs),
    /// Print every CustomResourceDefinition as YAML.
    Crd(CrdArgs),
    /// Show what changed between two snapshots of one site: users added, removed,
    /// enabled and disabled; group memberships and space permissions (direct and through
    /// groups) added and removed.
    Diff(DiffArgs),
    /// Write an access review of one snapshot: a self-contained HTML page (summary,
    /// changes since --previous, admins, disabled users who still hold access, every
    /// user with groups and effective space permissions) or a CSV with one row per
    /// effective grant.
    Report(ReportArgs),
}

/// Flags of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The snapshot to review.
    #[arg(value_name = "SNAPSHOT.c1z")]
    pub snapshot: PathBuf,
    /// An earlier snapshot of the same site: changes since it are listed and highlighted
    /// (HTML only).
    #[arg(long, value_name = "OLD.c1z")]
    pub previous: Option<PathBuf>,
    /// Where to write the report (replaced when complete); `-` for standard output.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// `html` (one self-contained page) or `csv` (user, resource, permission, via).
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
}

/// Output format of `report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// One HTML page.
    Html,
    /// Comma-separated values with a header row.
    Csv,
}

/// Flags of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier snapshot.
    #[arg(value_name = "OLD.c1z")]
    pub old: PathBuf,
    /// The later snapshot.
    #[arg(value_name = "NEW.c1z")]
    pub new: PathBuf,
    /// `text`: one line per change and a summary; `json`: one JSON object with
    /// `changes` and `counts`.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

/// Output format of `diff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines for people.
    Text,
    /// Machine-readable JSON.
    Json,
}

/// Flags of `crd`.
#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Write one file per CRD (`<plural>.yaml`) into this directory instead of printing.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// Output format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which sites may be synced. Without these flags only `https://<name>.atlassian.net`
/// is accepted, so a resource author cannot send the operator's requests (and a
/// token) to an arbitrary host.
#[derive(Debug, Args, Clone)]
pub struct SiteArgs {
    /// For tests and development only: also accept this exact host (e.g. `127.0.0.1`) or
    /// domain suffix starting with a dot (e.g. `.wiki.example.internal`); such sites may
    /// carry a port. Repeatable.
    #[arg(
        long = "allowed-site-suffix",
        value_name = "SUFFIX",
        env = "CONFLUENCE_OPERATOR_ALLOWED_SITE_SUFFIX",
        value_delimiter = ','
    )]
    pub allowed_site_suffixes: Vec<String>,

    /// For tests and development only: permit `http://` for sites allowed by
    /// --allowed-site-suffix.
    #[arg(long, env = "CONFLUENCE_OPERATOR_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
}

impl SiteArgs {
    /// The site policy these flags describe.
    pub fn policy(&self) -> SitePolicy {
        SitePolicy {
            allowed_suffixes: self.allowed_site_suffixes.clone(),
            allow_insecure_http: self.allow_insecure_http,
        }
    }
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Watch only this namespace. Repeatable; default all namespaces.
    #[arg(
        long = "namespace",
        value_name = "NS",
        env = "CONFLUENCE_OPERATOR_NAMESPACE",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "CONFLUENCE_OPERATOR_HTTP_ADDR"
    )]
    pub http_addr: SocketAddr,

    /// How many connectors may sync at the same time.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256), env = "CONFLUENCE_OPERATOR_CONCURRENCY")]
    pub concurrency: u16,

    /// Directory for snapshots: <data-dir>/<namespace>/<name>/<syncId>.c1z.
    #[arg(
        long,
        default_value = "/var/lib/confluence-operator",
        env = "CONFLUENCE_OPERATOR_DATA_DIR"
    )]
    pub data_dir: PathBuf,

    /// How many snapshots to keep per connector (the newest ones).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..), env = "CONFLUENCE_OPERATOR_SNAPSHOT_RETENTION")]
    pub snapshot_retention: u16,

    /// Reconcile only while holding a Lease, so several replicas can run with one active.
    #[arg(long, env = "CONFLUENCE_OPERATOR_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else the
    /// namespace of the service account or kubeconfig context).
    #[arg(
        long,
        value_name = "NS",
        env = "CONFLUENCE_OPERATOR_LEADER_ELECTION_NAMESPACE"
    )]
    pub leader_election_namespace: Option<String>,

    /// Reconcile only connectors whose labels match this selector (e.g. `shard=a`), to
    /// split connectors across several operator deployments. Each selector elects its own
    /// leader.
    #[arg(long, value_name = "SELECTOR", env = "CONFLUENCE_OPERATOR_SELECTOR")]
    pub selector: Option<String>,

    /// Deadline for one Confluence request, headers and body (default 62s: a 32 MiB
    /// answer at 1 MiB/s after 30s of waiting for it to begin); a request that runs out
    /// of it is retried like a dropped connection.
    #[arg(long, value_name = "DURATION", value_parser = parse_request_timeout, env = "CONFLUENCE_OPERATOR_REQUEST_TIMEOUT")]
    pub request_timeout: Option<std::time::Duration>,

    /// Longest `spec.duration` a ConfluenceAccessGrant may ask for (Go-style duration, at
    /// most 168h); longer grants fail with reason DurationTooLong.
    #[arg(long, default_value = "24h", value_parser = parse_max_grant_duration, env = "CONFLUENCE_OPERATOR_MAX_GRANT_DURATION")]
    pub max_grant_duration: std::time::Duration,

    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CONFLUENCE_OPERATOR_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Which sites are accepted.
    #[command(flatten)]
    pub site: SiteArgs,
}

/// Flags of `sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The site: `acme`, `acme.atlassian.net` or `https://acme.atlassian.net`.
    #[arg(long)]
    pub site: String,

    /// The Atlassian account email of a site administrator.
    #[arg(long)]
    pub username: String,

    /// Where to write the snapshot (replaced atomically; left untouched on failure).
    #[arg(long, value_name = "FILE.c1z")]
    pub output: PathBuf,

    /// Read the API token from this file instead of CONFLUENCE_API_TOKEN.
    #[arg(long, value_name = "PATH")]
    pub api_token_file: Option<PathBuf>,

    /// Skip spaces and space permissions (like spec.sync.spaces: false).
    #[arg(long)]
    pub no_spaces: bool,

    /// Leave personal spaces out (like spec.sync.skipPersonalSpaces: true).
    #[arg(long)]
    pub skip_personal_spaces: bool,

    /// Requests in flight at once against the site.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Give up after this long (Go-style duration such as 30m).
    #[arg(long, default_value = "30m", value_parser = parse_timeout)]
    pub timeout: std::time::Duration,

    /// Deadline for one request, headers and body; a request that runs out of it is
    /// retried like a dropped connection. The default, 62s, lets a 32 MiB answer arrive
    /// at 1 MiB/s after 30s of waiting for it to begin.
    #[arg(long, value_name = "DURATION", value_parser = parse_request_timeout)]
    pub request_timeout: Option<std::time::Duration>,

    /// Log line format (logs go to standard error; the summary to standard output).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which sites are accepted.
    #[command(flatten)]
    pub site_policy: SiteArgs,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    crate::api::duration::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_max_grant_duration(text: &str) -> Result<std::time::Duration, String> {
    let max = crate::api::grant::MAX_GRANT_DURATION;
    match parse_timeout(text)? {
        d if d.is_zero() || d > max => {
            Err(format!("must be between 1s and {}h", max.as_secs() / 3600))
        }
        d => Ok(d),
    }
}

fn parse_request_timeout(text: &str) -> Result<std::time::Duration, String> {
    match parse_timeout(text)? {
        d if d.is_zero() => Err("must be longer than zero".into()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_match_the_design() {
        let cli = Cli::try_parse_from(["confluence-operator", "run"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(args.concurrency, 4);
        assert_eq!(args.snapshot_retention, 3);
        assert_eq!(args.data_dir, PathBuf::from("/var/lib/confluence-operator"));
        assert!(args.namespaces.is_empty() && !args.leader_elect);
        assert_eq!(args.site.policy(), SitePolicy::default());
    }

    #[test]
    fn repeatable_flags() {
        let cli = Cli::try_parse_from([
            "confluence-operator",
            "run",
            "--namespace",
            "a",
            "--namespace",
            "b",
            "--allowed-site-suffix",
            "127.0.0.1",
            "--allow-insecure-http",
        ])
        .unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.namespaces, ["a", "b"]);
        assert_eq!(args.site.allowed_site_suffixes, ["127.0.0.1"]);
        assert!(args.site.allow_insecure_http);
    }

    #[test]
    fn sync_requires_site_username_output_and_has_no_token_flag() {
        assert!(Cli::try_parse_from(["confluence-operator", "sync", "--site", "acme"]).is_err());
        assert!(
            Cli::try_parse_from([
                "confluence-operator",
                "sync",
                "--site",
                "a",
                "--username",
                "u",
                "--output",
                "o.c1z",
                "--api-token",
                "x",
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from([
            "confluence-operator",
            "sync",
            "--site",
            "a",
            "--username",
            "u",
            "--output",
            "o.c1z",
            "--timeout",
            "5m",
        ])
        .unwrap();
        let Command::Sync(args) = cli.command else {
            panic!("not sync")
        };
        assert_eq!(args.timeout, std::time::Duration::from_secs(300));
        assert_eq!(args.concurrency, 8);
        assert_eq!(args.request_timeout, None, "the client's derived default");
    }

    #[test]
    fn run_takes_a_request_timeout_and_a_grant_limit() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["confluence-operator", "run"];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Run(args) => (args.request_timeout, args.max_grant_duration),
                _ => panic!("not run"),
            })
        };
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(parse(&[]).unwrap(), (None, 24 * hour));
        assert_eq!(
            parse(&["--request-timeout", "90s", "--max-grant-duration", "8h"]).unwrap(),
            (Some(std::time::Duration::from_secs(90)), 8 * hour)
        );
        assert!(parse(&["--max-grant-duration", "169h"]).is_err());
        assert!(parse(&["--request-timeout", "0s"]).is_err());
    }

    #[test]
    fn sync_request_timeout_parses_durations_and_refuses_zero() {
        let parse = |value: &str| {
            Cli::try_parse_from([
                "confluence-operator",
                "sync",
                "--site",
                "a",
                "--username",
                "u",
                "--output",
                "o.c1z",
                "--request-timeout",
                value,
            ])
            .map(|cli| match cli.command {
                Command::Sync(args) => args.request_timeout,
                _ => None,
            })
        };
        assert_eq!(
            parse("1500ms").ok().flatten(),
            Some(std::time::Duration::from_millis(1500))
        );
        assert!(parse("0s").is_err());
        assert!(parse("soon").is_err());
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(Cli::try_parse_from(["confluence-operator", "run", "--concurrency", "0"]).is_err());
        assert!(
            Cli::try_parse_from(["confluence-operator", "run", "--log-format", "xml"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["confluence-operator", "run", "--http-addr", "nope"]).is_err()
        );
    }
}
