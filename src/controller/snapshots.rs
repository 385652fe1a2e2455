//! The snapshot directory of each connector: `<data-dir>/<namespace>/<name>/<syncId>.c1z`.
//!
//! Sync ids are KSUIDs, which sort by time as text, so "newest" is "greatest name".

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::c1z;

/// File extension of snapshots.
const EXTENSION: &str = "c1z";

/// Why the directory could not be prepared or tidied.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotDirError {
    /// A file system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Removing a crashed writer's leftovers failed.
    #[error("removing leftovers: {0}")]
    Leftovers(#[from] c1z::C1zError),
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SnapshotDirError + 'a {
    move |source| SnapshotDirError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs a blocking directory operation on `dir` off the async workers; a panic in it
/// becomes an error of the operation.
pub async fn off_thread<T: Send + 'static>(
    op: &'static str,
    dir: PathBuf,
    f: impl FnOnce(&Path) -> Result<T, SnapshotDirError> + Send + 'static,
) -> Result<T, SnapshotDirError> {
    let path = dir.clone();
    tokio::task::spawn_blocking(move || f(&dir))
        .await
        .map_err(|e| SnapshotDirError::Io {
            op,
            path,
            source: io::Error::other(e.to_string()),
        })?
}

/// Where one connector's snapshots live, relative to the data directory.
pub fn relative_dir(namespace: &str, name: &str) -> PathBuf {
    // Namespace and name are DNS labels/subdomains: no separators, no `..`.
    Path::new(namespace).join(name)
}

/// The connector's directory under `data_dir`.
pub fn connector_dir(data_dir: &Path, namespace: &str, name: &str) -> PathBuf {
    data_dir.join(relative_dir(namespace, name))
}

/// The file of sync `sync_id`, relative to the data directory.
pub fn relative_file(namespace: &str, name: &str, sync_id: &str) -> PathBuf {
    relative_dir(namespace, name).join(format!("{sync_id}.{EXTENSION}"))
}

/// Creates the directory and removes what a killed sync left in it. Call it only while
/// no sync of this connector runs.
pub fn prepare(dir: &Path) -> Result<u64, SnapshotDirError> {
    fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    Ok(c1z::remove_leftovers(dir)?)
}

/// The snapshot files in `dir`.
fn list(dir: &Path) -> Result<Vec<PathBuf>, SnapshotDirError> {
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let entry = entry.map_err(io_error("list", dir))?;
        let path = entry.path();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && path.extension().is_some_and(|e| e == EXTENSION) {
            snapshots.push(path);
        }
    }
    Ok(snapshots)
}

/// Keeps `newest` (the snapshot just written) and the most recent others up to `keep`
/// in all, removes the rest; returns how many went. Sync ids (KSUIDs) order by the
/// second only, so two syncs within one second would sort at random by name: age is
/// judged by modification time first.
pub fn prune(dir: &Path, keep: usize, newest: &Path) -> Result<usize, SnapshotDirError> {
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
    for path in list(dir)? {
        if path != newest {
            let modified = fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(io_error("inspect", &path))?;
            others.push((modified, path));
        }
    }
    others.sort();
    let excess = others.len().saturating_sub(keep.max(1) - 1);
    for (_, old) in &others[..excess] {
        fs::remove_file(old).map_err(io_error("remove", old))?;
    }
    Ok(excess)
}

/// Removes the connector's directory and everything in it; a missing directory is fine
/// (cleanup runs again after a crash or a retried finalizer).
pub fn remove(dir: &Path) -> Result<(), SnapshotDirError> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error("remove", dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_prune_and_remove() {
        let data = tempfile::tempdir().unwrap();
        let dir = connector_dir(data.path(), "identity", "acme");
        assert_eq!(
            relative_file("identity", "acme", "2C7Z"),
            PathBuf::from("identity/acme/2C7Z.c1z")
        );
        assert_eq!(prepare(&dir).unwrap(), 0);
        for id in ["2A", "2C", "2B", "2D"] {
            fs::write(dir.join(format!("{id}.c1z")), id).unwrap();
        }
        fs::write(dir.join("notes.txt"), "x").unwrap();
        fs::write(dir.join("2E.c1z.tmp"), "x").unwrap();
        fs::create_dir(dir.join(".c1z-work-1")).unwrap();
        assert_eq!(prepare(&dir).unwrap(), 2);
        // Same-second sync ids sort at random: "2A" is the newest here by time.
        let touch = |id: &str, secs: u64| {
            let file = fs::File::options()
                .write(true)
                .open(dir.join(format!("{id}.c1z")))
                .unwrap();
            file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap();
        };
        touch("2B", 100);
        touch("2C", 200);
        touch("2D", 300);
        touch("2A", 400);
        assert_eq!(prune(&dir, 2, &dir.join("2A.c1z")).unwrap(), 2);
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["2A.c1z", "2D.c1z", "notes.txt"]);
        remove(&dir).unwrap();
        assert!(!dir.exists());
        remove(&dir).unwrap();
    }
}
