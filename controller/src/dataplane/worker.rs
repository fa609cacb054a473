//! The rsync-worker pod: one short-lived pod per PVC copy in the destination namespace. It
//! mounts the target PVC at `/data`, reads its client key and the agent's pinned host key
//! from a per-run Secret, pulls the volume from the agent and writes its JSON result to the
//! termination message, which is how the controller learns what happened.
//!
//! [`render_pod`] and [`render_secret`] are pure (every `dataSyncConfig` option is visible
//! in the rendered args, unit-tested); [`run`] creates both objects, watches the pod to its
//! end, parses the result and deletes both on every path. [`sweep`] removes what a crashed
//! controller left behind.

use std::collections::BTreeMap;
use std::time::Duration;

use dr_syncer_crds::annotations::VERIFICATION_MODE;
use dr_syncer_crds::common::{VerificationMode, parse_duration};
use dr_syncer_crds::namespace_mapping::PvcDataSyncConfig;
use dr_syncer_crds::remote_cluster::PvcSyncSpec;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::wait::{await_condition, delete::delete_and_finalize};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::json;

use super::config::PodImage;
use super::keys::{MANAGED_BY, MANAGED_BY_LABEL, WorkerCredentials};
use crate::replicate::MappingId;
use crate::status::reasons;

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
/// How long past the pod's deadline the controller waits for it (scheduling, volume
/// binding, image pull happen before the pod's clock starts).
pub const START_GRACE: Duration = Duration::from_secs(180);
/// Worker name prefix.
const NAME_PREFIX: &str = "dr-syncer-worker-";
/// Longest name part taken from the PVC (keeps the pod name a 63-character DNS label).
const MAX_PVC_PART: usize = 63 - NAME_PREFIX.len() - 6;
/// Characters of the random name suffix (as the API server's `generateName` uses).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The copy settings of one PVC, from `dataSyncConfig`, the source RemoteCluster's
/// defaults and the PVC's `dr-syncer.io/verification-mode` annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOptions {
    /// `excludePaths`.
    pub excludes: Vec<String>,
    /// `bandwidthLimit` converted from KiB/s to bytes/s; `None`: unlimited.
    pub bwlimit_bytes: Option<u64>,
    /// `rsyncOptions`, passed through (the worker refuses ones it cannot honour).
    pub rsync_options: Vec<String>,
    /// `timeout` of one copy.
    pub timeout: Duration,
    /// Verification in effect.
    pub verification: VerificationMode,
    /// Sample percentage (for `sample`).
    pub sample_percent: i32,
}

/// Why the options could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `dataSyncConfig.timeout` is not a duration.
    #[error("spec.pvcConfig.dataSyncConfig.timeout: {0}")]
    Timeout(String),
    /// The PVC's verification-mode annotation is not none, sample or full.
    #[error("annotation {VERIFICATION_MODE}={0:?} on the source PVC: use none, sample or full")]
    Verification(String),
}

impl DataOptions {
    /// Resolves the options for one PVC.
    pub fn resolve(
        cfg: Option<&PvcDataSyncConfig>,
        source: Option<&PvcSyncSpec>,
        pvc_annotations: &BTreeMap<String, String>,
    ) -> Result<Self, OptionsError> {
        let timeout_text = cfg.map_or("30m", |c| c.timeout.as_str());
        let timeout =
            parse_duration(timeout_text).map_err(|e| OptionsError::Timeout(e.to_string()))?;
        let verification = match pvc_annotations.get(VERIFICATION_MODE) {
            Some(v) => parse_verification(v)?,
            None => cfg
                .and_then(|c| c.verification_mode)
                .or(source.map(|s| s.default_verification_mode))
                .unwrap_or_default(),
        };
        Ok(DataOptions {
            excludes: cfg.map(|c| c.exclude_paths.clone()).unwrap_or_default(),
            bwlimit_bytes: cfg
                .and_then(|c| c.bandwidth_limit)
                .filter(|k| *k > 0)
                .map(|k| u64::from(k.unsigned_abs()) * 1024),
            rsync_options: cfg.map(|c| c.rsync_options.clone()).unwrap_or_default(),
            timeout: if timeout.is_zero() {
                Duration::from_secs(30 * 60)
            } else {
                timeout
            },
            verification,
            sample_percent: cfg
                .and_then(|c| c.sample_percent)
                .or(source.map(|s| s.default_sample_percent))
                .unwrap_or(10),
        })
    }

