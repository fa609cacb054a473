//! The agent DaemonSet in a source cluster: Namespace, ServiceAccount, least-privilege
//! ClusterRole and binding, the SSH Secret (host private key + authorized client keys) and
//! the DaemonSet itself, all by server-side apply (field manager `dr-syncer`), and the
//! `RemoteCluster.status.pvcSync` read back from the DaemonSet and its pods.
//!
//! The pod template carries the SHA-256 of the Secret data (`dr-syncer.io/keys-hash`), so a
//! key change rolls the agents; [`prepare`] waits until the roll is done before handing
//! credentials to a worker, so the worker never meets an agent with stale keys.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_crds::remote_cluster::{
    AgentPodStatus, PvcSyncAgentStatus, PvcSyncDeployment, PvcSyncNodeStatus, PvcSyncStatus,
    RemoteCluster,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HostPathVolumeSource, Namespace,
    ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
    SecretVolumeSource, SecurityContext, ServiceAccount, TCPSocketAction, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::PodImage;
use super::keys::{
    self, HOST_PRIVATE_KEY, KeyError, KeyScope, MANAGED_BY, MANAGED_BY_LABEL, WorkerCredentials,
};
use crate::context::{Context, FIELD_MANAGER};
use crate::status::{now, reasons};

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

const NAME_LABEL: &str = "app.kubernetes.io/name";

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

/// The SSH port of a RemoteCluster's agents.
pub fn agent_port(rc: &RemoteCluster) -> i32 {
    rc.spec
        .pvc_sync
        .as_ref()
        .and_then(|p| p.ssh.as_ref())
        .map(|s| s.port)
        .unwrap_or(DEFAULT_PORT)
}

/// The agent image: `pvcSync.image` (repository, tag) when given, else the controller's.
pub fn agent_image(rc: &RemoteCluster, default_image: &str) -> String {
    let image = rc.spec.pvc_sync.as_ref().and_then(|p| p.image.as_ref());
    let repository = image.and_then(|i| i.repository.clone());
    let tag = image.and_then(|i| i.tag.clone());
    match (repository, tag) {
        (None, None) => default_image.to_owned(),
        (Some(r), Some(t)) => format!("{r}:{t}"),
        (Some(r), None) => r,
        (None, Some(t)) => format!("{}:{t}", image_repository(default_image)),
    }
}

/// `repo[:tag][@digest]` -> `repo` (a registry port is not a tag).
fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    match without_digest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => without_digest,
    }
}

fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), AGENT_NAME.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
    ])
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(managed_labels()),
        ..ObjectMeta::default()
    }
}

/// Everything the agents need in the source cluster except the Secret.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    /// The agents' namespace.
    pub namespace: Namespace,
    /// Their ServiceAccount.
    pub service_account: ServiceAccount,
    /// Read-only access to what volume resolution needs.
    pub cluster_role: ClusterRole,
    /// Binds the role to the ServiceAccount.
    pub binding: ClusterRoleBinding,
    /// The agents.
    pub daemon_set: DaemonSet,
}

/// The agent Secret: host private key and authorized client keys; nothing else.
pub fn render_secret(host_private_key: &str, authorized_keys: &str) -> Secret {
    Secret {
        metadata: meta(AGENT_SECRET, Some(AGENT_NAMESPACE)),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            (
                HOST_PRIVATE_KEY.to_owned(),
                ByteString(host_private_key.as_bytes().to_vec()),
            ),
            (
                AUTHORIZED_KEYS.to_owned(),
                ByteString(authorized_keys.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The agents' namespace, labelled for the `privileged` Pod Security level: the agent is
/// privileged with hostNetwork and a hostPath, which `baseline` or `restricted` refuse.
fn agent_namespace() -> Namespace {
    let mut metadata = meta(AGENT_NAMESPACE, None);
    if let Some(labels) = metadata.labels.as_mut() {
        for mode in ["enforce", "audit", "warn"] {
            labels.insert(
                format!("pod-security.kubernetes.io/{mode}"),
                "privileged".to_owned(),
            );
        }
    }
    Namespace {
        metadata,
        ..Namespace::default()
    }
}

fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(AGENT_NAME, None),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(
                    [
                        "pods",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "nodes",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                ),
                verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["storage.k8s.io".to_owned()]),
                resources: Some(vec!["volumeattachments".to_owned()]),
                verbs: ["get", "list", "watch"].map(str::to_owned).to_vec(),
                ..PolicyRule::default()
            },
        ]),
        ..ClusterRole::default()
    }
}

