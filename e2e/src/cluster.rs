//! One cluster's control plane: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler as child processes of the supervisor, configured like a kubeadm cluster
//! (TLS everywhere on the API, RBAC + Node authorizers, default admission, service-account
//! issuer and keys, per-controller service-account credentials) but bound to loopback.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::alloc::{AllocError, IpSlot};
use crate::kubeconfig::{self, ClientError};
use crate::layout::Layout;
use crate::pki::{self, ClusterPki, PkiError};
use crate::process::{Component, ProcessError};
use crate::readiness::{self, ReadinessError};

/// The Service CIDR of every cluster (clusters are separate, so they may share it).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The `kubernetes` Service's ClusterIP in [`SERVICE_CIDR`], listed in the serving cert.
pub const SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
/// How long the API server gets to become ready (cold start on a busy 2-core machine).
const APISERVER_READY: Duration = Duration::from_secs(180);
/// How long a component gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why a control plane could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Port allocation failed.
    #[error(transparent)]
    Alloc(#[from] AllocError),
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A component could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// A state file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The admin client could not be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The API server did not become ready.
    #[error("cluster {cluster}: {source}")]
    NotReady {
        /// The cluster.
        cluster: String,
        /// What was not ready.
        #[source]
        source: ReadinessError,
    },
}

/// Loopback ports of one cluster's components.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    /// etcd client URL port.
    pub etcd_client: u16,
    /// etcd peer URL port.
    pub etcd_peer: u16,
    /// kube-apiserver secure port.
    pub apiserver: u16,
    /// kube-controller-manager secure (metrics/health) port.
    pub controller_manager: u16,
    /// kube-scheduler secure (metrics/health) port.
    pub scheduler: u16,
}

impl Ports {
    /// The ports of cluster `index` in the test bed's slot.
    fn allocate(slot: &IpSlot, index: usize) -> Result<Ports, AllocError> {
        let [
            etcd_client,
            etcd_peer,
            apiserver,
            controller_manager,
            scheduler,
        ] = slot.cluster_ports(index)?;
        Ok(Ports {
            etcd_client,
            etcd_peer,
            apiserver,
            controller_manager,
            scheduler,
        })
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// Cluster name (`source`, `target`, ...).
    pub name: String,
    /// Component ports.
    pub ports: Ports,
    /// The cluster's certificates and keys.
    pub pki: ClusterPki,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Running components, in start order (stopped in reverse).
    pub components: Vec<Component>,
}

/// Where the control-plane binaries are: a directory with one executable (or symlink to the
/// multi-call binary) per component name, as `scripts/build-controlplane.sh` produces.
#[derive(Clone, Debug)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Uses the component executables in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Path of one component's executable.
    pub fn get(&self, component: &str) -> PathBuf {
        self.dir.join(component)
    }

    /// The directory (put on PATH in `DIR/env` so `kubectl` is at hand).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl ControlPlane {
    /// The API server URL.
    pub fn server(&self) -> String {
        server_url(self.ports.apiserver)
    }

    /// Generates PKI and kubeconfigs (ports from cluster `index` of `slot`), starts etcd and the API server, waits until the API
    /// server is ready, then starts the controller manager and the scheduler.
    pub async fn start(
        layout: &Layout,
        name: &str,
        (slot, index): (&IpSlot, usize),
        bins: &Binaries,
    ) -> Result<ControlPlane, ClusterError> {
        let dir = layout.cluster(name);
        let ports = Ports::allocate(slot, index)?;
        let pki = pki::generate(
            &dir.join("pki"),
            &[IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(SERVICE_IP)],
        )?;
        let server = server_url(ports.apiserver);
        let kubeconfig = layout.kubeconfig(name);
        let write_kc = |path: &Path, user: &str, files: &pki::CertFiles| {
            kubeconfig::write(path, name, &server, &pki.ca.cert, user, files).map_err(|source| {
                ClusterError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })
        };
        write_kc(&kubeconfig, pki::ADMIN.user, &pki.admin)?;
        let kcm_kc = dir.join("controller-manager.kubeconfig");
        write_kc(
            &kcm_kc,
            pki::CONTROLLER_MANAGER.user,
            &pki.controller_manager,
        )?;
        let sched_kc = dir.join("scheduler.kubeconfig");
        write_kc(&sched_kc, pki::SCHEDULER.user, &pki.scheduler)?;

        let mut cp = ControlPlane {
            name: name.to_string(),
            ports,
            pki,
            kubeconfig,
            components: Vec::new(),
        };
        let spawn = |cp: &mut ControlPlane, component: &str, args: Vec<String>| {
            let c = Component::spawn(
                &format!("{name}/{component}"),
                &bins.get(component),
                &args,
                &layout.component_log(name, component),
            )?;
            cp.components.push(c);
            Ok::<(), ClusterError>(())
        };
        spawn(&mut cp, "etcd", etcd_args(name, &dir.join("etcd"), &ports))?;
        let args = apiserver_args(&cp, &dir);
        spawn(&mut cp, "kube-apiserver", args)?;
        let client = kubeconfig::client(&cp.kubeconfig).await?;
        readiness::apiserver(&client, &mut cp.components, APISERVER_READY)
            .await
            .map_err(|source| ClusterError::NotReady {
                cluster: name.to_string(),
                source,
            })?;
        let args = kcm_args(&cp, &dir, &kcm_kc);
        spawn(&mut cp, "kube-controller-manager", args)?;
        let args = scheduler_args(&cp, &dir, &sched_kc);
        spawn(&mut cp, "kube-scheduler", args)?;
        Ok(cp)
    }

