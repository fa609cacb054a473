//! A local filesystem operation that failed on a path, the one I/O error shape the simulated
//! nodes and the storage provisioner share.

use std::path::PathBuf;

/// What was being done on which path when the filesystem refused (create, chmod, remove):
/// the node's state dirs and the provisioner's volume dirs fail the same way.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct PathIoError {
    /// What was being done.
    pub what: &'static str,
    /// The path involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

impl PathIoError {
    /// An error mapper for `map_err`: `what` on `path` failed.
    pub fn at(what: &'static str, path: PathBuf) -> impl FnOnce(std::io::Error) -> PathIoError {
        move |source| PathIoError { what, path, source }
    }
}
