//! Where everything of one test bed lives under its directory, in one place so the supervisor,
//! `up`, `status`, `down` and the Rust API agree.
//!
//! ```text
//! DIR/state.json            supervisor pid, phase, clusters (written by the supervisor)
//! DIR/env                   shell exports: KUBECONFIG_<CLUSTER>, TESTBED_BIN_DIR, PATH
//! DIR/<cluster>.kubeconfig  admin kubeconfig per cluster
//! DIR/logs/                 supervisor.log, <cluster>-<component>.log (kept by `down`)
//! DIR/clusters/<cluster>/   pki/, etcd/, component kubeconfigs, nodes/<node>/{root,state}
//! ```

use std::path::{Path, PathBuf};

/// Paths of one test bed directory.
#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Wraps an (absolute) test bed directory.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The test bed directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The supervisor's state file.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The shell exports file.
    pub fn env_file(&self) -> PathBuf {
        self.dir.join("env")
    }

    /// Log directory (survives `down`, for post-mortems).
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The supervisor's own log (its stdout and stderr).
    pub fn supervisor_log(&self) -> PathBuf {
        self.logs().join("supervisor.log")
    }

    /// Log file of one component of one cluster.
    pub fn component_log(&self, cluster: &str, component: &str) -> PathBuf {
        self.logs().join(format!("{cluster}-{component}.log"))
    }

    /// The admin kubeconfig of a cluster.
    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("{cluster}.kubeconfig"))
    }

    /// Parent of all per-cluster state (removed by `down`).
    pub fn clusters(&self) -> PathBuf {
        self.dir.join("clusters")
    }

    /// Per-cluster state directory.
    pub fn cluster(&self, cluster: &str) -> PathBuf {
        self.clusters().join(cluster)
    }

    /// A simulated node's filesystem root.
    pub fn node_root(&self, cluster: &str, node: &str) -> PathBuf {
        self.cluster(cluster).join("nodes").join(node).join("root")
    }

    /// A simulated node's scratch directory (pod dirs, container logs).
    pub fn node_state(&self, cluster: &str, node: &str) -> PathBuf {
        self.cluster(cluster).join("nodes").join(node).join("state")
    }
}
