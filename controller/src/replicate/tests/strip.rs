use serde_json::json;

use super::fixtures::{json_of, obj, server_metadata};
use crate::replicate::strip::strip;

#[test]
fn server_bookkeeping_goes_user_intent_stays() {
    let mut cm = obj(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": server_metadata("app-config", json!({
            "selfLink": "/api/v1/namespaces/shop/configmaps/app-config",
            "generateName": "app-",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "p", "uid": "u"}],
            "finalizers": ["example.com/keep"],
            "deletionGracePeriodSeconds": 30,
            "labels": {"app": "shop"},
            "annotations": {"team": "payments"},
        })),
        "data": {"url": "https://shop.example.com"},
        "immutable": false,
    }));
    strip(&mut cm, "shop-dr");
    assert_eq!(
        json_of(&cm),
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": "shop-dr",
                "labels": {"app": "shop"}, "annotations": {"team": "payments"}},
            "data": {"url": "https://shop.example.com"},
            "immutable": false,
        })
    );
}

#[test]
fn status_and_controller_annotations_go_and_empty_maps_vanish() {
    let mut d = obj(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": server_metadata("web", json!({"annotations": {"deployment.kubernetes.io/revision": "7"}, "labels": {}})),
        "spec": {"replicas": 3},
        "status": {"replicas": 3, "readyReplicas": 3, "observedGeneration": 3},
    }));
    strip(&mut d, "shop");
    assert_eq!(
        json_of(&d),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}, "spec": {"replicas": 3}})
    );
}
