//! Container environment as the kubelet builds it: the `kubernetes` service variables
//! (pointing at the API server's real loopback address), `envFrom`, then `env` with `value`
//! (`$(VAR)` expanded), downward-API `fieldRef`, `resourceFieldRef`, `secretKeyRef` and
//! `configMapKeyRef`. Pure functions over the pod and pre-fetched objects, so they are unit
//! tested without an API server.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

/// The ConfigMaps and Secrets of the pod's namespace that its spec refers to, by name.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// ConfigMaps by name (absent: not found).
    pub config_maps: BTreeMap<String, ConfigMap>,
    /// Secrets by name (absent: not found).
    pub secrets: BTreeMap<String, Secret>,
}

impl Sources {
    /// A key of a ConfigMap (data, then binaryData as UTF-8), or why it is missing.
    pub fn config_map_key(&self, name: &str, key: &str) -> Result<String, String> {
        let cm = self
            .config_maps
            .get(name)
            .ok_or_else(|| format!("configmap {name:?} not found"))?;
        let data = cm.data.as_ref().and_then(|d| d.get(key)).cloned();
        let binary = || {
            cm.binary_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        };
        data.or_else(binary)
            .ok_or_else(|| format!("couldn't find key {key} in ConfigMap {name}"))
    }

    /// A key of a Secret as UTF-8, or why it is missing.
    pub fn secret_key(&self, name: &str, key: &str) -> Result<String, String> {
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| format!("secret {name:?} not found"))?;
        let data = secret.data.as_ref().and_then(|d| d.get(key));
        let string = || {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .cloned()
        };
        data.map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .or_else(string)
            .ok_or_else(|| format!("couldn't find key {key} in Secret {name}"))
    }
}

/// Where in-cluster clients reach the API server (the `kubernetes` service variables).
#[derive(Clone, Debug)]
pub struct ApiEndpoint {
    /// KUBERNETES_SERVICE_HOST.
    pub host: String,
    /// KUBERNETES_SERVICE_PORT.
    pub port: u16,
}

/// The default PATH, as container images usually set it.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The full environment of a container, in the order the kubelet builds it (later wins).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    node_ip: Ipv4Addr,
    api: &ApiEndpoint,
    sources: &Sources,
) -> Result<Vec<(String, String)>, String> {
    let mut env = Env::default();
    env.set("PATH", DEFAULT_PATH.into());
    env.set("HOSTNAME", pod_hostname(pod));
    service_env(&mut env, api);
    env_from(&mut env, container, sources)?;
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or(""), &env),
            Some(from) => match value_from(pod, container, node_ip, from, sources)? {
                Some(value) => value,
                None => continue,
            },
        };
        env.set(&var.name, value);
    }
    Ok(env.vars)
}

/// Ordered environment with replace-on-set, like a process environment.
#[derive(Default)]
struct Env {
    vars: Vec<(String, String)>,
}

impl Env {
    fn set(&mut self, name: &str, value: String) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The pod's hostname: the node name for hostNetwork pods (they share the node's), else
/// `spec.hostname`, else the pod name.
pub fn pod_hostname(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let host_network = spec.and_then(|s| s.host_network) == Some(true);
    if let Some(node) = spec
        .and_then(|s| s.node_name.clone())
        .filter(|_| host_network)
    {
        return node;
    }
    let spec_hostname = spec.and_then(|s| s.hostname.clone());
    spec_hostname.unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default())
}

