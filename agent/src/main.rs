//! `dr-syncer-agent`: the SSH server on every source node that serves volume data
//! read-only to rsync-workers in the target cluster.
//!
//! Public-key auth only (authorized keys from a mounted file), host key from a mounted
//! file, one subsystem speaking the data-plane protocol, nothing else: no shell, no exec,
//! no forwarding. The SSH policy lives in `dr_syncer_rsync::ssh::server`; this binary
//! reads flags, loads keys, starts the cluster caches that resolve `<namespace>/<pvc>`
//! volumes on this node (`dr_syncer_agent::resolve`), binds and handles signals.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use dr_syncer_agent::{ClusterResolver, ClusterStores, LayeredResolver, NodeContext};
use dr_syncer_rsync::ssh::{
    AgentServer, AuthorizedKeys, ProtocolService, ServerSettings, fingerprint, load_private_key,
};
use dr_syncer_rsync::{Limits, SUBSYSTEM_NAME, StaticVolumes};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;

/// Command line (every flag also readable from the environment, for the DaemonSet).
#[derive(Debug, Parser)]
#[command(
    name = "dr-syncer-agent",
    version,
    about = "DR-Syncer agent: SSH server serving volume data read-only to rsync-workers",
    long_about = "DR-Syncer agent: SSH server serving volume data read-only to rsync-workers.\n\n\
        A worker names a volume `<namespace>/<pvc>`. With --node-name the agent resolves it \
        on its own node through the Kubernetes API (in-cluster config, or KUBECONFIG): \
        PVC -> bound PV; hostPath/local PVs -> <host-root>/<path> when the PV's node \
        affinity selects this node or a pod on this node uses the claim; CSI -> \
        <host-root>/<kubelet-dir>/pods/<pod-uid>/volumes/kubernetes.io~csi/<pv>/mount of a \
        pod on this node using the claim; other plugins -> .../kubernetes.io~<plugin>/<pv>. \
        Volumes on other nodes are refused. --volume name=/dir serves fixed directories \
        (tests, local use); they are looked up first."
)]
struct Args {
    /// Address and port to listen on; --listen-ip and --port override its parts.
    #[arg(long, env = "DR_SYNCER_AGENT_LISTEN", default_value = "0.0.0.0:2222")]
    listen: SocketAddr,
    /// IP to listen on (the DaemonSet passes the node IP, `status.hostIP`).
    #[arg(long, env = "DR_SYNCER_AGENT_LISTEN_IP")]
    listen_ip: Option<IpAddr>,
    /// Port to listen on (`pvcSync.ssh.port`, default 2222).
    #[arg(long, env = "DR_SYNCER_AGENT_PORT")]
    port: Option<u16>,
    /// This node's name (`spec.nodeName`); enables resolving `<namespace>/<pvc>` volumes.
    #[arg(long, env = "DR_SYNCER_AGENT_NODE_NAME")]
    node_name: Option<String>,
    /// Where the node's `/` is mounted in the agent (read-only).
    #[arg(long, env = "DR_SYNCER_AGENT_HOST_ROOT", default_value = "/host")]
    host_root: PathBuf,
    /// The kubelet's root directory as seen on the node.
    #[arg(
        long,
        env = "DR_SYNCER_AGENT_KUBELET_DIR",
        default_value = "/var/lib/kubelet"
    )]
    kubelet_dir: PathBuf,
    /// Host key, OpenSSH private key format (unencrypted).
    #[arg(long, env = "DR_SYNCER_AGENT_HOST_KEY_FILE")]
    host_key_file: PathBuf,
    /// Client keys allowed to connect, OpenSSH authorized_keys format.
    #[arg(long, env = "DR_SYNCER_AGENT_AUTHORIZED_KEYS_FILE")]
    authorized_keys_file: PathBuf,
    /// A volume served by this agent, `name=/absolute/dir` (repeatable).
    #[arg(
        long = "volume",
        env = "DR_SYNCER_AGENT_VOLUMES",
        value_delimiter = ','
    )]
    volumes: Vec<String>,
    /// Most concurrent SSH connections.
    #[arg(long, env = "DR_SYNCER_AGENT_MAX_CONNECTIONS", default_value_t = 32)]
    max_connections: usize,
    /// Most concurrent channels (parallel streams) per connection.
    #[arg(long, env = "DR_SYNCER_AGENT_MAX_CHANNELS", default_value_t = 16)]
    max_channels: usize,
    /// Close a connection idle for this many seconds.
    #[arg(long, env = "DR_SYNCER_AGENT_IDLE_TIMEOUT", default_value_t = 300)]
    idle_timeout_secs: u64,
    /// On SIGTERM, let running transfers finish for this many seconds.
    #[arg(long, env = "DR_SYNCER_AGENT_SHUTDOWN_GRACE", default_value_t = 25)]
    shutdown_grace_secs: u64,
    /// Log format.
    #[arg(long, env = "DR_SYNCER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written: text for people, JSON for log pipelines.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,russh=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn volumes(specs: &[String]) -> anyhow::Result<StaticVolumes> {
    let mut volumes = StaticVolumes::default();
    for spec in specs {
        volumes.insert_spec(spec)?;
    }
    Ok(volumes)
}

