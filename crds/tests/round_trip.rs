//! Round trips: DR-Syncer-style manifests deserialize into the types and serialize back to
//! the same JSON, every field kept, so the controller never drops or rewrites what users
//! wrote (and status written by the controller reads back unchanged).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dr_syncer_crds::namespace_mapping::{AccessMode, ImmutableResourceHandling, ReplicationMode};
use dr_syncer_crds::{ClusterMapping, NamespaceMapping, RemoteCluster};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use support::{fixtures, is_subset};

fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Value {
    let typed: T = serde_json::from_value(value.clone()).expect("deserializes");
    serde_json::to_value(&typed).expect("serializes")
}

/// The NamespaceMapping of the valid fixture `name`.
fn valid_namespace_mapping(name: &str) -> NamespaceMapping {
    let fixture = fixtures("valid")
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("fixture {name} exists"));
    serde_json::from_value(fixture.value).unwrap()
}

fn round_trip_kind(value: &Value) -> Value {
    match value["kind"].as_str() {
        Some("RemoteCluster") => round_trip::<RemoteCluster>(value),
        Some("ClusterMapping") => round_trip::<ClusterMapping>(value),
        Some("NamespaceMapping") => round_trip::<NamespaceMapping>(value),
        other => panic!("unknown kind {other:?}"),
    }
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("test YAML parses")
}

#[test]
fn full_fixtures_round_trip_exactly() {
    let full: Vec<_> = fixtures("valid")
        .into_iter()
        .filter(|f| f.name.ends_with("-full.yaml"))
        .collect();
    assert!(full.len() >= 4, "expected a -full fixture per kind");
    for fixture in full {
        let back = round_trip_kind(&fixture.value);
        assert_eq!(
            back, fixture.value,
            "{} changed in a round trip",
            fixture.name
        );
    }
}

#[test]
fn every_valid_fixture_keeps_every_field() {
    for fixture in fixtures("valid") {
        let back = round_trip_kind(&fixture.value);
        assert!(
            is_subset(&fixture.value, &back),
            "{} lost or changed a field:\nbefore: {:#}\nafter:  {:#}",
            fixture.name,
            fixture.value,
            back
        );
    }
}

#[test]
fn drsyncer_namespace_mapping_fields_land_in_the_right_places() {
    let nm = valid_namespace_mapping("namespacemapping-drsyncer-full.yaml");
    let spec = &nm.spec;
    assert_eq!(spec.replication_mode, Some(ReplicationMode::Scheduled));
    assert_eq!(spec.schedule.as_deref(), Some("0 3 * * 0"));
    assert_eq!(spec.source_cluster.as_deref(), Some("prod-cluster"));
    assert_eq!(spec.effective_destination_namespace(), "wordpress-dr");
    assert_eq!(spec.resource_types.len(), 6);
    assert!(spec.scale_to_zero);
    assert!(!spec.sync_crds);
    let pvc = spec.pvc_config.as_ref().unwrap();
    assert_eq!(pvc.storage_class_mappings[1].from, "io1");
    assert_eq!(pvc.storage_class_mappings[1].to, "premium-rwo");
    assert_eq!(pvc.access_mode_mappings[0].from, AccessMode::ReadWriteOnce);
    assert_eq!(pvc.access_mode_mappings[0].to, AccessMode::ReadWriteMany);
    let data = pvc.data_sync_config.as_ref().unwrap();
    assert_eq!(data.bandwidth_limit, Some(10240));
    assert_eq!(data.exclude_paths, vec!["tmp/", "*.log"]);
    let immutable = spec.immutable_resource_config.as_ref().unwrap();
    assert_eq!(
        immutable.resource_overrides.get("statefulsets.apps"),
        Some(&ImmutableResourceHandling::RecreateWithPodDrain)
    );
    assert!(spec.ingress_config.as_ref().unwrap().preserve_tls);
    assert!(!spec.namespace_config.as_ref().unwrap().preserve_annotations);
}

#[test]
fn transformations_are_rfc6902_patches() {
    let nm = valid_namespace_mapping("namespacemapping-extensions-full.yaml");
    assert_eq!(nm.spec.transformations.len(), 2);
    let mut object = serde_json::json!({
        "metadata": {"labels": {"app": "shop"}, "annotations": {"example.com/owner": "me"}},
        "spec": {"paused": false, "template": {"spec": {"containers": [{"env": [{"name": "ROLE", "value": "primary"}]}]}}}
    });
    let patch = nm.spec.transformations[0]
        .json_patch()
        .expect("our operations are RFC 6902 operations");
    json_patch::patch(&mut object, &patch).expect("patch applies");
    assert_eq!(object["metadata"]["labels"]["dr-role"], "standby");
    assert_eq!(object["metadata"]["annotations"]["source-app"], "shop");
    assert!(
        object["metadata"]["annotations"]
            .get("example.com/owner")
            .is_none()
    );
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "dr"
    );
}

