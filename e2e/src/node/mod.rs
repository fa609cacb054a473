//! Simulated Kubernetes nodes: a Node object kept Ready by heartbeats and a pod runner that
//! runs our real binaries as local processes.
//!
//! There is no kubelet, container runtime or CNI on the test machines, so each [`SimNode`]
//! plays the kubelet's part against a real API server: it registers the Node, renews its
//! Lease, runs the pods bound to it (our images as real processes in a private mount
//! namespace with their volumes bind-mounted; any other image as an idle placeholder) and
//! reports real pod status. The node's client uses admin credentials rather than a
//! `system:node:<name>` identity: the Node authorizer and NodeRestriction admission are not
//! what the test bed is testing, and admin credentials keep the setup to one kubeconfig.
//!
//! Networking: there is no pod network. A pod's `podIP` and `hostIP` are both the node's
//! loopback IP (`127.x.y.z`), whether or not the pod asks for `hostNetwork`; Services do not
//! route. DR-Syncer components talk to node IPs directly. All nodes share one machine, so a
//! server in a pod must bind its pod IP (downward API `status.podIP`), not `0.0.0.0`, or the
//! same port on two nodes collides.
//!
//! What is real and what is simulated (details in each module):
//! - Real: the API objects and their lifecycle (Node, Lease, pod status through the status
//!   subresource, TokenRequest bound to the pod, deletion with grace 0 after the containers
//!   stopped), our binaries as processes with the pod's command/args/env, every supported
//!   volume at its mountPath (read-only where asked), termination messages, restarts per
//!   `restartPolicy`, SIGTERM then SIGKILL after the grace period, tcpSocket and httpGet
//!   readiness and liveness probes (failing liveness kills and restarts the container), Secret/ConfigMap updates reaching running pods (resync every 5 s, in place),
//!   init containers in order and native sidecars (`restartPolicy: Always` init
//!   containers), `activeDeadlineSeconds`.
//! - Simulated or absent: no container runtime (processes run as root, no PID/user
//!   namespace, no cgroups, `securityContext` and resources ignored); the pod root is one
//!   directory per pod (containers of a pod share its unmounted parts and `/tmp`; `/etc` is a
//!   per-run overlay); other images run as placeholders (always Ready; placeholder init
//!   containers complete at once); exec/grpc probes pass while running, startup probes
//!   are ignored; restart back-off is 1 s doubling to 60 s;
//!   mount propagation is private on these hosts, so `HostToContainer` sees files and
//!   directories under the node root (the same directory) but not later host mounts; there
//!   is no kubelet API (`kubectl logs/exec/port-forward`): logs are files, see
//!   [`pod_log_dir`]. Unsupported volume types leave the container waiting with
//!   `CreateContainerConfigError` and a message saying so.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::fsio::PathIoError;

mod ctx;
pub mod env;
mod heartbeat;
pub mod image;
mod launch;
mod pod;
mod probe;
pub mod process;
mod rootcopy;
mod runner;
pub mod sandbox;
mod slot;
mod sources;
pub mod status;
pub mod unpacked;
pub mod volumes;

/// Where a pod's container logs are kept on its node, as
/// `<state_dir>/logs/<namespace>_<name>_<uid>/<container>/{current,previous}.log` (the
/// kubelet's `/var/log/pods` layout). There is no kubelet API, so `kubectl logs` does not
/// work; read these files instead. They survive the pod's deletion for post-mortems.
pub fn pod_log_dir(state_dir: &Path, pod: &k8s_openapi::api::core::v1::Pod) -> PathBuf {
    let meta = &pod.metadata;
    let part = |v: &Option<String>| v.clone().unwrap_or_default();
    let dir = format!(
        "{}_{}_{}",
        part(&meta.namespace),
        part(&meta.name),
        part(&meta.uid)
    );
    state_dir.join("logs").join(dir)
}

/// Everything a simulated node needs to know about itself and its cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Node object name, e.g. `source-node-1`; also the `kubernetes.io/hostname` label.
    pub name: String,
    /// Unique loopback InternalIP, e.g. `127.0.10.1`; also every pod's podIP and hostIP.
    pub ip: Ipv4Addr,
    /// This node's filesystem root: hostPath volumes and provisioned PVs live under it
    /// (a hostPath `/var/lib/x` is `<root>/var/lib/x` on the machine).
    pub root: PathBuf,
    /// Per-pod scratch directories, container logs and assembled pod roots.
    pub state_dir: PathBuf,
    /// Address in-cluster clients must use for the API server (KUBERNETES_SERVICE_HOST).
    pub api_host: String,
    /// Port in-cluster clients must use for the API server (KUBERNETES_SERVICE_PORT).
    pub api_port: u16,
    /// Which image repositories are ours, and the binary each one runs.
    pub images: OurImages,
    /// Extra Node labels (on top of `kubernetes.io/hostname` and `kubernetes.io/os`).
    pub labels: BTreeMap<String, String>,
}

