//! The agent side of PVC data sync (issue 6, items 1, 2 and 6) against the real controller
//! on a bed of three clusters with two simulated nodes each: a RemoteCluster with
//! `pvcSync.enabled` gets a Ready agent DaemonSet on both source nodes and a matching
//! `status.pvcSync`; keys travel only as halves (no client private key in the source
//! cluster, no host private key in the target cluster); a ClusterMapping proves with a
//! check pod that the target reaches both agents; a bad `sshKeySecretRef` is named in a
//! condition; disabling pvcSync removes the DaemonSet and its Secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod controller_support;
mod pvc_support;

use std::time::Duration;

use controller_support::*;
use dr_syncer_crds::{ClusterMapping, RemoteCluster};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use pvc_support::*;
use serde_json::{Value, json};

/// Agents roll out and a check pod runs on a busy 2-core machine.
const AGENTS_DEADLINE: Duration = Duration::from_secs(240);

fn json_of<K: serde::Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj).unwrap()
}

/// Every Secret value in a cluster, as text, with its `namespace/name`.
async fn all_secret_values(client: &Client) -> Vec<(String, String)> {
    let secrets: Api<Secret> = Api::all(client.clone());
    let mut out = Vec::new();
    for s in secrets.list(&ListParams::default()).await.unwrap() {
        let name = format!(
            "{}/{}",
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default()
        );
        for value in s.data.unwrap_or_default().values() {
            out.push((name.clone(), String::from_utf8_lossy(&value.0).into_owned()));
        }
    }
    out
}