#[test]
fn namespace_mapping_status_round_trips() {
    let object = yaml(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: NamespaceMapping
metadata: {name: wordpress, namespace: dr-syncer, generation: 3}
spec:
  replicationMode: Manual
  sourceCluster: prod
  destinationCluster: dr
  sourceNamespace: wordpress
  paused: false
  scaleToZero: true
  syncCRDs: false
  prune: false
status:
  phase: Completed
  lastSyncTime: "2026-01-02T03:04:05Z"
  nextSyncTime: "2026-01-03T03:00:00Z"
  lastWatchEvent: "2026-01-02T03:04:00Z"
  observedGeneration: 3
  lastSyncNowValue: "2026-01-02T03:00:00Z"
  syncStats: {totalResources: 12, successfulSyncs: 11, failedSyncs: 1, lastSyncDuration: 2.5s}
  deploymentScales:
    - {name: web, originalReplicas: 3, lastSyncedAt: "2026-01-02T03:04:05Z"}
  resourceStatus:
    - {kind: ConfigMap, name: settings, namespace: wordpress, status: Failed, lastSyncTime: "2026-01-02T03:04:05Z", error: forbidden}
  retryStatus: {nextRetryTime: "2026-01-02T03:05:05Z", retriesRemaining: 4, backoffDuration: 5s}
  lastError: {message: forbidden, time: "2026-01-02T03:04:05Z", resource: ConfigMap/settings}
  conditions:
    - {type: Ready, status: "True", reason: Synced, message: all good, lastTransitionTime: "2026-01-02T03:04:05Z", observedGeneration: 3}
  pvcSyncStatus:
    - {pvc: data, lastSyncTime: "2026-01-02T03:04:05Z", result: Succeeded, duration: 1m2s, filesTransferred: 10, bytesTransferred: 1048576, wireBytes: 2048}
    - {pvc: logs, result: Failed, filesTransferred: 0, bytesTransferred: 0, wireBytes: 0, lastError: agent unreachable}
"#,
    );
    assert_eq!(round_trip::<NamespaceMapping>(&object), object);
}

#[test]
fn remote_cluster_and_cluster_mapping_status_round_trip() {
    let rc = yaml(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: RemoteCluster
metadata: {name: prod, namespace: dr-syncer}
spec:
  kubeconfigSecretRef: {name: prod-kubeconfig, namespace: dr-syncer, key: kubeconfig}
status:
  health: Healthy
  lastSyncTime: "2026-01-02T03:04:05Z"
  observedGeneration: 1
  conditions:
    - {type: Ready, status: "True", reason: Connected, message: ok, lastTransitionTime: "2026-01-02T03:04:05Z"}
  pvcSync:
    phase: Running
    lastSuccessfulSync: "2026-01-02T03:04:05Z"
    lastDeploymentTime: "2026-01-01T00:00:00Z"
    failedSyncs: 2
    message: 2/2 agents ready
    agentStatus:
      readyNodes: 2
      totalNodes: 2
      nodeStatuses:
        node-a:
          ready: true
          lastHeartbeat: "2026-01-02T03:04:05Z"
          message: ok
          sshStatus: {lastCheckTime: "2026-01-02T03:04:05Z", connected: true}
          podStatus: {phase: Running, ready: true, restartCount: 0, lastTransitionTime: "2026-01-01T00:00:00Z"}
        node-b:
          ready: true
          sshStatus: {connected: false, error: timeout}
"#,
    );
    assert_eq!(round_trip::<RemoteCluster>(&rc), rc);

    let cm = yaml(
        r#"
apiVersion: dr-syncer.io/v1alpha1
kind: ClusterMapping
metadata: {name: prod-to-dr, namespace: dr-syncer}
spec: {paused: false, sourceCluster: prod, targetCluster: dr, verifyConnectivity: true, connectivityTimeoutSeconds: 60}
status:
  phase: Connected
  message: all agents reachable
  lastVerified: "2026-01-02T03:04:05Z"
  lastAttemptTime: "2026-01-02T03:04:05Z"
  consecutiveFailures: 0
  observedGeneration: 2
  connectionStatus:
    totalSourceAgents: 2
    totalTargetAgents: 1
    connectedAgents: 2
    connectionDetails:
      - {sourceNode: a, targetNode: x, connected: true}
      - {sourceNode: b, targetNode: x, connected: false, error: refused}
  conditions:
    - {type: Ready, status: "False", reason: Unreachable, message: one agent down, lastTransitionTime: "2026-01-02T03:04:05Z"}
"#,
    );
    assert_eq!(round_trip::<ClusterMapping>(&cm), cm);
}

#[test]
fn patch_operations_missing_their_operand_are_refused() {
    use dr_syncer_crds::namespace_mapping::Transformation;
    let transformation = |op: Value| -> Transformation {
        serde_json::from_value(serde_json::json!({"resource": "deployments", "patch": [op]}))
            .unwrap()
    };
    let add_without_value = transformation(serde_json::json!({"op": "add", "path": "/a"}));
    let error = add_without_value.json_patch().unwrap_err();
    assert!(error.to_string().contains("value"), "{error}");
    let move_without_from = transformation(serde_json::json!({"op": "move", "path": "/a"}));
    assert!(move_without_from.json_patch().is_err());
    let remove = transformation(serde_json::json!({"op": "remove", "path": "/a"}));
    assert!(remove.json_patch().is_ok());
}