    /// Whole seconds of the timeout, at least 1.
    pub fn timeout_secs(&self) -> u64 {
        self.timeout.as_secs().max(1)
    }
}

fn parse_verification(text: &str) -> Result<VerificationMode, OptionsError> {
    serde_json::from_value(json!(text.trim().to_ascii_lowercase()))
        .map_err(|_| OptionsError::Verification(text.to_owned()))
}

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

/// The worker's command line.
pub fn worker_args(req: &WorkerRequest) -> Vec<String> {
    let o = &req.options;
    let mut args: Vec<String> = vec![
        "--agent".into(),
        req.agent.clone(),
        "--host-key-file".into(),
        format!("{SSH_DIR}/{KNOWN_HOST_FILE}"),
        "--key-file".into(),
        format!("{SSH_DIR}/{KEY_FILE}"),
        "--volume".into(),
        req.volume.clone(),
        "--dest".into(),
        DATA_DIR.into(),
        "--termination-log".into(),
        TERMINATION_LOG.into(),
        "--timeout".into(),
        o.timeout_secs().to_string(),
        // Retries are the controller's (per pvcSync.retryConfig, each in a fresh pod after
        // locating the volume again), so one pod never outlives its deadline retrying.
        "--retries".into(),
        "0".into(),
    ];
    for pattern in &o.excludes {
        args.push(format!("--exclude={pattern}"));
    }
    if let Some(bytes) = o.bwlimit_bytes {
        args.push(format!("--bwlimit={bytes}"));
    }
    for option in &o.rsync_options {
        args.push(format!("--rsync-option={option}"));
    }
    // Every transferred file is verified end to end by its BLAKE3 in any mode. full:
    // compare every file by content instead of trusting size+mtime; sample: the same for
    // samplePercent % of the files (chosen by path), repairing any that differ.
    match o.verification {
        VerificationMode::Full => args.push("--checksum".into()),
        VerificationMode::Sample => {
            args.push(format!(
                "--verify-sample={}",
                o.sample_percent.clamp(1, 100)
            ));
        }
        VerificationMode::None => {}
    }
    args
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
                "name": "worker",
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

/// What the worker reports on success (mirror of `dr_syncer_rsync::SyncSummary`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WorkerSummary {
    /// Entries in the source file list (after excludes).
    pub files_scanned: u64,
    /// Regular files whose data was transferred.
    pub files_transferred: u64,
    /// Target entries deleted.
    pub files_deleted: u64,
    /// File bytes sent literally.
    pub literal_bytes: u64,
    /// File bytes rebuilt from the target's own data.
    pub matched_bytes: u64,
    /// Bytes on the wire.
    pub wire_bytes: u64,
    /// Wall time of the pull.
    pub duration_seconds: f64,
    /// Total size of regular files at the source.
    pub total_size: u64,
}

/// What the worker reports on failure.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WorkerFailure {
    /// The error, in words.
    pub error: String,
    /// key, option, host_key_mismatch, auth_rejected, connection, sync or timeout.
    pub kind: String,
    /// Whether trying again may help.
    #[serde(default)]
    pub transient: bool,
    /// Attempts the worker made itself.
    #[serde(default)]
    pub attempts: u32,
}

/// Why a worker run failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The worker ran and reported a failure.
    #[error("worker failed ({}): {}", .0.kind, .0.error)]
    Worker(WorkerFailure),
    /// The pod failed without a readable report.
    #[error("worker pod {pod} failed: {message}")]
    PodFailed {
        /// Pod name.
        pod: String,
        /// Pod status reason and message, container exit.
        message: String,
        /// Whether the pod hit its deadline.
        deadline: bool,
    },
    /// The pod did not finish in time (never scheduled, volume never bound, hung).
    #[error("worker pod {pod} did not finish within {waited}s: {state}")]
    NotFinished {
        /// Pod name.
        pod: String,
        /// Seconds waited.
        waited: u64,
        /// Last known pod state.
        state: String,
    },
    /// The pod vanished before finishing (deleted by someone else).
    #[error("worker pod {0} was deleted before it finished")]
    Vanished(String),
    /// The copy settings are invalid.
    #[error(transparent)]
    Options(#[from] OptionsError),
    /// The destination API failed.
    #[error("destination cluster: {0}")]
    Api(String),
}

impl From<kube::Error> for RunError {
    fn from(e: kube::Error) -> Self {
        RunError::Api(e.to_string())
    }
}

