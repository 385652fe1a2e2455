//! Orchestration of one sync.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt, stream};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::c1z::SnapshotOptions;
use crate::confluence::{ConfluenceClient, ErrorClass};

use super::SyncError;
use super::mapping::{group_record, permission_record, role_record, space_record, user_record};
use super::progress::{ProgressSender, Stage};
use super::report::{SyncCounts, SyncReport};
use super::sink::{Row, RowSender, Sink};

/// Progress is logged every this many groups or spaces walked.
const PROGRESS_EVERY: usize = 1000;

/// What to sync and how hard to push.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Sync spaces, space permissions and space roles.
    pub spaces: bool,
    /// Leave personal spaces out.
    pub skip_personal_spaces: bool,
    /// Group-member and space-permission walks running at once (the client's in-flight
    /// cap bounds the requests themselves).
    pub concurrency: usize,
    /// Longest time the sync may take.
    pub timeout: Duration,
    /// Snapshot settings (noun and verb selection, a sync id chosen up front). Its
    /// cancellation token is replaced by one tied to the sync's own.
    pub snapshot: SnapshotOptions,
    /// Where stage and walk progress is published, if anyone listens.
    pub progress: Option<ProgressSender>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            spaces: true,
            skip_personal_spaces: false,
            concurrency: 8,
            timeout: Duration::from_secs(30 * 60),
            snapshot: SnapshotOptions::default(),
            progress: None,
        }
    }
}

/// Syncs the site behind `client` into `output`.
///
/// The credentials are checked first, so a bad token creates no files. On any failure,
/// cancellation or timeout the output path is left as it was and no temporary file
/// remains when this returns; that holds for the snapshot's finishing phase too, which
/// stops promptly when `cancel` fires or the timeout passes. Dropping the returned future
/// early also stops the writer, which then removes its work files on its own.
pub async fn run_sync(
    client: &ConfluenceClient,
    options: &SyncOptions,
    output: &Path,
    cancel: &CancellationToken,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let deadline = tokio::time::sleep(options.timeout);
    tokio::pin!(deadline);
    let progress = |stage: Stage| {
        if let Some(p) = &options.progress {
            p.update(|p| p.stage = stage);
        }
    };
    // The writer thread watches this token: cancelled with `cancel`, on timeout, and
    // when this future is dropped.
    let work = cancel.child_token();
    let _stop_writer_when_dropped = work.clone().drop_guard();

    progress(Stage::CheckingCredentials);
    let account = tokio::select! {
        result = client.current_user() => result?,
        () = cancel.cancelled() => return Err(SyncError::Cancelled),
        () = &mut deadline => return Err(SyncError::TimedOut(options.timeout)),
    };
    info!(account_id = %account.account_id, "credentials accepted");

    progress(Stage::Fetching);
    let snapshot_options = SnapshotOptions {
        cancel: work.clone(),
        ..options.snapshot.clone()
    };
    let sink = Sink::start(output, snapshot_options)?;
    let outcome = tokio::select! {
        result = fetch_everything(client, options, sink.sender()) => result,
        () = cancel.cancelled() => Err(SyncError::Cancelled),
        () = &mut deadline => Err(SyncError::TimedOut(options.timeout)),
    };
    let fetched = started.elapsed();
    let finishing = match outcome {
        Ok(()) => sink.finish(),
        Err(SyncError::WriterStopped) => {
            // The writer's own error says what went wrong.
            return Err(sink.abort().await.unwrap_or(SyncError::WriterStopped));
        }
        Err(e) => {
            work.cancel();
            sink.abort().await;
            return Err(e);
        }
    };
    progress(Stage::FinishingSnapshot);
    info!(
        seconds = format!("{:.1}", fetched.as_secs_f64()),
        "fetching done; finishing the snapshot"
    );
    tokio::pin!(finishing);
    // Finishing is blocking work on the writer thread: a cancellation or the timeout
    // stops it through `work`, and the thread is awaited so no file outlives the sync.
    let info = tokio::select! {
        result = &mut finishing => result?,
        () = cancel.cancelled() => {
            work.cancel();
            let _ = finishing.await;
            return Err(SyncError::Cancelled);
        }
        () = &mut deadline => {
            work.cancel();
            let _ = finishing.await;
            return Err(SyncError::TimedOut(options.timeout));
        }
    };

    let stats = client.stats();
    let count = |resource_type: &str| info.resources.get(resource_type).copied().unwrap_or(0);
    let report = SyncReport {
        sync_id: info.sync_id.clone(),
        file: info.path.clone(),
        size_bytes: info.size_bytes,
        sha256: info.sha256.clone(),
        counts: SyncCounts {
            users: count("user"),
            disabled_users: info.disabled_users,
            groups: count("group"),
            memberships: info.membership_grants,
            spaces: count("space"),
            space_permissions: info.space_permission_grants,
            space_roles: count("space_role"),
            entitlements: info.entitlements,
            grants: info.grants,
            expanded_grants: info.expanded_grants,
        },
        requests: stats.requests_by_route.values().sum(),
        requests_by_route: stats.requests_by_route,
        retries: stats.retries,
        rate_limited: stats.rate_limited_429,
        duration_seconds: started.elapsed().as_secs_f64(),
        fetch_seconds: fetched.as_secs_f64(),
    };
    info!(
        users = report.counts.users,
        groups = report.counts.groups,
        memberships = report.counts.memberships,
        spaces = report.counts.spaces,
        space_permissions = report.counts.space_permissions,
        requests = report.requests,
        retries = report.retries,
        rate_limited = report.rate_limited,
        seconds = format!("{:.1}", report.duration_seconds),
        "sync finished"
    );
    Ok(report)
}

