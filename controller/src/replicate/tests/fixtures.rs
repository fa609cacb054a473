//! Shared test inputs: discovery documents shaped like a real API server's, a mapping
//! spec, and helpers to build objects from JSON manifests.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::core::DynamicObject;
use serde_json::{Value, json};

use crate::replicate::mark::Origin;
use crate::replicate::{MappingId, ResourceKind};

fn res(
    name: &str,
    singular: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    verbs: &[&str],
) -> Value {
    json!({
        "name": name, "singularName": singular, "kind": kind, "namespaced": namespaced,
        "shortNames": short, "verbs": verbs,
    })
}

/// Every verb of a read-write built-in resource, as discovery lists them.
pub const RW: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Discovery lists of a cluster with the built-in groups we care about, a CRD group
/// (`example.com` widgets), a clashing CRD name, and the metrics API.
pub fn discovery_lists() -> Vec<APIResourceList> {
    let lists = json!([
        {"groupVersion": "v1", "resources": [
            res("bindings", "binding", "Binding", true, &[], &["create"]),
            res("configmaps", "configmap", "ConfigMap", true, &["cm"], RW),
            res("endpoints", "endpoints", "Endpoints", true, &["ep"], RW),
            res("events", "event", "Event", true, &["ev"], RW),
            res("namespaces", "namespace", "Namespace", false, &["ns"], RW),
            res("nodes", "node", "Node", false, &["no"], RW),
            res("persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, &["pvc"], RW),
            res("persistentvolumeclaims/status", "", "PersistentVolumeClaim", true, &[], &["get", "patch", "update"]),
            res("pods", "pod", "Pod", true, &["po"], RW),
            res("pods/log", "", "Pod", true, &[], &["get"]),
            res("secrets", "secret", "Secret", true, &[], RW),
            res("serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], RW),
            res("services", "service", "Service", true, &["svc"], RW),
        ]},
        {"groupVersion": "apps/v1", "resources": [
            res("controllerrevisions", "controllerrevision", "ControllerRevision", true, &[], RW),
            res("daemonsets", "daemonset", "DaemonSet", true, &["ds"], RW),
            res("deployments", "deployment", "Deployment", true, &["deploy"], RW),
            res("deployments/scale", "", "Scale", true, &[], &["get", "patch", "update"]),
            res("replicasets", "replicaset", "ReplicaSet", true, &["rs"], RW),
            res("statefulsets", "statefulset", "StatefulSet", true, &["sts"], RW),
        ]},
        {"groupVersion": "batch/v1", "resources": [
            res("cronjobs", "cronjob", "CronJob", true, &["cj"], RW),
            res("jobs", "job", "Job", true, &[], RW),
        ]},
        {"groupVersion": "networking.k8s.io/v1", "resources": [
            res("ingresses", "ingress", "Ingress", true, &["ing"], RW),
            res("networkpolicies", "networkpolicy", "NetworkPolicy", true, &["netpol"], RW),
            res("ingressclasses", "ingressclass", "IngressClass", false, &[], RW),
        ]},
        {"groupVersion": "events.k8s.io/v1", "resources": [
            res("events", "event", "Event", true, &["ev"], RW),
        ]},
        {"groupVersion": "coordination.k8s.io/v1", "resources": [
            res("leases", "lease", "Lease", true, &[], RW),
        ]},
        {"groupVersion": "autoscaling/v2", "resources": [
            res("horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, &["hpa"], RW),
        ]},
        {"groupVersion": "authorization.k8s.io/v1", "resources": [
            res("localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", true, &[], &["create"]),
        ]},
        {"groupVersion": "metrics.k8s.io/v1beta1", "resources": [
            res("pods", "", "PodMetrics", true, &[], &["get", "list"]),
        ]},
        {"groupVersion": "example.com/v1", "resources": [
            res("widgets", "widget", "Widget", true, &["wd"], RW),
        ]},
        {"groupVersion": "stable.example.org/v1", "resources": [
            res("widgets", "widget", "Widget", true, &[], RW),
            res("gadgets", "gadget", "Gadget", true, &[], &["get", "create"]),
        ]},
        {"groupVersion": "dr-syncer.io/v1alpha1", "resources": [
            res("namespacemappings", "namespacemapping", "NamespaceMapping", true, &["nm"], RW),
        ]},
    ]);
    serde_json::from_value(lists).unwrap_or_default()
}

/// Every kind of [`discovery_lists`], through `ResourceKind::from_discovery_list`.
pub fn discovered() -> Vec<ResourceKind> {
    discovery_lists()
        .iter()
        .flat_map(ResourceKind::from_discovery_list)
        .collect()
}

/// The discovered kind named `resource.group` (test helper; panics when absent).
pub fn kind(group_resource: &str) -> ResourceKind {
    discovered()
        .into_iter()
        .find(|k| k.group_resource() == group_resource)
        .unwrap_or_else(|| panic!("fixture has no {group_resource}"))
}

/// A DynamicObject from a manifest.
pub fn obj(manifest: Value) -> DynamicObject {
    serde_json::from_value(manifest).unwrap_or_else(|e| panic!("bad test manifest: {e}"))
}

/// An object as JSON (for whole-object assertions).
pub fn json_of(obj: &DynamicObject) -> Value {
    serde_json::to_value(obj).unwrap_or_default()
}

/// A NamespaceMapping spec from its YAML-ish JSON (the fields under `spec:`).
pub fn spec(v: Value) -> dr_syncer_crds::NamespaceMappingSpec {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("bad test spec: {e}"))
}

/// A source object's metadata as the API server returns it (uid, resourceVersion,
/// managedFields, ...), merged into `extra` metadata.
pub fn server_metadata(name: &str, extra: Value) -> Value {
    let mut meta = json!({
        "name": name,
        "namespace": "shop",
        "uid": "0b7c1f0e-2a3d-4c55-9e1f-6d2f0a1b2c3d",
        "resourceVersion": "48213",
        "generation": 3,
        "creationTimestamp": "2026-11-20T10:00:00Z",
        "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "v1",
            "time": "2026-11-20T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}],
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"v1\"}"
        }
    });
    if let (Some(m), Some(e)) = (meta.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "annotations" || k == "labels" {
                let entry = m.entry(k.clone()).or_insert_with(|| json!({}));
                if let (Some(dst), Some(src)) = (entry.as_object_mut(), v.as_object()) {
                    dst.extend(src.clone());
                }
            } else {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    meta
}

/// Where a test object comes from: `mapping`, reading `source_namespace` of the `prod`
/// cluster.
pub fn origin<'a>(
    mapping: &'a MappingId,
    source_namespace: &'a str,
    source_uid: Option<&'a str>,
) -> Origin<'a> {
    Origin {
        mapping,
        source_cluster: "prod",
        source_namespace,
        source_uid,
    }
}

/// The annotation `key` of an object, if set.
pub fn annotation<'a>(obj: &'a DynamicObject, key: &str) -> Option<&'a str> {
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}
