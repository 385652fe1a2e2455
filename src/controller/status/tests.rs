use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn run(start: i64, end: i64, request: Option<&str>) -> SyncRun {
    SyncRun {
        started: t(start),
        finished: t(end),
        sync_request: request.map(str::to_string),
        credentials_fingerprint: "0123456789abcdef".into(),
        next_sync_time: t(end + 3600),
    }
}

fn summary() -> SyncSummary {
    SyncSummary {
        users: 10,
        disabled_users: 1,
        groups: 3,
        memberships: 12,
        spaces: 2,
        space_permissions: 7,
    }
}

fn succeeded(start: i64, end: i64) -> Observation {
    Observation::SyncSucceeded {
        run: run(start, end, None),
        summary: summary(),
        snapshot: SnapshotRef {
            sync_id: "2C7ZmqIuSsbnyPxzNY9M1bG2jGn".into(),
            file: "ns/acme/2C7ZmqIuSsbnyPxzNY9M1bG2jGn.c1z".into(),
            size_bytes: 1234,
            sha256: "ab".repeat(32),
        },
        change: None,
    }
}

fn failed(reason: &'static str, end: i64) -> Observation {
    Observation::SyncFailed {
        run: run(end - 5, end, None),
        reason,
        message: format!("{reason} happened"),
    }
}

fn cond<'a>(s: &'a ConfluenceConnectorStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}

fn cond_status(s: &ConfluenceConnectorStatus, type_: &str) -> Option<(String, String)> {
    cond(s, type_).map(|c| (c.status.clone(), c.reason.clone()))
}

fn pair(status: &str, reason: &str) -> Option<(String, String)> {
    Some((status.to_string(), reason.to_string()))
}

/// Walks a sequence of (generation, observation) from an empty status.
fn walk(steps: &[(i64, Observation)]) -> ConfluenceConnectorStatus {
    let mut status: Option<ConfluenceConnectorStatus> = None;
    for (i, (generation, observation)) in steps.iter().enumerate() {
        status = Some(next_status(
            status.as_ref(),
            *generation,
            observation,
            t(i as i64 * 100),
        ));
    }
    status.unwrap()
}

#[test]
fn first_sync_is_unknown_and_reconciling_and_does_not_advance_generation() {
    let s = walk(&[(1, Observation::SyncStarted { started: t(0) })]);
    assert_eq!(s.phase, Some(Phase::Syncing));
    assert_eq!(cond_status(&s, "Ready"), pair("Unknown", "Syncing"));
    assert_eq!(cond_status(&s, "Reconciling"), pair("True", "Syncing"));
    assert!(cond(&s, "Stalled").is_none());
    assert_eq!(
        s.observed_generation, None,
        "only a truthful end state advances it"
    );
    assert_eq!(s.last_sync_start_time, Some(Time(t(0))));
}

#[test]
fn success_is_connected_ready_and_clears_reconciling() {
    let s = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (1, succeeded(0, 12)),
    ]);
    assert_eq!(s.phase, Some(Phase::Connected));
    assert_eq!(cond_status(&s, "Ready"), pair("True", "Connected"));
    assert_eq!(cond_status(&s, "Synced"), pair("True", "SyncSucceeded"));
    assert_eq!(
        cond_status(&s, "CredentialsValid"),
        pair("True", "Authenticated")
    );
    assert!(cond(&s, "Reconciling").is_none() && cond(&s, "Stalled").is_none());
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.summary, Some(summary()));
    assert_eq!(s.last_sync_duration.as_deref(), Some("12.0s"));
    assert_eq!(s.last_successful_sync_time, Some(Time(t(12))));
    assert_eq!(s.next_sync_time, Some(Time(t(12 + 3600))));
    assert!(
        s.conditions
            .iter()
            .all(|c| c.observed_generation == Some(1))
    );
    assert!(cond(&s, "Ready").unwrap().message.contains("10 users"));
}

#[test]
fn periodic_sync_does_not_flip_ready() {
    let before = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (1, succeeded(0, 12)),
    ]);
    let ready_before = cond(&before, "Ready").cloned().unwrap();
    let s = next_status(
        Some(&before),
        1,
        &Observation::SyncStarted { started: t(4000) },
        t(4000),
    );
    assert_eq!(s.phase, Some(Phase::Syncing));
    assert_eq!(
        cond(&s, "Ready"),
        Some(&ready_before),
        "Ready untouched, transition time kept"
    );
    assert!(cond(&s, "Reconciling").is_none());
    assert_eq!(s.observed_generation, Some(1));
}

