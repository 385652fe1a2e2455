//! Turning a grant's group and user into Confluence ids: names and emails through the
//! connector's latest snapshot, then every id confirmed live, so a grant never acts on
//! a group or user that no longer exists.

use std::path::PathBuf;

use crate::api::{ConfluenceAccessGrantSpec, GrantPhase};
use crate::c1z::{C1zError, SnapshotDirectory};
use crate::confluence::{
    AccountStatus, AccountType, ConfluenceClient, ConfluenceError, ErrorClass,
};

use super::super::Error;
use super::status::{
    CONNECTOR_NOT_READY, GROUP_NOT_FOUND, USER_NOT_FOUND, USER_NOT_GRANTABLE, Verdict,
};

/// A group as Confluence knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedGroup {
    /// The group id.
    pub id: String,
    /// Its current name.
    pub name: String,
}

/// The outcome of a resolution: the ids, or the verdict to report.
pub type Resolved<T> = Result<T, Verdict>;

/// The group of `spec`, confirmed live.
pub async fn group(
    client: &ConfluenceClient,
    spec: &ConfluenceAccessGrantSpec,
    snapshot: Option<PathBuf>,
) -> Result<Resolved<ResolvedGroup>, Error> {
    let id = match (&spec.group.id, &spec.group.name) {
        (Some(id), _) => id.clone(),
        (None, Some(name)) => {
            let wanted = name.clone();
            let found = one_of(snapshot, move |d| d.group_ids_named(&wanted)).await?;
            match found {
                Found::One(id) => id,
                Found::Unusable(verdict) => return Ok(Err(verdict)),
                Found::None => {
                    return Ok(Err(failed(
                        GROUP_NOT_FOUND,
                        format!(
                            "no group named {name:?} in the connector's latest snapshot; if it is new, request a sync of the connector or use group.id"
                        ),
                    )));
                }
                Found::Many(n) => {
                    return Ok(Err(failed(
                        GROUP_NOT_FOUND,
                        format!("{n} groups are named {name:?}; name the group by group.id"),
                    )));
                }
            }
        }
        (None, None) => return Ok(Err(failed(GROUP_NOT_FOUND, "spec.group names no group"))),
    };
    match client.group_by_id(&id).await {
        Ok(group) => Ok(Ok(ResolvedGroup {
            name: group.name.unwrap_or_else(|| id.clone()),
            id,
        })),
        Err(e) if missing(&e) => Ok(Err(failed(
            GROUP_NOT_FOUND,
            format!("Confluence has no group with id {id}"),
        ))),
        Err(e) => Err(Error::Confluence(e)),
    }
}

/// The account id of `spec`'s user, confirmed live to be an active person.
pub async fn user(
    client: &ConfluenceClient,
    spec: &ConfluenceAccessGrantSpec,
    snapshot: Option<PathBuf>,
) -> Result<Resolved<String>, Error> {
    let account_id = match (&spec.user.account_id, &spec.user.email) {
        (Some(id), _) => id.clone(),
        (None, Some(email)) => {
            let wanted = email.clone();
            let found = one_of(snapshot, move |d| d.account_ids_with_email(&wanted)).await?;
            match found {
                Found::One(id) => id,
                Found::Unusable(verdict) => return Ok(Err(verdict)),
                Found::None => {
                    return Ok(Err(failed(
                        USER_NOT_FOUND,
                        format!(
                            "no user with email {email} in the connector's latest snapshot; the site may hide this user's email (profile visibility): name the user by user.accountId"
                        ),
                    )));
                }
                Found::Many(n) => {
                    return Ok(Err(failed(
                        USER_NOT_FOUND,
                        format!("{n} users have email {email}; name the user by user.accountId"),
                    )));
                }
            }
        }
        (None, None) => return Ok(Err(failed(USER_NOT_FOUND, "spec.user names no user"))),
    };
    let user = match client.user_by_account_id(&account_id).await {
        Ok(user) => user,
        Err(e) if missing(&e) => {
            return Ok(Err(failed(
                USER_NOT_FOUND,
                format!("Confluence has no user with account id {account_id}"),
            )));
        }
        Err(e) => return Err(Error::Confluence(e)),
    };
    if matches!(user.account_type, Some(AccountType::App)) {
        return Ok(Err(failed(
            USER_NOT_GRANTABLE,
            format!("account {account_id} is an app, not a person: apps are never granted access"),
        )));
    }
    if matches!(
        user.account_status,
        Some(AccountStatus::Inactive | AccountStatus::Closed)
    ) {
        return Ok(Err(failed(
            USER_NOT_GRANTABLE,
            format!("account {account_id} is deactivated or closed"),
        )));
    }
    Ok(Ok(account_id))
}

/// 404, or the 400 some sites answer for an id that does not exist.
fn missing(e: &ConfluenceError) -> bool {
    matches!(e.class(), ErrorClass::NotFound | ErrorClass::BadRequest)
}

fn failed(reason: &'static str, message: impl Into<String>) -> Verdict {
    Verdict::new(GrantPhase::Failed, reason, message)
}

fn no_snapshot() -> Verdict {
    Verdict::new(
        GrantPhase::Pending,
        CONNECTOR_NOT_READY,
        "waiting for the connector's first snapshot to look up names and emails",
    )
}

/// What a snapshot look-up found.
enum Found {
    One(String),
    None,
    Many(usize),
    /// No snapshot to look in (yet).
    Unusable(Verdict),
}

/// Runs `query` on the snapshot off the async threads and counts the ids it finds.
async fn one_of(
    snapshot: Option<PathBuf>,
    query: impl FnOnce(&SnapshotDirectory) -> Result<Vec<String>, C1zError> + Send + 'static,
) -> Result<Found, Error> {
    let Some(snapshot) = snapshot else {
        return Ok(Found::Unusable(no_snapshot()));
    };
    let mut ids = tokio::task::spawn_blocking(move || {
        let directory = SnapshotDirectory::open(&snapshot)?;
        query(&directory)
    })
    .await
    .map_err(|e| {
        Error::Snapshot(C1zError::io(
            "look up",
            "",
            std::io::Error::other(e.to_string()),
        ))
    })?
    .map_err(Error::Snapshot)?;
    Ok(match ids.len() {
        0 => Found::None,
        1 => Found::One(ids.remove(0)),
        n => Found::Many(n),
    })
}
