//! Defaults: an object that omits defaulted fields reads as if they held the documented
//! default, both through serde (what the controller sees) and through the schema's
//! `default`s (what the API server stores) — and the two agree.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use dr_syncer_crds::common::VerificationMode;
use dr_syncer_crds::namespace_mapping::{
    FailureHandlingMode, ImmutableResourceHandling, ReplicationMode,
};
use dr_syncer_crds::{ClusterMapping, NamespaceMapping, RemoteCluster};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use support::schema_for_kind;

/// Objects with every defaulted field left out, but with every object that holds defaults
/// present (empty), so that both serde and the API server fill them in.
fn sparse_namespace_mapping() -> Value {
    json!({
        "apiVersion": "dr-syncer.io/v1alpha1", "kind": "NamespaceMapping",
        "metadata": {"name": "app", "namespace": "dr-syncer"},
        "spec": {
            "sourceCluster": "prod", "destinationCluster": "dr", "sourceNamespace": "app",
            "namespaceConfig": {}, "continuous": {}, "retryConfig": {}, "ingressConfig": {},
            "immutableResourceConfig": {}, "failureHandling": {},
            "pvcConfig": {"dataSyncConfig": {}}
        }
    })
}

fn sparse_remote_cluster() -> Value {
    json!({
        "apiVersion": "dr-syncer.io/v1alpha1", "kind": "RemoteCluster",
        "metadata": {"name": "prod", "namespace": "dr-syncer"},
        "spec": {
            "kubeconfigSecretRef": {"name": "prod-kubeconfig", "namespace": "dr-syncer"},
            "pvcSync": {"ssh": {}, "retryConfig": {}, "deployment": {}, "healthCheck": {}}
        }
    })
}

fn sparse_cluster_mapping() -> Value {
    json!({
        "apiVersion": "dr-syncer.io/v1alpha1", "kind": "ClusterMapping",
        "metadata": {"name": "prod-to-dr", "namespace": "dr-syncer"},
        "spec": {"sourceCluster": "prod", "targetCluster": "dr", "sshKeySecretRef": {"name": "keys"}}
    })
}

#[test]
fn namespace_mapping_defaults() {
    let nm: NamespaceMapping = serde_json::from_value(sparse_namespace_mapping()).unwrap();
    let spec = &nm.spec;
    assert!(!spec.paused);
    assert_eq!(spec.replication_mode, None);
    assert_eq!(spec.effective_mode(), ReplicationMode::Scheduled);
    assert_eq!(spec.effective_destination_namespace(), "app");
    assert!(spec.scale_to_zero);
    assert!(!spec.sync_crds);
    assert!(!spec.prune);
    let ns = spec.namespace_config.as_ref().unwrap();
    assert!(ns.create_namespace && ns.preserve_labels && ns.preserve_annotations);
    let continuous = spec.continuous.as_ref().unwrap();
    assert!(continuous.watch_resources);
    assert_eq!(continuous.background_sync_interval, "1h");
    let retry = spec.retry_config.as_ref().unwrap();
    assert_eq!(retry.max_retries, 5);
    assert_eq!(retry.initial_backoff, "5s");
    assert_eq!(retry.max_backoff, "5m");
    assert_eq!(retry.backoff_multiplier, 200);
    let ingress = spec.ingress_config.as_ref().unwrap();
    assert!(ingress.preserve_annotations && ingress.preserve_tls && ingress.preserve_backends);
    let immutable = spec.immutable_resource_config.as_ref().unwrap();
    assert_eq!(
        immutable.default_handling,
        ImmutableResourceHandling::NoChange
    );
    assert_eq!(immutable.drain_timeout, "5m");
    assert_eq!(immutable.force_delete_timeout, "2m");
    let failure = spec.failure_handling.as_ref().unwrap();
    assert_eq!(failure.default_mode, FailureHandlingMode::RetryAndWait);
    assert_eq!(
        failure.storage_class_not_found,
        FailureHandlingMode::WaitForNextSync
    );
    assert_eq!(failure.resource_not_found, FailureHandlingMode::FailFast);
    let pvc = spec.pvc_config.as_ref().unwrap();
    assert!(!pvc.sync_persistent_volumes && !pvc.sync_data && !pvc.preserve_volume_attributes);
    let data = pvc.data_sync_config.as_ref().unwrap();
    assert_eq!(data.concurrent_syncs, 2);
    assert_eq!(data.timeout, "30m");
    assert_eq!(
        data.verification_mode, None,
        "inherits from the RemoteCluster"
    );
    assert_eq!(data.sample_percent, None, "inherits from the RemoteCluster");
}

