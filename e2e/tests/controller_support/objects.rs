//! Objects the controller tests create: namespaces, bulk ConfigMaps, kubeconfig Secrets and
//! the bed's RemoteClusters, anything from YAML or a typed fixture (server-side apply), and
//! the annotations that trigger a mapping.

use std::fmt::Debug;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Clusters, RemoteClusterFixture, SOURCE, TARGET, bed};

/// What the tests server-side apply: a namespaced object of a static type.
pub trait Applied:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
{
}

impl<K> Applied for K where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
{
}

/// Creates ConfigMaps `cm-0`..`cm-{n-1}` through `api`, 32 at a time (bulk fixtures for the
/// crash, outage and benchmark scenarios).
pub async fn create_numbered_configmaps(api: &Api<ConfigMap>, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let api = api.clone();
            async move {
                let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("cm-{i}")}, "data": {"i": i.to_string()}});
                api.patch(
                    &format!("cm-{i}"),
                    &PatchParams::apply("e2e"),
                    &Patch::Apply(&body),
                )
                .await
                .unwrap();
            }
        })
        .await;
}

/// Creates the kubeconfig Secrets of `source` and `target` and the two RemoteClusters
/// (named `source` and `target`) in `ns` of the controller cluster.
pub async fn remote_clusters(c: &Clusters, ns: &str) {
    let bed = bed().await;
    for name in [SOURCE, TARGET] {
        let kubeconfig = std::fs::read(bed.kubeconfig(name)).unwrap();
        kubeconfig_secret(
            c,
            ns,
            &format!("{name}-kubeconfig"),
            "kubeconfig",
            kubeconfig,
        )
        .await;
        let rc = RemoteClusterFixture::new(name, &format!("{name}-kubeconfig"), ns)
            .health_check_every("5s")
            .build();
        apply(&c.controller, ns, &rc).await;
    }
}

/// Creates a Secret with one key.
pub async fn kubeconfig_secret(c: &Clusters, ns: &str, name: &str, key: &str, value: Vec<u8>) {
    let secrets: Api<Secret> = Api::namespaced(c.controller.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        data: Some([(key.to_owned(), ByteString(value))].into()),
        ..Default::default()
    };
    secrets
        .patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
}

/// Server-side applies a YAML manifest into `ns`.
pub async fn apply_yaml<K>(client: &Client, ns: &str, text: &str) -> K
where
    K: Applied + serde::Serialize,
{
    let value: serde_json::Value = serde_saphyr::from_str(text).unwrap();
    let name = value["metadata"]["name"].as_str().unwrap().to_owned();
    server_side_apply(client, ns, &name, &value).await
}

/// Server-side applies `body` as object `name` of `ns` (field manager `e2e`, forced).
async fn server_side_apply<K>(
    client: &Client,
    ns: &str,
    name: &str,
    body: &(impl serde::Serialize + Debug),
) -> K
where
    K: Applied,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(body),
    )
    .await
    .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

/// Server-side applies a typed object (a fixture) into `ns`, as [`apply_yaml`] does.
pub async fn apply<K>(client: &Client, ns: &str, obj: &K) -> K
where
    K: Applied + serde::Serialize,
{
    server_side_apply(client, ns, &obj.name_any(), obj).await
}

/// Sets annotation `key: value` on a mapping (merge patch).
pub async fn annotate<K>(api: &Api<K>, name: &str, key: &str, value: &str)
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    let patch = serde_json::json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// Triggers a Manual sync: sets `dr-syncer.io/sync-now: value` on a mapping.
pub async fn trigger<K>(api: &Api<K>, name: &str, value: &str)
where
    K: Resource + Clone + Debug + DeserializeOwned,
{
    annotate(api, name, "dr-syncer.io/sync-now", value).await;
}

/// The data of a ConfigMap (empty when it has none).
pub fn data(cm: &ConfigMap) -> std::collections::BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

/// Server-side applies ConfigMap `name` with `data` into `ns` (the one-key ConfigMaps of
/// the tests, as their manifests `data: {key: value}` said).
pub async fn apply_configmap(
    client: &Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) -> ConfigMap {
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": data});
    server_side_apply(client, ns, name, &body).await
}

/// ConfigMap `name` of `ns` (it must exist).
pub async fn configmap(client: &Client, ns: &str, name: &str) -> ConfigMap {
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
}
