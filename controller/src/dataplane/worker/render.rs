//! Pure renderings of worker pods: names, labels, the data-sync pod and its per-run
//! Secret, and the ClusterMapping connectivity-check pod with its Secret and namespace.
//! Every flag comes from the wire contract's [`WorkerArgs`], so what the pod runs is what
//! the worker parses; the tests pin each `dataSyncConfig` option in the rendered args.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_crds::common::VerificationMode;
use dr_syncer_worker_wire::WorkerArgs;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use serde_json::json;

use super::options::DataOptions;
use crate::dataplane::config::PodImage;
use crate::dataplane::keys::{MANAGED_BY, MANAGED_BY_LABEL, WorkerCredentials};
use crate::replicate::MappingId;

/// `app.kubernetes.io/name` of worker pods and their Secrets.
pub const WORKER_APP: &str = "dr-syncer-rsync-worker";
/// Standard label naming the application.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label: the NamespaceMapping a worker runs for (`<namespace>.<name>`, hashed when long).
pub const MAPPING_LABEL: &str = "dr-syncer.io/mapping";
/// Label: the PVC a worker copies.
pub const PVC_LABEL: &str = "dr-syncer.io/pvc";
/// Where the per-run Secret is mounted in the worker.
pub const SSH_DIR: &str = "/etc/dr-syncer/ssh";
/// Key (and file) of the client private key in the per-run Secret.
pub const KEY_FILE: &str = "id_ed25519";
/// Key (and file) of the pinned agent host key in the per-run Secret.
pub const KNOWN_HOST_FILE: &str = "known_host";
/// Where the target PVC is mounted in the worker.
pub const DATA_DIR: &str = "/data";
/// Termination message path (the Kubernetes default).
pub const TERMINATION_LOG: &str = "/dev/termination-log";
/// Seconds added to the copy timeout for `activeDeadlineSeconds`, so the worker's own
/// timeout fires first and reports itself.
pub const DEADLINE_MARGIN_SECS: u64 = 30;
/// Name of the data-sync pod's container (its termination message is the result).
pub const WORKER_CONTAINER: &str = "worker";
/// Name of the check pod's container.
pub const CHECK_CONTAINER: &str = "check";
/// Worker name prefix.
const NAME_PREFIX: &str = "dr-syncer-worker-";
/// Longest name part taken from the PVC (keeps the pod name a 63-character DNS label).
const MAX_PVC_PART: usize = 63 - NAME_PREFIX.len() - 6;
/// Characters of the random name suffix (as the API server's `generateName` uses).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Everything that goes into one worker pod.
#[derive(Debug, Clone)]
pub struct WorkerRequest {
    /// Pod (and Secret) name, from [`worker_name`].
    pub pod_name: String,
    /// Destination namespace (where the target PVC is).
    pub namespace: String,
    /// The mapping the copy belongs to (labels).
    pub mapping: MappingId,
    /// Target PVC name (also the source PVC name).
    pub pvc: String,
    /// Volume the agent serves: `<source namespace>/<pvc>`.
    pub volume: String,
    /// Agent `ip:port`.
    pub agent: String,
    /// Worker image, its pull policy and pull secrets.
    pub image: PodImage,
    /// Copy settings.
    pub options: DataOptions,
}

/// `dr-syncer-worker-<pvc, truncated>-<5 random characters>`.
pub fn worker_name(pvc: &str) -> String {
    let mut part: String = pvc.chars().take(MAX_PVC_PART).collect();
    while part.ends_with(['-', '.']) {
        part.pop();
    }
    format!("{NAME_PREFIX}{part}-{}", random_suffix())
}

fn random_suffix() -> String {
    (0..5)
        .map(|_| {
            let i = rand::random_range(0..SUFFIX_ALPHABET.len());
            char::from(SUFFIX_ALPHABET[i])
        })
        .collect()
}

/// A label value: itself when valid, else `h-` and a hash (labels are at most 63 chars).
pub fn label_value(value: &str) -> String {
    if value.len() <= 63 {
        return value.to_owned();
    }
    let hash = blake3::hash(value.as_bytes()).to_hex();
    format!("h-{}", &hash.as_str()[..40])
}

/// Label selector of every worker pod and Secret of a mapping.
pub fn mapping_selector(mapping: &MappingId) -> String {
    format!(
        "{NAME_LABEL}={WORKER_APP},{MAPPING_LABEL}={}",
        mapping.label_value()
    )
}

/// Labels of a worker pod and its Secret.
pub fn labels(mapping: &MappingId, pvc: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_owned(), WORKER_APP.to_owned()),
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (MAPPING_LABEL.to_owned(), mapping.label_value()),
        (PVC_LABEL.to_owned(), label_value(pvc)),
    ])
}

/// The worker's command line, as the wire contract's type.
pub fn worker_cli(req: &WorkerRequest) -> WorkerArgs {
    let o = &req.options;
    WorkerArgs {
        termination_log: Some(TERMINATION_LOG.into()),
        timeout: Some(o.timeout_secs()),
        // Retries are the controller's (per pvcSync.retryConfig, each in a fresh pod after
        // locating the volume again), so one pod never outlives its deadline retrying.
        retries: 0,
        exclude: o.excludes.clone(),
        bwlimit: o.bwlimit_bytes,
        rsync_option: o.rsync_options.clone(),
        // Every transferred file is verified end to end by its BLAKE3 in any mode. full:
        // compare every file by content instead of trusting size+mtime; sample: the same
        // for samplePercent % of the files (chosen by path), repairing any that differ.
        checksum: o.verification == VerificationMode::Full,
        verify_sample: (o.verification == VerificationMode::Sample)
            .then(|| u8::try_from(o.sample_percent.clamp(1, 100)).unwrap_or(100)),
        allow_mass_deletion: o.allow_mass_deletion,
        ..WorkerArgs::pull(
            req.agent.clone(),
            format!("{SSH_DIR}/{KNOWN_HOST_FILE}"),
            format!("{SSH_DIR}/{KEY_FILE}"),
            req.volume.clone(),
            DATA_DIR,
        )
    }
}

