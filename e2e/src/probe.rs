//! `testbed probe`: a tiny in-cluster client that pods of the `dr-syncer-e2e-probe` image run,
//! so e2e tests can check what a pod of ours sees from inside the cluster (service-account
//! token projection, KUBERNETES_SERVICE_HOST/PORT, RBAC) and that the termination message
//! reaches the pod status.

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;

/// Exit code when the listing succeeded.
pub const OK: i32 = 0;
/// Exit code when the API server answered 403 Forbidden.
pub const FORBIDDEN: i32 = 1;
/// Exit code for any other failure.
pub const OTHER: i32 = 2;

/// Lists pods in the pod's own namespace with the in-cluster configuration, writes a JSON
/// result to `termination_log` (and stderr) and returns the exit code.
pub async fn run(termination_log: &Path) -> i32 {
    let (code, result) = match list_pods().await {
        Outcome::Listed { namespace, pods } => (
            OK,
            json!({"ok": true, "namespace": namespace, "pods": pods}),
        ),
        Outcome::Forbidden(message) => (
            FORBIDDEN,
            json!({"ok": false, "code": 403, "message": message}),
        ),
        Outcome::Failed(error) => (OTHER, json!({"ok": false, "error": error})),
    };
    let text = result.to_string();
    tracing::info!(result = %text, "probe");
    if let Err(e) = std::fs::write(termination_log, &text) {
        tracing::error!(path = %termination_log.display(), error = %e, "writing termination message");
        return OTHER;
    }
    code
}

/// What the probe saw.
enum Outcome {
    Listed {
        namespace: String,
        pods: Vec<String>,
    },
    Forbidden(String),
    Failed(String),
}

async fn list_pods() -> Outcome {
    let config = match kube::Config::incluster() {
        Ok(config) => config,
        Err(e) => return Outcome::Failed(format!("in-cluster config: {e}")),
    };
    let namespace = config.default_namespace.clone();
    let client = match kube::Client::try_from(config) {
        Ok(client) => client,
        Err(e) => return Outcome::Failed(format!("client: {e}")),
    };
    let pods: Api<Pod> = Api::default_namespaced(client);
    match pods.list(&Default::default()).await {
        Ok(list) => Outcome::Listed {
            namespace,
            pods: list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect(),
        },
        Err(kube::Error::Api(status)) if status.code == 403 => Outcome::Forbidden(status.message),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
