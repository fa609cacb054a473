//! The test bed of one controller test binary (controller, source and target clusters),
//! its clients with the CRDs installed, and the lock that runs one test at a time.

use std::sync::LazyLock;
use std::time::Duration;

use dr_syncer_crds::manifests::all_crds;
use dr_syncer_e2e::{TestBed, TestBedOptions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::wait::conditions;

use super::wait_for;

/// Cluster names of the bed.
pub const CONTROLLER: &str = "controller";
/// The cluster replicated from.
pub const SOURCE: &str = "source";
/// The DR cluster.
pub const TARGET: &str = "target";

/// Deadline for anything the controller does (busy 2-core machine).
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Simulated nodes per cluster of this binary's bed: 1 unless the test binary sets it before
/// the bed starts (the PVC data scenarios need two nodes per cluster, as issue 6 asks).
pub static NODES_PER_CLUSTER: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Run our three images from the OCI archives in this directory instead of the host
/// binaries, when the test binary sets it before the bed starts (the chart test, issue 15).
pub static IMAGE_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// One bed per test binary; told to stop by itself when this process exits.
pub static BED: LazyLock<TestBed> = LazyLock::new(|| {
    let mut opts = TestBedOptions::new(
        env!("CARGO_BIN_EXE_testbed"),
        &[CONTROLLER, SOURCE, TARGET],
        *NODES_PER_CLUSTER.get_or_init(|| 1),
    );
    opts.owner_pid = Some(std::process::id());
    opts.image_dir = IMAGE_DIR.get().cloned();
    TestBed::start(&opts).expect("starting the controller test bed")
});

/// Tests run one at a time: each starts its own controller, and two controllers without
/// leader election would both reconcile every mapping.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bed (started on first use).
pub async fn bed() -> &'static TestBed {
    tokio::task::spawn_blocking(|| &*BED).await.unwrap()
}

/// Clients of the three clusters, with the CRDs installed in the controller cluster.
pub struct Clusters {
    /// Controller cluster (CRDs, kubeconfig Secrets).
    pub controller: Client,
    /// Source cluster.
    pub source: Client,
    /// Target cluster.
    pub target: Client,
}

/// Connects to the bed and installs (server-side applies) the CRDs.
pub async fn clusters() -> Clusters {
    let bed = bed().await;
    let controller = bed.client(CONTROLLER).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(controller.clone());
    for crd in all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
        wait_for(&crds, &name, conditions::is_crd_established()).await;
    }
    Clusters {
        controller,
        source: bed.client(SOURCE).await.unwrap(),
        target: bed.client(TARGET).await.unwrap(),
    }
}
