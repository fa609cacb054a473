//! The supervisor's state file (`DIR/state.json`): how `up`, `status`, `down` and the Rust API
//! learn the supervisor's pid, how far start-up got, and where each cluster is.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the supervisor is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Starting control planes and nodes.
    Starting,
    /// Every node Ready, every namespace has its default service account.
    Ready,
    /// Start-up failed (see `error`); the supervisor is cleaning up and exiting.
    Failed,
    /// Shutting down on request.
    Stopping,
    /// Everything it started is stopped; the supervisor exits right after writing this.
    Stopped,
}

/// One simulated node.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeState {
    /// Node object name.
    pub name: String,
    /// Its loopback InternalIP.
    pub ip: Ipv4Addr,
    /// Its filesystem root on this machine.
    pub root: PathBuf,
}

/// One cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterState {
    /// Cluster name.
    pub name: String,
    /// API server URL.
    pub server: String,
    /// Admin kubeconfig path.
    pub kubeconfig: PathBuf,
    /// Its nodes.
    pub nodes: Vec<NodeState>,
}

/// The whole state file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    /// The supervisor's pid (also its session id: every process it starts shares it).
    pub pid: u32,
    /// Where it is.
    pub phase: Phase,
    /// Why start-up failed, if it did.
    pub error: Option<String>,
    /// The clusters (filled once they are up).
    pub clusters: Vec<ClusterState>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O on the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The state file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON for [`State`].
    #[error("{path}: {source}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl State {
    /// Reads the state file; `Ok(None)` if it does not exist.
    pub fn read(path: &Path) -> Result<Option<State>, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StateError::Parse {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Writes the state file atomically (temp file + rename), so readers never see half.
    pub fn write(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(State::read(&path).unwrap().is_none());
        let state = State {
            pid: 42,
            phase: Phase::Ready,
            error: None,
            clusters: vec![ClusterState {
                name: "source".into(),
                server: "https://127.0.0.1:20000".into(),
                kubeconfig: dir.path().join("source.kubeconfig"),
                nodes: vec![NodeState {
                    name: "source-node-1".into(),
                    ip: Ipv4Addr::new(127, 10, 1, 1),
                    root: dir.path().join("root"),
                }],
            }],
        };
        state.write(&path).unwrap();
        let read = State::read(&path).unwrap().unwrap();
        assert_eq!(read.phase, Phase::Ready);
        assert_eq!(read.clusters[0].nodes[0].ip, Ipv4Addr::new(127, 10, 1, 1));
        assert!(!path.with_extension("json.tmp").exists());
    }
}
