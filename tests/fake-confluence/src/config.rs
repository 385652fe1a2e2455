//! Everything a fake is started with; the runtime-changeable parts are `Quirks`,
//! `RateLimitConfig`, `Latency` and the fault rules.

use std::net::SocketAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::faults::FaultRule;

/// Benchmark presets from the API reference (§11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 100 users, 20 groups, 10 spaces.
    Small,
    /// 5 000 users, 500 groups, 300 spaces.
    Medium,
    /// 50 000 users, 5 000 groups, 2 000 spaces, 50–500 permissions per space.
    Large,
}

impl FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "small" => Ok(Preset::Small),
            "medium" => Ok(Preset::Medium),
            "large" => Ok(Preset::Large),
            other => Err(Error::Config(format!("unknown preset {other:?}"))),
        }
    }
}

/// How the tenant is generated. The same `DataConfig` always yields the same tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    pub seed: u64,
    pub users: usize,
    pub groups: usize,
    /// All spaces, personal ones included.
    pub spaces: usize,
    /// Share of `spaces` that are personal spaces (each owned by a different user).
    pub personal_space_percent: u8,
    /// If set, `spaces` counts only non-personal spaces and this share of the Atlassian
    /// accounts get a personal space on top (the "~50 % of users" reading of the presets;
    /// the large preset then has ~23 000 spaces).
    pub personal_spaces_per_user_percent: Option<u8>,
    /// Inclusive range of permissions per non-personal space.
    pub permissions_per_space: (usize, usize),
    /// Replace ordinary groups with `edge-empty` (0 members), `edge-full-400` (exactly two
    /// full pages of 200) and `edge-450` when there are enough users for them.
    pub edge_case_groups: bool,
}

impl DataConfig {
    pub fn preset(preset: Preset) -> Self {
        let (users, groups, spaces, permissions_per_space) = match preset {
            Preset::Small => (100, 20, 10, (5, 40)),
            Preset::Medium => (5_000, 500, 300, (20, 200)),
            Preset::Large => (50_000, 5_000, 2_000, (50, 500)),
        };
        DataConfig {
            seed: 1,
            users,
            groups,
            spaces,
            personal_space_percent: 50,
            personal_spaces_per_user_percent: None,
            permissions_per_space,
            edge_case_groups: true,
        }
    }

    /// No users, groups or spaces at all.
    pub fn empty() -> Self {
        DataConfig {
            users: 0,
            groups: 0,
            spaces: 0,
            ..DataConfig::preset(Preset::Small)
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig::preset(Preset::Small)
    }
}

/// A Basic-auth credential the fake accepts. The n-th credential acts as the n-th
/// generated user (the generator keeps the first users ordinary licensed accounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub email: String,
    pub token: String,
    pub site_admin: bool,
    /// A scoped API token: rejected on the site host with a Tomcat 401 page.
    #[serde(default)]
    pub scoped: bool,
    /// Space keys this credential may view; `None` = every space.
    #[serde(default)]
    pub visible_spaces: Option<Vec<String>>,
}

impl Credential {
    pub const DEFAULT_EMAIL: &'static str = "admin@example.com";
    pub const DEFAULT_TOKEN: &'static str = "test-token";

    pub fn new(email: &str, token: &str, site_admin: bool) -> Self {
        Credential {
            email: email.to_owned(),
            token: token.to_owned(),
            site_admin,
            scoped: false,
            visible_spaces: None,
        }
    }

    /// `admin@example.com` / `test-token`, a site admin.
    pub fn default_admin() -> Self {
        Credential::new(Self::DEFAULT_EMAIL, Self::DEFAULT_TOKEN, true)
    }
}

impl FromStr for Credential {
    type Err = Error;
    /// `EMAIL:TOKEN` or `EMAIL:TOKEN:admin`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            [email, token] if !email.is_empty() && !token.is_empty() => {
                Ok(Credential::new(email, token, false))
            }
            [email, token, "admin"] if !email.is_empty() && !token.is_empty() => {
                Ok(Credential::new(email, token, true))
            }
            _ => Err(Error::Config(format!(
                "credential must be EMAIL:TOKEN[:admin], got {s:?}"
            ))),
        }
    }
}

/// What v1 endpoints answer to missing or wrong credentials (v2 always answers 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AuthFailureMode {
    /// 403 JSON, the 2026 behaviour.
    #[default]
    #[serde(rename = "403-json")]
    Forbidden403Json,
    /// 401 `text/plain` "Basic authentication with passwords is deprecated".
    #[serde(rename = "401-text")]
    Unauthorized401Text,
}

