//! Helpers of the PVC data e2e tests (issue 6): a bed of three clusters with two nodes each,
//! source volumes with data written straight into their PV directories on the node, a tree
//! manifest to compare source and target, the worker pods and per-run Secrets of a target
//! namespace, Events, and the agent processes of the bed. `tree` writes and compares
//! volume trees; `partial` watches a target directory for partial files during a sync.
//!
//! Everything here reads the real objects and the real directories the simulated nodes
//! serve: a hostPath PV `/var/lib/testbed-storage/pvc-<uid>` of node N lives at
//! `<bed>/clusters/<cluster>/nodes/<N>/root/var/lib/testbed-storage/pvc-<uid>`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod partial;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::controller_support::*;
use dr_syncer_crds::NamespaceMapping;
use dr_syncer_crds::namespace_mapping::SyncPhase;
use dr_syncer_e2e::storage::volume_dir_on_machine;
use dr_syncer_e2e::wait;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Event, PersistentVolume, PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Nodes per cluster the issue asks for.
pub const NODES: usize = 2;
/// Namespace of the agents in the source cluster (contract of issue 6).
pub const AGENT_NAMESPACE: &str = "dr-syncer-agent";
/// Their DaemonSet.
pub const AGENT_NAME: &str = "dr-syncer-agent";
/// The agents' Secret (host private key, authorized_keys).
pub const AGENT_SECRET: &str = "dr-syncer-agent-ssh";
/// Label selector of the agent pods.
pub const AGENT_SELECTOR: &str = "app.kubernetes.io/name=dr-syncer-agent";
/// Label selector of the worker pods in target namespaces.
pub const WORKER_SELECTOR: &str = "app.kubernetes.io/name=dr-syncer-rsync-worker";
/// Deadline of one data sync of the small fixtures (agents roll out, worker pods start).
pub const SYNC_DEADLINE: Duration = Duration::from_secs(240);

/// Node `n` (1-based) of a cluster, as the test bed names it.
pub fn node(cluster: &str, n: usize) -> String {
    format!("{cluster}-node-{n}")
}

/// Starts (once) the 3 x 2 bed, installs the CRDs, and removes every DR-Syncer object an
/// earlier test of this binary left in the controller cluster: all tests share one source
/// cluster, so an old RemoteCluster with `pvcSync.enabled` would fight the current one over
/// the agent DaemonSet and its keys.
pub async fn setup() -> Clusters {
    let _ = NODES_PER_CLUSTER.set(NODES);
    let c = clusters().await;
    remove_all::<NamespaceMapping>(&c.controller).await;
    remove_all::<dr_syncer_crds::ClusterMapping>(&c.controller).await;
    remove_all::<dr_syncer_crds::RemoteCluster>(&c.controller).await;
    c
}

/// Deletes every object of a kind in all namespaces, finalizers stripped (no controller runs
/// between tests to release them).
async fn remove_all<K>(client: &Client)
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let all: Api<K> = Api::all(client.clone());
    for obj in all.list_metadata(&ListParams::default()).await.unwrap() {
        let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap());
        let name = obj.name_any();
        let strip = json!({"metadata": {"finalizers": null}});
        let _ = api
            .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&strip))
            .await;
        let _ = api.delete(&name, &DeleteParams::default()).await;
    }
}

/// The kubeconfig Secrets and RemoteClusters `source` (with `pvcSync` as given, YAML
/// indented under `pvcSync:`) and `target` in `ns`.
pub async fn remote_clusters_with_pvc_sync(c: &Clusters, ns: &str, pvc_sync: &str) {
    remote_clusters(c, ns).await;
    let rcs: Api<dr_syncer_crds::RemoteCluster> = Api::namespaced(c.controller.clone(), ns);
    let value: Value = serde_saphyr::from_str(pvc_sync).unwrap();
    rcs.patch(
        SOURCE,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"pvcSync": value}})),
    )
    .await
    .unwrap();
}

