//! Test-bed storage: the `standard` and `fast` StorageClasses and a small hostPath
//! provisioner serving both, like local-path-provisioner in kind and k3s.
//!
//! Path convention: a provisioned PV's `hostPath.path` is the path AS SEEN ON THE NODE, e.g.
//! `/var/lib/testbed-storage/pvc-<uid>`; on the machine it lives under that node's root
//! (`<root>/var/lib/testbed-storage/pvc-<uid>`). The pod runner maps it under the node root
//! when mounting, and the DR-Syncer agent (node root mounted at `/host`) resolves it as
//! `/host` + `hostPath.path`, so everyone agrees on one path.

use std::path::PathBuf;

use k8s_openapi::api::storage::v1::StorageClass;

/// The provisioner name our StorageClasses name and our provisioner serves.
pub const PROVISIONER: &str = "dr-syncer.io/testbed-hostpath";

/// Where provisioned volumes live, as seen on the node (under the node root on the machine).
pub const STORAGE_DIR: &str = "/var/lib/testbed-storage";

/// Why the provisioner could not start.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A call to the API server failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A local filesystem operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// StorageClass objects `standard` (default) and `fast`, WaitForFirstConsumer.
pub fn storage_classes() -> Vec<StorageClass> {
    Vec::new()
}

/// Runs the hostPath provisioner until the returned handle is dropped/aborted.
pub async fn start_provisioner(
    client: kube::Client,
    nodes: Vec<(String, PathBuf)>,
) -> Result<tokio::task::JoinHandle<()>, StorageError> {
    let _ = (client, nodes);
    Ok(tokio::spawn(async {}))
}
