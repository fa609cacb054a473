//! Install like a real operator (issue 7): the Helm chart in `deploy/helm/dr-syncer` lints,
//! its schema rejects bad values, its CRDs are the generated ones, the kustomize manifests
//! are the rendered chart, and the rendered chart, applied with `kubectl` to the test bed's
//! controller cluster, runs the controller as a pod (its ServiceAccount, in-cluster config,
//! the chart's RBAC only) that replicates the `deploy/examples/` namespace.
//!
//! Needs `helm` (`scripts/build-helm.sh` builds it into `.cache/helm/bin/`; `HELM` overrides).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use controller_support::*;
use dr_syncer_crds::namespace_mapping::SyncPhase;
use dr_syncer_crds::{NamespaceMapping, RemoteCluster};
use dr_syncer_e2e::node::status::first_waiting;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use kube::runtime::wait::Condition;

/// Namespace the chart is installed in (as in docs/install.md and deploy/manifests/).
const RELEASE_NS: &str = "dr-syncer";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn chart() -> PathBuf {
    repo().join("deploy/helm/dr-syncer")
}

fn helm() -> PathBuf {
    let path = std::env::var_os("HELM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/helm/bin/helm"));
    assert!(
        path.exists(),
        "{} not found: run scripts/build-helm.sh (or set HELM)",
        path.display()
    );
    path
}

/// Runs a command; `Ok(stdout)` on exit 0, `Err(stdout + stderr)` otherwise.
fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Result<String, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut input = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `helm template dr-syncer <chart> --namespace dr-syncer --include-crds <extra>`.
fn render(extra: &[&str]) -> Result<String, String> {
    run(
        Command::new(helm())
            .args(["template", "dr-syncer"])
            .arg(chart())
            .args(["--namespace", RELEASE_NS, "--include-crds"])
            .args(extra),
        None,
    )
}

