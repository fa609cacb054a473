//! Waiting for the test bed to be usable, each wait polling with a deadline: API server
//! `/readyz`, nodes Ready, a `default` service account in every namespace.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Node, NodeCondition, ServiceAccount};
use kube::Api;
use kube::api::ListParams;
use tokio::time::Instant;

use crate::process::Component;

/// How often a condition is re-checked.
const POLL: Duration = Duration::from_millis(250);

/// Why the test bed did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    /// The deadline passed; `last` is the last thing seen (for the log reader).
    #[error("{what} not ready after {after:?}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long we waited.
        after: Duration,
        /// The last observation.
        last: String,
    },
    /// A component exited while we waited for it.
    #[error("{component} exited ({status}); see {log}")]
    Exited {
        /// The component.
        component: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its log file.
        log: String,
    },
}

/// Polls `check` until it returns `Ok(true)` or `timeout` passes. `check` reports what it saw
/// in its `Err`/`Ok(false)` path through `last`.
async fn poll<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<(), ReadinessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(()) => return Ok(()),
            Err(last) => last,
        };
        if Instant::now() >= deadline {
            return Err(ReadinessError::Timeout {
                what: what.to_string(),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

fn check_alive(components: &mut [Component]) -> Result<(), ReadinessError> {
    for c in components.iter_mut() {
        if let Some(status) = c.try_exited() {
            return Err(ReadinessError::Exited {
                component: c.name.clone(),
                status,
                log: c.log.display().to_string(),
            });
        }
    }
    Ok(())
}

/// Waits until `GET /readyz` answers `ok`, failing fast if etcd or the API server exits.
pub async fn apiserver(
    client: &kube::Client,
    components: &mut [Component],
    timeout: Duration,
) -> Result<(), ReadinessError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        check_alive(components)?;
        let req = http::Request::get("/readyz").body(Vec::new());
        match req {
            Ok(req) => match client.request_text(req).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL).await;
    }
    Err(ReadinessError::Timeout {
        what: "kube-apiserver /readyz".into(),
        after: timeout,
        last,
    })
}

/// Waits until every named node exists with condition Ready=True.
pub async fn nodes(
    client: &kube::Client,
    names: &[String],
    timeout: Duration,
) -> Result<(), ReadinessError> {
    let api: Api<Node> = Api::all(client.clone());
    let want: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    poll("nodes Ready", timeout, || async {
        let list = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let ready: BTreeSet<&str> = list
            .items
            .iter()
            .filter(|n| is_ready(n))
            .filter_map(|n| n.metadata.name.as_deref())
            .filter_map(|n| want.get(n).copied())
            .collect();
        if ready == want {
            Ok(())
        } else {
            Err(format!("ready: {ready:?}, want: {want:?}"))
        }
    })
    .await
}

/// True if the node reports Ready=True.
pub fn is_ready(node: &Node) -> bool {
    node_condition(node, "Ready").is_some_and(|c| c.status == "True")
}

/// The node's condition of one type (Ready, MemoryPressure, ...), if it reports one: what
/// readiness waits on and what the node tests check.
pub fn node_condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
}

/// Waits until every namespace has its `default` ServiceAccount (created by the KCM's
/// serviceaccount controller; pods are rejected by admission until it exists).
pub async fn default_service_accounts(
    client: &kube::Client,
    timeout: Duration,
) -> Result<(), ReadinessError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    poll("default service accounts", timeout, || async {
        let ns = namespaces
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let sas = accounts
            .list(&ListParams::default().fields("metadata.name=default"))
            .await
            .map_err(|e| e.to_string())?;
        let have: BTreeSet<String> = sas
            .items
            .iter()
            .filter_map(|sa| sa.metadata.namespace.clone())
            .collect();
        let missing: Vec<String> = ns
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .filter(|n| !have.contains(n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no default service account in {missing:?}"))
        }
    })
    .await
}