async fn fetch_everything(
    client: &ConfluenceClient,
    options: &SyncOptions,
    sender: RowSender,
) -> Result<(), SyncError> {
    let groups = groups_and_members(client, options, sender.clone());
    let users = searched_users(client, sender.clone());
    let spaces = async {
        if options.spaces {
            tokio::try_join!(
                spaces_and_permissions(client, options, sender.clone()),
                space_roles(client, sender.clone())
            )?;
        } else {
            info!("spaces: skipped (spaces disabled)");
        }
        Ok::<(), SyncError>(())
    };
    tokio::try_join!(groups, users, spaces)?;
    Ok(())
}

/// Groups, and each group's members once, many groups at a time. A group's walk
/// starts as soon as its page of the list is in: the walk is the longest part of a
/// sync (see `throttle::priority`), so it should not wait for the whole list.
async fn groups_and_members(
    client: &ConfluenceClient,
    options: &SyncOptions,
    sender: RowSender,
) -> Result<(), SyncError> {
    let (ids, listed_ids) = mpsc::unbounded();
    tokio::try_join!(
        list_groups(client, options, &sender, ids),
        walk_members(client, options, &sender, listed_ids),
    )?;
    Ok(())
}

/// Lists the groups, handing each new id to the walk once its group is with the
/// writer (which needs a group before its memberships).
async fn list_groups(
    client: &ConfluenceClient,
    options: &SyncOptions,
    sender: &RowSender,
    ids: mpsc::UnboundedSender<String>,
) -> Result<(), SyncError> {
    let mut pager = client.groups()?;
    // Offsets can shift while groups change; ids keep each group to one walk.
    let mut seen = HashSet::new();
    while let Some(page) = pager.next_page().await? {
        let mut rows = Vec::with_capacity(page.len());
        let mut new_ids = Vec::with_capacity(page.len());
        for record in page.iter().filter_map(group_record) {
            if seen.insert(record.id.clone()) {
                new_ids.push(record.id.clone());
                rows.push(Row::Group(record));
            }
        }
        sender.send(rows).await?;
        for id in new_ids {
            // A closed channel means the walk has failed; its error is the one
            // `groups_and_members` returns.
            let _ = ids.unbounded_send(id);
        }
    }
    info!(groups = seen.len(), pages = pager.pages(), "groups: listed");
    sender.send(vec![Row::GroupsListed]).await?;
    if let Some(p) = &options.progress {
        p.update(|p| p.groups_total = Some(seen.len() as u64));
    }
    Ok(())
}