/// A key of a Secret of the controller cluster, as text.
async fn secret_text(client: &Client, ns: &str, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap();
    String::from_utf8(secret.data.unwrap()[key].0.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_deploy_keys_stay_split_and_connectivity_is_verified() {
    let _serial = SERIAL.lock().await;
    let c = setup().await;
    let ns = namespace(&c.controller, "dr").await;
    remote_clusters_with_pvc_sync(&c, &ns, "enabled: true\nhealthCheck:\n  interval: 5s\n").await;
    let _controller = start_controller(None).await;

    // 1. The DaemonSet is Ready on both source nodes and the RemoteCluster says so.
    let rcs: Api<RemoteCluster> = Api::namespaced(c.controller.clone(), &ns);
    let rc = wait_for_within(
        &rcs,
        SOURCE,
        |rc: Option<&RemoteCluster>| {
            rc.and_then(|r| r.status.as_ref())
                .and_then(|s| s.pvc_sync.as_ref())
                .and_then(|p| p.agent_status.as_ref())
                .is_some_and(|a| a.ready_nodes == 2 && a.total_nodes == 2)
        },
        AGENTS_DEADLINE,
    )
    .await;
    let pvc_sync = rc.status.unwrap().pvc_sync.unwrap();
    assert_eq!(pvc_sync.phase.as_deref(), Some("Running"));
    let nodes = pvc_sync.agent_status.unwrap().node_statuses;
    for n in 1..=NODES {
        let line = &nodes[&node(SOURCE, n)];
        assert!(line.ready, "{line:?}");
        assert!(line.last_heartbeat.is_some());
    }
    let pods = agent_pods(&c.source).await;
    assert_eq!(pods.len(), NODES);
    assert!(pods.values().all(is_ready));
    let ds = agent_daemonset(&c.source).await.expect("agent DaemonSet");
    let template = json_of(&ds)["spec"]["template"].clone();
    assert_eq!(template["spec"]["hostNetwork"], true);
    assert!(
        template["metadata"]["annotations"]["dr-syncer.io/keys-hash"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );

    // 2. A ClusterMapping: the check pod in the target reaches and authenticates to both.
    let cms: Api<ClusterMapping> = Api::namespaced(c.controller.clone(), &ns);
    let pair = PairFixture::new("pair", SOURCE, TARGET)
        .connectivity_timeout(30)
        .build();
    apply(&c.controller, &ns, &pair).await;
    let cm = wait_for_within(
        &cms,
        "pair",
        has_condition("AgentsConnected", "True", "ConnectivityVerified"),
        AGENTS_DEADLINE,
    )
    .await;
    let status = json_of(&cm)["status"].clone();
    assert_eq!(status["phase"], "Connected", "{status:#}");
    let conn = &status["connectionStatus"];
    assert_eq!(conn["totalSourceAgents"], 2, "{conn:#}");
    assert_eq!(conn["connectedAgents"], 2, "{conn:#}");
    let mut listed: Vec<String> = conn["connectionDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            assert_eq!(d["connected"], true, "{d}");
            d["sourceNode"].as_str().unwrap().to_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, [node(SOURCE, 1), node(SOURCE, 2)]);
    // The check pod and its Secret are gone.
    let leftovers = Api::<Pod>::namespaced(c.target.clone(), "dr-syncer-system")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        leftovers
            .items
            .iter()
            .all(|p| p.metadata.deletion_timestamp.is_some()),
        "check pods left: {:?}",
        leftovers
            .items
            .iter()
            .map(|p| p.metadata.name.clone())
            .collect::<Vec<_>>()
    );
    let check_secrets = Api::<Secret>::namespaced(c.target.clone(), "dr-syncer-system")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        check_secrets.items.iter().all(|s| !s
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .starts_with("dr-syncer-check-")
            || s.metadata.deletion_timestamp.is_some()),
        "check Secrets left"
    );

    // 3. Keys travel as halves only.
    let host_private = secret_text(
        &c.controller,
        &ns,
        "source-agent-host-key",
        "ssh_host_ed25519_key",
    )
    .await;
    let client_private = secret_text(&c.controller, &ns, "pair-worker-key", "id_ed25519").await;
    let client_public = secret_text(&c.controller, &ns, "pair-worker-key", "id_ed25519.pub").await;
    assert!(host_private.contains("OPENSSH PRIVATE KEY"));
    let source_values = all_secret_values(&c.source).await;
    assert!(
        source_values
            .iter()
            .any(|(_, v)| v.trim() == host_private.trim()),
        "the source cluster must hold the host private key"
    );
    let client_key_data = client_public.split_whitespace().nth(1).unwrap();
    assert!(
        source_values.iter().any(|(n, v)| n == "dr-syncer-agent/dr-syncer-agent-ssh"
            && v.contains(client_key_data)),
        "the agents' authorized_keys must list the mapping's client key"
    );
    for (name, value) in &source_values {
        assert!(
            !value.contains(client_private.trim()),
            "client private key found in source Secret {name}"
        );
    }
    for (name, value) in all_secret_values(&c.target).await {
        assert!(
            !value.contains(host_private.trim()),
            "host private key found in target Secret {name}"
        );
    }
    // Nor in any status.
    for text in [
        json_of(&rcs.get(SOURCE).await.unwrap()).to_string(),
        json_of(&cms.get("pair").await.unwrap()).to_string(),
    ] {
        assert!(!text.contains("PRIVATE KEY"));
    }

    // 4. A missing user key Secret is named in the condition.
    let bad_key = PairFixture::new("bad-key", SOURCE, TARGET)
        .ssh_key_secret("no-such-key-secret", None)
        .build();
    apply(&c.controller, &ns, &bad_key).await;
    let bad = wait_for_within(
        &cms,
        "bad-key",
        has_condition("AgentsConnected", "False", "KeySecretMissing"),
        AGENTS_DEADLINE,
    )
    .await;
    let message = condition_message(&bad, "AgentsConnected");
    assert!(
        message.contains(&format!("{ns}/no-such-key-secret"))
            && message.contains("spec.sshKeySecretRef"),
        "{message}"
    );
    assert_eq!(json_of(&bad)["status"]["phase"], "Failed");
    let ready = condition_message(&bad, "Ready");
    assert!(ready.contains("no-such-key-secret"), "{ready}");

    // 5. Disabling pvcSync removes the DaemonSet and the agent Secret.
    rcs.patch(
        SOURCE,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"pvcSync": {"enabled": false}}})),
    )
    .await
    .unwrap();
    let daemonsets: Api<DaemonSet> = Api::namespaced(c.source.clone(), AGENT_NAMESPACE);
    wait_gone(&daemonsets, AGENT_NAME, DEADLINE).await;
    let secrets: Api<Secret> = Api::namespaced(c.source.clone(), AGENT_NAMESPACE);
    wait_gone(&secrets, "dr-syncer-agent-ssh", DEADLINE).await;
    wait_for(&rcs, SOURCE, |rc: Option<&RemoteCluster>| {
        rc.and_then(|r| r.status.as_ref())
            .is_some_and(|s| s.pvc_sync.is_none())
    })
    .await;
}

