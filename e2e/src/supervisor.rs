//! The supervisor (`testbed run`): the one long-lived process of a test bed. It owns every
//! control-plane process (children that die with it), runs the simulated nodes and storage
//! provisioners in-process, publishes its progress in `DIR/state.json`, and on SIGTERM,
//! SIGINT, the owner process exiting, or a control-plane component dying, stops everything,
//! unmounts and removes the state (logs stay).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use futures::future::{select_all, try_join_all};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{Patch, PatchParams};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;

use crate::alloc::{AllocError, IpSlot};
use crate::cleanup;
use crate::cluster::{Binaries, ClusterError, ControlPlane};
use crate::kubeconfig::{self, ClientError};
use crate::layout::Layout;
use crate::node::{NodeConfig, NodeError, OurImages, SimNode};
use crate::readiness::{self, ReadinessError};
use crate::state::{ClusterState, NodeState, Phase, State, StateError};
use crate::storage::{self, StorageError};

/// How long nodes get to become Ready and service accounts to appear, once the API is up.
const CLUSTER_READY: Duration = Duration::from_secs(120);
/// Field manager for what the test bed itself applies.
const FIELD_MANAGER: &str = "testbed";
/// Image repository that runs the `testbed probe` subcommand (in-cluster client checks).
pub const PROBE_IMAGE: &str = "dr-syncer-e2e-probe";

/// What to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The test bed directory.
    pub layout: Layout,
    /// Cluster names, e.g. `controller`, `source`, `target`.
    pub clusters: Vec<String>,
    /// Simulated nodes per cluster.
    pub nodes: usize,
    /// Control-plane executables.
    pub controlplane: Binaries,
    /// Where our binaries (`dr-syncer-controller`, ...) are.
    pub bin_dir: PathBuf,
    /// The `testbed` executable itself (runs pods of [`PROBE_IMAGE`]).
    pub probe_bin: PathBuf,
    /// Run our three images from the OCI archives in this directory (`make images`)
    /// instead of the binaries in `bin_dir`: the chart test proves the published artifacts.
    pub image_dir: Option<PathBuf>,
    /// Shut down when this process exits (tests sharing one bed per test binary).
    pub owner_pid: Option<u32>,
}