/// A Deployment `name` (one placeholder replica, pinned to `node` when given) holding a
/// PVC `name` of class `standard`; returns the PV directory on the machine once bound.
pub async fn source_volume(c: &Clusters, ns: &str, name: &str, node: Option<&str>) -> PathBuf {
    apply_yaml::<PersistentVolumeClaim>(
        &c.source,
        ns,
        &format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\nspec:\n  storageClassName: standard\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests:\n      storage: 2Gi\n"
        ),
    )
    .await;
    let selector = node
        .map(|n| format!("      nodeSelector:\n        kubernetes.io/hostname: {n}\n"))
        .unwrap_or_default();
    apply_yaml::<Deployment>(
        &c.source,
        ns,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n    spec:\n{selector}      containers:\n      - name: app\n        image: registry.example/app:1\n        volumeMounts:\n        - name: data\n          mountPath: /data\n      volumes:\n      - name: data\n        persistentVolumeClaim:\n          claimName: {name}\n"
        ),
    )
    .await;
    let (pv_node, dir) = volume_dir(&c.source, SOURCE, ns, name, DEADLINE).await;
    if let Some(n) = node {
        assert_eq!(pv_node, n, "PVC {ns}/{name} provisioned on the wrong node");
    }
    dir
}

/// Waits until the PVC is bound; returns its node and its directory on the machine.
pub async fn volume_dir(
    client: &Client,
    cluster: &str,
    ns: &str,
    pvc: &str,
    deadline: Duration,
) -> (String, PathBuf) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let claim = wait_for_within(
        &claims,
        pvc,
        |p: Option<&PersistentVolumeClaim>| {
            p.and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref())
                == Some("Bound")
        },
        deadline,
    )
    .await;
    let pv_name = claim.spec.unwrap().volume_name.unwrap();
    let pv = Api::<PersistentVolume>::all(client.clone())
        .get(&pv_name)
        .await
        .unwrap();
    let bed = bed().await;
    let nodes: BTreeMap<String, PathBuf> = (1..=NODES)
        .map(|n| {
            (
                node(cluster, n),
                bed.layout().node_root(cluster, &node(cluster, n)),
            )
        })
        .collect();
    let dir = volume_dir_on_machine(&pv, &nodes)
        .unwrap_or_else(|| panic!("PV {pv_name} is not a test-bed hostPath volume"));
    let pv_node = nodes
        .keys()
        .find(|n| dir.starts_with(&nodes[*n]))
        .unwrap()
        .clone();
    (pv_node, dir)
}

/// The mapping as JSON (for the status fields issue 6 adds, whatever their Rust names).
pub fn as_json(nm: &NamespaceMapping) -> Value {
    serde_json::to_value(nm).unwrap()
}

/// The `status.pvcSyncStatus[]` entry of a PVC.
pub fn pvc_status(nm: &NamespaceMapping, pvc: &str) -> Option<Value> {
    as_json(nm)["status"]["pvcSyncStatus"]
        .as_array()?
        .iter()
        .find(|e| e["pvc"] == pvc)
        .cloned()
}

/// An integer field of a status entry (0 when absent).
pub fn int(entry: &Value, field: &str) -> i64 {
    entry[field].as_i64().unwrap_or(0)
}

/// The status of condition `type_`: (status, reason, message).
pub fn condition(nm: &NamespaceMapping, type_: &str) -> Option<(String, String, String)> {
    as_json(nm)["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("reason"), s("message"))
        })
}

/// Waits until trigger `value` was handled: the sync finished (Completed or Failed), the
/// `DataSynced` condition is set, and every PVC of `pvcs` has a finished entry that differs
/// from its entry in `previous` (the status after the trigger before).
pub async fn wait_data_sync(
    api: &Api<NamespaceMapping>,
    name: &str,
    value: &str,
    pvcs: &[&str],
    previous: Option<&NamespaceMapping>,
    deadline: Duration,
) -> NamespaceMapping {
    let value = value.to_owned();
    let pvcs: Vec<String> = pvcs.iter().map(|p| p.to_string()).collect();
    let before: BTreeMap<String, Value> = pvcs
        .iter()
        .filter_map(|p| Some((p.clone(), pvc_status(previous?, p)?)))
        .collect();
    let what = format!("trigger {value:?} handled with the data sync of {pvcs:?} finished");
    wait_until(
        api,
        name,
        &what,
        move |nm: Option<&NamespaceMapping>| {
            let Some(nm) = nm else { return false };
            let Some(s) = nm.status.as_ref() else {
                return false;
            };
            let handled = s.last_sync_now_value.as_deref() == Some(value.as_str())
                && matches!(
                    s.phase,
                    Some(SyncPhase::Completed) | Some(SyncPhase::Failed)
                );
            let data_done = pvcs.iter().all(|p| {
                pvc_status(nm, p).is_some_and(|e| {
                    e["result"] != "Running" && e["result"] != "" && before.get(p) != Some(&e)
                })
            });
            let condition_set = condition(nm, "DataSynced")
                .is_some_and(|(_, reason, _)| reason != "DataSyncInProgress");
            handled && data_done && condition_set
        },
        deadline,
    )
    .await
}

