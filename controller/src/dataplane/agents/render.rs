//! The agent's objects as values: Namespace, ServiceAccount, the least-privilege ClusterRole
//! and binding, the SSH Secret and the DaemonSet. Pure, so every field is unit-tested.

use std::collections::BTreeMap;

use dr_syncer_crds::remote_cluster::{PvcSyncDeployment, RemoteCluster};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HostPathVolumeSource, Namespace,
    ObjectFieldSelector, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Secret,
    SecretVolumeSource, SecurityContext, ServiceAccount, TCPSocketAction, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    AGENT_NAME, AGENT_NAMESPACE, AGENT_SECRET, AUTHORIZED_KEYS, DEFAULT_PORT, HOST_ROOT,
    KEYS_HASH_ANNOTATION, NAME_LABEL, SSH_MOUNT,
};
use crate::dataplane::config::PodImage;
use crate::dataplane::keys::{HOST_PRIVATE_KEY, MANAGED_BY, MANAGED_BY_LABEL};

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(super) mod tests {
    use super::*;
    use crate::dataplane::agents::AGENT_SELECTOR;
    use crate::dataplane::fixtures::remote_cluster;

    /// A RemoteCluster named `dr/prod` with the given `spec.pvcSync`.
    pub(in crate::dataplane::agents) fn rc(pvc_sync: serde_json::Value) -> RemoteCluster {
        remote_cluster("prod", pvc_sync)
    }

    /// The objects rendered for a cluster with only `pvcSync.enabled`, the agent image
    /// `image` and the keys hash `hash`.
    pub(in crate::dataplane::agents) fn render_enabled(image: &str, hash: &str) -> Rendered {
        render(
            &rc(serde_json::json!({"enabled": true})),
            &PodImage::new(image),
            hash,
        )
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
        let r = render_enabled("img:1", "h1");
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
        let plain = render_enabled("i", "h");
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
        let r = render_enabled("i", "h");
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
}