#[test]
fn new_generation_makes_ready_unknown_again() {
    let before = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (1, succeeded(0, 12)),
    ]);
    let s = next_status(
        Some(&before),
        2,
        &Observation::SyncStarted { started: t(500) },
        t(500),
    );
    assert_eq!(cond_status(&s, "Ready"), pair("Unknown", "Syncing"));
    assert_eq!(cond_status(&s, "Reconciling"), pair("True", "Syncing"));
    assert_eq!(
        s.observed_generation,
        Some(1),
        "generation 2 not yet observed"
    );
    // Snapshot and counts of the last good sync stay visible.
    assert_eq!(s.summary, Some(summary()));
}

#[test]
fn last_transition_time_kept_while_status_unchanged() {
    let first = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (1, succeeded(0, 12)),
    ]);
    let ready_time = cond(&first, "Ready").unwrap().last_transition_time.clone();
    let again = next_status(Some(&first), 1, &succeeded(4000, 4010), t(4010));
    assert_eq!(
        cond(&again, "Ready").unwrap().last_transition_time,
        ready_time
    );
    let down = next_status(
        Some(&again),
        1,
        &failed(reasons::SITE_UNREACHABLE, 8000),
        t(8000),
    );
    assert_eq!(
        cond(&down, "Ready").unwrap().last_transition_time,
        Time(t(8000))
    );
    // Only the reason changes: no transition.
    let still_down = next_status(
        Some(&down),
        1,
        &failed(reasons::RATE_LIMITED, 9000),
        t(9000),
    );
    let ready = cond(&still_down, "Ready").unwrap();
    assert_eq!(
        (ready.reason.as_str(), &ready.last_transition_time),
        ("RateLimited", &Time(t(8000)))
    );
}

#[test]
fn transient_failure_is_error_phase_not_stalled() {
    for reason in [
        reasons::SITE_UNREACHABLE,
        reasons::RATE_LIMITED,
        reasons::SYNC_FAILED,
    ] {
        let before = walk(&[
            (1, Observation::SyncStarted { started: t(0) }),
            (1, succeeded(0, 12)),
        ]);
        let s = next_status(Some(&before), 1, &failed(reason, 5000), t(5000));
        assert_eq!(s.phase, Some(Phase::Error), "{reason}");
        assert_eq!(cond_status(&s, "Ready"), pair("False", reason));
        assert_eq!(cond_status(&s, "Synced"), pair("False", reason));
        assert!(cond(&s, "Stalled").is_none(), "{reason}: retrying can help");
        assert!(cond(&s, "Reconciling").is_none());
        assert_eq!(
            cond_status(&s, "CredentialsValid"),
            pair("True", "Authenticated")
        );
        // The previous snapshot is kept.
        assert!(s.snapshot.is_some() && s.summary.is_some());
        assert_eq!(s.last_successful_sync_time, Some(Time(t(12))));
        assert_eq!(s.last_sync_time, Some(Time(t(5000))));
        assert_eq!(s.observed_generation, Some(1));
    }
}

#[test]
fn credential_failures_are_not_connected_and_stalled() {
    for reason in [reasons::AUTHENTICATION_FAILED, reasons::PERMISSION_DENIED] {
        let s = walk(&[
            (3, Observation::SyncStarted { started: t(0) }),
            (3, failed(reason, 10)),
        ]);
        assert_eq!(s.phase, Some(Phase::NotConnected), "{reason}");
        assert_eq!(cond_status(&s, "Ready"), pair("False", reason));
        assert_eq!(cond_status(&s, "Stalled"), pair("True", reason));
        assert_eq!(cond_status(&s, "CredentialsValid"), pair("False", reason));
        assert!(cond(&s, "Reconciling").is_none());
        assert_eq!(s.observed_generation, Some(3));
    }
}

#[test]
fn invalid_configuration_is_stalled_with_its_reason() {
    for reason in [
        reasons::SECRET_NOT_FOUND,
        reasons::SECRET_KEY_MISSING,
        reasons::INVALID_SITE,
    ] {
        let s = walk(&[(
            2,
            Observation::Invalid {
                reason,
                message: "fix me".into(),
            },
        )]);
        assert_eq!(s.phase, Some(Phase::NotConnected));
        assert_eq!(cond_status(&s, "Ready"), pair("False", reason));
        assert_eq!(cond_status(&s, "Stalled"), pair("True", reason));
        assert!(cond(&s, "Synced").is_none(), "no sync ran");
        assert_eq!(s.observed_generation, Some(2));
    }
}