    /// Stops the components in reverse start order.
    pub async fn stop(self) {
        for component in self.components.into_iter().rev() {
            component.stop(STOP_GRACE).await;
        }
    }
}

fn server_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

fn etcd_args(name: &str, data: &Path, ports: &Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        format!("--name={name}"),
        format!("--data-dir={}", s(data)),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster={name}={peer}"),
        "--initial-cluster-state=new".into(),
        // A test bed's data is disposable: skip fsync, which dominates etcd latency on a
        // shared disk and slows every API write.
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]
}

fn apiserver_args(cp: &ControlPlane, dir: &Path) -> Vec<String> {
    let p = &cp.pki;
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", cp.ports.etcd_client),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", cp.ports.apiserver),
        format!("--cert-dir={}", s(&dir.join("apiserver-certs"))),
        format!("--tls-cert-file={}", s(&p.apiserver.cert)),
        format!("--tls-private-key-file={}", s(&p.apiserver.key)),
        format!("--client-ca-file={}", s(&p.ca.cert)),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--allow-privileged=true".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", s(&p.sa_pub)),
        format!("--service-account-signing-key-file={}", s(&p.sa_key)),
        // Loopback addresses are invalid Endpoints, so the `kubernetes` Service gets none;
        // nothing routes Service IPs in the test bed anyway.
        "--endpoint-reconciler-type=none".into(),
        format!(
            "--requestheader-client-ca-file={}",
            s(&p.front_proxy_ca.cert)
        ),
        "--requestheader-allowed-names=front-proxy-client".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        format!("--proxy-client-cert-file={}", s(&p.front_proxy_client.cert)),
        format!("--proxy-client-key-file={}", s(&p.front_proxy_client.key)),
        "--profiling=false".into(),
    ]
}

fn kcm_args(cp: &ControlPlane, dir: &Path, kubeconfig: &Path) -> Vec<String> {
    let p = &cp.pki;
    let mut args = serving_args(
        kubeconfig,
        cp.ports.controller_manager,
        dir,
        "controller-manager",
    );
    args.extend([
        format!("--cluster-name={}", cp.name),
        "--controllers=*".into(),
        "--leader-elect=false".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", s(&p.sa_key)),
        format!("--root-ca-file={}", s(&p.ca.cert)),
        format!("--cluster-signing-cert-file={}", s(&p.ca.cert)),
        format!("--cluster-signing-key-file={}", s(&p.ca.key)),
        format!(
            "--requestheader-client-ca-file={}",
            s(&p.front_proxy_ca.cert)
        ),
        format!("--client-ca-file={}", s(&p.ca.cert)),
        // Pods have no kubelet to clean them up; the default 12500 terminated pods is fine,
        // but evictions after a missed heartbeat would fight the simulated nodes.
        "--node-monitor-grace-period=60s".into(),
        "--profiling=false".into(),
    ]);
    args
}

fn scheduler_args(cp: &ControlPlane, dir: &Path, kubeconfig: &Path) -> Vec<String> {
    let mut args = serving_args(kubeconfig, cp.ports.scheduler, dir, "scheduler");
    args.extend(["--leader-elect=false".into(), "--profiling=false".into()]);
    args
}

/// The flags the controller manager and the scheduler share: one kubeconfig for the API,
/// authentication and authorization, and a loopback HTTPS port with certs in
/// `<dir>/<component>-certs`.
fn serving_args(kubeconfig: &Path, port: u16, dir: &Path, component: &str) -> Vec<String> {
    let kc = s(kubeconfig);
    vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", s(&dir.join(format!("{component}-certs")))),
    ]
}
