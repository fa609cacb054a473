//! Images and limits of the data plane, from the controller's flags (the Helm chart sets
//! them from `values.yaml` through environment variables).

/// Default agent image when neither `RemoteCluster.spec.pvcSync.image` nor the controller's
/// `--agent-image` says otherwise.
pub const DEFAULT_AGENT_IMAGE: &str = "ghcr.io/dr-syncer/dr-syncer-agent:latest";

/// Default rsync-worker image.
pub const DEFAULT_WORKER_IMAGE: &str = "ghcr.io/dr-syncer/dr-syncer-rsync-worker:latest";

/// What the data plane needs to know about how the controller was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPlaneConfig {
    /// Agent image used when the RemoteCluster does not name one.
    pub agent_image: String,
    /// Image of the rsync-worker pods in target clusters.
    pub worker_image: String,
    /// Most PVC copies this controller runs at once, over all mappings (a per-cluster
    /// `pvcSync.globalConcurrencyLimit` can only lower it).
    pub global_concurrency: usize,
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            agent_image: DEFAULT_AGENT_IMAGE.to_owned(),
            worker_image: DEFAULT_WORKER_IMAGE.to_owned(),
            global_concurrency: 4,
        }
    }
}
