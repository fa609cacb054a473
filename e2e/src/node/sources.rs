//! The Secrets and ConfigMaps a pod refers to (env, envFrom, volumes, projected sources),
//! fetched once per pod start and again on each volume resync or after a missing one.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use serde::de::DeserializeOwned;

use super::env::Sources;

/// Fetches every ConfigMap and Secret the pod's env and volumes refer to (missing ones are
/// left out; whether that is an error depends on `optional` where they are used).
pub(crate) async fn fetch_sources(client: &kube::Client, pod: &Pod) -> Result<Sources, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (cm_names, secret_names) = referenced(pod);
    let sources = Sources {
        config_maps: fetch_each(Api::namespaced(client.clone(), ns), cm_names, "configmap").await?,
        secrets: fetch_each(Api::namespaced(client.clone(), ns), secret_names, "secret").await?,
    };
    Ok(sources)
}

/// Gets each named object that exists (one loop for ConfigMaps and Secrets); `what` names
/// the kind in the error.
async fn fetch_each<K>(
    api: Api<K>,
    names: Vec<String>,
    what: &str,
) -> Result<BTreeMap<String, K>, String>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut found = BTreeMap::new();
    for name in names {
        let object = api
            .get_opt(&name)
            .await
            .map_err(|e| format!("{what} {name:?}: {e}"))?;
        if let Some(object) = object {
            found.insert(name, object);
        }
    }
    Ok(found)
}

/// Names of the ConfigMaps and Secrets a pod refers to (env, envFrom, volumes, projected).
pub(crate) fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = std::collections::BTreeSet::new();
    let mut secrets = std::collections::BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (Vec::new(), Vec::new());
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for c in containers {
        for from in c.env_from.iter().flatten() {
            cms.extend(from.config_map_ref.as_ref().map(|r| r.name.clone()));
            secrets.extend(from.secret_ref.as_ref().map(|r| r.name.clone()));
        }
        for var in c.env.iter().flatten() {
            let from = var.value_from.as_ref();
            cms.extend(
                from.and_then(|f| f.config_map_key_ref.as_ref())
                    .map(|r| r.name.clone()),
            );
            secrets.extend(
                from.and_then(|f| f.secret_key_ref.as_ref())
                    .map(|r| r.name.clone()),
            );
        }
    }
    for v in spec.volumes.iter().flatten() {
        cms.extend(v.config_map.as_ref().map(|c| c.name.clone()));
        secrets.extend(v.secret.as_ref().and_then(|s| s.secret_name.clone()));
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            cms.extend(source.config_map.as_ref().map(|c| c.name.clone()));
            secrets.extend(source.secret.as_ref().map(|s| s.name.clone()));
        }
    }
    (cms.into_iter().collect(), secrets.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn referenced_collects_env_and_volume_sources() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s-init"}}]}],
                "containers": [{"name": "c", "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm-env", "key": "k"}}},
                ]}],
                "volumes": [
                    {"name": "v1", "secret": {"secretName": "s-vol"}},
                    {"name": "v2", "projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}]}},
                ],
            },
        }))
        .unwrap();
        let (cms, secrets) = referenced(&pod);
        assert_eq!(cms, vec!["cm-env", "kube-root-ca.crt"]);
        assert_eq!(secrets, vec!["s-init", "s-vol"]);
    }
}
