use serde_json::json;

use super::fixtures::spec;
use crate::replicate::unsupported::condition_message;
use crate::replicate::unsupported_fields;

#[test]
fn a_plain_dr_syncer_mapping_has_nothing_unsupported() {
    let s = spec(
        json!({"sourceNamespace": "shop", "destinationNamespace": "shop-dr", "sourceCluster": "prod",
        "destinationCluster": "dr", "schedule": "*/15 * * * *", "resourceTypes": ["configmaps", "deployments"],
        "scaleToZero": true, "pvcConfig": {"storageClassMappings": [{"from": "gp2", "to": "standard"}],
            "accessModeMappings": [{"from": "ReadWriteOnce", "to": "ReadWriteMany"}]},
        "ingressConfig": {"preserveAnnotations": false}, "namespaceConfig": {"createNamespace": true},
        "failureHandling": {}, "syncCRDs": true, "prune": true,
        "immutableResourceConfig": {"defaultHandling": "Recreate"}}),
    );
    assert_eq!(unsupported_fields(&s), vec![]);
    assert_eq!(condition_message(&[]), None);
}

#[test]
fn each_unbuilt_field_is_listed_by_path() {
    let table = [
        (
            json!({"tempPodKeySecretRef": {"name": "k", "namespace": "dr"}}),
            "spec.tempPodKeySecretRef",
        ),
        (
            json!({"failureHandling": {"networkError": "FailFast"}}),
            "spec.failureHandling",
        ),
        (
            json!({"pvcConfig": {"syncPersistentVolumes": true}}),
            "spec.pvcConfig.syncPersistentVolumes",
        ),
        (
            json!({"pvcConfig": {"preserveVolumeAttributes": true}}),
            "spec.pvcConfig.preserveVolumeAttributes",
        ),
        (
            json!({"ingressConfig": {"preserveBackends": false}}),
            "spec.ingressConfig.preserveBackends",
        ),
    ];
    for (extra, field) in table {
        let mut s = json!({"sourceNamespace": "shop"});
        if let (Some(m), Some(e)) = (s.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        let items = unsupported_fields(&spec(s));
        assert_eq!(
            items.iter().map(|i| i.field).collect::<Vec<_>>(),
            vec![field],
            "{extra}"
        );
        let msg = condition_message(&items).unwrap_or_default();
        assert!(
            msg.starts_with("accepted but not acted on: ") && msg.contains(field),
            "{msg}"
        );
    }
}

#[test]
fn pvc_data_sync_is_built() {
    let s = spec(
        json!({"sourceNamespace": "shop", "pvcConfig": {"syncData": true,
        "dataSyncConfig": {"concurrentSyncs": 3, "excludePaths": ["tmp/"], "rsyncOptions": ["--delete"],
            "bandwidthLimit": 1024, "timeout": "10m", "verificationMode": "full"}}}),
    );
    assert_eq!(unsupported_fields(&s), vec![]);
    let sample = spec(
        json!({"sourceNamespace": "shop", "pvcConfig": {"syncData": true,
        "dataSyncConfig": {"verificationMode": "sample", "samplePercent": 20}}}),
    );
    assert_eq!(unsupported_fields(&sample), vec![]);
}