impl FromStr for AuthFailureMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "403-json" => Ok(AuthFailureMode::Forbidden403Json),
            "401-text" => Ok(AuthFailureMode::Unauthorized401Text),
            other => Err(Error::Config(format!(
                "unknown auth failure mode {other:?}"
            ))),
        }
    }
}

/// Behaviours that are unverified or vary in reality, switchable at runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Quirks {
    pub v1_auth_failure: AuthFailureMode,
    /// Missing or wrong credentials get `type: "anonymous"` from `user/current`.
    pub anonymous_site: bool,
    /// Silent cap on `GET /group` page size (the requested limit is still echoed).
    pub group_page_cap: usize,
    /// `GET /group` sends `next` on every page, the last and empty ones included
    /// (quirk: "`next` with 0 results"); clients must stop on an empty page.
    pub group_next_always: bool,
    /// Silent cap on `search/user` page size.
    pub search_page_cap: usize,
    /// `search/user` finds at most this many users ("up to 10k").
    pub search_ceiling: usize,
    /// `membersByGroupId` leaves out suspended accounts (closed ones here).
    pub hide_suspended_members: bool,
    /// `membersByGroupId` rejects larger limits with 400.
    pub members_max_limit: usize,
    /// Status for an add/remove naming an unknown accountId (404, or 400 as the spec lists).
    pub unknown_account_write_status: u16,
    /// Status for adding an existing member (201, or 400 "already a member").
    pub existing_member_add_status: u16,
    /// If set, requests whose `Host` differs get the 404 "Page unavailable" HTML page.
    pub site_host: Option<String>,
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            v1_auth_failure: AuthFailureMode::default(),
            anonymous_site: false,
            group_page_cap: 1000,
            group_next_always: false,
            search_page_cap: 100,
            search_ceiling: 10_000,
            hide_suspended_members: false,
            members_max_limit: 200,
            unknown_account_write_status: 404,
            existing_member_add_status: 201,
            site_host: None,
        }
    }
}

/// Token bucket per (credential, method, route template).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitConfig {
    /// Bucket size (burst).
    pub capacity: u32,
    /// Tokens added per second.
    pub refill_per_sec: f64,
    /// Cost of a request to an identity route (users, groups, members); others cost 1.
    pub identity_cost: u32,
    /// `RateLimit-Reason` on 429s.
    pub reason: String,
    /// Whether 429s carry `X-RateLimit-NearLimit: true` (real ones sometimes do not).
    pub near_limit_on_429: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            capacity: 100,
            refill_per_sec: 10.0,
            identity_cost: 1,
            reason: "confluence-quota-tenant-based".to_owned(),
            near_limit_on_429: true,
        }
    }
}

/// Extra delay before every API answer.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Latency {
    pub fixed_ms: u64,
    /// Uniformly distributed extra delay in `0..=jitter_ms`.
    pub jitter_ms: u64,
}

/// Space-roles (RBAC) emulation; without it every R1 route answers a v2 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RbacMode {
    #[default]
    #[serde(rename = "PRE_ROLES")]
    PreRoles,
    #[serde(rename = "ROLES_TRANSITION")]
    RolesTransition,
    #[serde(rename = "ROLES")]
    Roles,
}

impl RbacMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RbacMode::PreRoles => "PRE_ROLES",
            RbacMode::RolesTransition => "ROLES_TRANSITION",
            RbacMode::Roles => "ROLES",
        }
    }
}

/// Everything [`crate::FakeConfluence::start`] needs.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Default `127.0.0.1:0` (an ephemeral port).
    pub listen: SocketAddr,
    pub data: DataConfig,
    /// Default: [`Credential::default_admin`] only.
    pub credentials: Vec<Credential>,
    pub quirks: Quirks,
    /// `None` (default): no rate limiting, so test suites stay fast.
    pub rate_limit: Option<RateLimitConfig>,
    pub latency: Latency,
    pub faults: Vec<FaultRule>,
    /// Seed for fault probabilities and latency jitter.
    pub fault_seed: u64,
    /// `None`: space-role routes answer 404 ("RBAC is not supported").
    pub rbac: Option<RbacMode>,
    /// How many requests the log keeps (oldest dropped first).
    pub request_log_capacity: usize,
}

impl FakeConfig {
    pub fn preset(preset: Preset) -> Self {
        FakeConfig {
            data: DataConfig::preset(preset),
            ..FakeConfig::default()
        }
    }

    pub fn with_data(data: DataConfig) -> Self {
        FakeConfig {
            data,
            ..FakeConfig::default()
        }
    }
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: DataConfig::default(),
            credentials: vec![Credential::default_admin()],
            quirks: Quirks::default(),
            rate_limit: None,
            latency: Latency::default(),
            faults: Vec::new(),
            fault_seed: 7,
            rbac: None,
            request_log_capacity: 10_000,
        }
    }
}
