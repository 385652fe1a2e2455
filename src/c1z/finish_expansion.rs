//! Expansion of the entitlements still pending when the snapshot finishes, on two
//! threads.
//!
//! During the fetch the writer expands each entitlement as soon as it can, on its
//! one thread, while the client and the network use the rest of the machine. What is
//! left at the end (on a large tenant, every entitlement of a group whose member walk
//! ended last: millions of rows) has the machine to itself: the list is cut in two
//! stretches of about equal rows, the first expanded into the writer's spool, the
//! second into a spool of its own that is appended after it. Row ids, and so the
//! snapshot's content, are exactly those of one thread walking the whole list.

use std::path::Path;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::expand::{self, ExpansionClock, PendingEntitlement, Written};
use super::grant_spool::GrantSpool;
use super::members::Members;
use super::proto::Resource;
use super::{C1zError, Result};

/// Below this many rows (estimated) a second thread costs more than it saves.
pub(crate) const PARALLEL_MIN_ROWS: u64 = 1 << 16;
/// File name of the second thread's spool.
const TAIL_SPOOL: &str = "grants-tail";

/// One entitlement left to expand, and the space it belongs to.
pub(crate) struct Leftover<'a> {
    pub(crate) space: &'a Resource,
    pub(crate) space_id: &'a str,
    pub(crate) pending: PendingEntitlement,
}

/// What the writer lends to the expansion.
pub(crate) struct Target<'a> {
    pub(crate) sync_id: &'a str,
    pub(crate) members: &'a Members,
    pub(crate) spool: &'a mut GrantSpool,
    pub(crate) clock: &'a mut ExpansionClock,
    /// Where the second spool's files go.
    pub(crate) work_dir: &'a Path,
    pub(crate) cancel: &'a CancellationToken,
    /// Clock of the second thread's expanded grants.
    pub(crate) now: fn() -> DateTime<Utc>,
    /// Rows (estimated) from which a second thread is used.
    pub(crate) parallel_min_rows: u64,
}

/// The rows `pending` will come to: its direct grants and one row per member of
/// each granting group (fewer where a member holds it twice).
fn estimated_rows(pending: &PendingEntitlement, members: &Members) -> u64 {
    let groups: u64 = pending
        .groups
        .ids()
        .map(|g| 1 + members.of(g).map_or(0, |m| m.len() as u64))
        .sum();
    groups + pending.users.len() as u64
}

/// Expands `leftovers` in order; returns the grants written and the second
/// thread's spool, if one was used, to be appended after the writer's.
pub(crate) fn expand_all(
    mut leftovers: Vec<Leftover<'_>>,
    target: Target<'_>,
) -> Result<(Written, Option<GrantSpool>)> {
    let costs: Vec<u64> = leftovers
        .iter()
        .map(|l| estimated_rows(&l.pending, target.members))
        .collect();
    let total: u64 = costs.iter().sum();
    if total < target.parallel_min_rows.max(1) || leftovers.len() < 2 {
        let written = expand_run(
            leftovers,
            target.sync_id,
            target.members,
            target.spool,
            target.clock,
            target.cancel,
        )?;
        return Ok((written, None));
    }
    let mut head_rows = 0;
    let split = costs
        .iter()
        .position(|cost| {
            head_rows += cost;
            head_rows * 2 >= total
        })
        .map_or(leftovers.len() - 1, |last_of_head| last_of_head + 1)
        .clamp(1, leftovers.len() - 1);
    let tail = leftovers.split_off(split);
    let head = leftovers;
    // Either thread failing stops the other.
    let stop = target.cancel.child_token();
    let stop = &stop;
    let Target {
        sync_id,
        members,
        spool,
        clock,
        work_dir,
        now,
        ..
    } = target;
    let (head_result, tail_result) = std::thread::scope(|scope| {
        let tail_thread = scope.spawn(move || -> Result<(Written, GrantSpool)> {
            let run = || {
                let mut tail_spool = GrantSpool::create(work_dir, TAIL_SPOOL)?;
                let mut tail_clock = ExpansionClock::new(now);
                let written = expand_run(
                    tail,
                    sync_id,
                    members,
                    &mut tail_spool,
                    &mut tail_clock,
                    stop,
                )?;
                Ok((written, tail_spool))
            };
            run().inspect_err(|_| stop.cancel())
        });
        let head_result =
            expand_run(head, sync_id, members, spool, clock, stop).inspect_err(|_| stop.cancel());
        let tail_result = tail_thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (head_result, tail_result)
    });
    match (head_result, tail_result) {
        (Ok(head), Ok((tail, tail_spool))) => Ok((
            Written {
                direct: head.direct + tail.direct,
                expanded: head.expanded + tail.expanded,
            },
            Some(tail_spool),
        )),
        // A thread stopped by the other's failure reports `Cancelled`: prefer the cause.
        (Err(C1zError::Cancelled), Err(e)) | (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Expands `leftovers` one after the other into `spool` (also the writer's way to
/// write one entitlement during the fetch). Each is dropped once written: at the end
/// of a large sync they hold tens of megabytes that the expansion's own growth (the
/// spools' principals) can reuse.
pub(crate) fn expand_run<'a>(
    leftovers: impl IntoIterator<Item = Leftover<'a>>,
    sync_id: &str,
    members: &Members,
    spool: &mut GrantSpool,
    clock: &mut ExpansionClock,
    stop: &CancellationToken,
) -> Result<Written> {
    let mut total = Written::default();
    for leftover in leftovers {
        if stop.is_cancelled() {
            return Err(C1zError::Cancelled);
        }
        let written = expand::entitlement_rows(
            leftover.space,
            leftover.space_id,
            &leftover.pending,
            members,
            clock,
            |row| spool.push(sync_id, row),
        )?;
        total.direct += written.direct;
        total.expanded += written.expanded;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_estimated_from_direct_grants_and_group_members() {
        let mut members = Members::default();
        members.list_group("g1");
        for account in ["a", "b", "c"] {
            members.add("g1", account).expect("add");
        }
        let mut pending = PendingEntitlement::new("read", "space");
        pending.groups.add("g1", DateTime::UNIX_EPOCH);
        pending.groups.add("never-listed", DateTime::UNIX_EPOCH);
        pending.users.add("a", DateTime::UNIX_EPOCH);
        pending.seal();
        // g1's grant and its three members, the unlisted group's grant, one user.
        assert_eq!(estimated_rows(&pending, &members), 6);
    }
}