impl RunError {
    /// Condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            RunError::Worker(f) => match f.kind.as_str() {
                "host_key_mismatch" => reasons::HOST_KEY_MISMATCH,
                "auth_rejected" => reasons::AUTH_REJECTED,
                "connection" => reasons::AGENT_UNREACHABLE,
                _ if is_not_mounted(&f.error) => reasons::VOLUME_NOT_MOUNTED,
                _ => reasons::DATA_SYNC_FAILED,
            },
            _ => reasons::DATA_SYNC_FAILED,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RunError::Worker(f) => {
                f.transient && matches!(f.kind.as_str(), "connection" | "timeout" | "sync")
            }
            RunError::PodFailed { deadline, .. } => *deadline,
            RunError::NotFinished { .. } | RunError::Vanished(_) | RunError::Api(_) => true,
            RunError::Options(_) => false,
        }
    }
}

/// The agent's refusal of a volume that is not on its node.
fn is_not_mounted(error: &str) -> bool {
    error.contains("not mounted") || error.contains("is not on node")
}

/// The worker's result from its terminated pod.
pub fn result_from_pod(pod: &Pod) -> Result<WorkerSummary, RunError> {
    let name = pod.name_any();
    let status = pod.status.clone().unwrap_or_default();
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "worker")
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    let message = terminated
        .as_ref()
        .and_then(|t| t.message.clone())
        .unwrap_or_default();
    let succeeded = status.phase.as_deref() == Some("Succeeded");
    if succeeded && let Ok(summary) = serde_json::from_str::<WorkerSummary>(message.trim()) {
        return Ok(summary);
    }
    if let Ok(failure) = serde_json::from_str::<WorkerFailure>(message.trim()) {
        return Err(RunError::Worker(failure));
    }
    let deadline = status.reason.as_deref() == Some("DeadlineExceeded");
    let mut parts: Vec<String> = Vec::new();
    parts.extend(status.reason.clone());
    parts.extend(status.message.clone());
    if let Some(t) = &terminated {
        parts.push(format!("exit code {}", t.exit_code));
        parts.extend(t.reason.clone());
    }
    if !message.trim().is_empty() {
        parts.push(crate::context::truncate(message.trim().to_owned(), 500));
    }
    if succeeded {
        parts.push("no readable summary in the termination message".into());
    }
    Err(RunError::PodFailed {
        pod: name,
        message: parts.join("; "),
        deadline,
    })
}

/// Pod phase and container waiting reason, for a "did not finish" message.
pub fn describe_state(pod: Option<&Pod>) -> String {
    let Some(status) = pod.and_then(|p| p.status.as_ref()) else {
        return "pod not found".into();
    };
    let mut parts = vec![format!(
        "phase {}",
        status.phase.as_deref().unwrap_or("unknown")
    )];
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            parts.push(format!(
                "waiting: {} {}",
                w.reason.as_deref().unwrap_or_default(),
                w.message.as_deref().unwrap_or_default()
            ));
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.status == "False"
            && let Some(m) = &c.message
        {
            parts.push(format!("{}: {m}", c.type_));
        }
    }
    parts.join("; ")
}

fn is_finished(pod: Option<&Pod>) -> bool {
    match pod {
        None => true,
        Some(p) => matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        ),
    }
}

/// Clients of the destination cluster: one for requests, one for the long watch.
#[derive(Clone)]
pub struct Destination {
    /// Requests (short timeout).
    pub client: Client,
    /// Watches (no read timeout).
    pub watch_client: Client,
}

/// Runs one worker to completion: creates the pod and its Secret, waits for the end,
/// reads the result, and deletes both whatever happened.
pub async fn run(
    dest: &Destination,
    req: &WorkerRequest,
    creds: &WorkerCredentials,
) -> Result<WorkerSummary, RunError> {
    let pods: Api<Pod> = Api::namespaced(dest.client.clone(), &req.namespace);
    let created = pods
        .create(&PostParams::default(), &render_pod(req))
        .await?;
    let result = run_created(dest, req, creds, &created).await;
    cleanup(dest, &req.namespace, &req.pod_name).await;
    result
}

