//! What a finished sync means for the connector: the condition reason of a failure, and
//! the report turned into status fields. The one place where sync results meet the API.

use std::path::Path;

use crate::api::{AccessChange, SnapshotRef, SyncSummary, reasons};
use crate::confluence::ErrorClass;
use crate::review::ChangeCounts;
use crate::sync::{ConnectError, SyncCounts, SyncError, SyncReport};

use super::sync_task::TaskError;

/// The condition and Event reason of a failed sync.
///
/// A cancelled sync has no reason of its own: the controller never reports it as a
/// failure (the cancellation came from a change it is already handling).
pub fn failure_reason(error: &SyncError) -> &'static str {
    match error {
        SyncError::Confluence(e) => match e.class() {
            ErrorClass::Authentication => reasons::AUTHENTICATION_FAILED,
            ErrorClass::PermissionDenied => reasons::PERMISSION_DENIED,
            ErrorClass::RateLimited => reasons::RATE_LIMITED,
            ErrorClass::Transient => reasons::SITE_UNREACHABLE,
            // The site answered, but not as Confluence does: retrying will not help,
            // only a corrected spec.site.
            ErrorClass::Configuration => reasons::INVALID_SITE,
            ErrorClass::NotFound
            | ErrorClass::MalformedResponse
            | ErrorClass::BadRequest
            | ErrorClass::Other => reasons::SYNC_FAILED,
        },
        SyncError::Snapshot(_)
        | SyncError::Cancelled
        | SyncError::TimedOut(_)
        | SyncError::WriterStopped
        | SyncError::WriterPanicked(_)
        | SyncError::Aborted => reasons::SYNC_FAILED,
    }
}

/// The condition and Event reason of a failed sync task.
pub fn task_failure_reason(error: &TaskError) -> &'static str {
    match error {
        TaskError::Sync(e) => failure_reason(e),
        TaskError::Connect(ConnectError::InvalidSite(_)) => reasons::INVALID_SITE,
        TaskError::Connect(ConnectError::Client(_))
        | TaskError::Storage(_)
        | TaskError::SyncId(_) => reasons::SYNC_FAILED,
    }
}

/// Failures only a change by the user (Secret, site, the account's rights) can fix:
/// reported as `Stalled` and not retried on the short back-off.
pub fn needs_user_change(reason: &str) -> bool {
    matches!(
        reason,
        reasons::AUTHENTICATION_FAILED | reasons::PERMISSION_DENIED | reasons::INVALID_SITE
    )
}

/// A short sentence for the status and Events: what failed and where, without the text
/// of Confluence's answer (which can be long, and is for the log).
pub fn failure_message(error: &TaskError) -> String {
    let TaskError::Sync(SyncError::Confluence(e)) = error else {
        return error.to_string();
    };
    let lead = match e.class() {
        ErrorClass::Authentication => "Confluence rejected the credentials",
        ErrorClass::PermissionDenied => {
            "Confluence denied access: the account must be a site administrator"
        }
        ErrorClass::RateLimited => "Confluence's rate limit outlasted the retries",
        ErrorClass::Transient => "The site answered with server errors or could not be reached",
        ErrorClass::Configuration => {
            "The site did not answer like Confluence Cloud; check spec.site"
        }
        ErrorClass::NotFound
        | ErrorClass::MalformedResponse
        | ErrorClass::BadRequest
        | ErrorClass::Other => return e.to_string(),
    };
    match e.context() {
        Some(c) => format!("{lead} (HTTP {} from {} {})", c.status, c.method, c.route),
        None => format!("{lead}: {e}"),
    }
}

/// The counts shown in `status.summary`.
pub fn summary_of(counts: &SyncCounts) -> SyncSummary {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    SyncSummary {
        users: n(counts.users),
        disabled_users: n(counts.disabled_users),
        groups: n(counts.groups),
        memberships: n(counts.memberships),
        spaces: n(counts.spaces),
        space_permissions: n(counts.space_permissions),
    }
}

