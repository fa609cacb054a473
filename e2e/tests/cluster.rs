//! Issue 3 "Done when" scenarios on one shared test bed (1 cluster x 2 simulated nodes), each
//! test in its own namespace: real API server, real controllers, real scheduler, real RBAC.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use common::{
    BED, CLUSTER, DEADLINE, NODES, client, namespace, output_ok, poll_until, wait_for, yaml,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::{GroupVersionKind, ObjectList};
use kube::runtime::conditions;
use serde_json::Value;

/// Pods of this image run the `testbed probe` subcommand (see `supervisor::PROBE_IMAGE`).
const PROBE_IMAGE: &str = "registry.example/dr-syncer-e2e-probe:e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_nodes_lists_ready_nodes_with_the_built_server_version() {
    let bed = tokio::task::spawn_blocking(|| &*BED).await.unwrap();
    let cp = bed.controlplane_dir();
    let built = std::process::Command::new(cp.join("kube-apiserver"))
        .arg("--version")
        .output()
        .unwrap();
    let built = String::from_utf8(built.stdout).unwrap();
    let built = built
        .trim()
        .strip_prefix("Kubernetes ")
        .unwrap()
        .to_string();
    assert!(built.starts_with("v1.35."), "built version {built}");

    let out = output_ok(bed.kubectl(CLUSTER).args(["get", "nodes"]));
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), NODES, "{text}");
    for row in &rows {
        assert_eq!(row[1], "Ready", "{text}");
        assert_eq!(row[4], built, "node version column: {text}");
    }

    let out = output_ok(bed.kubectl(CLUSTER).args(["version", "-o", "json"]));
    let version: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], built.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_with_a_standard_pvc_binds_runs_both_pods_and_creates_the_pv_dir() {
    let client = client().await;
    let ns = namespace(&client, "deploy-pvc").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pvc: PersistentVolumeClaim = yaml(
        "metadata: {name: data}
spec:
  storageClassName: standard
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}",
    );
    pvcs.create(&PostParams::default(), &pvc).await.unwrap();
    let deployment: Deployment = yaml(
        "metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        volumeMounts: [{name: data, mountPath: /usr/share/nginx/html}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: data}",
    );
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let pvc = wait_for(&pvcs, "data", |p: Option<&PersistentVolumeClaim>| {
        p.and_then(|p| p.status.as_ref()?.phase.as_deref()) == Some("Bound")
    })
    .await;
    wait_for(&deployments, "web", |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()?.ready_replicas) == Some(2)
    })
    .await;
    let pods = pods_labelled(&client, &ns, "app=web").await;
    let running: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect();
    assert_eq!(running.len(), 2, "{pods:#?}");

    let pv_name = pvc.spec.unwrap().volume_name.unwrap();
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = pvs.get(&pv_name).await.unwrap();
    let host_path = pv.spec.unwrap().host_path.unwrap().path;
    let node = running[0].spec.as_ref().unwrap().node_name.clone().unwrap();
    assert_eq!(
        running[1].spec.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str()),
        "a ReadWriteOnce hostPath PV pins both pods to its node"
    );
    let dir = node_root(&node).join(host_path.trim_start_matches('/'));
    assert!(dir.is_dir(), "PV directory {} missing", dir.display());
}