async fn run_created(
    dest: &Destination,
    req: &WorkerRequest,
    creds: &WorkerCredentials,
    pod: &Pod,
) -> Result<WorkerSummary, RunError> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(dest.client.clone(), &req.namespace);
    secrets
        .create(&PostParams::default(), &render_secret(req, &uid, creds))
        .await?;
    let watch: Api<Pod> = Api::namespaced(dest.watch_client.clone(), &req.namespace);
    let limit =
        Duration::from_secs(req.options.timeout_secs() + DEADLINE_MARGIN_SECS) + START_GRACE;
    let done = tokio::time::timeout(
        limit,
        await_condition(watch, &req.pod_name, |p: Option<&Pod>| is_finished(p)),
    )
    .await;
    match done {
        Ok(Ok(Some(pod))) => result_from_pod(&pod),
        Ok(Ok(None)) => Err(RunError::Vanished(req.pod_name.clone())),
        Ok(Err(e)) => Err(RunError::Api(e.to_string())),
        Err(_) => {
            let pods: Api<Pod> = Api::namespaced(dest.client.clone(), &req.namespace);
            let last = pods.get_opt(&req.pod_name).await.ok().flatten();
            Err(RunError::NotFinished {
                pod: req.pod_name.clone(),
                waited: limit.as_secs(),
                state: describe_state(last.as_ref()),
            })
        }
    }
}