/// Waits until `DataSynced` is False with `reason`; returns its message.
pub async fn wait_data_condition(
    api: &Api<NamespaceMapping>,
    name: &str,
    status: &'static str,
    reason: &'static str,
    deadline: Duration,
) -> String {
    let what = format!("condition DataSynced {status} with reason {reason}");
    let nm = wait_until(
        api,
        name,
        &what,
        has_condition("DataSynced", status, reason),
        deadline,
    )
    .await;
    condition(&nm, "DataSynced").unwrap().2
}

/// Events about an object among `events`, oldest first.
fn about<'a>(events: &'a [Event], kind: &str, name: &str) -> Vec<&'a Event> {
    let mut list: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.involved_object.kind.as_deref() == Some(kind)
                && e.involved_object.name.as_deref() == Some(name)
        })
        .collect();
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    list
}

/// Waits (watch on the namespace's Events, any API group view of core Events) until an
/// Event with `reason` about the object exists whose message contains every one of
/// `needles` (ignoring case); returns the message.
pub async fn wait_event(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    reason: &str,
    needles: &[&str],
    deadline: Duration,
) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let what = format!("a {reason} Event about {kind} {ns}/{name} containing {needles:?}");
    wait::list(
        &events,
        watcher::Config::default(),
        &what,
        deadline,
        |all: &[Event]| {
            let events = about(all, kind, name);
            let hit = events.iter().find(|e| {
                e.reason.as_deref() == Some(reason) && {
                    let msg = e.message.clone().unwrap_or_default().to_lowercase();
                    needles.iter().all(|n| msg.contains(&n.to_lowercase()))
                }
            });
            match hit {
                Some(e) => Ok(e.message.clone().unwrap_or_default()),
                None => Err(events
                    .iter()
                    .map(|e| format!("{:?}: {:?}", e.reason, e.message))
                    .collect::<Vec<_>>()),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Worker pods of a target namespace.
pub async fn worker_pods(target: &Client, ns: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(target.clone(), ns)
        .list(&ListParams::default().labels(WORKER_SELECTOR))
        .await
        .unwrap()
        .items
}

/// Secrets of a namespace that carry worker credentials (a per-run copy).
pub async fn credential_secrets(target: &Client, ns: &str) -> Vec<String> {
    Api::<Secret>::namespaced(target.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| {
            let data = s.data.clone().unwrap_or_default();
            s.name_any().starts_with("dr-syncer-worker-")
                || data.contains_key("id_ed25519")
                || data.contains_key("known_host")
        })
        .map(|s| s.name_any())
        .collect()
}

/// Issue 6: "no worker pod or Secret copy is left behind after success or failure".
/// Polls (the controller deletes them right after reading the result) until the target
/// namespace holds neither, or fails naming what is left.
pub async fn assert_no_leftovers(target: &Client, ns: &str) {
    let what = format!("target namespace {ns} without worker pods or credential Secrets");
    poll_until(
        &what,
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            let pods: Vec<String> = worker_pods(target, ns)
                .await
                .iter()
                .map(|p| p.name_any())
                .collect();
            let secrets = credential_secrets(target, ns).await;
            if pods.is_empty() && secrets.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "left behind in target namespace {ns}: worker pods {pods:?}, credential \
                     Secrets {secrets:?}"
                ))
            }
        },
    )
    .await;
}

/// What a watch on a namespace's worker pods saw.
#[derive(Debug, Default, Clone)]
pub struct WorkerWatch {
    /// Most worker pods active (not finished, not being deleted) at the same time.
    pub max_active: usize,
    /// Every worker pod seen: name -> value of its `dr-syncer.io/pvc` label.
    pub seen: BTreeMap<String, String>,
    /// Names active right now.
    active: BTreeSet<String>,
}

