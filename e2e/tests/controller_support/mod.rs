//! Shared helpers of the controller e2e tests: one test bed (controller, source and target
//! clusters) per test binary, the CRDs installed once, the real `dr-syncer-controller`
//! binary run as a child process per test (tests take a lock, so one controller at a time
//! reconciles), and per-test namespaces in every cluster.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Debug;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::LazyLock;
use std::time::Duration;

use dr_syncer_crds::manifests::all_crds;
use dr_syncer_e2e::{TestBed, TestBedOptions};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::process::{Child, Command};

/// Cluster names of the bed.
pub const CONTROLLER: &str = "controller";
/// The cluster replicated from.
pub const SOURCE: &str = "source";
/// The DR cluster.
pub const TARGET: &str = "target";

/// Deadline for anything the controller does (busy 2-core machine).
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Simulated nodes per cluster of this binary's bed: 1 unless the test binary sets it before
/// the bed starts (the PVC data scenarios need two nodes per cluster, as issue 6 asks).
pub static NODES_PER_CLUSTER: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Run our three images from the OCI archives in this directory instead of the host
/// binaries, when the test binary sets it before the bed starts (the chart test, issue 15).
pub static IMAGE_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// One bed per test binary; told to stop by itself when this process exits.
pub static BED: LazyLock<TestBed> = LazyLock::new(|| {
    let mut opts = TestBedOptions::new(
        env!("CARGO_BIN_EXE_testbed"),
        &[CONTROLLER, SOURCE, TARGET],
        *NODES_PER_CLUSTER.get_or_init(|| 1),
    );
    opts.owner_pid = Some(std::process::id());
    opts.image_dir = IMAGE_DIR.get().cloned();
    TestBed::start(&opts).expect("starting the controller test bed")
});

/// Tests run one at a time: each starts its own controller, and two controllers without
/// leader election would both reconcile every mapping.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bed (started on first use).
pub async fn bed() -> &'static TestBed {
    tokio::task::spawn_blocking(|| &*BED).await.unwrap()
}

/// Clients of the three clusters, with the CRDs installed in the controller cluster.
pub struct Clusters {
    /// Controller cluster (CRDs, kubeconfig Secrets).
    pub controller: Client,
    /// Source cluster.
    pub source: Client,
    /// Target cluster.
    pub target: Client,
}

/// Connects to the bed and installs (server-side applies) the CRDs.
pub async fn clusters() -> Clusters {
    let bed = bed().await;
    let controller = bed.client(CONTROLLER).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(controller.clone());
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        wait_for(&crds, &name, conditions::is_crd_established()).await;
    }
    Clusters {
        controller,
        source: bed.client(SOURCE).await.unwrap(),
        target: bed.client(TARGET).await.unwrap(),
    }
}

/// The `dr-syncer-controller` binary built next to `testbed`.
pub fn controller_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DR_SYNCER_CONTROLLER_BIN") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .join("dr-syncer-controller")
}

/// A free loopback port for the metrics endpoint.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running controller process (killed on drop).
pub struct ControllerProcess {
    /// The child.
    pub child: Child,
    /// Its metrics/health port.
    pub port: u16,
    /// Its log file (stderr).
    pub log: std::path::PathBuf,
}

impl Drop for ControllerProcess {
    /// When a test fails while the controller runs, shows the end of its log: the test
    /// bed's directory (and the log with it) is gone once the test binary exits.
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(text) = std::fs::read_to_string(&self.log)
        {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            eprintln!(
                "---- last {} lines of {} ----\n{}\n---- end of controller log ----",
                tail.len(),
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// Starts the controller against the controller cluster. `lease`: leader election with
/// that Lease (namespace, name), or `None` for no election.
pub async fn start_controller(lease: Option<(&str, &str)>) -> ControllerProcess {
    let bed = bed().await;
    let port = free_port();
    let mut cmd = Command::new(controller_bin());
    cmd.env("KUBECONFIG", bed.kubeconfig(CONTROLLER))
        .env("RUST_LOG", "info,dr_syncer_controller=debug")
        .arg(format!("--metrics-addr=127.0.0.1:{port}"))
        .arg("--log-format=text")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    let log_path = bed.dir().join(format!("controller-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    cmd.stderr(log);
    match lease {
        None => {
            cmd.arg("--leader-elect=false");
        }
        Some((namespace, name)) => {
            cmd.arg("--leader-elect=true")
                .arg(format!("--lease-namespace={namespace}"))
                .arg(format!("--lease-name={name}"));
        }
    }
    let child = cmd.spawn().unwrap();
    let process = ControllerProcess {
        child,
        port,
        log: log_path,
    };
    if lease.is_none() {
        process.wait_ready().await;
    }
    process
}

impl ControllerProcess {
    /// GET a path of the metrics server; `None` when it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await.ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    }

    /// Whether `/readyz` answers 200.
    pub async fn is_ready(&self) -> bool {
        matches!(self.get("/readyz").await, Some((200, _)))
    }

    /// Polls `/readyz` until 200 (deadline [`DEADLINE`]).
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while !self.is_ready().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "controller on port {} never became ready",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a metric line starting with `prefix` (name + labels).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Creates a namespace with a generated name `<prefix>-xxxxx`.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap()
        .metadata
        .name
        .unwrap()
}

/// Creates ConfigMaps `cm-0`..`cm-{n-1}` through `api`, 32 at a time (bulk fixtures for the
/// crash, outage and benchmark scenarios).
pub async fn create_numbered_configmaps(api: &Api<ConfigMap>, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}});
                api.patch(
                    &format!("cm-{i}"),
                    &PatchParams::apply("e2e"),
                    &Patch::Apply(&body),
                )
                .await
                .unwrap();
            }
        })
        .await;
}

