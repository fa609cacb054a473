use serde_json::{Value, json};

use super::fixtures::{kind, obj};
use crate::replicate::services::strip_service;

fn service(annotations: Value, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations}, "spec": spec})
}

#[test]
fn cluster_allocated_fields_go_user_choices_stay() {
    let lb_spec = json!({
        "type": "LoadBalancer", "selector": {"app": "web"},
        "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "externalTrafficPolicy": "Local", "healthCheckNodePort": 31942,
        "loadBalancerSourceRanges": ["10.0.0.0/8"], "sessionAffinity": "None",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080},
                  {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP", "nodePort": 30443}],
    });
    let lb_want = json!({
        "type": "LoadBalancer", "selector": {"app": "web"},
        "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
        "externalTrafficPolicy": "Local",
        "loadBalancerSourceRanges": ["10.0.0.0/8"], "sessionAffinity": "None",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                  {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}],
    });
    let mut lb_keep_want = lb_want.clone();
    lb_keep_want["ports"][0]["nodePort"] = json!(30080);
    lb_keep_want["ports"][1]["nodePort"] = json!(30443);
    let headless = json!({"clusterIP": "None", "clusterIPs": ["None"], "selector": {"app": "db"},
        "ports": [{"port": 5432}]});
    let external = json!({"type": "ExternalName", "externalName": "db.example.com"});
    let dual = json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"], "clusterIPs": ["10.96.0.9", "fd00::9"], "ports": [{"port": 80}]});
    let dual_want = json!({"ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]});
    let required = json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6", "IPv4"], "ports": [{"port": 80}]});
    let table = [
        ("load balancer", json!({}), lb_spec.clone(), lb_want),
        (
            "load balancer keeping node ports",
            json!({"dr-syncer.io/keep-node-ports": "true"}),
            lb_spec,
            lb_keep_want,
        ),
        (
            "headless keeps clusterIP None",
            json!({}),
            headless.clone(),
            headless,
        ),
        ("external name", json!({}), external.clone(), external),
        (
            "prefer dual stack: families are the source's",
            json!({}),
            dual,
            dual_want,
        ),
        (
            "require dual stack: families are the user's",
            json!({}),
            required.clone(),
            required,
        ),
    ];
    for (what, ann, spec, want) in table {
        let mut o = obj(service(ann, spec));
        strip_service(&mut o, &kind("services"));
        assert_eq!(o.data.get("spec"), Some(&want), "{what}");
    }
}

#[test]
fn other_kinds_are_untouched() {
    let mut o = obj(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {"clusterIP": "1.2.3.4"}}),
    );
    let before = o.clone();
    strip_service(&mut o, &kind("configmaps"));
    assert_eq!(o, before);
}