/// The `dr-syncer.io/keys-hash` of the agent DaemonSet's pod template.
fn keys_hash_of(ds: &DaemonSet) -> Option<String> {
    json_of(ds)["spec"]["template"]["metadata"]["annotations"]["dr-syncer.io/keys-hash"]
        .as_str()
        .map(str::to_owned)
}

/// The `dr-syncer.io/keys-hash` of the agent DaemonSet of the source cluster.
async fn keys_hash(source: &Client) -> String {
    let ds = agent_daemonset(source).await.expect("agent DaemonSet");
    keys_hash_of(&ds).unwrap()
}

/// A key of a Secret, as text, if present.
fn text_of(secret: Option<&Secret>, key: &str) -> Option<String> {
    let value = secret?.data.as_ref()?.get(key)?;
    String::from_utf8(value.0.clone()).ok()
}

/// Waits (watch, [`DEADLINE`]) until key `key` of Secret `ns/name` of the controller
/// cluster holds something other than `old`; returns the new text.
async fn changed_secret_text(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
    old: &str,
    what: &str,
) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let (wanted, old) = (key.to_owned(), old.to_owned());
    let secret = wait_until(
        &secrets,
        name,
        what,
        move |s: Option<&Secret>| text_of(s, &wanted).is_some_and(|now| now != old),
        DEADLINE,
    )
    .await;
    text_of(Some(&secret), key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_annotations_replace_keys_and_roll_the_agents() {
    let _serial = SERIAL.lock().await;
    let c = setup().await;
    let ns = namespace(&c.controller, "rot").await;
    remote_clusters_with_pvc_sync(&c, &ns, "enabled: true\nhealthCheck:\n  interval: 5s\n").await;
    let _controller = start_controller(None).await;
    let cms: Api<ClusterMapping> = Api::namespaced(c.controller.clone(), &ns);
    let rcs: Api<RemoteCluster> = Api::namespaced(c.controller.clone(), &ns);
    let pair = PairFixture::new("pair", SOURCE, TARGET)
        .connectivity_timeout(30)
        .build();
    apply(&c.controller, &ns, &pair).await;
    wait_for_within(
        &cms,
        "pair",
        has_condition("AgentsConnected", "True", "ConnectivityVerified"),
        AGENTS_DEADLINE,
    )
    .await;
    let host_1 = secret_text(
        &c.controller,
        &ns,
        "source-agent-host-key",
        "ssh_host_ed25519_key",
    )
    .await;
    let client_1 = secret_text(&c.controller, &ns, "pair-worker-key", "id_ed25519.pub").await;
    let hash_1 = keys_hash(&c.source).await;
    let old_pods: std::collections::BTreeSet<String> = agent_pods(&c.source)
        .await
        .values()
        .filter_map(|p| p.metadata.uid.clone())
        .collect();

    // Host key: a new value of the annotation on the RemoteCluster.
    rcs.patch(
        SOURCE,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"dr-syncer.io/rotate-keys": "r1"}}})),
    )
    .await
    .unwrap();
    let host_2 = changed_secret_text(
        &c.controller,
        &ns,
        "source-agent-host-key",
        "ssh_host_ed25519_key",
        &host_1,
        "host key regenerated",
    )
    .await;
    let daemonsets: Api<DaemonSet> = Api::namespaced(c.source.clone(), AGENT_NAMESPACE);
    wait_until(
        &daemonsets,
        AGENT_NAME,
        "DaemonSet rolled to the new keys",
        move |ds: Option<&DaemonSet>| ds.and_then(keys_hash_of).is_some_and(|h| h != hash_1),
        DEADLINE,
    )
    .await;
    wait_agents_ready(&c.source, &old_pods, AGENTS_DEADLINE).await;
    let source_values = all_secret_values(&c.source).await;
    assert!(source_values.iter().any(|(_, v)| v.trim() == host_2.trim()));
    assert!(
        source_values.iter().all(|(_, v)| v.trim() != host_1.trim()),
        "the old host private key must be gone from the source cluster"
    );

    // Client key: a new value on the ClusterMapping; the check re-runs with the new key,
    // and the agents authorize the new key and no longer the old one.
    let verified_before = cms.get("pair").await.unwrap().status.unwrap().last_verified;
    cms.patch(
        "pair",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"dr-syncer.io/rotate-keys": "r1"}}})),
    )
    .await
    .unwrap();
    let client_2 = changed_secret_text(
        &c.controller,
        &ns,
        "pair-worker-key",
        "id_ed25519.pub",
        &client_1,
        "client key regenerated",
    )
    .await;
    let cm = wait_for_within(
        &cms,
        "pair",
        |cm: Option<&ClusterMapping>| {
            cm.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                s.last_verified != verified_before
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "AgentsConnected" && c.status == "True")
            })
        },
        AGENTS_DEADLINE,
    )
    .await;
    assert_eq!(
        json_of(&cm)["status"]["connectionStatus"]["connectedAgents"],
        2,
        "the rotated client key authenticates to both agents"
    );
    let authorized = all_secret_values(&c.source)
        .await
        .into_iter()
        .filter(|(n, _)| n == "dr-syncer-agent/dr-syncer-agent-ssh")
        .map(|(_, v)| v)
        .collect::<Vec<_>>()
        .join("\n");
    let data = |line: &str| line.split_whitespace().nth(1).unwrap().to_owned();
    assert!(authorized.contains(&data(&client_2)));
    assert!(
        !authorized.contains(&data(&client_1)),
        "the old client key must no longer be authorized"
    );
}