/// Walks the members of every group the listing hands over, until the listing ends.
async fn walk_members(
    client: &ConfluenceClient,
    options: &SyncOptions,
    sender: &RowSender,
    ids: mpsc::UnboundedReceiver<String>,
) -> Result<(), SyncError> {
    let (groups, memberships) = ids
        .enumerate()
        .map(|(index, group_id)| {
            let sender = sender.clone();
            async move {
                let members = group_members(client, &group_id, &sender).await?;
                if let Some(p) = &options.progress {
                    p.update(|p| p.groups_walked += 1);
                }
                if (index + 1) % PROGRESS_EVERY == 0 {
                    info!(walked = index + 1, "members: progress");
                }
                Ok::<u64, SyncError>(members)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_fold((0u64, 0u64), |(groups, sum), members| async move {
            Ok((groups + 1, sum + members))
        })
        .await?;
    info!(groups, memberships, "members: done");
    Ok(())
}

async fn group_members(
    client: &ConfluenceClient,
    group_id: &str,
    sender: &RowSender,
) -> Result<u64, SyncError> {
    let mut pager = client.group_members(group_id)?;
    let mut members = 0;
    while let Some(page) = pager.next_page().await? {
        let mut rows = Vec::with_capacity(page.len() * 2);
        for user in page.iter().filter_map(user_record) {
            rows.push(Row::Membership(
                group_id.to_string(),
                user.account_id.clone(),
            ));
            rows.push(Row::User(user));
            members += 1;
        }
        sender.send(rows).await?;
    }
    // The writer expands grants to this group from now on, during the fetch.
    sender
        .send(vec![Row::GroupComplete(group_id.to_string())])
        .await?;
    Ok(members)
}

/// Licensed users from CQL search: finds users who are in no group.
async fn searched_users(client: &ConfluenceClient, sender: RowSender) -> Result<(), SyncError> {
    let mut pager = client.search_users()?;
    let mut users = 0usize;
    while let Some(page) = pager.next_page().await? {
        let rows: Vec<Row> = page
            .iter()
            .filter_map(|hit| hit.user.as_ref())
            .filter_map(user_record)
            .map(Row::User)
            .collect();
        users += rows.len();
        sender.send(rows).await?;
    }
    info!(users, pages = pager.pages(), "user search: done");
    Ok(())
}

/// Spaces, then each space's permissions, many spaces at a time.
async fn spaces_and_permissions(
    client: &ConfluenceClient,
    options: &SyncOptions,
    sender: RowSender,
) -> Result<(), SyncError> {
    let mut pager = client.spaces(None)?;
    let mut seen = HashSet::new();
    let mut ids = Vec::new();
    let mut skipped_personal = 0usize;
    while let Some(page) = pager.next_page().await? {
        let mut rows = Vec::with_capacity(page.len());
        for space in &page {
            match space_record(space, options.skip_personal_spaces) {
                Some(record) if seen.insert(record.id.clone()) => {
                    ids.push(record.id.clone());
                    rows.push(Row::Space(record));
                }
                Some(_) => {}
                None => skipped_personal += 1,
            }
        }
        sender.send(rows).await?;
    }
    drop(seen);
    info!(
        spaces = ids.len(),
        skipped = skipped_personal,
        pages = pager.pages(),
        "spaces: listed"
    );

    let total = ids.len();
    if let Some(p) = &options.progress {
        p.update(|p| p.spaces_total = Some(total as u64));
    }
    let permissions = stream::iter(ids.into_iter().enumerate())
        .map(|(index, space_id)| {
            let sender = sender.clone();
            async move {
                let count = space_permissions(client, &space_id, &sender).await?;
                if let Some(p) = &options.progress {
                    p.update(|p| p.spaces_walked += 1);
                }
                if (index + 1) % PROGRESS_EVERY == 0 {
                    info!(
                        walked = index + 1,
                        of = total,
                        "space permissions: progress"
                    );
                }
                Ok::<u64, SyncError>(count)
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_fold(0u64, |sum, count| async move { Ok(sum + count) })
        .await?;
    info!(spaces = total, permissions, "space permissions: done");
    Ok(())
}

async fn space_permissions(
    client: &ConfluenceClient,
    space_id: &str,
    sender: &RowSender,
) -> Result<u64, SyncError> {
    let mut pager = client.space_permissions(space_id)?;
    let mut count = 0;
    loop {
        let page = match pager.next_page().await {
            Ok(Some(page)) => page,
            Ok(None) => break,
            // A space deleted after it was listed: its permissions are gone with it,
            // which is no reason to fail the whole sync. v2 also answers bad
            // credentials with a bare 404, so those are confirmed first.
            Err(e) if e.class() == ErrorClass::NotFound => {
                if e.may_be_credentials() {
                    client.current_user().await?;
                }
                info!(
                    space_id,
                    "space permissions: space gone since listing; skipped"
                );
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let rows: Vec<Row> = page
            .iter()
            .filter_map(|permission| permission_record(space_id, permission))
            .map(Row::Permission)
            .collect();
        count += rows.len() as u64;
        sender.send(rows).await?;
    }
    sender
        .send(vec![Row::SpaceComplete(space_id.to_string())])
        .await?;
    Ok(count)
}

/// Space roles; a site without roles answers 404, which the client turns into no rows.
async fn space_roles(client: &ConfluenceClient, sender: RowSender) -> Result<(), SyncError> {
    let mut pager = client.space_roles(None)?;
    let mut roles = 0usize;
    while let Some(page) = pager.next_page().await? {
        let rows: Vec<Row> = page.iter().filter_map(role_record).map(Row::Role).collect();
        roles += rows.len();
        sender.send(rows).await?;
    }
    info!(roles, "space roles: done");
    Ok(())
}