#[test]
fn retry_after_failure_is_reconciling_with_retry_and_unstalls() {
    let s = walk(&[
        (
            1,
            Observation::Invalid {
                reason: reasons::SECRET_NOT_FOUND,
                message: "no secret".into(),
            },
        ),
        (1, Observation::SyncStarted { started: t(100) }),
    ]);
    assert_eq!(cond_status(&s, "Ready"), pair("False", "SecretNotFound"));
    assert_eq!(
        cond_status(&s, "Reconciling"),
        pair("True", "ProgressingWithRetry")
    );
    assert!(cond(&s, "Stalled").is_none());
    let s = next_status(Some(&s), 1, &succeeded(100, 110), t(200));
    assert_eq!(cond_status(&s, "Ready"), pair("True", "Connected"));
    assert!(cond(&s, "Reconciling").is_none() && cond(&s, "Stalled").is_none());
}

#[test]
fn handled_sync_request_is_echoed_when_the_sync_ends() {
    let mut obs = succeeded(0, 5);
    if let Observation::SyncSucceeded { run, .. } = &mut obs {
        run.sync_request = Some("1764150000".into());
    }
    let s = walk(&[(1, Observation::SyncStarted { started: t(0) }), (1, obs)]);
    assert_eq!(s.last_handled_sync_request.as_deref(), Some("1764150000"));
    assert_eq!(
        s.credentials_fingerprint.as_deref(),
        Some("0123456789abcdef")
    );
    // A later periodic sync without a request keeps the last handled value.
    let s = next_status(Some(&s), 1, &succeeded(4000, 4005), t(4005));
    assert_eq!(s.last_handled_sync_request.as_deref(), Some("1764150000"));
}

#[test]
fn suspend_acknowledges_generation_and_ends_syncing() {
    let healthy = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (1, succeeded(0, 12)),
    ]);
    let syncing = next_status(
        Some(&healthy),
        1,
        &Observation::SyncStarted { started: t(4000) },
        t(4000),
    );
    let s = next_status(Some(&syncing), 2, &Observation::Suspended, t(4001));
    assert_eq!(s.phase, Some(Phase::Connected));
    assert_eq!(cond_status(&s, "Ready"), pair("True", "Connected"));
    assert_eq!(s.observed_generation, Some(2));

    let first = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (2, Observation::Suspended),
    ]);
    assert_eq!(first.phase, Some(Phase::NotConnected));
    assert_eq!(cond_status(&first, "Ready"), pair("False", "Suspended"));
    assert!(cond(&first, "Reconciling").is_none());
}

#[test]
fn same_observation_twice_gives_identical_status() {
    let a = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (1, succeeded(0, 12)),
    ]);
    let b = next_status(Some(&a), 1, &succeeded(0, 12), t(999));
    assert_eq!(a, b, "no-op reconciles must not produce a patch");
}

#[test]
fn one_condition_per_type() {
    let s = walk(&[
        (1, Observation::SyncStarted { started: t(0) }),
        (1, failed(reasons::AUTHENTICATION_FAILED, 5)),
        (1, Observation::SyncStarted { started: t(10) }),
        (1, succeeded(10, 20)),
        (2, Observation::SyncStarted { started: t(30) }),
        (2, failed(reasons::SITE_UNREACHABLE, 40)),
    ]);
    let mut types: Vec<_> = s.conditions.iter().map(|c| c.type_.as_str()).collect();
    types.sort();
    let before = types.len();
    types.dedup();
    assert_eq!(before, types.len());
}

#[test]
fn last_change_follows_each_successful_sync() {
    let first = next_status(None, 1, &succeeded(0, 10), t(10));
    assert_eq!(
        first.last_change, None,
        "the first sync has nothing to compare"
    );
    let change = AccessChange {
        users_added: 1,
        permissions_removed: 4,
        ..AccessChange::default()
    };
    let mut second = succeeded(20, 30);
    if let Observation::SyncSucceeded { change: c, .. } = &mut second {
        *c = Some(change.clone());
    }
    let status = next_status(Some(&first), 1, &second, t(30));
    assert_eq!(status.last_change, Some(change.clone()));
    // A failed sync leaves the last successful one's change in place.
    let status = next_status(
        Some(&status),
        1,
        &failed(reasons::SITE_UNREACHABLE, 40),
        t(40),
    );
    assert_eq!(status.last_change, Some(change));
    // A later success whose comparison was not made does not keep a stale count.
    let status = next_status(Some(&status), 1, &succeeded(50, 60), t(60));
    assert_eq!(status.last_change, None);
}