fn settings(args: &Args) -> anyhow::Result<ServerSettings> {
    let host_key = load_private_key(&args.host_key_file)?;
    let authorized_keys = AuthorizedKeys::load(&args.authorized_keys_file)?;
    info!(host_key = %fingerprint(host_key.public_key()), authorized_keys = authorized_keys.len(), "keys loaded");
    Ok(ServerSettings {
        host_key,
        authorized_keys,
        subsystem: SUBSYSTEM_NAME.to_string(),
        max_connections: args.max_connections.max(1),
        max_channels_per_connection: args.max_channels.max(1),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
    })
}

/// The address to bind: `--listen` with `--listen-ip`/`--port` applied.
fn listen_addr(args: &Args) -> SocketAddr {
    SocketAddr::new(
        args.listen_ip.unwrap_or(args.listen.ip()),
        args.port.unwrap_or(args.listen.port()),
    )
}

/// PVC resolution for this node, once its caches hold a first list (so the SSH port, and
/// with it the readiness probe, only opens when the agent can answer).
async fn cluster_resolver(args: &Args) -> anyhow::Result<Option<ClusterResolver>> {
    let Some(node_name) = args.node_name.clone() else {
        return Ok(None);
    };
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster or KUBECONFIG)")?;
    let stores = ClusterStores::start(&client, &node_name);
    anyhow::ensure!(
        stores.wait_ready(Duration::from_secs(30)).await,
        "cluster watches stopped before their first list"
    );
    info!(node = %node_name, host_root = %args.host_root.display(), "resolving PVCs on this node");
    let node = NodeContext {
        node_name,
        host_root: args.host_root.clone(),
        kubelet_dir: args.kubelet_dir.clone(),
    };
    Ok(Some(ClusterResolver::new(stores, node)))
}

/// Installs the SIGTERM (pod deletion) and SIGINT handlers now, before the port opens, so a
/// signal that arrives right after "agent listening" is a clean stop and not the default
/// (fatal) disposition; the returned future resolves on either signal.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);
    let volumes = volumes(&args.volumes)?;
    let names: Vec<&String> = volumes.0.keys().collect();
    info!(volumes = ?names, "volumes configured");
    let settings = settings(&args)?;
    let resolver = LayeredResolver {
        fixed: volumes,
        cluster: cluster_resolver(&args).await?,
    };
    let service = ProtocolService::new(Arc::new(resolver), Limits::default());
    let server = AgentServer::new(settings, Arc::new(service));
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    let listen = listen_addr(&args);
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    info!(listen = %listener.local_addr()?, "agent listening");
    server.run(listener, shutdown).await;
    info!("agent stopped");
    Ok(())
}
