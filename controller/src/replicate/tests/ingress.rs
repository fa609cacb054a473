use serde_json::json;

use super::fixtures::{annotation, kind, obj, spec};
use crate::replicate::ingress::{IngressRules, transform_ingress};

fn ingress() -> serde_json::Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "shop", "annotations": {
            "kubernetes.io/ingress.class": "nginx",
            "nginx.ingress.kubernetes.io/rewrite-target": "/",
            "cert-manager.io/cluster-issuer": "letsencrypt"}},
        "spec": {"ingressClassName": "nginx",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}},
            "rules": [{"host": "shop.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

#[test]
fn ingress_config_table() {
    // (ingressConfig, annotations kept, tls kept)
    let table = [
        (None, 3, true),
        (Some(json!({})), 3, true),
        (Some(json!({"preserveAnnotations": false})), 1, true),
        (Some(json!({"preserveTLS": false})), 3, false),
        (
            Some(
                json!({"preserveAnnotations": false, "preserveTLS": false, "preserveBackends": false}),
            ),
            1,
            false,
        ),
    ];
    for (cfg, annotations, tls) in table {
        let mut s = json!({"sourceNamespace": "shop"});
        if let Some(c) = &cfg {
            s["ingressConfig"] = c.clone();
        }
        let rules = IngressRules::from_config(spec(s).ingress_config.as_ref());
        let mut o = obj(ingress());
        transform_ingress(&mut o, &kind("ingresses.networking.k8s.io"), rules);
        let case = format!("{cfg:?}");
        assert_eq!(
            o.metadata.annotations.as_ref().map_or(0, |a| a.len()),
            annotations,
            "{case}"
        );
        if annotations == 1 {
            assert_eq!(annotation(&o, "kubernetes.io/ingress.class"), Some("nginx"));
        }
        assert_eq!(o.data.pointer("/spec/tls").is_some(), tls, "{case}");
        // Backends and rules are always kept.
        assert_eq!(
            o.data.pointer("/spec/rules"),
            ingress().pointer("/spec/rules"),
            "{case}"
        );
        assert_eq!(
            o.data.pointer("/spec/defaultBackend"),
            ingress().pointer("/spec/defaultBackend"),
            "{case}"
        );
    }
}