/// An Ed25519 key pair made by OpenSSH's `ssh-keygen`: (private, public line).
fn ssh_keygen(dir: &std::path::Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    (
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(path.with_extension("pub")).unwrap(),
    )
}

async fn key_secret(c: &Clusters, ns: &str, name: &str, data: &[(&str, &str)]) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    }))
    .unwrap();
    Api::<Secret>::namespaced(c.controller.clone(), ns)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_given_key_secrets_are_used_instead_of_generated_ones() {
    let _serial = SERIAL.lock().await;
    let c = setup().await;
    let ns = namespace(&c.controller, "own").await;
    let dir = tempfile::tempdir().unwrap();
    let (host_private, host_public) = ssh_keygen(dir.path(), "host");
    let (client_private, client_public) = ssh_keygen(dir.path(), "client");
    key_secret(
        &c,
        &ns,
        "my-host-key",
        &[("ssh_host_ed25519_key", &host_private)],
    )
    .await;
    key_secret(
        &c,
        &ns,
        "my-client-key",
        &[
            ("id_ed25519", &client_private),
            ("id_ed25519.pub", &client_public),
        ],
    )
    .await;
    remote_clusters_with_pvc_sync(
        &c,
        &ns,
        &format!(
            "enabled: true\nssh:\n  keySecretRef:\n    name: my-host-key\n    namespace: {ns}\nhealthCheck:\n  interval: 5s\n"
        ),
    )
    .await;
    let _controller = start_controller(None).await;
    let cms: Api<ClusterMapping> = Api::namespaced(c.controller.clone(), &ns);
    let pair = PairFixture::new("pair", SOURCE, TARGET)
        .connectivity_timeout(30)
        .ssh_key_secret_keys("my-client-key", "id_ed25519", "id_ed25519.pub")
        .build();
    apply(&c.controller, &ns, &pair).await;
    let cm = wait_for_within(
        &cms,
        "pair",
        has_condition("AgentsConnected", "True", "ConnectivityVerified"),
        AGENTS_DEADLINE,
    )
    .await;
    assert_eq!(
        json_of(&cm)["status"]["connectionStatus"]["connectedAgents"],
        2
    );
    let agent_secret = Api::<Secret>::namespaced(c.source.clone(), AGENT_NAMESPACE)
        .get("dr-syncer-agent-ssh")
        .await
        .unwrap()
        .data
        .unwrap();
    let text = |k: &str| String::from_utf8(agent_secret[k].0.clone()).unwrap();
    assert_eq!(
        text("ssh_host_ed25519_key").trim(),
        host_private.trim(),
        "the agents serve the user's host key"
    );
    let data = |line: &str| line.split_whitespace().nth(1).unwrap().to_owned();
    assert!(text("authorized_keys").contains(&data(&client_public)));
    assert!(!host_public.is_empty());
    // Nothing was generated in the controller cluster.
    let secrets: Api<Secret> = Api::namespaced(c.controller.clone(), &ns);
    assert!(
        secrets
            .get_opt("source-agent-host-key")
            .await
            .unwrap()
            .is_none()
    );
    assert!(secrets.get_opt("pair-worker-key").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_agent_fails_the_check_and_is_named() {
    let _serial = SERIAL.lock().await;
    let c = setup().await;
    let ns = namespace(&c.controller, "down").await;
    remote_clusters_with_pvc_sync(&c, &ns, "enabled: true\nhealthCheck:\n  interval: 5s\n").await;
    let _controller = start_controller(None).await;
    let cms: Api<ClusterMapping> = Api::namespaced(c.controller.clone(), &ns);
    let pair = |timeout: i32| {
        PairFixture::new("pair", SOURCE, TARGET)
            .connectivity_timeout(timeout)
            .build()
    };
    apply(&c.controller, &ns, &pair(30)).await;
    wait_for_within(
        &cms,
        "pair",
        has_condition("AgentsConnected", "True", "ConnectivityVerified"),
        AGENTS_DEADLINE,
    )
    .await;
    // The agent on node 2 stops answering (its TCP port still accepts: the readiness probe
    // passes), then a spec change asks for a new check.
    let down = node(SOURCE, 2);
    let pids = agent_pids(&down).await;
    assert!(!pids.is_empty(), "no agent process found for {down}");
    let _frozen = Frozen::freeze(pids);
    apply(&c.controller, &ns, &pair(5)).await;
    let cm = wait_for_within(
        &cms,
        "pair",
        has_condition("AgentsConnected", "False", "ConnectivityFailed"),
        AGENTS_DEADLINE,
    )
    .await;
    let message = condition_message(&cm, "AgentsConnected");
    assert!(
        message.contains(&down) && message.contains("1 of 2"),
        "{message}"
    );
    let status = json_of(&cm)["status"].clone();
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        status["connectionStatus"]["connectedAgents"], 1,
        "{status:#}"
    );
    let detail = status["connectionStatus"]["connectionDetails"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["sourceNode"] == down.as_str())
        .cloned()
        .unwrap();
    assert_eq!(detail["connected"], false);
    assert!(
        detail["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{detail}"
    );
    assert!(condition_message(&cm, "Ready").contains(&down));
}
