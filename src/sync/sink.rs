//! The snapshot writer on its own thread, fed through a bounded channel.
//!
//! SQLite and zstd are blocking; the HTTP side is async. A bounded channel between them
//! keeps memory flat: when the writer falls behind, fetching waits. The rows of the
//! fetch are few next to the grants expansion creates, so the writer takes them first
//! and expands what is ready only while the channel is empty.

use std::path::Path;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::task::JoinHandle;

use crate::c1z::{
    GroupRecord, SnapshotInfo, SnapshotOptions, SnapshotWriter, SpacePermissionRecord, SpaceRecord,
    SpaceRoleRecord, UserRecord,
};

use super::SyncError;

/// Batches in flight between fetching and writing (each batch is one page or less).
const CHANNEL_BATCHES: usize = 64;

/// One row for the snapshot.
#[derive(Debug)]
pub enum Row {
    /// A user (the writer keeps the last observation).
    User(UserRecord),
    /// A group; must precede its memberships.
    Group(GroupRecord),
    /// (group id, account id) of an Atlassian member.
    Membership(String, String),
    /// A space; must precede its permissions.
    Space(SpaceRecord),
    /// A space permission.
    Permission(SpacePermissionRecord),
    /// A space role.
    Role(SpaceRoleRecord),
    /// Every group has been sent (not their members).
    GroupsListed,
    /// All members of this group have been sent.
    GroupComplete(String),
    /// All permissions of this space have been sent.
    SpaceComplete(String),
}

enum Message {
    Rows(Vec<Row>),
    Finish,
}

/// Sends rows to the writer thread. Clones share the channel.
#[derive(Clone)]
pub struct RowSender {
    tx: mpsc::Sender<Message>,
}

impl RowSender {
    /// Queues a batch; waits while the writer is behind.
    pub async fn send(&self, rows: Vec<Row>) -> Result<(), SyncError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Message::Rows(rows))
            .await
            .map_err(|_| SyncError::WriterStopped)
    }
}

/// The writer thread and the way to end it.
pub struct Sink {
    sender: RowSender,
    handle: JoinHandle<Result<SnapshotInfo, SyncError>>,
}

impl Sink {
    /// Creates the snapshot's work files and starts the writer thread.
    pub fn start(output: &Path, options: SnapshotOptions) -> Result<Self, SyncError> {
        let cancel = options.cancel.clone();
        let writer = SnapshotWriter::create(output, options)?;
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let handle = tokio::task::spawn_blocking(move || {
            // Cancelling interrupts the writer's SQLite statements, whose errors then
            // name the interruption; what the caller needs to know is the cancellation.
            write_all(writer, rx).map_err(|e| match e {
                _ if cancel.is_cancelled() => SyncError::Cancelled,
                e => e,
            })
        });
        Ok(Self {
            sender: RowSender { tx },
            handle,
        })
    }

    /// A handle for producers.
    pub fn sender(&self) -> RowSender {
        self.sender.clone()
    }

    /// Writes what was sent, expands grants and publishes the file.
    pub async fn finish(self) -> Result<SnapshotInfo, SyncError> {
        // A writer that already failed has closed its end; its own error explains why.
        let _ = self.sender.tx.send(Message::Finish).await;
        drop(self.sender);
        join(self.handle).await
    }

    /// Discards everything: the work files go, the output is never touched. Waits for the
    /// thread so no temporary file outlives the sync, and returns the writer's own error
    /// if it failed first.
    pub async fn abort(self) -> Option<SyncError> {
        drop(self.sender);
        match join(self.handle).await {
            Ok(_) | Err(SyncError::Aborted) => None,
            Err(e) => Some(e),
        }
    }
}

async fn join(
    handle: JoinHandle<Result<SnapshotInfo, SyncError>>,
) -> Result<SnapshotInfo, SyncError> {
    handle
        .await
        .map_err(|e| SyncError::WriterPanicked(e.to_string()))?
}

fn write_all(
    mut writer: SnapshotWriter,
    mut rx: mpsc::Receiver<Message>,
) -> Result<SnapshotInfo, SyncError> {
    loop {
        // Rows from the fetch first, so that it never waits for expansion; expansion
        // of whatever is ready fills the time in between.
        let message = if writer.has_ready() {
            match rx.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Empty) => {
                    writer.write_ready()?;
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.blocking_recv() {
                Some(message) => message,
                None => break,
            }
        };
        match message {
            Message::Rows(rows) => {
                for row in rows {
                    match row {
                        Row::User(user) => writer.put_user(&user)?,
                        Row::Group(group) => writer.put_group(&group)?,
                        Row::Membership(group_id, account_id) => {
                            writer.put_membership(&group_id, &account_id)?
                        }
                        Row::Space(space) => writer.put_space(&space)?,
                        Row::Permission(permission) => writer.put_space_permission(&permission)?,
                        Row::Role(role) => writer.put_space_role(&role)?,
                        Row::GroupsListed => writer.groups_listed()?,
                        Row::GroupComplete(group_id) => writer.group_complete(&group_id)?,
                        Row::SpaceComplete(space_id) => writer.space_complete(&space_id)?,
                    }
                }
            }
            Message::Finish => return Ok(writer.finish()?),
        }
    }
    // Every sender is gone without `Finish`: the sync failed or was cancelled, and
    // dropping the writer removes its work files.
    Err(SyncError::Aborted)
}