#[test]
fn helm_lint_passes_strict() {
    let out = run(
        Command::new(helm()).args(["lint", "--strict"]).arg(chart()),
        None,
    )
    .unwrap();
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn values_schema_rejects_bad_values_naming_the_field() {
    let cases = [
        ("controller.replicas=many", "/controller/replicas"),
        ("logging.format=xml", "/logging/format"),
        ("controler.replicas=1", "controler"),
        ("metrics.port=70000", "/metrics/port"),
        (
            "images.agent.pullPolicy=Sometimes",
            "/images/agent/pullPolicy",
        ),
        ("controller.concurrency=0", "/controller/concurrency"),
        ("images.agent.digest=sha256:zz", "/images/agent/digest"),
        (
            "remoteImagePullSecrets[0].name=Bad_Name",
            "/remoteImagePullSecrets/0/name",
        ),
    ];
    let mut wrong = Vec::new();
    for (set, field) in cases {
        match render(&["--set", set]) {
            Ok(_) => wrong.push(format!("{set}: accepted")),
            Err(e) if !e.contains(field) => wrong.push(format!("{set}: error lacks {field}: {e}")),
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // And good values pass, with what they set rendered.
    let out = render(&[
        "--set",
        "controller.replicas=2,logging.format=text,metrics.serviceMonitor.enabled=true",
    ])
    .unwrap();
    assert!(out.contains("replicas: 2"), "{out}");
    assert!(out.contains("--log-format=text"), "{out}");
    assert!(out.contains("kind: ServiceMonitor"), "{out}");
}

/// The values of issue 15: a digest pins an image instead of the tag, and the data plane's
/// pull policies and `remoteImagePullSecrets` reach the controller, which puts them on the
/// pods it creates in remote clusters (unit tests in the controller check that part).
#[test]
fn image_digests_pull_policies_and_remote_pull_secrets_reach_the_controller() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let out = render(&[
        "--set",
        &format!("images.agent.digest={digest},images.controller.digest={digest}"),
        "--set",
        "images.rsyncWorker.tag=9.9.9,images.rsyncWorker.pullPolicy=Always",
        "--set",
        "remoteImagePullSecrets[0].name=regcred,remoteImagePullSecrets[1].name=mirror",
    ])
    .unwrap();
    let env = |name: &str| {
        let at = out
            .find(&format!("- name: {name}\n"))
            .unwrap_or_else(|| panic!("{name} not rendered:\n{out}"));
        let value = out[at..].lines().nth(1).unwrap().trim();
        value
            .trim_start_matches("value: ")
            .trim_matches('"')
            .to_owned()
    };
    assert_eq!(
        env("DR_SYNCER_AGENT_IMAGE"),
        format!("ghcr.io/dr-syncer/dr-syncer-agent@{digest}")
    );
    assert!(
        out.contains(&format!(
            "image: ghcr.io/dr-syncer/dr-syncer-controller@{digest}"
        )),
        "{out}"
    );
    assert_eq!(
        env("DR_SYNCER_RSYNC_WORKER_IMAGE"),
        "ghcr.io/dr-syncer/dr-syncer-rsync-worker:9.9.9"
    );
    assert_eq!(env("DR_SYNCER_RSYNC_WORKER_PULL_POLICY"), "Always");
    assert_eq!(env("DR_SYNCER_AGENT_PULL_POLICY"), "IfNotPresent");
    assert_eq!(env("DR_SYNCER_IMAGE_PULL_SECRETS"), "regcred,mirror");
    // No remote pull secrets: the variable is not rendered at all.
    let plain = render(&[]).unwrap();
    assert!(!plain.contains("DR_SYNCER_IMAGE_PULL_SECRETS"), "{plain}");
}

#[test]
fn chart_crds_are_identical_to_the_generated_deploy_crds() {
    let names = |dir: &Path| -> BTreeSet<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect()
    };
    let generated = repo().join("deploy/crds");
    let in_chart = chart().join("crds");
    assert_eq!(names(&generated), names(&in_chart));
    assert_eq!(names(&generated).len(), 3);
    for name in names(&generated) {
        assert_eq!(
            std::fs::read_to_string(generated.join(&name)).unwrap(),
            std::fs::read_to_string(in_chart.join(&name)).unwrap(),
            "{name} differs: cp deploy/crds/*.yaml deploy/helm/dr-syncer/crds/"
        );
    }
}

#[test]
fn kustomize_manifests_are_the_rendered_chart() {
    let rendered = render(&[]).unwrap();
    let path = repo().join("deploy/manifests/dr-syncer.yaml");
    if std::env::var_os("UPDATE_MANIFESTS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert!(
        on_disk == rendered,
        "{} is not the rendered chart: rerun with UPDATE_MANIFESTS=1",
        path.display()
    );
    // `kubectl kustomize` builds it: the namespace plus every rendered object.
    let kubectl = dr_syncer_e2e::testbed::default_controlplane_dir().join("kubectl");
    let built = run(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(repo().join("deploy/manifests")),
        None,
    )
    .unwrap();
    let kinds = |text: &str| text.lines().filter(|l| l.starts_with("kind: ")).count();
    assert_eq!(kinds(&built), kinds(&rendered) + 1, "{built}");
    assert!(built.contains("pod-security.kubernetes.io/enforce: restricted"));
}

/// The rendered chart as installed on the bed: the only change from the defaults is binding
/// the metrics server to the pod IP (on the bed a pod's IP is a unique loopback address of
/// its node, and 0.0.0.0:8080 could collide with anything else on this machine). The image
/// `ghcr.io/dr-syncer/dr-syncer-controller` maps to our binary on the simulated node.
/// A registry Secret named in the chart's `remoteImagePullSecrets` (the bed pulls nothing,
/// so it need not exist): the agent DaemonSet the controller creates must carry it.
const REMOTE_PULL_SECRET: &str = "regcred";

fn bed_manifests() -> String {
    render(&[
        "--set-string",
        "metrics.bindAddress=$(POD_IP)",
        "--set",
        &format!("remoteImagePullSecrets[0].name={REMOTE_PULL_SECRET}"),
    ])
    .unwrap()
}

/// `make images`' archives: `DR_SYNCER_IMAGE_DIR`, else `${CARGO_TARGET_DIR:-target}/images`.
fn image_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DR_SYNCER_IMAGE_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let target = if target.is_absolute() {
        target
    } else {
        repo().join(target)
    };
    target.join("images")
}

