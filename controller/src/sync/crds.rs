//! Copying the CustomResourceDefinitions of replicated custom kinds to the destination, and
//! waiting until the destination serves them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};

use super::error::SyncError;
use super::plan::SyncPlan;
use crate::k8s::FIELD_MANAGER;
use crate::replicate::{self};

/// How long a copied CRD may take to be served at the destination.
const CRD_ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);

impl SyncPlan {
    /// Copies the CRDs of the custom resources being replicated (syncCRDs).
    pub(super) async fn sync_crds(&self) -> Result<(), SyncError> {
        let names = replicate::kinds::crd_names(&self.kinds);
        let source: Api<CustomResourceDefinition> = Api::all(self.source.clone());
        let dest: Api<CustomResourceDefinition> = Api::all(self.dest.clone());
        for name in names {
            let Some(crd) = source
                .get_opt(&name)
                .await
                .map_err(|e| self.source_error(e))?
            else {
                continue;
            };
            let mut body = serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {
                    "name": name,
                    "labels": crd.metadata.labels.clone().unwrap_or_default(),
                },
                "spec": crd.spec,
            });
            if let Some(annotations) = crd.metadata.annotations.as_ref() {
                let kept: BTreeMap<&String, &String> = annotations
                    .iter()
                    .filter(|(k, _)| !k.starts_with("kubectl.kubernetes.io/"))
                    .collect();
                body["metadata"]["annotations"] = serde_json::json!(kept);
            }
            dest.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| self.dest_error(format!("applying CRD {name}: {e}")))?;
            self.wait_crd_established(&dest, &name).await?;
        }
        Ok(())
    }

    /// Waits (poll with a deadline) until a CRD at the destination serves its objects, so
    /// the custom resources applied next are not refused.
    pub(super) async fn wait_crd_established(
        &self,
        api: &Api<CustomResourceDefinition>,
        name: &str,
    ) -> Result<(), SyncError> {
        let deadline = Instant::now() + CRD_ESTABLISH_TIMEOUT;
        loop {
            let crd = api.get_opt(name).await.map_err(|e| self.dest_error(e))?;
            let established = crd
                .and_then(|c| c.status)
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.dest_error(format!(
                    "CRD {name} not established within {}s",
                    CRD_ESTABLISH_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