/// The pods of a namespace with a label selector (what a workload test inspects).
async fn pods_labelled(client: &kube::Client, ns: &str, selector: &str) -> ObjectList<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = ListParams::default().labels(selector);
    pods.list(&params).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_exactly_one_running_pod_per_node() {
    let client = client().await;
    let ns = namespace(&client, "daemonset").await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), &ns);
    let ds: DaemonSet = yaml(
        "metadata: {name: everywhere}
spec:
  selector: {matchLabels: {app: everywhere}}
  template:
    metadata: {labels: {app: everywhere}}
    spec:
      containers: [{name: idle, image: registry.k8s.io/pause:3.10}]",
    );
    daemonsets
        .create(&PostParams::default(), &ds)
        .await
        .unwrap();
    wait_for(&daemonsets, "everywhere", |d: Option<&DaemonSet>| {
        d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
            s.number_ready == NODES as i32 && s.desired_number_scheduled == NODES as i32
        })
    })
    .await;

    let list = pods_labelled(&client, &ns, "app=everywhere").await;
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for pod in &list.items {
        assert_eq!(
            pod.status.as_ref().unwrap().phase.as_deref(),
            Some("Running"),
            "{pod:#?}"
        );
        let node = pod.spec.as_ref().unwrap().node_name.clone().unwrap();
        *per_node.entry(node).or_default() += 1;
    }
    let nodes: BTreeSet<String> = bed_nodes().into_iter().collect();
    assert_eq!(per_node.keys().cloned().collect::<BTreeSet<_>>(), nodes);
    assert!(per_node.values().all(|&n| n == 1), "{per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_running_our_binary_succeeds_with_its_termination_message() {
    let (client, ns) = probe_namespace("job").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job: Job = yaml(&format!(
        "metadata: {{name: probe}}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{{name: probe, image: '{PROBE_IMAGE}', args: [probe]}}]"
    ));
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for(&jobs, "probe", conditions::is_job_completed()).await;

    let list = pods_labelled(&client, &ns, "job-name=probe").await;
    assert_eq!(list.items.len(), 1, "{list:#?}");
    let pod = &list.items[0];
    assert_eq!(
        pod.status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    let message = termination_message(pod);
    assert_eq!(message["ok"], true, "{message}");
    assert_eq!(message["namespace"], ns.as_str(), "{message}");
    let own_name = pod.metadata.name.clone().unwrap();
    assert!(
        message["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == own_name.as_str()),
        "the probe lists its own pod: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_client_lists_pods_through_rbac_and_gets_403_without_the_binding() {
    let (client, ns) = probe_namespace("rbac").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    let allowed = run_probe_pod(&pods, "allowed").await;
    assert_eq!(phase(&allowed), "Succeeded", "{allowed:#?}");
    let message = termination_message(&allowed);
    assert_eq!(message["ok"], true, "{message}");
    assert!(
        message["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "allowed"),
        "{message}"
    );

    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    bindings
        .delete("pod-reader", &DeleteParams::default())
        .await
        .unwrap();
    wait_until_denied(&client, &ns).await;

    let denied = run_probe_pod(&pods, "denied").await;
    assert_eq!(phase(&denied), "Failed", "{denied:#?}");
    let message = termination_message(&denied);
    assert_eq!(message["ok"], false, "{message}");
    assert_eq!(message["code"], 403, "{message}");
    let state = denied
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap()
        .exit_code;
    assert_eq!(state, dr_syncer_e2e::probe::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_crds_apply_valid_fixtures_pass_and_invalid_ones_fail_naming_the_field() {
    let client = client().await;
    let ns = namespace(&client, "crds").await;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut kinds: BTreeMap<String, ApiResource> = BTreeMap::new();
    // Every problem is collected, so one run reports all CRD and fixture mismatches.
    let mut problems = Vec::new();
    let crd_files = yaml_files(&root.join("deploy/crds"));
    assert_eq!(crd_files.len(), 3, "expected three CRDs: {crd_files:?}");
    for file in crd_files {
        let crd: CustomResourceDefinition = yaml(&std::fs::read_to_string(&file).unwrap());
        let name = crd.metadata.name.clone().unwrap();
        let params = PatchParams::apply("e2e").force();
        if let Err(e) = crds.patch(&name, &params, &Patch::Apply(&crd)).await {
            problems.push(format!(
                "CRD {} rejected: {}",
                file.display(),
                api_message(e)
            ));
            continue;
        }
        wait_for(&crds, &name, conditions::is_crd_established()).await;
        let version = crd
            .spec
            .versions
            .iter()
            .find(|v| v.storage)
            .unwrap()
            .name
            .clone();
        let gvk = GroupVersionKind::gvk(&crd.spec.group, &version, &crd.spec.names.kind);
        kinds.insert(
            crd.spec.names.kind.clone(),
            ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural),
        );
    }

    let valid = yaml_files(&root.join("crds/tests/fixtures/valid"));
    assert!(!valid.is_empty());
    for file in &valid {
        match create_fixture(&client, &ns, &kinds, file).await {
            Ok(()) => {}
            Err(Outcome::Rejected(e)) => {
                problems.push(format!("valid {} rejected: {e}", file.display()))
            }
            Err(Outcome::NoCrd(kind)) => problems.push(format!(
                "valid {} not checked: CRD for {kind} not applied",
                file.display()
            )),
        }
    }
    let invalid = yaml_files(&root.join("crds/tests/fixtures/invalid"));
    assert!(!invalid.is_empty());
    for file in &invalid {
        let text = std::fs::read_to_string(file).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("{} lacks `# expect:`", file.display()))
            .to_string();
        match create_fixture(&client, &ns, &kinds, file).await {
            Ok(()) => problems.push(format!("invalid {} accepted", file.display())),
            Err(Outcome::NoCrd(kind)) => problems.push(format!(
                "invalid {} not checked: CRD for {kind} not applied",
                file.display()
            )),
            Err(Outcome::Rejected(e)) if !e.contains(&expect) => problems.push(format!(
                "invalid {} rejected without {expect:?}: {e}",
                file.display()
            )),
            Err(Outcome::Rejected(_)) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The API server's message for an API error, the error's text otherwise.
fn api_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        e => e.to_string(),
    }
}

// ---- helpers ----

/// Names of the shared bed's nodes.
fn bed_nodes() -> Vec<String> {
    BED.state().clusters[0]
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect()
}

/// Filesystem root of a node of the shared bed.
fn node_root(node: &str) -> PathBuf {
    BED.state().clusters[0]
        .nodes
        .iter()
        .find(|n| n.name == node)
        .unwrap_or_else(|| panic!("unknown node {node}"))
        .root
        .clone()
}

/// A fresh namespace (`prefix-…`) whose default ServiceAccount may list pods, for the
/// tests that run our probe in a pod; returns the admin client and the namespace.
async fn probe_namespace(prefix: &str) -> (kube::Client, String) {
    let client = client().await;
    let ns = namespace(&client, prefix).await;
    grant_pod_list(&client, &ns).await;
    (client, ns)
}

/// Role `pod-reader` (list pods) bound to the namespace's default service account.
async fn grant_pod_list(client: &kube::Client, ns: &str) {
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), ns);
    roles
        .create(
            &PostParams::default(),
            &yaml(
                "metadata: {name: pod-reader}
rules: [{apiGroups: [''], resources: [pods], verbs: [list]}]",
            ),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
    bindings
        .create(
            &PostParams::default(),
            &yaml(&format!(
                "metadata: {{name: pod-reader}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}}
subjects: [{{kind: ServiceAccount, name: default, namespace: {ns}}}]"
            )),
        )
        .await
        .unwrap();
}

/// Waits until the RBAC authorizer (which serves from an informer cache) no longer allows
/// the default service account to list pods, so the next pod deterministically sees 403.
async fn wait_until_denied(client: &kube::Client, ns: &str) {
    let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
    let review: SubjectAccessReview = yaml(&format!(
        "spec:
  user: system:serviceaccount:{ns}:default
  groups: [system:serviceaccounts, 'system:serviceaccounts:{ns}', system:authenticated]
  resourceAttributes: {{namespace: {ns}, verb: list, resource: pods}}"
    ));
    let (reviews, review) = (&reviews, &review);
    poll_until(
        "RBAC denies after the binding was deleted",
        DEADLINE,
        std::time::Duration::from_millis(100),
        || async move {
            let answer = reviews
                .create(&PostParams::default(), review)
                .await
                .unwrap();
            if answer.status.as_ref().unwrap().allowed {
                Err("RBAC still allows after the binding was deleted")
            } else {
                Ok(())
            }
        },
    )
    .await;
}

/// Runs a probe pod (restartPolicy Never) to completion and returns its final state.
async fn run_probe_pod(pods: &Api<Pod>, name: &str) -> Pod {
    let pod: Pod = yaml(&format!(
        "metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers: [{{name: probe, image: '{PROBE_IMAGE}', args: [probe]}}]"
    ));
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(pods, name, |p: Option<&Pod>| {
        matches!(p.map(phase), Some("Succeeded" | "Failed"))
    })
    .await
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// The JSON the probe wrote to its termination log, as reported in the pod status.
fn termination_message(pod: &Pod) -> Value {
    let statuses = pod
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap();
    let terminated = statuses[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .as_ref()
        .unwrap();
    let message = terminated
        .message
        .as_deref()
        .unwrap_or_else(|| panic!("no message: {pod:#?}"));
    serde_json::from_str(message).unwrap_or_else(|e| panic!("{e}: {message:?}"))
}

fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Why a fixture was not created.
enum Outcome {
    /// The API server refused it, with this message.
    Rejected(String),
    /// Its kind's CRD could not be applied.
    NoCrd(String),
}

/// Creates a fixture object in namespace `ns`.
async fn create_fixture(
    client: &kube::Client,
    ns: &str,
    kinds: &BTreeMap<String, ApiResource>,
    file: &std::path::Path,
) -> Result<(), Outcome> {
    let mut obj: DynamicObject = yaml(&std::fs::read_to_string(file).unwrap());
    let kind = obj.types.as_ref().unwrap().kind.clone();
    let ar = kinds.get(&kind).ok_or(Outcome::NoCrd(kind.clone()))?;
    obj.metadata.namespace = Some(ns.to_string());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(e) => Err(Outcome::Rejected(api_message(e))),
    }
}