/// The bed of this test binary runs the controller, agent and worker pods from the built
/// OCI archives (issue 15), so this test proves the published artifacts work.
fn use_built_images() {
    let dir = image_dir();
    let version = env!("CARGO_PKG_VERSION");
    for name in dr_syncer_e2e::node::OUR_BINARIES {
        let archive = dir.join(format!("{name}-{version}.oci.tar"));
        assert!(
            archive.is_file(),
            "{} is missing: run make images (or set DR_SYNCER_IMAGE_DIR)",
            archive.display()
        );
    }
    let _ = IMAGE_DIR.set(dir);
}

/// The manifest digest of our archive `name`, which the node reports in `imageID`.
fn built_manifest(name: &str) -> String {
    let archive = image_dir().join(format!("{name}-{}.oci.tar", env!("CARGO_PKG_VERSION")));
    dr_syncer_e2e::oci::ImageArchive::open(&archive)
        .unwrap()
        .manifest_digest()
        .to_owned()
}

/// The `imageID` of every container of the pods matching `labels` in `cluster`'s `ns`.
async fn image_ids(client: &kube::Client, ns: &str, labels: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(labels))
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .map(|c| c.image_id.clone())
        .collect()
}

fn kubectl(cluster: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let bed = &*BED;
    run(bed.kubectl(cluster).args(args), stdin).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_chart_installs_and_its_controller_pod_replicates_the_example_namespace() {
    let _serial = SERIAL.lock().await;
    use_built_images();
    let bed = bed().await;
    let examples = repo().join("deploy/examples");

    // Install: what docs/install.md tells users to do, with the rendered chart.
    // The namespace from deploy/manifests/: Pod Security `restricted` is enforced, so the
    // real API server rejects the controller pod if the chart's securityContext falls short.
    let namespace = repo().join("deploy/manifests/namespace.yaml");
    kubectl(
        CONTROLLER,
        &["apply", "-f", namespace.to_str().unwrap()],
        None,
    );
    let manifests = bed_manifests();
    kubectl(
        CONTROLLER,
        &["apply", "--server-side", "-f", "-"],
        Some(manifests.as_bytes()),
    );
    kubectl(
        CONTROLLER,
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/remoteclusters.dr-syncer.io",
            "crd/clustermappings.dr-syncer.io",
            "crd/namespacemappings.dr-syncer.io",
        ],
        None,
    );
    let controller = bed.client(CONTROLLER).await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(controller.clone(), RELEASE_NS);
    let deployment = wait_for(&deployments, "dr-syncer", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref())
            .is_some_and(|s| s.ready_replicas == Some(1))
    })
    .await;
    let sa = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.service_account_name.clone());
    assert_eq!(sa.as_deref(), Some("dr-syncer"));

    // The sample app in the source cluster.
    let app = examples.join("sample-app/app.yaml");
    kubectl(SOURCE, &["apply", "-f", app.to_str().unwrap()], None);
    // Files in its volume (the PV directory on the source node's disk).
    let source_data = volume_dir(
        &bed.client(SOURCE).await.unwrap(),
        SOURCE,
        "my-app",
        "web-data",
    )
    .await;
    write_sample_files(&source_data);

    // Kubeconfig Secrets exactly as the examples' README says: self-contained (the bed's
    // kubeconfig files name their CA by path, which the pod cannot see: flattened, it
    // embeds it), then the example objects.
    for (secret, cluster) in [("source-kubeconfig", SOURCE), ("dr-kubeconfig", TARGET)] {
        let flat = kubectl(
            cluster,
            &["config", "view", "--raw", "--minify", "--flatten"],
            None,
        );
        let file = bed.dir().join(format!("{secret}.flat"));
        std::fs::write(&file, flat).unwrap();
        let from = format!("--from-file=kubeconfig={}", file.display());
        kubectl(
            CONTROLLER,
            &[
                "-n", RELEASE_NS, "create", "secret", "generic", secret, &from,
            ],
            None,
        );
    }
    kubectl(
        CONTROLLER,
        &["apply", "-n", RELEASE_NS, "-f", examples.to_str().unwrap()],
        None,
    );

    let rcs: Api<RemoteCluster> = Api::namespaced(controller.clone(), RELEASE_NS);
    for name in ["source", "dr"] {
        wait_for(
            &rcs,
            name,
            has_condition("Ready", "True", "ApiServerReachable"),
        )
        .await;
    }
    let mappings: Api<NamespaceMapping> = Api::namespaced(controller.clone(), RELEASE_NS);
    wait_for(
        &mappings,
        "my-app",
        has_condition("Ready", "False", "AwaitingTrigger"),
    )
    .await;
    kubectl(
        CONTROLLER,
        &[
            "-n",
            RELEASE_NS,
            "annotate",
            "namespacemapping",
            "my-app",
            "dr-syncer.io/sync-now=first",
            "--overwrite",
        ],
        None,
    );
    // The first sync also rolls out the agents and copies the PVC's data: more than the
    // usual deadline on a busy machine.
    let nm = wait_for_within(
        &mappings,
        "my-app",
        |nm: Option<&NamespaceMapping>| {
            nm.and_then(|nm| nm.status.as_ref()).is_some_and(|s| {
                s.last_sync_now_value.as_deref() == Some("first")
                    && matches!(s.phase, Some(SyncPhase::Completed | SyncPhase::Failed))
            })
        },
        std::time::Duration::from_secs(300),
    )
    .await;
    let status = nm.status.clone().unwrap();
    assert_eq!(
        status.phase,
        Some(SyncPhase::Completed),
        "sync failed: {status:#?}"
    );
    assert!(
        has_condition::<NamespaceMapping>("Synced", "True", "SyncSucceeded")
            .matches_object(Some(&nm)),
        "{status:#?}"
    );

    // The SyncSucceeded Event was written (the chart's events.k8s.io rule).
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(controller.clone(), RELEASE_NS);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let found = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("SyncSucceeded")
                    && e.reporting_controller.as_deref() == Some("dr-syncer-controller")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("my-app")
            });
        if found {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no SyncSucceeded Event on my-app"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // What arrived in the DR cluster.
    let target = bed.client(TARGET).await.unwrap();
    let dst = "my-app-dr";
    let cm = Api::<ConfigMap>::namespaced(target.clone(), dst)
        .get("web-config")
        .await
        .unwrap();
    assert_eq!(
        cm.data.unwrap().get("greeting").map(String::as_str),
        Some("hello from the source cluster")
    );
    let secret = Api::<Secret>::namespaced(target.clone(), dst)
        .get("web-credentials")
        .await
        .unwrap();
    assert_eq!(
        secret.data.unwrap().get("password").map(|b| b.0.clone()),
        Some(b"not-a-real-password".to_vec())
    );
    let web = Api::<Deployment>::namespaced(target.clone(), dst)
        .get("web")
        .await
        .unwrap();
    assert_eq!(web.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(
        web.metadata
            .annotations
            .unwrap_or_default()
            .get("dr-syncer.io/original-replicas")
            .map(String::as_str),
        Some("2")
    );
    let svc = Api::<Service>::namespaced(target.clone(), dst)
        .get("web")
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 80);
    let pvc = Api::<PersistentVolumeClaim>::namespaced(target.clone(), dst)
        .get("web-data")
        .await
        .unwrap();
    assert_eq!(
        pvc.spec.unwrap().storage_class_name.as_deref(),
        Some("fast")
    );
    // The PVC's data, copied by a worker pod the chart's controller ran in the DR cluster
    // from the agent it deployed in the source cluster (the example enables both).
    assert!(
        has_condition::<NamespaceMapping>("DataSynced", "True", "DataSyncSucceeded")
            .matches_object(Some(&nm)),
        "{status:#?}"
    );
    let target_data = volume_dir(&target, TARGET, dst, "web-data").await;
    assert_eq!(
        tree(&target_data),
        tree(&source_data),
        "the DR copy of web-data differs from the source"
    );

    // It was the chart's pod that did it: it holds the Lease, as the chart's ServiceAccount.
    let pods: Api<Pod> = Api::namespaced(controller.clone(), RELEASE_NS);
    let pod = pods
        .list(&ListParams::default().labels("app.kubernetes.io/name=dr-syncer"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("controller pod");
    let pod_name = pod.metadata.name.clone().unwrap();
    assert_eq!(
        pod.spec.as_ref().unwrap().service_account_name.as_deref(),
        Some("dr-syncer")
    );
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    let lease = Api::<Lease>::namespaced(controller.clone(), RELEASE_NS)
        .get("dr-syncer-controller")
        .await
        .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap_or_default();
    assert!(
        holder.starts_with(&pod_name),
        "lease holder {holder} is not the pod {pod_name}"
    );

    // And they ran from the built images, not from host binaries: the node reports each
    // container's imageID as the archive's manifest digest (and in image mode it has no
    // binary for our three repositories at all). The worker pods that copied web-data are
    // gone by now: their `image-id` files beside their logs say what they ran.
    let controller_ids =
        image_ids(&controller, RELEASE_NS, "app.kubernetes.io/name=dr-syncer").await;
    let agent_ids = image_ids(
        &bed.client(SOURCE).await.unwrap(),
        "dr-syncer-agent",
        "app.kubernetes.io/managed-by=dr-syncer",
    )
    .await;
    for (name, ids) in [
        ("dr-syncer-controller", &controller_ids),
        ("dr-syncer-agent", &agent_ids),
    ] {
        let want = format!("ghcr.io/dr-syncer/{name}@{}", built_manifest(name));
        assert!(
            !ids.is_empty() && ids.iter().all(|id| *id == want),
            "{name} pods did not run from the built image {want}: {ids:?}"
        );
    }
    // The chart's remoteImagePullSecrets reached the agent DaemonSet through the
    // controller's env, with the agent pull policy from values.
    let ds = Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(
        bed.client(SOURCE).await.unwrap(),
        "dr-syncer-agent",
    )
    .get("dr-syncer-agent")
    .await
    .unwrap();
    let template = ds.spec.unwrap().template.spec.unwrap();
    let secrets: Vec<String> = template
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(secrets, [REMOTE_PULL_SECRET]);
    assert_eq!(
        template.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    let want = format!(
        "ghcr.io/dr-syncer/dr-syncer-rsync-worker@{}",
        built_manifest("dr-syncer-rsync-worker")
    );
    let worker_ids = worker_image_ids(bed, dst);
    assert!(
        !worker_ids.is_empty() && worker_ids.iter().all(|id| *id == want),
        "worker pods did not run from the built image {want}: {worker_ids:?}"
    );
}

/// The `image-id` of every rsync-worker container that ran in `ns` of the target cluster.
fn worker_image_ids(bed: &dr_syncer_e2e::TestBed, ns: &str) -> Vec<String> {
    let nodes = bed.layout().cluster(TARGET).join("nodes");
    let mut ids = Vec::new();
    for node in std::fs::read_dir(&nodes).unwrap() {
        let logs = node.unwrap().path().join("state/logs");
        for pod in std::fs::read_dir(&logs).into_iter().flatten() {
            let pod = pod.unwrap().path();
            let name = pod.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with(&format!("{ns}_dr-syncer-worker-")) {
                ids.push(std::fs::read_to_string(pod.join("worker/image-id")).unwrap());
            }
        }
    }
    ids
}

/// Names registered in `controller/src/metrics.rs` (with the `dr_syncer_` prefix; counters
/// are exposed with `_total`, histograms with `_bucket`/`_count`/`_sum`).
fn exported_metrics() -> Vec<String> {
    let source = std::fs::read_to_string(repo().join("controller/src/metrics.rs")).unwrap();
    let mut names = Vec::new();
    let mut rest = source.as_str();
    while let Some(i) = rest.find("registry.register(") {
        rest = &rest[i + "registry.register(".len()..];
        let start = rest.find('"').unwrap() + 1;
        let end = start + rest[start..].find('"').unwrap();
        names.push(format!("dr_syncer_{}", &rest[start..end]));
    }
    names
}

#[test]
fn grafana_dashboard_is_valid_json_using_only_exported_metrics_and_renders_as_configmap() {
    let text = std::fs::read_to_string(chart().join("dashboards/dr-syncer.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let exported = exported_metrics();
    assert!(exported.len() >= 7, "{exported:?}");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 10);
    let mut unknown = Vec::new();
    for expr in &exprs {
        for (i, _) in expr.match_indices("dr_syncer_") {
            let name: String = expr[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let known = exported.iter().any(|m| {
                name == *m
                    || ["_total", "_bucket", "_count", "_sum"]
                        .iter()
                        .any(|suffix| name == format!("{m}{suffix}"))
            });
            if !known {
                unknown.push(name);
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "dashboard uses unknown metrics: {unknown:?}"
    );
    let rendered = render(&["--set", "metrics.grafanaDashboard.enabled=true"]).unwrap();
    assert!(rendered.contains("name: dr-syncer-dashboard"), "{rendered}");
    assert!(rendered.contains("grafana_dashboard: \"1\""), "{rendered}");
    assert!(rendered.contains("\"uid\": \"dr-syncer\""));
}

/// The directory of a bound test-bed PVC on the machine (under its node's root).
async fn volume_dir(client: &kube::Client, cluster: &str, ns: &str, pvc: &str) -> PathBuf {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = wait_for(&claims, pvc, |p: Option<&PersistentVolumeClaim>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Bound")
    })
    .await;
    let pv_name = claim.spec.unwrap().volume_name.unwrap();
    let pv = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let bed = bed().await;
    let nodes: std::collections::BTreeMap<String, PathBuf> = (1..=*NODES_PER_CLUSTER
        .get_or_init(|| 1))
        .map(|n| {
            let node = format!("{cluster}-node-{n}");
            let root = bed.layout().node_root(cluster, &node);
            (node, root)
        })
        .collect();
    dr_syncer_e2e::storage::volume_dir_on_machine(&pv, &nodes)
        .unwrap_or_else(|| panic!("PV {pv_name} is not a test-bed hostPath volume"))
}

/// A small site: pages, a nested asset, a symlink, a file only its owner may read.
fn write_sample_files(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(
        dir.join("index.html"),
        "<h1>hello from the source cluster</h1>\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("assets/img")).unwrap();
    let logo: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.join("assets/img/logo.bin"), logo).unwrap();
    std::os::unix::fs::symlink("index.html", dir.join("home.html")).unwrap();
    std::fs::write(dir.join("secret.txt"), "owner only\n").unwrap();
    std::fs::set_permissions(
        dir.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// Every entry under `root`: relative path, type, mode bits and contents (or link target).
fn tree(root: &Path) -> Vec<(String, String, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String, u32, Vec<u8>)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((
                    rel,
                    "link".into(),
                    0,
                    target.into_os_string().into_encoded_bytes(),
                ));
            } else if meta.is_dir() {
                out.push((rel, "dir".into(), mode, Vec::new()));
                walk(root, &path, out);
            } else {
                out.push((rel, "file".into(), mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    assert!(
        out.len() >= 5,
        "expected the sample files under {}",
        root.display()
    );
    out
}

/// A pod naming one of our images at a version that was not built fails like a pull from a
/// registry without it (`ErrImagePull`, naming what the bed has), instead of silently
/// running the build that is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_to_an_image_that_was_not_built_fails_to_pull() {
    let _serial = SERIAL.lock().await;
    use_built_images();
    let bed = bed().await;
    let client = bed.client(CONTROLLER).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let wrong_digest = format!(
        "ghcr.io/dr-syncer/dr-syncer-agent@sha256:{}",
        "0".repeat(64)
    );
    for (name, image) in [
        (
            "unbuilt-tag",
            "ghcr.io/dr-syncer/dr-syncer-agent:9.9.9".to_owned(),
        ),
        ("unbuilt-digest", wrong_digest),
    ] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "agent", "image": image}]},
        }))
        .unwrap();
        pods.create(&Default::default(), &pod).await.unwrap();
        let waiting = |p: Option<&Pod>| {
            p.and_then(first_waiting)
                .is_some_and(|w| w.reason.as_deref() == Some("ErrImagePull"))
        };
        let pod = wait_for(&pods, name, waiting).await;
        let status = &pod.status.unwrap().container_statuses.unwrap()[0];
        let message = status
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.message.clone())
            .unwrap_or_default();
        assert!(
            message.contains(&image) && message.contains("ghcr.io/dr-syncer/dr-syncer-agent:"),
            "{name}: {message}"
        );
        assert!(!status.ready, "{name} must not run");
        pods.delete(name, &Default::default()).await.unwrap();
    }
}