#[test]
fn remote_cluster_defaults() {
    let rc: RemoteCluster = serde_json::from_value(sparse_remote_cluster()).unwrap();
    assert_eq!(rc.spec.kubeconfig_secret_ref.key, "kubeconfig");
    let pvc = rc.spec.pvc_sync.as_ref().unwrap();
    assert!(!pvc.enabled);
    assert_eq!(pvc.global_concurrency_limit, 4);
    assert_eq!(pvc.default_verification_mode, VerificationMode::None);
    assert_eq!(pvc.default_sample_percent, 10);
    assert_eq!(pvc.ssh.as_ref().unwrap().port, 2222);
    let deployment = pvc.deployment.as_ref().unwrap();
    assert!(deployment.host_network && deployment.privileged);
    let retry = pvc.retry_config.as_ref().unwrap();
    assert_eq!(
        (
            retry.max_retries,
            retry.initial_delay.as_str(),
            retry.max_delay.as_str()
        ),
        (3, "30s", "5m")
    );
    let health = pvc.health_check.as_ref().unwrap();
    assert_eq!(health.interval, "1m");
    assert_eq!(health.ssh_timeout, "10s");
    assert_eq!(health.retry_attempts, 3);
    assert_eq!(health.retry_interval, "10s");
}

#[test]
fn cluster_mapping_defaults() {
    let cm: ClusterMapping = serde_json::from_value(sparse_cluster_mapping()).unwrap();
    assert!(!cm.spec.paused);
    assert!(cm.spec.verify_connectivity);
    assert_eq!(cm.spec.connectivity_timeout_seconds, 60);
    let keys = cm.spec.ssh_key_secret_ref.as_ref().unwrap();
    assert_eq!(keys.public_key_key, "id_rsa.pub");
    assert_eq!(keys.private_key_key, "id_rsa");
    assert_eq!(keys.namespace, None);
}

/// serde's view of the object, written back out: defaults included.
fn serde_defaulted<T: DeserializeOwned + Serialize>(object: &Value) -> Value {
    serde_json::to_value(serde_json::from_value::<T>(object.clone()).unwrap()).unwrap()
}

#[test]
fn schema_defaults_match_serde_defaults() {
    let cases = [
        (
            sparse_namespace_mapping(),
            serde_defaulted::<NamespaceMapping>(&sparse_namespace_mapping()),
        ),
        (
            sparse_remote_cluster(),
            serde_defaulted::<RemoteCluster>(&sparse_remote_cluster()),
        ),
        (
            sparse_cluster_mapping(),
            serde_defaulted::<ClusterMapping>(&sparse_cluster_mapping()),
        ),
    ];
    for (object, from_serde) in cases {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let from_schema = kube::core::cel::apply_defaults(&schema_for_kind(&kind), &object);
        assert_eq!(
            from_schema, from_serde,
            "{kind}: the API server's defaults (left) differ from serde's (right)"
        );
    }
}

#[test]
fn cluster_selection_follows_the_cel_rules() {
    use dr_syncer_crds::namespace_mapping::{ClusterSelection, ClusterSelectionError};
    let spec = |extra: Value| {
        let mut object = json!({"sourceNamespace": "app"});
        object
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<dr_syncer_crds::NamespaceMappingSpec>(object).unwrap()
    };
    let direct = spec(json!({"sourceCluster": "prod", "destinationCluster": "dr"}));
    assert_eq!(
        direct.cluster_selection(),
        Ok(ClusterSelection::Direct {
            source: "prod",
            destination: "dr"
        })
    );
    let mapped = spec(json!({"clusterMappingRef": {"name": "prod-to-dr"}}));
    assert!(matches!(
        mapped.cluster_selection(),
        Ok(ClusterSelection::Mapping(r)) if r.name == "prod-to-dr"
    ));
    let both = spec(json!({"clusterMappingRef": {"name": "m"}, "sourceCluster": "prod"}));
    assert_eq!(both.cluster_selection(), Err(ClusterSelectionError::Both));
    let half = spec(json!({"destinationCluster": "dr"}));
    assert_eq!(
        half.cluster_selection(),
        Err(ClusterSelectionError::Neither)
    );
    assert_eq!(
        spec(json!({})).cluster_selection(),
        Err(ClusterSelectionError::Neither)
    );
}

#[test]
fn effective_schedule_falls_back_to_the_remote_default_only_when_mode_is_unset() {
    let spec = |extra: Value| {
        let mut object =
            json!({"sourceNamespace": "app", "sourceCluster": "a", "destinationCluster": "b"});
        object
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value::<dr_syncer_crds::NamespaceMappingSpec>(object).unwrap()
    };
    let remote = Some("*/15 * * * *");
    assert_eq!(spec(json!({})).effective_schedule(remote), remote);
    assert_eq!(spec(json!({})).effective_schedule(None), None);
    let own = spec(json!({"schedule": "0 3 * * 0"}));
    assert_eq!(own.effective_schedule(remote), Some("0 3 * * 0"));
    let explicit = spec(json!({"replicationMode": "Scheduled", "schedule": "@daily"}));
    assert_eq!(explicit.effective_schedule(remote), Some("@daily"));
    let explicit_without = spec(json!({"replicationMode": "Scheduled"}));
    assert_eq!(explicit_without.effective_schedule(remote), None);
    let manual = spec(json!({"replicationMode": "Manual", "schedule": "@daily"}));
    assert_eq!(manual.effective_schedule(remote), None);
}
