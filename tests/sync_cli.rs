//! `confluence-operator sync` as a user runs it: exit codes, JSON output, and the token
//! never appearing in anything the command prints, even at debug level.

use std::process::Command;

use base64::Engine;
use fake_confluence::{AuthFailureMode, FakeConfig, FakeConfluence, Preset};

const TOKEN: &str = "test-token";
const WRONG_TOKEN: &str = "wrong-TOKEN-must-not-leak-4242";

fn sync_command(base_url: &str, out: &std::path::Path, token: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_confluence-operator"));
    cmd.args([
        "sync",
        "--site",
        base_url,
        "--username",
        "admin@example.com",
        "--output",
    ])
    .arg(out)
    .args([
        "--allowed-site-suffix",
        "127.0.0.1",
        "--allow-insecure-http",
    ])
    .env("CONFLUENCE_API_TOKEN", token)
    .env("RUST_LOG", "debug");
    cmd
}

/// Runs the command off the async workers, which the fake server needs.
async fn run(mut cmd: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("command thread")
        .expect("command runs")
}

fn assert_no_secret(text: &str, token: &str) {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("admin@example.com:{token}"));
    assert!(!text.contains(token), "the token leaked:\n{text}");
    assert!(
        !text.contains(&basic),
        "the Basic credentials leaked:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_writes_the_file_and_prints_a_summary() {
    let fake = FakeConfluence::start(FakeConfig::preset(Preset::Small))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small.c1z");
    let cmd = sync_command(fake.base_url(), &out, TOKEN);
    let output = run(cmd).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_no_secret(&format!("{stdout}{stderr}"), TOKEN);
    assert!(
        stderr.contains("DEBUG"),
        "debug logging was on, so the check above means something"
    );

    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    let truth = fake.truth();
    assert_eq!(summary["counts"]["users"], truth.users.count);
    assert_eq!(summary["counts"]["groups"], truth.groups.count);
    assert_eq!(summary["counts"]["spaces"], truth.spaces.count);
    assert!(summary["requests"].as_u64().unwrap() > 0);
    assert_eq!(summary["sizeBytes"], std::fs::metadata(&out).unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_exit_non_zero_with_authentication_failed() {
    for mode in [
        AuthFailureMode::Forbidden403Json,
        AuthFailureMode::Unauthorized401Text,
    ] {
        let mut config = FakeConfig::preset(Preset::Small);
        config.quirks.v1_auth_failure = mode;
        let fake = FakeConfluence::start(config).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.c1z");
        let cmd = sync_command(fake.base_url(), &out, WRONG_TOKEN);
        let output = run(cmd).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{mode:?}: must fail");
        let body: serde_json::Value = serde_json::from_str(&stdout).expect("JSON error");
        assert_eq!(
            body["error"]["reason"], "AuthenticationFailed",
            "{mode:?}: {stdout}"
        );
        assert!(stderr.contains("AuthenticationFailed"));
        assert_no_secret(&format!("{stdout}{stderr}"), WRONG_TOKEN);
        assert!(!out.exists());
    }
}

#[test]
fn refuses_sites_outside_the_policy_and_missing_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.c1z");
    let output = Command::new(env!("CARGO_BIN_EXE_confluence-operator"))
        .args([
            "sync",
            "--site",
            "http://169.254.169.254",
            "--username",
            "a@b.c",
            "--output",
        ])
        .arg(&out)
        .env("CONFLUENCE_API_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("InvalidSite"));

    let output = Command::new(env!("CARGO_BIN_EXE_confluence-operator"))
        .args(["sync", "--site", "acme", "--username", "a@b.c", "--output"])
        .arg(&out)
        .env_remove("CONFLUENCE_API_TOKEN")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("CONFLUENCE_API_TOKEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_sync_and_removes_its_work_files() {
    let mut config = FakeConfig::preset(Preset::Small);
    config.latency.fixed_ms = 200;
    let fake = FakeConfluence::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("slow.c1z");
    let mut cmd = sync_command(fake.base_url(), &out, TOKEN);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("command starts");
    // Wait until the writer's work directory exists: the sync is under way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(dir.path()).map_or(0, |d| d.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("wait thread")
        .expect("command ends");
    assert!(!output.status.success(), "a cancelled sync is a failure");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("cancelled"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "work files left: {left:?}");
}
