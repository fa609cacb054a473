//! Services at the DR site: everything the source cluster allocated (cluster IPs, node
//! ports, the health-check node port) is removed so the target cluster allocates its own;
//! what the user chose (ports, selector, type, headless `clusterIP: None`, IP family
//! policy, external IPs, load balancer settings) is kept.
//!
//! `ipFamilies` is kept too, except under `ipFamilyPolicy: PreferDualStack`: there the list
//! is what the source cluster had, not a requirement, and a dual-stack list is refused by a
//! single-stack target.

use kube::core::DynamicObject;
use serde_json::Value;

use super::ResourceKind;

/// Annotation on a source Service (extension): `"true"` keeps its `nodePort` values, for
/// setups where external load balancers point at fixed node ports in both clusters.
pub const KEEP_NODE_PORTS: &str = "dr-syncer.io/keep-node-ports";

/// Strips the cluster-allocated fields of a Service (other kinds are left alone).
pub fn strip_service(obj: &mut DynamicObject, kind: &ResourceKind) {
    if !kind.is("", "Service") {
        return;
    }
    let keep_node_ports = keeps_node_ports(obj);
    let Some(spec) = obj.data.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if !headless {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    spec.remove("healthCheckNodePort");
    if spec.get("ipFamilyPolicy").and_then(Value::as_str) == Some("PreferDualStack") {
        spec.remove("ipFamilies");
    }
    if !keep_node_ports && let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            port.remove("nodePort");
        }
    }
}

fn keeps_node_ports(obj: &DynamicObject) -> bool {
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(KEEP_NODE_PORTS))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}
