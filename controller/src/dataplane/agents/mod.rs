//! The agent DaemonSet in a source cluster: Namespace, ServiceAccount, least-privilege
//! ClusterRole and binding, the SSH Secret (host private key + authorized client keys) and
//! the DaemonSet itself, all by server-side apply (field manager `dr-syncer`), and the
//! `RemoteCluster.status.pvcSync` read back from the DaemonSet and its pods.
//!
//! The pod template carries the SHA-256 of the Secret data (`dr-syncer.io/keys-hash`), so a
//! key change rolls the agents; [`prepare`] waits until the roll is done before handing
//! credentials to a worker, so the worker never meets an agent with stale keys.//!
//! - [`render`]: the objects, as values (pure).
//! - [`deploy`]: applying them, removing them, waiting for a roll, handing out credentials.
//! - [`status`]: `status.pvcSync` and the agent pods by node, read back from the cluster.

pub mod deploy;
pub mod render;
pub mod status;

use std::time::Duration;

use super::keys::KeyError;
use crate::status::reasons;

pub use deploy::{AgentSite, ensure_deployed, prepare, prepare_with_timeout, remove, wait_ready};
pub use render::{Rendered, agent_image, agent_port, render, render_secret};
pub use status::{agents_by_node, status, status_from};

/// Namespace of the agents in a source cluster.
pub const AGENT_NAMESPACE: &str = "dr-syncer-agent";

/// Name of the ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet.
pub const AGENT_NAME: &str = "dr-syncer-agent";

/// Label selector of agent pods.
pub const AGENT_SELECTOR: &str =
    "app.kubernetes.io/name=dr-syncer-agent,app.kubernetes.io/managed-by=dr-syncer";

/// The agent Secret (host private key + authorized_keys) in [`AGENT_NAMESPACE`].
pub const AGENT_SECRET: &str = "dr-syncer-agent-ssh";

/// Key of the authorized client public keys in the agent Secret.
pub const AUTHORIZED_KEYS: &str = "authorized_keys";

/// Pod annotation: SHA-256 of the agent Secret data, so key changes roll the agents.
pub const KEYS_HASH_ANNOTATION: &str = "dr-syncer.io/keys-hash";

/// Where the agent Secret is mounted in the agent container.
pub const SSH_MOUNT: &str = "/etc/dr-syncer/ssh";

/// Where the node's `/` is mounted (read-only) in the agent container.
pub const HOST_ROOT: &str = "/host";

/// Default agent SSH port.
pub const DEFAULT_PORT: i32 = 2222;

/// Default wait for the agents to be Ready in [`prepare`].
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) const NAME_LABEL: &str = "app.kubernetes.io/name";

/// Why agents could not be prepared. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The source RemoteCluster does not have `pvcSync.enabled`.
    #[error(
        "RemoteCluster {0} does not have spec.pvcSync.enabled: true; enable it to sync PVC data from it"
    )]
    Disabled(String),
    /// A key Secret is missing or unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The DaemonSet did not become Ready (on the current keys) in time.
    #[error("agents not ready after {}s: {detail}", waited.as_secs())]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// Which nodes are not ready, and why.
        detail: String,
    },
    /// A call to the source cluster failed.
    #[error("source cluster API: {0}")]
    Kube(#[from] kube::Error),
}

impl AgentError {
    /// The condition reason a NamespaceMapping / ClusterMapping reports for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Disabled(_) => reasons::PVC_SYNC_DISABLED,
            Self::Keys(e) if e.is_missing_secret() => reasons::KEY_SECRET_MISSING,
            Self::Keys(_) => reasons::DATA_SYNC_FAILED,
            Self::NotReady { .. } => reasons::AGENTS_NOT_READY,
            Self::Kube(_) => reasons::AGENTS_NOT_READY,
        }
    }
}

/// One agent pod, as `locate` needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentPod {
    /// Pod name.
    pub pod: String,
    /// Node it runs on.
    pub node: String,
    /// The node IP the agent listens on (`status.hostIP`).
    pub host_ip: Option<String>,
    /// The pod is Ready (its SSH port accepts connections).
    pub ready: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    #[test]
    fn error_reasons() {
        assert_eq!(
            AgentError::Disabled("dr/x".into()).reason(),
            reasons::PVC_SYNC_DISABLED
        );
        let missing = AgentError::Keys(KeyError::SecretMissing {
            secret: "dr/k".into(),
            field: "spec.sshKeySecretRef".into(),
        });
        assert_eq!(missing.reason(), reasons::KEY_SECRET_MISSING);
        assert!(missing.to_string().contains("dr/k"));
        let slow = AgentError::NotReady {
            waited: Duration::from_secs(5),
            detail: "x".into(),
        };
        assert_eq!(slow.reason(), reasons::AGENTS_NOT_READY);
    }
}
