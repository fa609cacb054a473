//! What every pod worker of a node shares: its own module so that the pod worker and the
//! launch planning (which both read it) do not depend on each other for it.

use super::NodeConfig;
use super::env::ApiEndpoint;

/// What every pod worker of a node shares.
pub(crate) struct NodeCtx {
    /// Admin client of the node's cluster.
    pub client: kube::Client,
    /// The node's configuration.
    pub cfg: NodeConfig,
    /// API server address for in-cluster clients.
    pub api: ApiEndpoint,
}
