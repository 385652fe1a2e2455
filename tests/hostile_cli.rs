//! `confluence-operator sync` as a user runs it against a hostile server: the command
//! fails with the class and route in its JSON error, keeps the previous output
//! byte-identical and leaves no other file.

mod hostile_support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hostile_support::{HostileServer, Hostility, Route, TOKEN, USERNAME, files_in};

const CEILING: Duration = Duration::from_secs(120);

fn sync_command(server: &HostileServer, out: &Path, request_timeout: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confluence-operator"));
    cmd.args(["sync", "--site", server.base_url().as_str()])
        .args(["--username", USERNAME, "--output"])
        .arg(out)
        .args(["--request-timeout", request_timeout])
        .args([
            "--allowed-site-suffix",
            "127.0.0.1",
            "--allow-insecure-http",
        ])
        .env("CONFLUENCE_API_TOKEN", TOKEN);
    cmd
}

/// Runs the command off the async workers, which the server needs.
async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("command thread")
        .expect("command runs")
}

/// Runs `sync` once against the correct tenant, then against `hostility`; returns the
/// failed run's JSON error after checking the output was left alone.
async fn cli_fails_cleanly(hostility: Hostility, request_timeout: &str) -> serde_json::Value {
    let server = HostileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snap.c1z");
    let first = run(sync_command(&server, &out, "60s")).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let before = std::fs::read(&out).unwrap();

    server.set(hostility);
    let started = Instant::now();
    let failed = run(sync_command(&server, &out, request_timeout)).await;
    assert!(started.elapsed() < CEILING, "took {:?}", started.elapsed());
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(!failed.status.success(), "{stdout}");
    assert_eq!(std::fs::read(&out).unwrap(), before, "previous output kept");
    assert_eq!(files_in(dir.path()), ["snap.c1z"], "no other file left");
    let body: serde_json::Value = serde_json::from_str(&stdout).expect("JSON error");
    body["error"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_cursor_fails_the_command_as_a_malformed_response() {
    let error = cli_fails_cleanly(Hostility::RepeatedCursor(Route::Spaces), "60s").await;
    assert_eq!(error["class"], "malformed_response", "{error}");
    assert_eq!(error["reason"], "SyncFailed", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(Route::Spaces.template()), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_row_member_pages_fail_the_command() {
    let error = cli_fails_cleanly(Hostility::SameRow(Route::Members), "60s").await;
    assert_eq!(error["class"], "malformed_response", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(Route::Members.template()), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_then_silence_fail_the_command_within_the_request_timeout() {
    let silence = Hostility::HeadersThenSilence(Route::Groups);
    let error = cli_fails_cleanly(silence, "1500ms").await;
    assert_eq!(error["class"], "transient", "{error}");
    assert_eq!(error["reason"], "SiteUnreachable", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(Route::Groups.template()), "{message}");
    assert!(
        message.contains("no complete answer within 1.5s"),
        "{message}"
    );
}
