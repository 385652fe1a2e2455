//! Confluence Cloud REST client: authentication, pagination, retries and rate limiting.
//!
//! Knows nothing of Kubernetes. The behaviour follows the project's Confluence API
//! reference: v1 offset pages (`start += rows`, stop on an empty page), v2 cursor pages
//! (rebuilt from the cursor on the client's own root), one shared pause per client on
//! 429, bounded exponential back-off with jitter on 5xx and transport errors, capped
//! response sizes, a deadline and a minimum body pace for every request, walks that fail
//! rather than end early when the server stops advancing, and tolerant models with open
//! enums.
//!
//! ```no_run
//! # async fn demo(config: confluence_operator::confluence::ClientConfig)
//! # -> Result<(), confluence_operator::confluence::ConfluenceError> {
//! use confluence_operator::confluence::ConfluenceClient;
//! let client = ConfluenceClient::new(config)?;
//! let me = client.current_user().await?;
//! let mut groups = client.groups()?;
//! while let Some(page) = groups.next_page().await? {
//!     for group in page {
//!         let _members = client.group_members(group.id.as_deref().unwrap_or_default())?;
//!     }
//! }
//! # let _ = me; Ok(()) }
//! ```

mod body;
mod client;
mod config;
mod envelope;
mod error_body;
mod errors;
mod http;
mod membership;
mod models;
mod observer;
mod open_enum;
mod pacing;
mod pager;
mod pagination;
mod retry;
mod stats;
mod throttle;

pub use client::{
    ConfluenceClient, GROUPS_PAGE_LIMIT, MEMBERS_PAGE_LIMIT, SEARCH_PAGE_LIMIT, V2_PAGE_LIMIT,
};
pub use config::{
    ANSWER_START_ALLOWANCE, BodyProgress, ClientConfig, DEFAULT_BODY_PROGRESS,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_PAGES, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_TIMEOUT, MODEST_BODY_RATE, RetryPolicy, request_deadline_for,
};
pub use envelope::{V1Links, V1Page, V2Links, V2Page};
pub use errors::{ConfluenceError, ErrorClass, ResponseContext, Stall};
pub use models::{
    AccountStatus, AccountType, CurrentUser, Group, OperationKey, Principal, PrincipalType,
    ProfilePicture, SearchResult, Space, SpaceOperation, SpacePermission, SpaceRole, SpaceType,
    TargetType, TenantInfo, User, UserOperation,
};
pub use observer::RequestObserver;
pub use pager::{PageRow, Pager, WalkSummary};
pub use pagination::StopReason;
pub use stats::ClientStats;
