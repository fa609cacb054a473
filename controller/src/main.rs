//! `dr-syncer-controller`: the central controller binary.

use std::process::ExitCode;

use clap::{ArgAction, Parser};
use dr_syncer_controller::dataplane::{self, DataPlaneConfig, PodImage};
use dr_syncer_controller::leader::LeaderConfig;
use dr_syncer_controller::run::{RunConfig, run};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Replicates Kubernetes namespaces, and the data in their PersistentVolumeClaims, from a
/// source cluster to a disaster-recovery target cluster, as described by NamespaceMapping,
/// ClusterMapping and RemoteCluster objects (dr-syncer.io/v1alpha1).
#[derive(Debug, Parser)]
#[command(name = "dr-syncer-controller", version, about, long_about = None)]
struct Cli {
    /// Address for Prometheus metrics (/metrics) and health probes (/healthz, /readyz).
    #[arg(long, env = "DR_SYNCER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Take a Lease before reconciling, so only one replica writes at a time
    /// (`--leader-elect=false` to turn off).
    #[arg(long, env = "DR_SYNCER_LEADER_ELECT", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    leader_elect: bool,
    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// The controller's own namespace: refused as a mapping's destination (with
    /// kube-system, kube-public, kube-node-lease and the agents' namespace) unless the
    /// mapping sets `safety.allowProtectedNamespace`. Default: the pod's namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    controller_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "DR_SYNCER_LEASE_NAME",
        default_value = "dr-syncer-controller"
    )]
    lease_name: String,
    /// This replica's identity in the Lease and in Events (default: pod name or hostname).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log format: `json` (structured, for log pipelines) or `text`.
    #[arg(long, env = "DR_SYNCER_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
    /// Agent image deployed into source clusters when `RemoteCluster.spec.pvcSync.image`
    /// does not name one.
    #[arg(long, env = "DR_SYNCER_AGENT_IMAGE", default_value = dataplane::DEFAULT_AGENT_IMAGE)]
    agent_image: String,
    /// Image of the rsync-worker pods the controller runs in target clusters.
    #[arg(long, env = "DR_SYNCER_RSYNC_WORKER_IMAGE", default_value = dataplane::DEFAULT_WORKER_IMAGE)]
    worker_image: String,
    /// `imagePullPolicy` of the agent DaemonSet (unless the RemoteCluster sets one).
    #[arg(long, env = "DR_SYNCER_AGENT_PULL_POLICY", value_parser = dataplane::PULL_POLICIES)]
    agent_pull_policy: Option<String>,
    /// `imagePullPolicy` of the rsync-worker and connectivity-check pods.
    #[arg(long, env = "DR_SYNCER_RSYNC_WORKER_PULL_POLICY", value_parser = dataplane::PULL_POLICIES)]
    worker_pull_policy: Option<String>,
    /// Comma-separated names of registry Secrets put in `imagePullSecrets` of every pod the
    /// controller creates in remote clusters; each must exist in that pod's namespace.
    #[arg(long, env = "DR_SYNCER_IMAGE_PULL_SECRETS", value_delimiter = ',', value_parser = dataplane::pull_secret_name)]
    image_pull_secrets: Vec<String>,
    /// Most PVC copies running at once over all mappings.
    #[arg(long, env = "DR_SYNCER_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.init();
    }
}

fn identity(cli: &Cli) -> String {
    let base = cli.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "dr-syncer-controller".to_owned())
    });
    // A random suffix keeps two processes with the same pod name (restarts) apart.
    format!("{base}_{:08x}", rand_suffix())
}

fn rand_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    nanos ^ std::process::id().rotate_left(16)
}

/// Cancels `token` on SIGTERM or SIGINT.
fn shutdown_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
        }
        token.cancel();
    });
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_format);
    let identity = identity(&cli);
    let config = RunConfig {
        metrics_addr: cli.metrics_addr,
        leader: cli.leader_elect.then(|| {
            LeaderConfig::new(
                cli.lease_namespace.clone(),
                cli.lease_name.clone(),
                identity.clone(),
            )
        }),
        identity,
        controller_namespace: cli.controller_namespace.clone(),
        dataplane: DataPlaneConfig {
            agent: PodImage {
                reference: cli.agent_image.clone(),
                pull_policy: cli.agent_pull_policy.clone(),
                pull_secrets: cli.image_pull_secrets.clone(),
            },
            worker: PodImage {
                reference: cli.worker_image.clone(),
                pull_policy: cli.worker_pull_policy.clone(),
                pull_secrets: cli.image_pull_secrets.clone(),
            },
            global_concurrency: usize::from(cli.concurrency),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        shutdown_on_signals(shutdown.clone());
        match run(config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "controller failed");
                ExitCode::FAILURE
            }
        }
    })
}
