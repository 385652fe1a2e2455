//! Condition types and reasons. The same CamelCase words are the Event reasons and metric
//! labels, so they live here once.

/// Summary condition read by GitOps tools and `kubectl wait`.
pub const READY: &str = "Ready";
/// Present (True) only while the operator works towards a new state.
pub const RECONCILING: &str = "Reconciling";
/// Present (True) only while only a change by the user can help.
pub const STALLED: &str = "Stalled";
/// Outcome of the last credential check.
pub const CREDENTIALS_VALID: &str = "CredentialsValid";
/// Outcome of the last sync.
pub const SYNCED: &str = "Synced";

/// Ready=True: the last sync of this generation succeeded.
pub const CONNECTED: &str = "Connected";
/// Ready=Unknown / Reconciling=True: a sync is running.
pub const SYNCING: &str = "Syncing";
/// Reconciling=True: retrying after a failure.
pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
/// CredentialsValid=True.
pub const AUTHENTICATED: &str = "Authenticated";
/// Synced=True, and the Event of a completed sync.
pub const SYNC_SUCCEEDED: &str = "SyncSucceeded";
/// The Event of a completed sync that changed access against the previous snapshot.
pub const ACCESS_CHANGED: &str = "AccessChanged";
/// Syncing is suspended by `spec.suspend`.
pub const SUSPENDED: &str = "Suspended";

/// The referenced Secret does not exist.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// The Secret lacks a referenced key, or its value is empty or not UTF-8.
pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
/// `spec.site` is malformed or not allowed.
pub const INVALID_SITE: &str = "InvalidSite";
/// A `spec` value is invalid in a way the schema did not catch.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Confluence rejected the credentials.
pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
/// The credentials are valid but lack a needed permission.
pub const PERMISSION_DENIED: &str = "PermissionDenied";
/// The site could not be reached or answered with server errors.
pub const SITE_UNREACHABLE: &str = "SiteUnreachable";
/// Confluence's rate limit outlasted the sync's retry budget.
pub const RATE_LIMITED: &str = "RateLimited";
/// Any other sync failure (timeout, malformed response, snapshot write).
pub const SYNC_FAILED: &str = "SyncFailed";