/// The worker's command line, rendered.
pub fn worker_args(req: &WorkerRequest) -> Vec<String> {
    worker_cli(req).to_args()
}

/// The worker pod.
pub fn render_pod(req: &WorkerRequest) -> Pod {
    let deadline = req.options.timeout_secs() + DEADLINE_MARGIN_SECS;
    let value = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": req.pod_name,
            "namespace": req.namespace,
            "labels": labels(&req.mapping, &req.pvc),
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "imagePullSecrets": req.image.pull_secret_refs(),
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": WORKER_CONTAINER,
                "image": req.image.reference,
                "imagePullPolicy": req.image.pull_policy,
                "args": worker_args(req),
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
                "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"memory": "1Gi"},
                },
                "volumeMounts": [
                    {"name": "data", "mountPath": DATA_DIR},
                    {"name": "ssh", "mountPath": SSH_DIR, "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": req.pvc}},
                {"name": "ssh", "secret": {"secretName": req.pod_name, "defaultMode": 0o400}},
            ],
        },
    });
    // The JSON above is a valid Pod by construction.
    serde_json::from_value(value).unwrap_or_default()
}

/// The per-run Secret: the client key and the pinned host key, owned by the pod so the
/// garbage collector removes it with the pod even if the controller dies.
pub fn render_secret(req: &WorkerRequest, pod_uid: &str, creds: &WorkerCredentials) -> Secret {
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: req.pod_name.clone(),
        uid: pod_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    let known_host = format!("{}\n", creds.agent_host_public_key.trim_end());
    Secret {
        metadata: ObjectMeta {
            name: Some(req.pod_name.clone()),
            namespace: Some(req.namespace.clone()),
            labels: Some(labels(&req.mapping, &req.pvc)),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([
            (KEY_FILE.to_owned(), creds.client_private_key.clone()),
            (KNOWN_HOST_FILE.to_owned(), known_host),
        ])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// Namespace of the connectivity check pods in target clusters.
pub const CHECK_NAMESPACE: &str = "dr-syncer-system";
/// Label naming the part of the application a pod is (here: the connectivity check).
const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// Per-run names of a ClusterMapping's check: pod and Secret share it.
pub fn check_name(cm: &str) -> String {
    let suffix: String = (0..5)
        .map(|_| {
            let n: u8 = rand::random_range(0..36);
            (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
        })
        .collect();
    let mut base = format!("dr-syncer-check-{cm}");
    base.truncate(56);
    format!("{}-{suffix}", base.trim_end_matches('-'))
}

/// The check pod's command line: `--check` against every agent address.
pub fn check_cli(addresses: &[String], timeout: Duration) -> WorkerArgs {
    WorkerArgs {
        termination_log: Some(TERMINATION_LOG.into()),
        timeout: Some(timeout.as_secs().max(1)),
        ..WorkerArgs::check(
            addresses.to_vec(),
            format!("{SSH_DIR}/{KNOWN_HOST_FILE}"),
            format!("{SSH_DIR}/{KEY_FILE}"),
        )
    }
}

/// The check pod: the worker image in `--check` mode against every agent address.
pub fn check_pod(name: &str, image: &PodImage, addresses: &[String], timeout: Duration) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": CHECK_NAMESPACE,
            "labels": {
                NAME_LABEL: WORKER_APP,
                MANAGED_BY_LABEL: MANAGED_BY,
                COMPONENT_LABEL: "connectivity-check",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": timeout.as_secs() + 30,
            "automountServiceAccountToken": false,
            "imagePullSecrets": image.pull_secret_refs(),
            "containers": [{
                "name": CHECK_CONTAINER,
                "image": image.reference,
                "imagePullPolicy": image.pull_policy,
                "args": check_cli(addresses, timeout).to_args(),
                "terminationMessagePath": TERMINATION_LOG,
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"name": "ssh", "mountPath": SSH_DIR, "readOnly": true}],
            }],
            "volumes": [{"name": "ssh", "secret": {"secretName": name, "defaultMode": 0o400}}],
        }
    }))
    .unwrap_or_default()
}

/// The check Secret's owner: the check pod (not as its controller), so the garbage
/// collector removes the Secret even if the controller dies before cleaning up.
pub fn check_owner(pod: &Pod) -> Option<OwnerReference> {
    pod.controller_owner_ref(&()).map(|mut o| {
        o.controller = Some(false);
        o.block_owner_deletion = None;
        o
    })
}

/// The check's per-run Secret: only the client private key and the agents' public host key.
pub fn check_secret(
    name: &str,
    creds: &WorkerCredentials,
    owner: Option<OwnerReference>,
) -> Secret {
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(CHECK_NAMESPACE.to_owned()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    secret.string_data = Some(BTreeMap::from([
        (KEY_FILE.to_owned(), creds.client_private_key.clone()),
        (
            KNOWN_HOST_FILE.to_owned(),
            creds.agent_host_public_key.clone(),
        ),
    ]));
    secret
}

/// The namespace the check pods run in, applied before each check.
pub fn check_namespace() -> Namespace {
    serde_json::from_value(json!({
        "metadata": {"name": CHECK_NAMESPACE, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests;
