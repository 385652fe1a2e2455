//! The error type of the c1z layer.

use std::path::PathBuf;

/// Result alias for the c1z layer.
pub type Result<T, E = C1zError> = std::result::Result<T, E>;

/// Everything that can go wrong while writing or reading a c1z snapshot.
#[derive(Debug, thiserror::Error)]
pub enum C1zError {
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored protobuf blob could not be decoded.
    #[error("protobuf decode: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The output path has no file name or no usable parent directory.
    #[error("invalid output path {0}")]
    InvalidOutputPath(PathBuf),
    /// A `--noun` value outside the reference list.
    #[error("unknown space permission noun {0:?}")]
    UnknownNoun(String),
    /// A `--verb` value outside the reference list.
    #[error("unknown space permission verb {0:?}")]
    UnknownVerb(String),
    /// A membership was put for a group that was not put before.
    #[error("membership for unknown group {0:?}: put the group first")]
    UnknownGroup(String),
    /// A membership was put for a group already declared complete.
    #[error("membership for group {0:?} after its member list was declared complete")]
    GroupComplete(String),
    /// More distinct member accounts than a snapshot can number (over four billion).
    #[error("too many distinct member accounts")]
    TooManyAccounts,
    /// More grants, entitlements or principals than a snapshot can number (over four
    /// billion), or a grant row over 4 GiB.
    #[error("too many grants for one snapshot")]
    TooManyGrants,
    /// A grant id that is not `<entitlement id>:<principal type>:<principal id>`.
    #[error("grant id {0:?} does not follow <entitlement>:<principal type>:<principal id>")]
    GrantId(String),
    /// The schema has an index on `v1_grants` the grant loader does not fill.
    #[error("index {0:?} on v1_grants is not one the grant loader builds")]
    UnknownGrantIndex(String),
    /// A space permission was put for a space already declared complete.
    #[error("permission for space {0:?} after its permissions were declared complete")]
    SpaceComplete(String),
    /// A space permission was put for a space that was not put before.
    #[error("permission for unknown space {0:?}: put the space first")]
    UnknownSpace(String),
    /// The sync time cannot be expressed as a KSUID timestamp.
    #[error("time {0} is outside the KSUID range")]
    TimeOutOfRange(String),
    /// SQLite refused to switch the work database to `journal_mode=DELETE`.
    #[error("could not set journal_mode=DELETE (got {0:?})")]
    JournalMode(String),
    /// The file does not start with the c1z v1 magic.
    #[error("not a c1z v1 file (bad magic)")]
    BadMagic,
    /// The snapshot was cancelled through [`super::SnapshotOptions::cancel`]; nothing was
    /// published.
    #[error("the snapshot was cancelled")]
    Cancelled,
    /// The file holds no finished full sync (an empty or unfinished store).
    #[error("the snapshot holds no finished sync")]
    NoFinishedSync,
    /// A stored resource has no id.
    #[error("a stored resource has no id")]
    MissingId,
    /// The decompressed database exceeds the reader's size cap.
    #[error("decompressed snapshot exceeds {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
}

impl C1zError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