fn binding() -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(AGENT_NAME, None),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: AGENT_NAME.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: AGENT_NAME.to_owned(),
            namespace: Some(AGENT_NAMESPACE.to_owned()),
            ..Subject::default()
        }]),
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// Contract env first, then the user's `extraEnv` (which may override by coming later).
fn agent_env(port: i32, deployment: &PvcSyncDeployment) -> Vec<EnvVar> {
    let mut env = vec![
        field_env("DR_SYNCER_AGENT_LISTEN_IP", "status.hostIP"),
        value_env("DR_SYNCER_AGENT_PORT", &port.to_string()),
        value_env(
            "DR_SYNCER_AGENT_HOST_KEY_FILE",
            &format!("{SSH_MOUNT}/{HOST_PRIVATE_KEY}"),
        ),
        value_env(
            "DR_SYNCER_AGENT_AUTHORIZED_KEYS_FILE",
            &format!("{SSH_MOUNT}/{AUTHORIZED_KEYS}"),
        ),
        field_env("DR_SYNCER_AGENT_NODE_NAME", "spec.nodeName"),
        value_env("DR_SYNCER_AGENT_HOST_ROOT", HOST_ROOT),
    ];
    env.extend(deployment.extra_env.iter().map(|e| EnvVar {
        name: e.name.clone(),
        value: e.value.clone(),
        value_from: e.value_from.as_ref().map(|v| EnvVarSource {
            field_ref: v.field_ref.as_ref().map(|f| ObjectFieldSelector {
                field_path: f.field_path.clone(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
    }));
    env
}

/// A DR-Syncer toleration map (strings) as a Kubernetes toleration.
fn toleration(map: &BTreeMap<String, String>) -> Toleration {
    Toleration {
        key: map.get("key").cloned(),
        operator: map.get("operator").cloned(),
        value: map.get("value").cloned(),
        effect: map.get("effect").cloned(),
        toleration_seconds: map
            .get("tolerationSeconds")
            .and_then(|s| s.parse::<i64>().ok()),
    }
}

fn resources(deployment: &PvcSyncDeployment) -> Option<ResourceRequirements> {
    deployment.resources.as_ref().map(|r| ResourceRequirements {
        limits: (!r.limits.is_empty()).then(|| r.limits.clone()),
        requests: (!r.requests.is_empty()).then(|| r.requests.clone()),
        ..ResourceRequirements::default()
    })
}

fn default_deployment() -> PvcSyncDeployment {
    // Every field's serde default (hostNetwork and privileged true).
    serde_json::from_value(serde_json::json!({})).unwrap_or(PvcSyncDeployment {
        host_network: true,
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
        resources: None,
        annotations: BTreeMap::new(),
        labels: BTreeMap::new(),
        priority_class_name: None,
        privileged: true,
        extra_env: Vec::new(),
    })
}

/// The agent container. Pull policy: the RemoteCluster's `pvcSync.image.pullPolicy`, else
/// the controller's `--agent-pull-policy`, else Kubernetes' default.
fn container(rc: &RemoteCluster, default: &PodImage, deployment: &PvcSyncDeployment) -> Container {
    let port = agent_port(rc);
    let pull_policy = rc
        .spec
        .pvc_sync
        .as_ref()
        .and_then(|p| p.image.as_ref())
        .and_then(|i| i.pull_policy)
        .map(|p| format!("{p:?}"))
        .or_else(|| default.pull_policy.clone());
    Container {
        name: "agent".to_owned(),
        image: Some(agent_image(rc, &default.reference)),
        image_pull_policy: pull_policy,
        env: Some(agent_env(port, deployment)),
        ports: Some(vec![ContainerPort {
            name: Some("ssh".to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: resources(deployment),
        security_context: Some(SecurityContext {
            privileged: Some(deployment.privileged),
            read_only_root_filesystem: Some(true),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "ssh".to_owned(),
                mount_path: SSH_MOUNT.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "host".to_owned(),
                mount_path: HOST_ROOT.to_owned(),
                read_only: Some(true),
                mount_propagation: Some("HostToContainer".to_owned()),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

fn volumes() -> Vec<Volume> {
    vec![
        Volume {
            name: "ssh".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(AGENT_SECRET.to_owned()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "host".to_owned(),
            host_path: Some(HostPathVolumeSource {
                path: "/".to_owned(),
                type_: Some("Directory".to_owned()),
            }),
            ..Volume::default()
        },
    ]
}

fn daemon_set(rc: &RemoteCluster, default: &PodImage, keys_hash: &str) -> DaemonSet {
    let deployment = rc
        .spec
        .pvc_sync
        .as_ref()
        .and_then(|p| p.deployment.clone())
        .unwrap_or_else(default_deployment);
    // User labels first so ours (which the selector relies on) win.
    let mut labels = deployment.labels.clone();
    labels.extend(managed_labels());
    let mut annotations = deployment.annotations.clone();
    annotations.insert(KEYS_HASH_ANNOTATION.to_owned(), keys_hash.to_owned());
    let pod = PodSpec {
        host_network: Some(deployment.host_network),
        dns_policy: deployment
            .host_network
            .then(|| "ClusterFirstWithHostNet".to_owned()),
        service_account_name: Some(AGENT_NAME.to_owned()),
        node_selector: (!deployment.node_selector.is_empty())
            .then(|| deployment.node_selector.clone()),
        tolerations: (!deployment.tolerations.is_empty())
            .then(|| deployment.tolerations.iter().map(toleration).collect()),
        priority_class_name: deployment.priority_class_name.clone(),
        containers: vec![container(rc, default, &deployment)],
        image_pull_secrets: default.pull_secret_refs(),
        volumes: Some(volumes()),
        ..PodSpec::default()
    };
    DaemonSet {
        metadata: meta(AGENT_NAME, Some(AGENT_NAMESPACE)),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(managed_labels()),
                ..LabelSelector::default()
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..DaemonSetUpdateStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DaemonSetSpec::default()
        }),
        ..DaemonSet::default()
    }
}

/// Renders the agents' objects for a RemoteCluster: pure, so every spec field can be
/// checked by unit tests. `keys_hash` is [`keys::data_hash`] of the agent Secret's data.
pub fn render(rc: &RemoteCluster, default: &PodImage, keys_hash: &str) -> Rendered {
    Rendered {
        namespace: agent_namespace(),
        service_account: ServiceAccount {
            metadata: meta(AGENT_NAME, Some(AGENT_NAMESPACE)),
            ..ServiceAccount::default()
        },
        cluster_role: cluster_role(),
        binding: binding(),
        daemon_set: daemon_set(rc, default, keys_hash),
    }
}

async fn apply<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

/// Applies every agent object for a RemoteCluster with pvcSync enabled: the Secret holds
/// the host key and every client key allowed to read from this cluster. Returns the keys
/// hash the DaemonSet's pods must carry once rolled.
pub async fn ensure_deployed(
    ctx: &Context,
    rc: &RemoteCluster,
    source: &Client,
) -> Result<String, AgentError> {
    let host = keys::host_key(&ctx.client, rc).await?;
    let key = crate::clusters::ClusterKey {
        namespace: rc.namespace().unwrap_or_default(),
        name: rc.name_any(),
    };
    let clients = keys::authorized_client_keys(&ctx.client, &key).await?;
    let authorized = keys::render_authorized_keys(clients.iter().map(String::as_str));
    let secret = render_secret(&host.private_openssh, &authorized);
    let hash = keys::data_hash(&secret.data.clone().unwrap_or_default());
    let objects = render(rc, &ctx.dataplane.agent, &hash);
    apply(&Api::all(source.clone()), &objects.namespace).await?;
    let ns = |c: &Client| (c.clone(), AGENT_NAMESPACE);
    apply(
        &Api::namespaced(ns(source).0, ns(source).1),
        &objects.service_account,
    )
    .await?;
    apply(&Api::all(source.clone()), &objects.cluster_role).await?;
    apply(&Api::all(source.clone()), &objects.binding).await?;
    apply(&Api::namespaced(source.clone(), AGENT_NAMESPACE), &secret).await?;
    apply(
        &Api::namespaced(source.clone(), AGENT_NAMESPACE),
        &objects.daemon_set,
    )
    .await?;
    Ok(hash)
}

/// Removes the DaemonSet and Secret we created (only when labelled managed-by dr-syncer),
/// when `pvcSync.enabled` turns false. RBAC and the namespace stay: they grant nothing
/// without pods and cost nothing.
pub async fn remove(source: &Client) -> Result<bool, kube::Error> {
    let mut removed = false;
    let ds: Api<DaemonSet> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    if let Some(obj) = ds.get_opt(AGENT_NAME).await?
        && is_ours(obj.labels())
    {
        ds.delete(AGENT_NAME, &DeleteParams::background()).await?;
        removed = true;
    }
    let secrets: Api<Secret> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    if let Some(obj) = secrets.get_opt(AGENT_SECRET).await?
        && is_ours(obj.labels())
    {
        secrets
            .delete(AGENT_SECRET, &DeleteParams::default())
            .await?;
        removed = true;
    }
    Ok(removed)
}

fn is_ours(labels: &BTreeMap<String, String>) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEYS_HASH_ANNOTATION))
        .map(String::as_str)
}

/// Agent pods by node name (ready or not), for `locate`.
pub async fn agents_by_node(source: &Client) -> Result<BTreeMap<String, AgentPod>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let list = pods
        .list(&ListParams::default().labels(AGENT_SELECTOR))
        .await?;
    Ok(agent_pods(&list.items, None))
}

/// Agent pods by node; with `hash`, only pods carrying it count as ready (a pod of the
/// previous roll still running with old keys is not usable).
fn agent_pods(pods: &[Pod], hash: Option<&str>) -> BTreeMap<String, AgentPod> {
    let mut out: BTreeMap<String, AgentPod> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let current = hash.is_none_or(|h| pod_hash(pod) == Some(h));
        let agent = AgentPod {
            pod: pod.name_any(),
            node: node.clone(),
            host_ip: pod.status.as_ref().and_then(|s| s.host_ip.clone()),
            ready: pod_ready(pod) && current,
        };
        // Prefer a ready pod when a roll leaves two on one node.
        match out.get(&node) {
            Some(existing) if existing.ready && !agent.ready => {}
            _ => {
                out.insert(node, agent);
            }
        }
    }
    out
}

/// What the DaemonSet says about readiness: (desired, updated and ready on current hash).
fn rollout_done(ds: &DaemonSet) -> Option<(i32, bool)> {
    let status = ds.status.as_ref()?;
    let generation_seen = status.observed_generation >= ds.metadata.generation;
    let desired = status.desired_number_scheduled;
    let done = generation_seen
        && status.updated_number_scheduled.unwrap_or(0) == desired
        && status.number_ready == desired
        && status.number_available.unwrap_or(0) == desired;
    Some((desired, done))
}

/// Waits (polling with a deadline) until the DaemonSet rolled to `hash` and an agent is
/// Ready on every node it should run on.
pub async fn wait_ready(source: &Client, hash: &str, timeout: Duration) -> Result<(), AgentError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let ds_api: Api<DaemonSet> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let detail = loop {
        let ds = ds_api.get_opt(AGENT_NAME).await?;
        let list = pods
            .list(&ListParams::default().labels(AGENT_SELECTOR))
            .await?;
        let agents = agent_pods(&list.items, Some(hash));
        let ready = agents.values().filter(|a| a.ready).count();
        let detail = match ds.as_ref().and_then(rollout_done) {
            Some((desired, true)) if desired > 0 && ready as i32 >= desired => return Ok(()),
            Some((0, _)) => {
                "the DaemonSet schedules no pod (check nodeSelector and tolerations)".to_owned()
            }
            Some((desired, _)) => not_ready_detail(&agents, desired),
            None => "the DaemonSet has no status yet".to_owned(),
        };
        if tokio::time::Instant::now() >= deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    Err(AgentError::NotReady {
        waited: timeout,
        detail,
    })
}

fn not_ready_detail(agents: &BTreeMap<String, AgentPod>, desired: i32) -> String {
    let waiting: Vec<String> = agents
        .values()
        .filter(|a| !a.ready)
        .map(|a| format!("{} (pod {})", a.node, a.pod))
        .collect();
    format!(
        "{} of {desired} agents ready on the current keys; not ready: {}",
        agents.values().filter(|a| a.ready).count(),
        if waiting.is_empty() {
            "pods not created yet".to_owned()
        } else {
            waiting.join(", ")
        }
    )
}

/// Ensures host key, the scope's client key, the agent Secret (its `authorized_keys`
/// includes the scope's key), RBAC and DaemonSet in the source cluster; waits (poll with a
/// deadline, [`READY_TIMEOUT`]) until the DaemonSet has rolled to the current keys-hash and
/// its pods on every node are Ready; returns the credentials a worker needs.
pub async fn prepare(
    ctx: &Context,
    scope: &KeyScope,
    source_rc: &RemoteCluster,
    source: &Client,
) -> Result<WorkerCredentials, AgentError> {
    prepare_with_timeout(ctx, scope, source_rc, source, READY_TIMEOUT).await
}

/// [`prepare`] with an explicit readiness deadline (the connectivity check uses its own).
pub async fn prepare_with_timeout(
    ctx: &Context,
    scope: &KeyScope,
    source_rc: &RemoteCluster,
    source: &Client,
    timeout: Duration,
) -> Result<WorkerCredentials, AgentError> {
    if !source_rc.spec.pvc_sync.as_ref().is_some_and(|p| p.enabled) {
        return Err(AgentError::Disabled(format!(
            "{}/{}",
            source_rc.namespace().unwrap_or_default(),
            source_rc.name_any()
        )));
    }
    // The client key must exist before the Secret is rendered, so it is authorized.
    let client = keys::client_key(&ctx.client, scope).await?;
    let hash = ensure_deployed(ctx, source_rc, source).await?;
    wait_ready(source, &hash, timeout).await?;
    let host = keys::host_key(&ctx.client, source_rc).await?;
    Ok(WorkerCredentials {
        client_private_key: client.private_openssh,
        agent_host_public_key: host.public_openssh,
    })
}

/// `RemoteCluster.status.pvcSync` from the DaemonSet and its pods: phase (Deploying,
/// Running, Degraded), ready/total and a line per node.
pub async fn status(source: &Client) -> Result<PvcSyncStatus, kube::Error> {
    let ds_api: Api<DaemonSet> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    let ds = ds_api.get_opt(AGENT_NAME).await?;
    let list = pods
        .list(&ListParams::default().labels(AGENT_SELECTOR))
        .await?;
    Ok(status_from(ds.as_ref(), &list.items))
}

/// Phase, readiness, restarts and last readiness change of an agent pod.
fn pod_status(pod: &Pod) -> AgentPodStatus {
    let status = pod.status.clone().unwrap_or_default();
    let ready_condition = status
        .conditions
        .as_ref()
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    AgentPodStatus {
        phase: status.phase.clone().unwrap_or_default(),
        ready: pod_ready(pod),
        restart_count: status
            .container_statuses
            .as_ref()
            .map(|cs| cs.iter().map(|c| c.restart_count).sum()),
        last_transition_time: ready_condition.and_then(|c| c.last_transition_time.clone()),
    }
}

/// The pure part of [`status`].
pub fn status_from(ds: Option<&DaemonSet>, pods: &[Pod]) -> PvcSyncStatus {
    let hash = ds
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(KEYS_HASH_ANNOTATION))
        .cloned();
    let agents = agent_pods(pods, hash.as_deref());
    let desired = ds
        .and_then(|d| d.status.as_ref())
        .map(|s| s.desired_number_scheduled)
        .unwrap_or(0);
    let total = desired.max(agents.len() as i32);
    let ready = agents.values().filter(|a| a.ready).count() as i32;
    let heartbeat = now();
    let node_statuses = agents
        .values()
        .map(|a| {
            let message = if a.ready {
                format!("agent pod {} ready", a.pod)
            } else {
                format!(
                    "agent pod {} not ready (starting, failing its probe, or on old keys)",
                    a.pod
                )
            };
            (
                a.node.clone(),
                PvcSyncNodeStatus {
                    ready: a.ready,
                    last_heartbeat: a.ready.then(|| heartbeat.clone()),
                    message: Some(message),
                    pod_status: pods
                        .iter()
                        .find(|p| p.metadata.name.as_deref() == Some(a.pod.as_str()))
                        .map(pod_status),
                    ..PvcSyncNodeStatus::default()
                },
            )
        })
        .collect();
    let (phase, message) = match ds {
        None => ("Deploying", "agent DaemonSet not created yet".to_owned()),
        Some(_) if total == 0 => (
            "Degraded",
            "the agent DaemonSet schedules no pod; check nodeSelector and tolerations".to_owned(),
        ),
        Some(_) if ready == total => ("Running", format!("{ready}/{total} agents ready")),
        Some(_) => ("Deploying", format!("{ready}/{total} agents ready")),
    };
    PvcSyncStatus {
        phase: Some(phase.to_owned()),
        agent_status: Some(PvcSyncAgentStatus {
            ready_nodes: ready,
            total_nodes: total,
            node_statuses,
        }),
        message: Some(message),
        ..PvcSyncStatus::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rc(pvc_sync: serde_json::Value) -> RemoteCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "dr-syncer.io/v1alpha1",
            "kind": "RemoteCluster",
            "metadata": {"name": "prod", "namespace": "dr"},
            "spec": {
                "kubeconfigSecretRef": {"name": "kc", "namespace": "dr"},
                "pvcSync": pvc_sync,
            }
        }))
        .unwrap()
    }

    fn pod_spec(r: &Rendered) -> PodSpec {
        r.daemon_set.spec.clone().unwrap().template.spec.unwrap()
    }

    fn env_value(c: &Container, name: &str) -> EnvVar {
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no env {name}"))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let r = render(
            &rc(serde_json::json!({"enabled": true})),
            &PodImage::new("img:1"),
            "h1",
        );
        let ds = &r.daemon_set;
        assert_eq!(ds.metadata.name.as_deref(), Some(AGENT_NAME));
        assert_eq!(ds.metadata.namespace.as_deref(), Some(AGENT_NAMESPACE));
        let template = ds.spec.as_ref().unwrap().template.metadata.clone().unwrap();
        assert_eq!(
            template.annotations.unwrap()[KEYS_HASH_ANNOTATION],
            "h1",
            "key changes must roll the pods"
        );
        let labels = template.labels.unwrap();
        for pair in AGENT_SELECTOR.split(',') {
            let (k, v) = pair.split_once('=').unwrap();
            assert_eq!(labels[k], v, "pods must match AGENT_SELECTOR");
        }
        let spec = pod_spec(&r);
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(spec.service_account_name.as_deref(), Some(AGENT_NAME));
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 2222);
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .tcp_socket
                .as_ref()
                .unwrap()
                .port,
            IntOrString::Int(2222)
        );
        assert_eq!(
            env_value(c, "DR_SYNCER_AGENT_PORT").value.as_deref(),
            Some("2222")
        );
        assert_eq!(
            env_value(c, "DR_SYNCER_AGENT_LISTEN_IP")
                .value_from
                .unwrap()
                .field_ref
                .unwrap()
                .field_path,
            "status.hostIP"
        );
        assert_eq!(
            env_value(c, "DR_SYNCER_AGENT_NODE_NAME")
                .value_from
                .unwrap()
                .field_ref
                .unwrap()
                .field_path,
            "spec.nodeName"
        );
        assert_eq!(
            env_value(c, "DR_SYNCER_AGENT_HOST_KEY_FILE")
                .value
                .as_deref(),
            Some("/etc/dr-syncer/ssh/ssh_host_ed25519_key")
        );
        assert_eq!(
            env_value(c, "DR_SYNCER_AGENT_AUTHORIZED_KEYS_FILE")
                .value
                .as_deref(),
            Some("/etc/dr-syncer/ssh/authorized_keys")
        );
        assert_eq!(
            env_value(c, "DR_SYNCER_AGENT_HOST_ROOT").value.as_deref(),
            Some("/host")
        );
        let mounts = c.volume_mounts.as_ref().unwrap();
        let host = mounts.iter().find(|m| m.mount_path == "/host").unwrap();
        assert_eq!(host.read_only, Some(true));
        assert_eq!(host.mount_propagation.as_deref(), Some("HostToContainer"));
        let ssh = mounts.iter().find(|m| m.mount_path == SSH_MOUNT).unwrap();
        assert_eq!(ssh.read_only, Some(true));
        let vols = spec.volumes.unwrap();
        let host_vol = vols.iter().find(|v| v.name == host.name).unwrap();
        assert_eq!(host_vol.host_path.as_ref().unwrap().path, "/");
        let ssh_vol = vols.iter().find(|v| v.name == ssh.name).unwrap();
        assert_eq!(
            ssh_vol.secret.as_ref().unwrap().secret_name.as_deref(),
            Some(AGENT_SECRET)
        );
    }

    #[test]
    fn every_deployment_field_lands_in_the_pod() {
        let r = render(
            &rc(serde_json::json!({
                "enabled": true,
                "image": {"repository": "reg:5000/x/agent", "tag": "v9", "pullPolicy": "Always"},
                "ssh": {"port": 2400},
                "deployment": {
                    "hostNetwork": false,
                    "privileged": false,
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dr",
                                     "effect": "NoSchedule", "tolerationSeconds": "30"}],
                    "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m"}},
                    "annotations": {"team": "storage"},
                    "labels": {"tier": "dr", "app.kubernetes.io/name": "evil"},
                    "priorityClassName": "system-node-critical",
                    "extraEnv": [{"name": "RUST_LOG", "value": "debug"},
                                 {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
                }
            })),
            &PodImage {
                reference: "default:1".into(),
                pull_policy: Some("Never".into()),
                pull_secrets: vec!["regcred".into()],
            },
            "h",
        );
        let spec = pod_spec(&r);
        let secrets = spec.image_pull_secrets.clone().unwrap();
        assert_eq!(secrets[0].name, "regcred");
        assert_eq!(spec.host_network, Some(false));
        assert_eq!(spec.node_selector.unwrap()["disk"], "ssd");
        let t = &spec.tolerations.unwrap()[0];
        assert_eq!(
            (
                t.key.as_deref(),
                t.operator.as_deref(),
                t.value.as_deref(),
                t.effect.as_deref()
            ),
            (
                Some("dedicated"),
                Some("Equal"),
                Some("dr"),
                Some("NoSchedule")
            )
        );
        assert_eq!(t.toleration_seconds, Some(30));
        assert_eq!(
            spec.priority_class_name.as_deref(),
            Some("system-node-critical")
        );
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("reg:5000/x/agent:v9"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(false));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 2400);
        assert_eq!(
            env_value(c, "DR_SYNCER_AGENT_PORT").value.as_deref(),
            Some("2400")
        );
        let res = c.resources.as_ref().unwrap();
        assert_eq!(res.limits.as_ref().unwrap()["memory"].0, "256Mi");
        assert_eq!(res.requests.as_ref().unwrap()["cpu"].0, "100m");
        let env = c.env.as_ref().unwrap();
        let last_two: Vec<&str> = env[env.len() - 2..]
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(last_two, ["RUST_LOG", "POD"], "extraEnv comes after ours");
        assert_eq!(
            env_value(c, "POD")
                .value_from
                .unwrap()
                .field_ref
                .unwrap()
                .field_path,
            "metadata.name"
        );
        let meta = r.daemon_set.spec.unwrap().template.metadata.unwrap();
        assert_eq!(meta.annotations.as_ref().unwrap()["team"], "storage");
        assert!(meta.annotations.unwrap().contains_key(KEYS_HASH_ANNOTATION));
        let labels = meta.labels.unwrap();
        assert_eq!(labels["tier"], "dr");
        assert_eq!(
            labels["app.kubernetes.io/name"], AGENT_NAME,
            "selector label wins"
        );
    }

    #[test]
    fn controller_pull_policy_and_secrets_apply_when_the_remote_cluster_sets_none() {
        let default = PodImage {
            reference: "reg:5000/a/agent@sha256:ab".into(),
            pull_policy: Some("IfNotPresent".into()),
            pull_secrets: vec!["one".into(), "two".into()],
        };
        let r = render(&rc(serde_json::json!({"enabled": true})), &default, "h");
        let spec = pod_spec(&r);
        let c = &spec.containers[0];
        assert_eq!(c.image.as_deref(), Some("reg:5000/a/agent@sha256:ab"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            crate::dataplane::config::pull_secret_names(&spec),
            ["one", "two"]
        );
        let plain = render(
            &rc(serde_json::json!({"enabled": true})),
            &PodImage::new("i"),
            "h",
        );
        let spec = pod_spec(&plain);
        assert_eq!(spec.image_pull_secrets, None);
        assert_eq!(spec.containers[0].image_pull_policy, None);
    }

    #[test]
    fn image_tag_alone_keeps_the_default_repository() {
        let r = rc(serde_json::json!({"enabled": true, "image": {"tag": "v2"}}));
        assert_eq!(
            agent_image(&r, "reg:5000/a/agent:v1"),
            "reg:5000/a/agent:v2"
        );
        assert_eq!(agent_image(&r, "reg:5000/a/agent"), "reg:5000/a/agent:v2");
    }

    #[test]
    fn cluster_role_is_read_only_on_exactly_what_resolution_needs() {
        let r = render(
            &rc(serde_json::json!({"enabled": true})),
            &PodImage::new("i"),
            "h",
        );
        let mut seen = Vec::new();
        for rule in r.cluster_role.rules.unwrap() {
            assert_eq!(rule.verbs, ["get", "list", "watch"]);
            seen.extend(rule.resources.unwrap());
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "nodes",
                "persistentvolumeclaims",
                "persistentvolumes",
                "pods",
                "volumeattachments"
            ]
        );
        let ns_labels = r.namespace.metadata.labels.clone().unwrap();
        assert_eq!(
            ns_labels["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
        let subject = &r.binding.subjects.unwrap()[0];
        assert_eq!(subject.namespace.as_deref(), Some(AGENT_NAMESPACE));
        assert_eq!(r.binding.role_ref.name, AGENT_NAME);
    }

    #[test]
    fn secret_holds_only_host_private_key_and_authorized_keys() {
        let s = render_secret("PRIV", "ssh-ed25519 AAAA x\n");
        let data = s.data.unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, [AUTHORIZED_KEYS, HOST_PRIVATE_KEY]);
        assert_eq!(s.metadata.labels.unwrap()[MANAGED_BY_LABEL], MANAGED_BY);
    }

    fn pod(name: &str, node: &str, ready: bool, hash: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "annotations": {KEYS_HASH_ANNOTATION: hash}},
            "spec": {"nodeName": node, "containers": []},
            "status": {"hostIP": format!("10.0.0.{}", node.len()),
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
        .unwrap()
    }

    #[test]
    fn status_counts_ready_agents_on_current_keys_per_node() {
        let ds = render(
            &rc(serde_json::json!({"enabled": true})),
            &PodImage::new("i"),
            "new",
        )
        .daemon_set;
        let mut ds = ds;
        ds.status = Some(
            serde_json::from_value(serde_json::json!({
                "currentNumberScheduled": 2, "desiredNumberScheduled": 2,
                "numberMisscheduled": 0, "numberReady": 2
            }))
            .unwrap(),
        );
        let pods = [
            pod("a-1", "node-a", true, "new"),
            pod("b-1", "node-b", true, "old"),
        ];
        let s = status_from(Some(&ds), &pods);
        let agents = s.agent_status.unwrap();
        assert_eq!((agents.ready_nodes, agents.total_nodes), (1, 2));
        assert!(agents.node_statuses["node-a"].ready);
        assert!(agents.node_statuses["node-a"].last_heartbeat.is_some());
        assert!(
            !agents.node_statuses["node-b"].ready,
            "old keys do not count"
        );
        let pod_status = agents.node_statuses["node-b"].pod_status.clone().unwrap();
        assert!(pod_status.ready, "the pod itself is ready");
        assert_eq!(s.phase.as_deref(), Some("Deploying"));

        let pods = [
            pod("a-1", "node-a", true, "new"),
            pod("b-2", "node-b", true, "new"),
        ];
        let s = status_from(Some(&ds), &pods);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.agent_status.unwrap().ready_nodes, 2);
        assert_eq!(status_from(None, &[]).phase.as_deref(), Some("Deploying"));
    }

    #[test]
    fn agents_by_node_prefers_the_ready_pod_during_a_roll() {
        let pods = [pod("old", "n1", true, "h"), pod("new", "n1", false, "h")];
        let map = agent_pods(&pods, None);
        assert_eq!(map["n1"].pod, "old");
        assert!(map["n1"].ready);
        assert_eq!(map["n1"].host_ip.as_deref(), Some("10.0.0.2"));
    }

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