/// Map from our image repository names to the local binaries that stand in for them.
///
/// A pod whose image repository (registry and tag/digest stripped) is in this map runs the
/// binary for real; any other image runs as an idle placeholder.
#[derive(Clone, Debug, Default)]
pub struct OurImages {
    map: BTreeMap<String, PathBuf>,
    /// Repositories run from their unpacked OCI archives instead (image mode).
    unpacked: BTreeMap<String, unpacked::UnpackedImage>,
}

/// The image repositories of DR-Syncer's own binaries, which share the binary's name.
pub const OUR_BINARIES: [&str; 3] = [
    "dr-syncer-controller",
    "dr-syncer-agent",
    "dr-syncer-rsync-worker",
];

impl OurImages {
    /// An empty map: every image runs as a placeholder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps our three binaries (see [`OUR_BINARIES`]) to the same-named files in `bin_dir`
    /// (a cargo target dir such as `target/debug`), so the test bed runs what was just built.
    pub fn from_bin_dir(bin_dir: &Path) -> Self {
        let mut images = Self::new();
        for name in OUR_BINARIES {
            images.insert(name, bin_dir.join(name));
        }
        images
    }

    /// Maps one image repository (e.g. `dr-syncer-e2e-probe`) to a binary.
    pub fn insert(&mut self, repository: impl Into<String>, binary: impl Into<PathBuf>) {
        self.map.insert(repository.into(), binary.into());
    }

    /// Runs `repository` from its unpacked image instead of a host binary (and forgets
    /// any binary mapped to it, so nothing can run the host binary by mistake).
    pub fn insert_unpacked(
        &mut self,
        repository: impl Into<String>,
        image: unpacked::UnpackedImage,
    ) {
        let repository = repository.into();
        self.map.remove(&repository);
        self.unpacked.insert(repository, image);
    }

    /// The unpacked image for a repository run in image mode.
    pub fn unpacked_for(&self, repository: &str) -> Option<&unpacked::UnpackedImage> {
        self.unpacked.get(repository)
    }

    /// The binary for an image repository, if the repository is ours.
    pub fn binary_for(&self, repository: &str) -> Option<&Path> {
        self.map.get(repository).map(PathBuf::as_path)
    }

    /// All (repository, binary) pairs, for command resolution by binary basename.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_path()))
    }
}

/// Why a simulated node could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A call to the API server failed.
    #[error("API request for node {node} failed: {source}")]
    Api {
        /// The node making the call.
        node: String,
        /// The underlying client error.
        #[source]
        source: kube::Error,
    },
    /// A local filesystem operation (state dir, node root) failed.
    #[error(transparent)]
    Io(#[from] PathIoError),
    /// Some pods could not be stopped or their mounts could not be removed on shutdown.
    #[error("node {node} shutdown left work behind: {details}")]
    Shutdown {
        /// The node shutting down.
        node: String,
        /// What was left behind.
        details: String,
    },
}

/// A running simulated node. Dropping it without [`SimNode::shutdown`] leaves its tasks and
/// pod processes running until the runtime ends; always call `shutdown`.
pub struct SimNode {
    name: String,
    heartbeat: tokio::task::JoinHandle<()>,
    runner: tokio::task::JoinHandle<Vec<String>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl SimNode {
    /// Registers the Node, keeps it Ready (Lease + status heartbeats), runs the pods bound to it.
    pub async fn start(client: kube::Client, cfg: NodeConfig) -> Result<SimNode, NodeError> {
        for dir in [&cfg.root, &cfg.state_dir] {
            std::fs::create_dir_all(dir).map_err(PathIoError::at("create", dir.clone()))?;
        }
        let heartbeat = heartbeat::start(client.clone(), &cfg).await?;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let ctx = std::sync::Arc::new(ctx::NodeCtx {
            client,
            api: env::ApiEndpoint {
                host: cfg.api_host.clone(),
                port: cfg.api_port,
            },
            cfg: cfg.clone(),
        });
        let runner = tokio::spawn(runner::run(ctx, shutdown_rx));
        Ok(SimNode {
            name: cfg.name,
            heartbeat,
            runner,
            shutdown,
        })
    }

    /// The Node object name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Stops all pods (SIGTERM, then SIGKILL after grace), unmounts everything it mounted.
    ///
    /// Heartbeats stop first, so the node goes NotReady in the API as a dead kubelet would.
    /// Mounts need no separate cleanup: they exist only in the containers' private mount
    /// namespaces and vanish with the processes.
    pub async fn shutdown(self) -> Result<(), NodeError> {
        self.heartbeat.abort();
        self.shutdown.send_replace(true);
        let stuck = match self.runner.await {
            Ok(stuck) => stuck,
            Err(e) => vec![format!("pod runner task failed: {e}")],
        };
        if stuck.is_empty() {
            Ok(())
        } else {
            Err(NodeError::Shutdown {
                node: self.name,
                details: format!("pods not stopped in time: {}", stuck.join(", ")),
            })
        }
    }
}
