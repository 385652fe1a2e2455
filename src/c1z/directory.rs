//! Name and email look-ups in a snapshot: which group ids carry a name, which account
//! ids carry an email. Rows are streamed from the file's database, never all decoded
//! into memory, so a look-up costs one decompression and one pass over a table.

use std::path::Path;

use prost::Message;
use rusqlite::{Connection, OpenFlags};
use tempfile::TempDir;

use super::container::{self, MAX_DECODED_SIZE};
use super::model::{GROUP, USER};
use super::proto::{Resource, UserTrait, from_any};
use super::{C1zError, Result};

/// A snapshot opened for look-ups. The decompressed database lives in a private
/// temporary directory removed on drop.
pub struct SnapshotDirectory {
    conn: Connection,
    _dir: TempDir,
}

impl SnapshotDirectory {
    /// Decompresses `path` (at most [`MAX_DECODED_SIZE`] bytes) for look-ups.
    pub fn open(path: &Path) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(|e| C1zError::io("create temp dir", "", e))?;
        let db = dir.path().join("snapshot.db");
        container::decompress(path, &db, MAX_DECODED_SIZE)?;
        let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Self { conn, _dir: dir })
    }

    /// Ids of the groups whose name is exactly `name`. Names are not unique in
    /// Confluence (a site may show groups of several sites), so there may be several.
    pub fn group_ids_named(&self, name: &str) -> Result<Vec<String>> {
        self.matching(GROUP, |resource| resource.display_name == name)
    }

    /// Account ids of the users with `email` (ASCII case ignored). Users whose site
    /// hides their email have none in the snapshot and never match.
    pub fn account_ids_with_email(&self, email: &str) -> Result<Vec<String>> {
        let email = email.trim();
        self.matching(USER, |resource| {
            resource
                .annotations
                .iter()
                .filter_map(|any| from_any::<UserTrait>(any).and_then(|t| t.ok()))
                .flat_map(|t| t.emails)
                .any(|e| e.address.eq_ignore_ascii_case(email))
        })
    }

    /// Ids of resources of `resource_type` for which `keep` holds.
    fn matching(
        &self,
        resource_type: &str,
        keep: impl Fn(&Resource) -> bool,
    ) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare("SELECT data FROM v1_resources WHERE resource_type_id = ?1 ORDER BY id")?;
        let mut rows = stmt.query([resource_type])?;
        let mut ids = Vec::new();
        while let Some(row) = rows.next()? {
            let blob: Vec<u8> = row.get(0)?;
            let resource = Resource::decode(blob.as_slice())?;
            if keep(&resource)
                && let Some(id) = resource.id
            {
                ids.push(id.resource);
            }
        }
        Ok(ids)
    }
}