/// Creates the namespace `name` (for objects that must exist before a mapping runs).
pub async fn namespace_named(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &ns).await.unwrap();
}

/// Creates the kubeconfig Secrets of `source` and `target` and the two RemoteClusters
/// (named `source` and `target`) in `ns` of the controller cluster.
pub async fn remote_clusters(c: &Clusters, ns: &str) {
    let bed = bed().await;
    for name in [SOURCE, TARGET] {
        let kubeconfig = std::fs::read(bed.kubeconfig(name)).unwrap();
        kubeconfig_secret(
            c,
            ns,
            &format!("{name}-kubeconfig"),
            "kubeconfig",
            kubeconfig,
        )
        .await;
        apply_yaml::<dr_syncer_crds::RemoteCluster>(
            &c.controller,
            ns,
            &format!(
                "apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata:
  name: {name}
spec:
  kubeconfigSecretRef:
    name: {name}-kubeconfig
    namespace: {ns}
  pvcSync:
    healthCheck:
      interval: 5s
"
            ),
        )
        .await;
    }
}

/// Creates a Secret with one key.
pub async fn kubeconfig_secret(c: &Clusters, ns: &str, name: &str, key: &str, value: Vec<u8>) {
    let secrets: Api<Secret> = Api::namespaced(c.controller.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some([(key.to_owned(), ByteString(value))].into()),
        ..Default::default()
    };
    secrets
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

/// Server-side applies a YAML manifest into `ns`.
pub async fn apply_yaml<K>(client: &Client, ns: &str, text: &str) -> K
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + serde::Serialize,
{
    let value: serde_json::Value = serde_saphyr::from_str(text).unwrap();
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.patch(
        &name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&value),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

/// Waits (watch, [`DEADLINE`]) until `cond` holds for object `name`; returns it.
pub async fn wait_for<K>(api: &Api<K>, name: &str, cond: impl Condition<K>) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    wait_for_within(api, name, cond, DEADLINE).await
}

/// [`wait_for`] with an explicit deadline.
pub async fn wait_for_within<K>(
    api: &Api<K>,
    name: &str,
    cond: impl Condition<K>,
    deadline: Duration,
) -> K
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(deadline, await_condition(api.clone(), name, cond)).await {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{name} was deleted while waiting"),
        Ok(Err(e)) => panic!("watching {name}: {e}"),
        Err(_) => {
            let last = api.get_opt(name).await;
            panic!("{name}: condition not met within {deadline:?}; last: {last:#?}")
        }
    }
}

/// Waits until the object is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, deadline: Duration)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    match tokio::time::timeout(
        deadline,
        await_condition(api.clone(), name, conditions::is_deleted("")),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("watching {name}: {e}"),
        Err(_) => panic!("{name} still exists after {deadline:?}"),
    }
}

/// A condition on a NamespaceMapping/RemoteCluster status condition: type has status and
/// reason.
pub fn has_condition<K>(
    type_: &'static str,
    status: &'static str,
    reason: &'static str,
) -> impl Condition<K>
where
    K: serde::Serialize,
{
    move |obj: Option<&K>| {
        obj.and_then(|o| serde_json::to_value(o).ok())
            .and_then(|v| v["status"]["conditions"].as_array().cloned())
            .is_some_and(|conds| {
                conds
                    .iter()
                    .any(|c| c["type"] == type_ && c["status"] == status && c["reason"] == reason)
            })
    }
}

/// The message of a status condition.
pub fn condition_message<K: serde::Serialize>(obj: &K, type_: &str) -> String {
    let v = serde_json::to_value(obj).unwrap();
    v["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}
