//! The error type of the review layer.

use std::path::PathBuf;

use crate::c1z::C1zError;

/// Why a diff or report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// A snapshot could not be opened (missing, not a c1z file, corrupt).
    #[error("cannot read snapshot {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: C1zError,
    },
    /// Reading rows from an opened snapshot failed.
    #[error("reading snapshot: {0}")]
    Read(#[from] C1zError),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Write(#[from] std::io::Error),
    /// Writing CSV failed.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// Encoding JSON failed.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
}
