//! `confluence-operator sync`: one site, once, to a file, without a cluster.

use std::path::Path;
use std::process::ExitCode;

use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info_span};

use crate::cli::SyncArgs;
use crate::controller::outcome::failure_reason;
use crate::site::normalize_site;
use crate::sync::{ConnectError, SyncError, SyncOptions, client_tuned, run_sync};

/// Environment variable holding the API token.
pub const API_TOKEN_ENV: &str = "CONFLUENCE_API_TOKEN";

/// Why the command could not start a sync.
#[derive(Debug, thiserror::Error)]
enum SetupError {
    #[error("{0}")]
    InvalidSite(#[from] crate::site::InvalidSite),
    #[error("no API token: set {API_TOKEN_ENV} or pass --api-token-file")]
    NoToken,
    #[error("cannot read the API token file: {0}")]
    TokenFile(std::io::Error),
    #[error("the API token is empty")]
    EmptyToken,
    #[error("the output directory {0} does not exist")]
    NoOutputDir(String),
    #[error("cannot build the Confluence client: {0}")]
    Client(#[from] ConnectError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

impl SetupError {
    fn reason(&self) -> &'static str {
        match self {
            Self::InvalidSite(_) => crate::api::reasons::INVALID_SITE,
            Self::NoToken | Self::TokenFile(_) | Self::EmptyToken => {
                crate::api::reasons::SECRET_KEY_MISSING
            }
            Self::NoOutputDir(_) | Self::Client(_) | Self::Runtime(_) => {
                crate::api::reasons::SYNC_FAILED
            }
        }
    }
}

/// Runs the command; prints a JSON summary (or a JSON error) on standard output.
pub fn run(args: SyncArgs) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(SetupError::Runtime)
        .map(|runtime| runtime.block_on(sync(args)));
    match outcome {
        Ok(Ok(report)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&report).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(Err(Failure::Sync(e))) => fail(failure_reason(&e), e.class(), &e.to_string()),
        Ok(Err(Failure::Setup(e))) | Err(e) => fail(e.reason(), "configuration", &e.to_string()),
    }
}

enum Failure {
    Setup(SetupError),
    Sync(SyncError),
}

fn fail(reason: &str, class: &str, message: &str) -> ExitCode {
    eprintln!("error: {reason}: {message}");
    let body = json!({"error": {"reason": reason, "class": class, "message": message}});
    println!(
        "{}",
        serde_json::to_string_pretty(&body).unwrap_or_default()
    );
    ExitCode::FAILURE
}

async fn sync(args: SyncArgs) -> Result<crate::sync::SyncReport, Failure> {
    let origin = normalize_site(&args.site, &args.site_policy.policy())
        .map_err(|e| Failure::Setup(e.into()))?;
    let token = read_token(args.api_token_file.as_deref()).map_err(Failure::Setup)?;
    let parent = match args.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(Failure::Setup(SetupError::NoOutputDir(
            parent.display().to_string(),
        )));
    }
    let client = client_tuned(&origin, &args.username, token, |config| {
        config.max_in_flight = usize::from(args.concurrency);
        if let Some(deadline) = args.request_timeout {
            config.request_timeout = deadline;
        }
    })
    .map_err(|e| Failure::Setup(e.into()))?;

    let options = SyncOptions {
        spaces: !args.no_spaces,
        skip_personal_spaces: args.skip_personal_spaces,
        concurrency: usize::from(args.concurrency),
        timeout: args.timeout,
        ..SyncOptions::default()
    };
    let cancel = CancellationToken::new();
    crate::shutdown::cancel_on_signals(cancel.clone());
    let span = info_span!("sync", site = %origin);
    run_sync(&client, &options, &args.output, &cancel)
        .instrument(span)
        .await
        .map_err(Failure::Sync)
}

fn read_token(file: Option<&Path>) -> Result<SecretString, SetupError> {
    let raw = match file {
        Some(path) => std::fs::read_to_string(path).map_err(SetupError::TokenFile)?,
        None => std::env::var(API_TOKEN_ENV).map_err(|_| SetupError::NoToken)?,
    };
    let token = raw.trim();
    if token.is_empty() {
        return Err(SetupError::EmptyToken);
    }
    Ok(SecretString::from(token.to_string()))
}
