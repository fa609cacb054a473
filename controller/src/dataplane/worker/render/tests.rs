#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use dr_syncer_crds::annotations::VERIFICATION_MODE;
use dr_syncer_crds::common::VerificationMode;
use dr_syncer_crds::namespace_mapping::PvcDataSyncConfig;
use dr_syncer_crds::remote_cluster::PvcSyncSpec;
use dr_syncer_worker_wire::WorkerArgs;
use serde_json::json;

use super::*;
use crate::dataplane::config::PodImage;
use crate::dataplane::keys::WorkerCredentials;
use crate::dataplane::worker::options::DataOptions;
use crate::replicate::MappingId;

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

#[test]
fn check_pod_runs_the_worker_in_check_mode_against_every_agent() {
    let pod = check_pod(
        "dr-syncer-check-x-abcde",
        &PodImage {
            reference: "w:1".into(),
            pull_policy: Some("Always".into()),
            pull_secrets: vec!["regcred".into()],
        },
        &["10.0.0.1:2222".to_owned(), "10.0.0.2:2222".to_owned()],
        Duration::from_secs(60),
    );
    let spec = pod.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    assert_eq!(spec.active_deadline_seconds, Some(90));
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("w:1"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(spec.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    let args = c.args.clone().unwrap().join(" ");
    assert!(
        args.starts_with("--check --agent 10.0.0.1:2222 --agent 10.0.0.2:2222"),
        "{args}"
    );
    assert!(args.contains("--host-key-file /etc/dr-syncer/ssh/known_host"));
    assert!(args.contains("--key-file /etc/dr-syncer/ssh/id_ed25519"));
    let vol = &spec.volumes.unwrap()[0];
    assert_eq!(
        vol.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("dr-syncer-check-x-abcde")
    );
    let name = check_name(&"x".repeat(80));
    assert!(name.len() <= 63, "{name}");
}

/// The args the controller renders parse, with the worker's own parser, back to the same
/// request: the two sides of the wire contract agree.
#[test]
fn rendered_args_parse_back_to_the_same_request() {
    let parse = |args: Vec<String>| {
        WorkerArgs::try_parse_from(std::iter::once("dr-syncer-rsync-worker".to_owned()).chain(args))
            .unwrap()
    };
    let req = request(json!({
        "excludePaths": ["tmp/"],
        "rsyncOptions": ["--delete"],
        "bandwidthLimit": 512,
        "verificationMode": "sample",
        "samplePercent": 30,
    }));
    assert_eq!(parse(worker_args(&req)), worker_cli(&req));
    let check = check_cli(&["10.0.0.1:2222".to_owned()], Duration::from_secs(60));
    assert_eq!(parse(check.to_args()), check);
}

#[test]
fn check_objects_keep_their_names_and_labels() {
    let pod = check_pod(
        "dr-syncer-check-x-abcde",
        &PodImage::new("w:1"),
        &["10.0.0.1:2222".to_owned()],
        Duration::from_secs(60),
    );
    let v = serde_json::to_value(&pod).unwrap();
    assert_eq!(v["metadata"]["namespace"], "dr-syncer-system");
    assert_eq!(
        v["metadata"]["labels"],
        json!({
            "app.kubernetes.io/name": "dr-syncer-rsync-worker",
            "app.kubernetes.io/managed-by": "dr-syncer",
            "app.kubernetes.io/component": "connectivity-check",
        })
    );
    assert_eq!(v["spec"]["containers"][0]["name"], "check");
    assert_eq!(
        v["spec"]["containers"][0]["terminationMessagePath"],
        "/dev/termination-log"
    );
    let creds = WorkerCredentials {
        client_private_key: "key".into(),
        agent_host_public_key: "ssh-ed25519 AAAAC3 host".into(),
    };
    let s = check_secret("dr-syncer-check-x-abcde", &creds, None);
    let data = s.string_data.unwrap();
    assert_eq!(data["id_ed25519"], "key");
    assert_eq!(data["known_host"], "ssh-ed25519 AAAAC3 host");
    assert_eq!(s.metadata.namespace.as_deref(), Some("dr-syncer-system"));
    assert_eq!(
        s.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "dr-syncer"
    );
    let ns = serde_json::to_value(check_namespace()).unwrap();
    assert_eq!(ns["metadata"]["name"], "dr-syncer-system");
    assert_eq!(
        ns["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "dr-syncer"
    );
}

#[test]
fn mass_deletion_is_allowed_only_when_the_mapping_says_so() {
    let mut req = request(json!({}));
    let guarded = worker_args(&req);
    assert!(!guarded.iter().any(|a| a == "--allow-mass-deletion"));
    req.options.allow_mass_deletion = true;
    let args = worker_args(&req);
    assert!(args.iter().any(|a| a == "--allow-mass-deletion"));
    // and the worker's own parser reads it back
    let parsed = WorkerArgs::try_parse_from(
        std::iter::once("dr-syncer-rsync-worker".to_string()).chain(args),
    )
    .unwrap();
    assert!(parsed.allow_mass_deletion);
}