/// How long deleting a worker pod may take before the controller moves on (the garbage
/// collector and the next sweep finish the job).
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// Deletes a worker's Secret and pod (waiting until the pod is gone); failures are logged.
pub async fn cleanup(dest: &Destination, namespace: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(dest.client.clone(), namespace);
    if let Err(e) = secrets.delete(name, &DeleteParams::default()).await
        && !is_not_found(&e)
    {
        tracing::warn!(secret = name, error = %e, "deleting a worker Secret failed");
    }
    let pods: Api<Pod> = Api::namespaced(dest.watch_client.clone(), namespace);
    let params = DeleteParams::default().grace_period(0);
    match tokio::time::timeout(DELETE_TIMEOUT, delete_and_finalize(pods, name, &params)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(pod = name, error = %e, "deleting a worker pod failed"),
        Err(_) => tracing::warn!(
            pod = name,
            "worker pod still terminating; the next sync sweeps it"
        ),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Deletes every worker pod and Secret of the mapping in `namespace` (leftovers of a
/// controller that died mid-copy). Returns how many objects it deleted.
pub async fn sweep(
    dest: &Destination,
    namespace: &str,
    mapping: &MappingId,
) -> Result<usize, kube::Error> {
    let selector = mapping_selector(mapping);
    let params = ListParams::default().labels(&selector);
    let pods: Api<Pod> = Api::namespaced(dest.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(dest.client.clone(), namespace);
    let mut names: Vec<String> = pods
        .list_metadata(&params)
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    for s in secrets.list_metadata(&params).await?.items {
        let name = s.name_any();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    for name in &names {
        tracing::info!(%name, "removing a leftover worker pod/Secret");
        cleanup(dest, namespace, name).await;
    }
    Ok(names.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn request(cfg: serde_json::Value) -> WorkerRequest {
        let cfg: PvcDataSyncConfig = serde_json::from_value(cfg).unwrap();
        WorkerRequest {
            pod_name: "dr-syncer-worker-data-abcde".into(),
            namespace: "app-dr".into(),
            mapping: MappingId::new("dr", "web"),
            pvc: "data".into(),
            volume: "app/data".into(),
            agent: "127.0.10.1:2222".into(),
            image: PodImage::new("ghcr.io/x/dr-syncer-rsync-worker:1"),
            options: DataOptions::resolve(Some(&cfg), None, &BTreeMap::new()).unwrap(),
        }
    }

    fn pair(args: &[String], flag: &str) -> Option<String> {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    }

    #[test]
    fn contract_args_are_always_there() {
        let args = worker_args(&request(json!({})));
        assert_eq!(pair(&args, "--agent").as_deref(), Some("127.0.10.1:2222"));
        assert_eq!(
            pair(&args, "--host-key-file").as_deref(),
            Some("/etc/dr-syncer/ssh/known_host")
        );
        assert_eq!(
            pair(&args, "--key-file").as_deref(),
            Some("/etc/dr-syncer/ssh/id_ed25519")
        );
        assert_eq!(pair(&args, "--volume").as_deref(), Some("app/data"));
        assert_eq!(pair(&args, "--dest").as_deref(), Some("/data"));
        assert_eq!(
            pair(&args, "--termination-log").as_deref(),
            Some("/dev/termination-log")
        );
        // Default timeout 30m.
        assert_eq!(pair(&args, "--timeout").as_deref(), Some("1800"));
        assert_eq!(pair(&args, "--retries").as_deref(), Some("0"));
        assert!(!args.iter().any(|a| a == "--checksum"));
        assert!(!args.iter().any(|a| a.starts_with("--bwlimit")));
    }

    #[test]
    fn every_data_sync_option_lands_in_args() {
        let req = request(json!({
            "excludePaths": ["tmp/", "*.log"],
            "rsyncOptions": ["--delete", "--exclude=*.bak"],
            "bandwidthLimit": 512,
            "timeout": "1h30m",
            "verificationMode": "full",
        }));
        let args = worker_args(&req);
        assert!(args.contains(&"--exclude=tmp/".to_owned()), "{args:?}");
        assert!(args.contains(&"--exclude=*.log".to_owned()), "{args:?}");
        assert!(args.contains(&"--rsync-option=--delete".to_owned()));
        assert!(args.contains(&"--rsync-option=--exclude=*.bak".to_owned()));
        assert!(args.contains(&"--bwlimit=524288".to_owned()), "{args:?}");
        assert_eq!(pair(&args, "--timeout").as_deref(), Some("5400"));
        assert!(args.contains(&"--checksum".to_owned()));
        // 0 means unlimited.
        let args = worker_args(&request(json!({"bandwidthLimit": 0})));
        assert!(!args.iter().any(|a| a.starts_with("--bwlimit")));
    }

    #[test]
    fn verification_defaults_and_annotation_override() {
        let source: PvcSyncSpec = serde_json::from_value(
            json!({"enabled": true, "defaultVerificationMode": "full", "defaultSamplePercent": 25}),
        )
        .unwrap();
        let opts = DataOptions::resolve(None, Some(&source), &BTreeMap::new()).unwrap();
        assert_eq!(opts.verification, VerificationMode::Full);
        assert_eq!(opts.sample_percent, 25);
        let cfg: PvcDataSyncConfig =
            serde_json::from_value(json!({"verificationMode": "sample"})).unwrap();
        let opts = DataOptions::resolve(Some(&cfg), Some(&source), &BTreeMap::new()).unwrap();
        assert_eq!(opts.verification, VerificationMode::Sample);
        let args = worker_args(&request(
            json!({"verificationMode": "sample", "samplePercent": 30}),
        ));
        assert!(args.contains(&"--verify-sample=30".to_owned()), "{args:?}");
        assert!(!args.contains(&"--checksum".to_owned()));
        let ann = BTreeMap::from([(VERIFICATION_MODE.to_owned(), "None".to_owned())]);
        let opts = DataOptions::resolve(Some(&cfg), Some(&source), &ann).unwrap();
        assert_eq!(opts.verification, VerificationMode::None);
        let bad = BTreeMap::from([(VERIFICATION_MODE.to_owned(), "paranoid".to_owned())]);
        let err = DataOptions::resolve(None, None, &bad).unwrap_err();
        assert!(err.to_string().contains("paranoid"));
    }

    #[test]
    fn pod_carries_the_configured_pull_policy_and_pull_secrets() {
        let mut req = request(json!({}));
        req.image = PodImage {
            reference: "reg.example/dr/dr-syncer-rsync-worker@sha256:0f".into(),
            pull_policy: Some("Always".into()),
            pull_secrets: vec!["regcred".into(), "mirror".into()],
        };
        let spec = render_pod(&req).spec.unwrap();
        let c = &spec.containers[0];
        assert_eq!(
            c.image.as_deref(),
            Some("reg.example/dr/dr-syncer-rsync-worker@sha256:0f")
        );
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            crate::dataplane::config::pull_secret_names(&spec),
            ["regcred", "mirror"]
        );
    }

    #[test]
    fn pod_mounts_pvc_and_secret_with_deadline_and_labels() {
        let req = request(json!({"timeout": "10m"}));
        let pod = render_pod(&req);
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "dr-syncer-worker-data-abcde");
        assert_eq!(v["metadata"]["namespace"], "app-dr");
        let labels = &v["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/name"], "dr-syncer-rsync-worker");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "dr-syncer");
        assert_eq!(labels["dr-syncer.io/mapping"], "dr.web");
        assert_eq!(labels["dr-syncer.io/pvc"], "data");
        let spec = &v["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["activeDeadlineSeconds"], 600 + DEADLINE_MARGIN_SECS);
        let c = &spec["containers"][0];
        assert_eq!(c["image"], "ghcr.io/x/dr-syncer-rsync-worker:1");
        assert_eq!(pod.spec.as_ref().unwrap().image_pull_secrets, None);
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image_pull_policy,
            None
        );
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["resources"]["requests"]["memory"], "64Mi");
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/data");
        assert_eq!(c["volumeMounts"][1]["mountPath"], "/etc/dr-syncer/ssh");
        assert_eq!(c["volumeMounts"][1]["readOnly"], true);
        assert_eq!(
            spec["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "data"
        );
        assert_eq!(
            spec["volumes"][1]["secret"]["secretName"],
            "dr-syncer-worker-data-abcde"
        );
        assert_eq!(
            mapping_selector(&req.mapping),
            "app.kubernetes.io/name=dr-syncer-rsync-worker,dr-syncer.io/mapping=dr.web"
        );
    }

    #[test]
    fn secret_holds_both_halves_and_is_owned_by_the_pod() {
        let req = request(json!({}));
        let creds = WorkerCredentials {
            client_private_key: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n".into(),
            agent_host_public_key: "ssh-ed25519 AAAAC3 host".into(),
        };
        let s = render_secret(&req, "uid-1", &creds);
        let data = s.string_data.unwrap();
        assert_eq!(data[KEY_FILE], creds.client_private_key);
        assert_eq!(data[KNOWN_HOST_FILE], "ssh-ed25519 AAAAC3 host\n");
        let owner = &s.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.kind, "Pod");
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.name, req.pod_name);
        assert_eq!(
            s.metadata.labels.unwrap()[MAPPING_LABEL],
            req.mapping.label_value()
        );
    }

    #[test]
    fn names_are_dns_labels() {
        let n = worker_name("data");
        assert!(n.starts_with("dr-syncer-worker-data-"), "{n}");
        assert_eq!(n.len(), "dr-syncer-worker-data-".len() + 5);
        let long = worker_name(&format!("{}-x", "a".repeat(39)));
        assert!(long.len() <= 63, "{long}");
        assert!(!long.contains("--"), "{long}");
        assert_ne!(worker_name("data"), worker_name("data"));
        assert_eq!(label_value("short"), "short");
        assert!(label_value(&"p".repeat(100)).len() <= 63);
    }

    fn terminated(phase: &str, message: &str, reason: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "w"},
            "status": {
                "phase": phase,
                "reason": reason,
                "containerStatuses": [{
                    "name": "worker", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 1, "message": message}},
                }],
            },
        }))
        .unwrap()
    }

    #[test]
    fn success_summary_is_parsed() {
        let msg = r#"{"files_scanned":10,"files_transferred":3,"files_deleted":1,"literal_bytes":100,"matched_bytes":900,"wire_bytes":150,"duration_seconds":1.5,"total_size":1000,"other_entries_changed":0,"metadata_updated":0,"files_vanished":0,"dry_run":false}"#;
        let s = result_from_pod(&terminated("Succeeded", msg, None)).unwrap();
        assert_eq!(s.files_scanned, 10);
        assert_eq!(s.matched_bytes, 900);
        assert_eq!(s.wire_bytes, 150);
    }

    #[test]
    fn failure_kinds_map_to_reasons() {
        let fail = |kind: &str, transient: bool, error: &str| {
            let msg = json!({"error": error, "kind": kind, "transient": transient, "attempts": 2})
                .to_string();
            result_from_pod(&terminated("Failed", &msg, None)).unwrap_err()
        };
        let e = fail("host_key_mismatch", false, "host key mismatch");
        assert_eq!(e.reason(), reasons::HOST_KEY_MISMATCH);
        assert!(!e.is_transient());
        assert_eq!(
            fail("auth_rejected", false, "x").reason(),
            reasons::AUTH_REJECTED
        );
        let e = fail("connection", true, "connection refused");
        assert_eq!(e.reason(), reasons::AGENT_UNREACHABLE);
        assert!(e.is_transient());
        assert!(e.to_string().contains("connection refused"));
        assert!(fail("sync", true, "reset").is_transient());
        assert!(!fail("sync", false, "disk full").is_transient());
        assert!(!fail("option", false, "bad").is_transient());
        assert_eq!(
            fail("sync", false, "volume app/data is not on node n2").reason(),
            reasons::VOLUME_NOT_MOUNTED
        );
        // A pod killed by its deadline without a report: a transient timeout.
        let e = result_from_pod(&terminated("Failed", "", Some("DeadlineExceeded"))).unwrap_err();
        assert!(e.is_transient());
        assert!(e.to_string().contains("DeadlineExceeded"), "{e}");
        // Succeeded without a summary is a failure too.
        assert!(result_from_pod(&terminated("Succeeded", "garbage", None)).is_err());
    }
}