/// Watches the worker pods of a target namespace until the handle is aborted.
pub fn watch_workers(
    target: &Client,
    ns: &str,
) -> (Arc<Mutex<WorkerWatch>>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Mutex::new(WorkerWatch::default()));
    let pods: Api<Pod> = Api::namespaced(target.clone(), ns);
    let shared = state.clone();
    let handle = tokio::spawn(async move {
        let stream = watcher(pods, watcher::Config::default().labels(WORKER_SELECTOR))
            .default_backoff()
            .touched_objects();
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let Ok(pod) = event else { continue };
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            let active = pod.metadata.deletion_timestamp.is_none()
                && !matches!(phase.as_str(), "Succeeded" | "Failed");
            let mut s = shared.lock().unwrap();
            let pvc = pod
                .labels()
                .get("dr-syncer.io/pvc")
                .cloned()
                .unwrap_or_default();
            s.seen.insert(pod.name_any(), pvc);
            if active {
                s.active.insert(pod.name_any());
            } else {
                s.active.remove(&pod.name_any());
            }
            s.max_active = s.max_active.max(s.active.len());
        }
    });
    (state, handle)
}

/// Agent pods by node (the source cluster).
pub async fn agent_pods(source: &Client) -> BTreeMap<String, Pod> {
    let pods = Api::<Pod>::namespaced(source.clone(), AGENT_NAMESPACE)
        .list(&ListParams::default().labels(AGENT_SELECTOR))
        .await
        .unwrap()
        .items;
    by_node(&pods)
}

/// Pods not being deleted, by node.
fn by_node(pods: &[Pod]) -> BTreeMap<String, Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.spec.as_ref()?.node_name.clone()?, p.clone())))
        .collect()
}

/// Whether a pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits (watch on the agent pods) until every source node has a Ready agent pod whose
/// uid is not in `not`.
pub async fn wait_agents_ready(source: &Client, not: &BTreeSet<String>, deadline: Duration) {
    let pods: Api<Pod> = Api::namespaced(source.clone(), AGENT_NAMESPACE);
    wait::list(
        &pods,
        watcher::Config::default().labels(AGENT_SELECTOR),
        "agents all Ready (and new)",
        deadline,
        |all: &[Pod]| {
            let pods = by_node(all);
            let ok = (1..=NODES).all(|n| {
                pods.get(&node(SOURCE, n)).is_some_and(|p| {
                    is_ready(p) && !not.contains(p.metadata.uid.as_deref().unwrap_or_default())
                })
            });
            if ok {
                Ok(())
            } else {
                Err(pods
                    .iter()
                    .map(|(n, p)| (n.clone(), is_ready(p), p.metadata.uid.clone()))
                    .collect::<Vec<_>>())
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The agent DaemonSet of the source cluster, if deployed.
pub async fn agent_daemonset(source: &Client) -> Option<DaemonSet> {
    Api::<DaemonSet>::namespaced(source.clone(), AGENT_NAMESPACE)
        .get_opt(AGENT_NAME)
        .await
        .unwrap()
}

/// Process ids of the agent binaries this bed runs on `node` (found through /proc: the
/// process runs our agent binary, its root or cwd is under the bed directory, and its
/// environment names the node).
pub async fn agent_pids(node: &str) -> Vec<i32> {
    let bed_dir = bed().await.dir().to_path_buf();
    let wanted_env = format!("DR_SYNCER_AGENT_NODE_NAME={node}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let proc_dir = entry.path();
        let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
        let arg0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if !String::from_utf8_lossy(arg0).ends_with("dr-syncer-agent") {
            continue;
        }
        let under_bed = ["root", "cwd"]
            .iter()
            .any(|l| std::fs::read_link(proc_dir.join(l)).is_ok_and(|p| p.starts_with(&bed_dir)));
        let environ = std::fs::read(proc_dir.join("environ")).unwrap_or_default();
        let on_node = environ
            .split(|b| *b == 0)
            .any(|v| v == wanted_env.as_bytes());
        if under_bed && on_node {
            pids.push(pid);
        }
    }
    pids
}

/// Stops processes with SIGSTOP and continues them (SIGCONT) when dropped, even when the
/// test fails: a stopped agent still completes TCP handshakes in the kernel (its readiness
/// probe passes) but never answers SSH, which is what an unreachable agent looks like to a
/// worker.
pub struct Frozen(pub Vec<i32>);

impl Frozen {
    /// Sends SIGSTOP to every pid.
    pub fn freeze(pids: Vec<i32>) -> Frozen {
        for pid in &pids {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGSTOP)
                .unwrap();
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGCONT);
        }
    }
}

/// A metric of the controller: the value of the first sample of `name` whose labels
/// contain every `label="value"` pair given.
pub async fn metric_with(
    controller: &ControllerProcess,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    let (_, body) = controller.get("/metrics").await?;
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