/// Why the supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// Node IP slot allocation failed.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// A control plane failed to start.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// An admin client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A simulated node failed to start.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The storage provisioner failed to start.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Applying a test bed object failed.
    #[error("applying {what}: {source}")]
    Apply {
        /// What was applied.
        what: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Waiting for readiness failed.
    #[error("cluster {cluster}: {source}")]
    NotReady {
        /// The cluster.
        cluster: String,
        /// What was not ready.
        #[source]
        source: ReadinessError,
    },
    /// The state file could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// An image archive (image mode) could not be found or unpacked.
    #[error("preparing our images: {0}")]
    Images(#[from] crate::node::unpacked::UnpackError),
    /// Signal handlers could not be installed.
    #[error("installing signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// Start-up was interrupted by a signal.
    #[error("interrupted during start-up")]
    Interrupted,
    /// Writing the env file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// One cluster as the supervisor runs it; filled in as start-up progresses so a partial
/// start can be stopped just as cleanly as a full one.
struct ClusterRun {
    name: String,
    index: usize,
    control_plane: Option<ControlPlane>,
    provisioner: Option<JoinHandle<()>>,
    nodes: Vec<SimNode>,
    node_states: Vec<NodeState>,
}

/// Runs a test bed until asked to stop. Returns an error if start-up failed (after cleaning
/// up whatever had started).
pub async fn run(opts: RunOptions) -> Result<(), SupervisorError> {
    let layout = &opts.layout;
    let mut state = State {
        pid: std::process::id(),
        phase: Phase::Starting,
        error: None,
        clusters: Vec::new(),
    };
    state.write(&layout.state_file())?;
    let mut term = signal(SignalKind::terminate()).map_err(SupervisorError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(SupervisorError::Signals)?;
    let images = our_images(&opts)?;
    let slot = IpSlot::claim()?;
    tracing::info!(slot = slot.octet(), clusters = ?opts.clusters, nodes = opts.nodes, "starting");
    let mut runs: Vec<ClusterRun> = opts
        .clusters
        .iter()
        .enumerate()
        .map(|(index, name)| ClusterRun {
            name: name.clone(),
            index,
            control_plane: None,
            provisioner: None,
            nodes: Vec::new(),
            node_states: Vec::new(),
        })
        .collect();

    let started = tokio::select! {
        r = try_join_all(runs.iter_mut().map(|r| r.start(&opts, &slot, &images))) => r.map(|_| ()),
        _ = term.recv() => Err(SupervisorError::Interrupted),
        _ = int.recv() => Err(SupervisorError::Interrupted),
    };
    if let Err(e) = started {
        tracing::error!(error = %e, "start-up failed");
        state.phase = Phase::Failed;
        state.error = Some(e.to_string());
        state.write(&layout.state_file())?;
        shutdown(layout, runs).await;
        return Err(e);
    }

    state.clusters = runs.iter().map(ClusterRun::state).collect();
    write_env(&opts, &state)?;
    state.phase = Phase::Ready;
    state.write(&layout.state_file())?;
    tracing::info!("ready");

    let reason = wait_for_stop(&mut runs, &mut term, &mut int, opts.owner_pid).await;
    tracing::info!(%reason, "stopping");
    state.phase = Phase::Stopping;
    state.write(&layout.state_file())?;
    shutdown(layout, runs).await;
    state.phase = Phase::Stopped;
    state.write(&layout.state_file())?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves with the reason to stop: a signal, the owner exiting, or a component dying.
async fn wait_for_stop(
    runs: &mut [ClusterRun],
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
    owner: Option<u32>,
) -> String {
    let owner_gone = async {
        match owner {
            Some(pid) => {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                while crate::process::alive(pid) {
                    tick.tick().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let components: Vec<_> = runs
        .iter_mut()
        .filter_map(|r| r.control_plane.as_mut())
        .flat_map(|cp| cp.components.iter_mut())
        .map(|c| {
            Box::pin(async move {
                let status = c.exited().await;
                format!("{} exited ({status:?}); see {}", c.name, c.log.display())
            })
        })
        .collect();
    let component_died = async {
        if components.is_empty() {
            std::future::pending::<String>().await
        } else {
            select_all(components).await.0
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM".to_string(),
        _ = int.recv() => "SIGINT".to_string(),
        _ = owner_gone => format!("owner process {owner:?} exited"),
        died = component_died => died,
    }
}

impl ClusterRun {
    async fn start(
        &mut self,
        opts: &RunOptions,
        slot: &IpSlot,
        images: &OurImages,
    ) -> Result<(), SupervisorError> {
        let layout = &opts.layout;
        tracing::info!(cluster = %self.name, "starting control plane");
        let cp =
            ControlPlane::start(layout, &self.name, (slot, self.index), &opts.controlplane).await?;
        let (server, api_port, kubeconfig) =
            (cp.server(), cp.ports.apiserver, cp.kubeconfig.clone());
        self.control_plane = Some(cp);
        tracing::info!(cluster = %self.name, %server, "API server ready");
        let client = kubeconfig::client(&kubeconfig).await?;
        apply_storage_classes(&client).await?;

        let configs: Vec<NodeConfig> = (0..opts.nodes)
            .map(|n| {
                let name = format!("{}-node-{}", self.name, n + 1);
                NodeConfig {
                    ip: slot.node_ip(self.index, n),
                    root: layout.node_root(&self.name, &name),
                    state_dir: layout.node_state(&self.name, &name),
                    api_host: "127.0.0.1".to_string(),
                    api_port,
                    images: images.clone(),
                    labels: BTreeMap::from([(
                        "testbed.dr-syncer.io/cluster".to_string(),
                        self.name.clone(),
                    )]),
                    name,
                }
            })
            .collect();
        for cfg in &configs {
            for dir in [&cfg.root, &cfg.state_dir] {
                std::fs::create_dir_all(dir).map_err(|source| SupervisorError::Io {
                    path: dir.clone(),
                    source,
                })?;
            }
        }
        let roots = configs
            .iter()
            .map(|c| (c.name.clone(), c.root.clone()))
            .collect();
        self.provisioner = Some(storage::start_provisioner(client.clone(), roots).await?);
        for cfg in configs {
            self.node_states.push(NodeState {
                name: cfg.name.clone(),
                ip: cfg.ip,
                root: cfg.root.clone(),
            });
            self.nodes.push(SimNode::start(client.clone(), cfg).await?);
        }
        let names: Vec<String> = self.node_states.iter().map(|n| n.name.clone()).collect();
        let not_ready = |source| SupervisorError::NotReady {
            cluster: self.name.clone(),
            source,
        };
        readiness::nodes(&client, &names, CLUSTER_READY)
            .await
            .map_err(not_ready)?;
        readiness::default_service_accounts(&client, CLUSTER_READY)
            .await
            .map_err(not_ready)?;
        tracing::info!(cluster = %self.name, nodes = ?names, "cluster ready");
        Ok(())
    }

    fn state(&self) -> ClusterState {
        let (server, kubeconfig) = match &self.control_plane {
            Some(cp) => (cp.server(), cp.kubeconfig.clone()),
            None => (String::new(), PathBuf::new()),
        };
        ClusterState {
            name: self.name.clone(),
            server,
            kubeconfig,
            nodes: self.node_states.clone(),
        }
    }

    async fn stop(self) {
        for node in self.nodes {
            let name = node.name().to_string();
            if let Err(e) = node.shutdown().await {
                tracing::warn!(node = %name, error = %e, "node shutdown incomplete");
            }
        }
        if let Some(p) = self.provisioner {
            p.abort();
        }
        if let Some(cp) = self.control_plane {
            cp.stop().await;
        }
    }
}

async fn apply_storage_classes(client: &kube::Client) -> Result<(), SupervisorError> {
    let api: Api<StorageClass> = Api::all(client.clone());
    for sc in storage::storage_classes() {
        let name = sc.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&sc),
        )
        .await
        .map_err(|source| SupervisorError::Apply {
            what: format!("StorageClass {name}"),
            source,
        })?;
    }
    Ok(())
}

/// Stops every cluster (nodes first, then the control plane), then removes the per-cluster
/// state unless something is still mounted under it (never delete through a bind mount).
async fn shutdown(layout: &Layout, runs: Vec<ClusterRun>) {
    futures::future::join_all(runs.into_iter().map(ClusterRun::stop)).await;
    let clusters = layout.clusters();
    let left = cleanup::unmount_all(layout.dir());
    if !left.is_empty() {
        tracing::error!(mounts = ?left, "mounts left, keeping {}", clusters.display());
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(&clusters)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "removing {}", clusters.display());
    }
}

/// Our binaries from `bin_dir` and the probe; in image mode our three images are unpacked
/// once into `DIR/images/` (reused when the same manifest is already there) and run from
/// there instead.
fn our_images(opts: &RunOptions) -> Result<OurImages, SupervisorError> {
    let mut images = OurImages::from_bin_dir(&opts.bin_dir);
    images.insert(PROBE_IMAGE, opts.probe_bin.clone());
    if let Some(dir) = &opts.image_dir {
        let dest = opts.layout.dir().join("images");
        for name in crate::node::OUR_BINARIES {
            let image = crate::node::unpacked::UnpackedImage::prepare(dir, name, &dest)?;
            tracing::info!(image = name, manifest = %image.manifest_digest, "running from its OCI archive");
            images.insert_unpacked(name, image);
        }
    }
    Ok(images)
}

/// Writes `DIR/env`: shell exports to use the test bed by hand (`. DIR/env; kubectl ...`).
fn write_env(opts: &RunOptions, state: &State) -> Result<(), SupervisorError> {
    let mut env = format!(
        "# Test bed {dir}: `. {dir}/env`\nexport TESTBED_DIR={dir}\nexport TESTBED_BIN_DIR={bin}\nexport PATH={cp}:$PATH\n",
        dir = opts.layout.dir().display(),
        bin = opts.bin_dir.display(),
        cp = opts.controlplane.dir().display(),
    );
    for c in &state.clusters {
        let var = c.name.to_uppercase().replace('-', "_");
        env.push_str(&format!(
            "export KUBECONFIG_{var}={}\n",
            c.kubeconfig.display()
        ));
    }
    if let Some(first) = state.clusters.first() {
        env.push_str(&format!(
            "export KUBECONFIG={}\n",
            first.kubeconfig.display()
        ));
    }
    let path = opts.layout.env_file();
    std::fs::write(&path, env).map_err(|source| SupervisorError::Io { path, source })
}