/// The docker-links style variables of the default `kubernetes` service.
fn service_env(env: &mut Env, api: &ApiEndpoint) {
    let (host, port) = (&api.host, api.port);
    env.set("KUBERNETES_SERVICE_HOST", host.clone());
    env.set("KUBERNETES_SERVICE_PORT", port.to_string());
    env.set("KUBERNETES_SERVICE_PORT_HTTPS", port.to_string());
    env.set("KUBERNETES_PORT", format!("tcp://{host}:{port}"));
    env.set(
        &format!("KUBERNETES_PORT_{port}_TCP"),
        format!("tcp://{host}:{port}"),
    );
    env.set(&format!("KUBERNETES_PORT_{port}_TCP_PROTO"), "tcp".into());
    env.set(
        &format!("KUBERNETES_PORT_{port}_TCP_PORT"),
        port.to_string(),
    );
    env.set(&format!("KUBERNETES_PORT_{port}_TCP_ADDR"), host.clone());
}

/// `envFrom`: every key of the referenced ConfigMaps and Secrets, with the prefix.
fn env_from(env: &mut Env, container: &Container, sources: &Sources) -> Result<(), String> {
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name) {
                Some(cm) => {
                    for (k, v) in cm.data.iter().flatten() {
                        env.set(&format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name) {
                Some(secret) => {
                    for (k, v) in secret.data.iter().flatten() {
                        let value = String::from_utf8_lossy(&v.0).into_owned();
                        env.set(&format!("{prefix}{k}"), value);
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    Ok(())
}

/// One `valueFrom`; `Ok(None)` when an optional reference is missing (variable unset).
fn value_from(
    pod: &Pod,
    container: &Container,
    node_ip: Ipv4Addr,
    from: &k8s_openapi::api::core::v1::EnvVarSource,
    sources: &Sources,
) -> Result<Option<String>, String> {
    if let Some(field) = &from.field_ref {
        return field_value(pod, node_ip, &field.field_path).map(Some);
    }
    if let Some(res) = &from.resource_field_ref {
        return Ok(Some(resource_value(container, &res.resource)));
    }
    if let Some(r) = &from.config_map_key_ref {
        return optional(sources.config_map_key(&r.name, &r.key), r.optional);
    }
    if let Some(r) = &from.secret_key_ref {
        return optional(sources.secret_key(&r.name, &r.key), r.optional);
    }
    Err("valueFrom with no supported source".into())
}

/// A missing optional reference leaves the variable unset instead of failing.
fn optional(
    value: Result<String, String>,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    match value {
        Ok(v) => Ok(Some(v)),
        Err(_) if optional == Some(true) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The downward API: a pod field by its `fieldPath`, for env and downwardAPI volumes.
pub fn field_value(pod: &Pod, node_ip: Ipv4Addr, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    if let Some(key) = subscript(path, "metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(key) = subscript(path, "metadata.annotations") {
        let annotations = meta.annotations.as_ref();
        return Ok(annotations
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.hostIP" | "status.podIP" | "status.hostIPs" | "status.podIPs" => {
            node_ip.to_string()
        }
        other => return Err(format!("unsupported fieldRef fieldPath {other:?}")),
    };
    Ok(value)
}

/// `metadata.labels['key']` -> `key`.
fn subscript<'a>(path: &'a str, field: &str) -> Option<&'a str> {
    let rest = path
        .strip_prefix(field)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    rest.strip_prefix('\'')?.strip_suffix('\'')
}

/// Labels or annotations in the downward API file format: `key="value"` lines, sorted.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let lines: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    lines.join("\n")
}

/// `resourceFieldRef`: the container's limit (or request) as a plain string, "0" if unset.
fn resource_value(container: &Container, resource: &str) -> String {
    let resources = container.resources.as_ref();
    let (kind, name) = resource.split_once('.').unwrap_or(("limits", resource));
    let map = match kind {
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => resources.and_then(|r| r.limits.as_ref()),
    };
    map.and_then(|m| m.get(name))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into())
}

/// `$(VAR)` expansion as the kubelet does it: defined variables are substituted, `$$`
/// escapes a dollar, undefined references are left as written.
pub fn expand(input: &str, env: &(impl Lookup + ?Sized)) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|a| a.split_once(')')) {
            match env.lookup(name) {
                Some(value) => out.push_str(value),
                None => out.push_str(&format!("$({name})")),
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Variable lookup for [`expand`].
pub trait Lookup {
    /// The value of `name`, if defined.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Lookup for Env {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name)
    }
}

impl Lookup for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "p1", "namespace": "ns1", "uid": "u-1",
                "labels": {"app": "x", "tier": "db"},
                "annotations": {"note": "hi"},
            },
            "spec": {
                "nodeName": "n1",
                "containers": [{
                    "name": "c", "image": "dr-syncer-agent",
                    "resources": {"limits": {"memory": "64Mi"}},
                    "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
                    "env": [
                        {"name": "A", "value": "a"},
                        {"name": "B", "value": "$(A)-$$(A)-$(NOPE)"},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                        {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                        {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                        {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                        {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "one"}}},
                        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                    ],
                }],
            },
        }))
        .unwrap()
    }

    fn sources() -> Sources {
        let mut sources = Sources::default();
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"one": "1"}}))
                .unwrap();
        let mut secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
        secret.data = Some([("k".to_string(), ByteString(b"secret-v".to_vec()))].into());
        sources.config_maps.insert("cm".into(), cm);
        sources.secrets.insert("s".into(), secret);
        sources
    }

    fn api() -> ApiEndpoint {
        ApiEndpoint {
            host: "127.0.0.1".into(),
            port: 6443,
        }
    }

    #[test]
    fn env_resolves_values_downward_api_and_references() {
        let pod = pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let env = container_env(
            &pod,
            container,
            Ipv4Addr::new(127, 0, 10, 1),
            &api(),
            &sources(),
        )
        .unwrap();
        let get = |n: &str| env.as_slice().lookup(n).map(str::to_string);
        assert_eq!(get("KUBERNETES_SERVICE_HOST").as_deref(), Some("127.0.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT").as_deref(), Some("6443"));
        assert_eq!(get("CM_one").as_deref(), Some("1"));
        assert_eq!(get("B").as_deref(), Some("a-$(A)-$(NOPE)"));
        assert_eq!(get("POD").as_deref(), Some("p1"));
        assert_eq!(get("NS").as_deref(), Some("ns1"));
        assert_eq!(get("UID").as_deref(), Some("u-1"));
        assert_eq!(get("APP").as_deref(), Some("x"));
        assert_eq!(get("NODE").as_deref(), Some("n1"));
        assert_eq!(get("SA").as_deref(), Some("default"));
        assert_eq!(get("HOST_IP").as_deref(), Some("127.0.10.1"));
        assert_eq!(get("POD_IP").as_deref(), Some("127.0.10.1"));
        assert_eq!(get("MEM").as_deref(), Some("64Mi"));
        assert_eq!(get("S").as_deref(), Some("secret-v"));
        assert_eq!(get("C").as_deref(), Some("1"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("HOSTNAME").as_deref(), Some("p1"));
    }

    #[test]
    fn missing_required_reference_is_a_config_error() {
        let pod = pod();
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let mut sources = sources();
        sources.secrets.clear();
        let err =
            container_env(&pod, container, Ipv4Addr::LOCALHOST, &api(), &sources).unwrap_err();
        assert!(err.contains("secret \"s\" not found"), "{err}");
    }

    #[test]
    fn labels_file_format_is_sorted_quoted_lines() {
        let pod = pod();
        let labels = field_value(&pod, Ipv4Addr::LOCALHOST, "metadata.labels").unwrap();
        assert_eq!(labels, "app=\"x\"\ntier=\"db\"");
        assert!(field_value(&pod, Ipv4Addr::LOCALHOST, "spec.bogus").is_err());
    }

    #[test]
    fn expansion_handles_escapes_and_unterminated_references() {
        let env = vec![("X".to_string(), "1".to_string())];
        assert_eq!(expand("$(X)$$(X)$(X", env.as_slice()), "1$(X)$(X");
        assert_eq!(expand("cost $5", env.as_slice()), "cost $5");
    }
}