/// `status.lastChange` for the counts of a snapshot comparison.
pub fn access_change_of(counts: &ChangeCounts) -> AccessChange {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    AccessChange {
        users_added: n(counts.users_added),
        users_removed: n(counts.users_removed),
        users_enabled: n(counts.users_enabled),
        users_disabled: n(counts.users_disabled),
        memberships_added: n(counts.memberships_added),
        memberships_removed: n(counts.memberships_removed),
        permissions_added: n(counts.permissions_added),
        permissions_removed: n(counts.permissions_removed),
    }
}

/// `status.snapshot` for a report whose file lies at `relative_file` under the data
/// directory (`<namespace>/<name>/<syncId>.c1z`).
pub fn snapshot_ref(report: &SyncReport, relative_file: &Path) -> SnapshotRef {
    SnapshotRef {
        sync_id: report.sync_id.clone(),
        file: relative_file.to_string_lossy().into_owned(),
        size_bytes: i64::try_from(report.size_bytes).unwrap_or(i64::MAX),
        sha256: report.sha256.clone(),
    }
}

/// The object counts as (metric type label, value) pairs.
pub fn object_counts(summary: &SyncSummary) -> [(&'static str, i64); 6] {
    [
        ("users", summary.users),
        ("disabledUsers", summary.disabled_users),
        ("groups", summary.groups),
        ("memberships", summary.memberships),
        ("spaces", summary.spaces),
        ("spacePermissions", summary.space_permissions),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confluence::{ConfluenceError, ResponseContext};

    fn confluence(error: ConfluenceError) -> SyncError {
        SyncError::Confluence(error)
    }

    fn ctx(status: u16) -> ResponseContext {
        ResponseContext {
            method: "GET",
            route: "/wiki/rest/api/user/current",
            status,
            detail: String::new(),
            trace_id: None,
        }
    }

    #[test]
    fn each_error_class_has_its_reason() {
        let table = [
            (
                confluence(ConfluenceError::Authentication(ctx(401))),
                reasons::AUTHENTICATION_FAILED,
            ),
            (
                confluence(ConfluenceError::PermissionDenied(ctx(403))),
                reasons::PERMISSION_DENIED,
            ),
            (
                confluence(ConfluenceError::RateLimited {
                    context: ctx(429),
                    retry_after: None,
                }),
                reasons::RATE_LIMITED,
            ),
            (
                confluence(ConfluenceError::Server(ctx(500))),
                reasons::SITE_UNREACHABLE,
            ),
            (
                confluence(ConfluenceError::SiteMisconfigured(ctx(404))),
                reasons::INVALID_SITE,
            ),
            (
                confluence(ConfluenceError::Malformed {
                    method: "GET",
                    route: "/wiki/rest/api/group",
                    detail: "eof".into(),
                }),
                reasons::SYNC_FAILED,
            ),
            (
                SyncError::TimedOut(std::time::Duration::from_secs(60)),
                reasons::SYNC_FAILED,
            ),
        ];
        for (error, reason) in table {
            assert_eq!(failure_reason(&error), reason, "{error}");
        }
    }

    #[test]
    fn messages_name_the_status_and_route_but_not_the_body() {
        let mut context = ctx(403);
        context.detail = "StacklessResponseStatusException: caller cannot access".into();
        let error = TaskError::Sync(confluence(ConfluenceError::Authentication(context)));
        assert_eq!(
            failure_message(&error),
            "Confluence rejected the credentials (HTTP 403 from GET /wiki/rest/api/user/current)"
        );
        assert!(needs_user_change(task_failure_reason(&error)));
        assert!(!needs_user_change(reasons::SITE_UNREACHABLE));
    }

    #[test]
    fn counts_become_the_summary() {
        let counts = SyncCounts {
            users: 5,
            disabled_users: 1,
            groups: 2,
            memberships: 7,
            spaces: 3,
            space_permissions: 11,
            ..SyncCounts::default()
        };
        let summary = summary_of(&counts);
        assert_eq!(
            object_counts(&summary),
            [
                ("users", 5),
                ("disabledUsers", 1),
                ("groups", 2),
                ("memberships", 7),
                ("spaces", 3),
                ("spacePermissions", 11)
            ]
        );
    }
}
