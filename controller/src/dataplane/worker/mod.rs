//! The rsync-worker pod: one short-lived pod per PVC copy in the destination namespace. It
//! mounts the target PVC at `/data`, reads its client key and the agent's pinned host key
//! from a per-run Secret, pulls the volume from the agent and writes its JSON result to the
//! termination message, which is how the controller learns what happened. The same image in
//! `--check` mode is the ClusterMapping connectivity check, run by the same runner.
//!
//! The worker's flags and JSON are the wire contract of `dr_syncer_worker_wire`, shared
//! with the worker itself. Table of contents:
//! - [`options`]: [`DataOptions`], the copy settings of one PVC (`dataSyncConfig`, source
//!   defaults, the PVC's verification annotation).
//! - [`render`]: pure pod specs: names and labels, the data-sync pod and Secret
//!   ([`render_pod`], [`render_secret`]), the check pod, Secret and namespace; every
//!   `dataSyncConfig` option is visible in the rendered args (unit-tested).
//! - [`run`](mod@run): the one runner ([`run_to_end`]: create, await by watch with a deadline,
//!   delete on every path) and its two jobs, [`run()`] (copy one PVC) and [`run_check`];
//!   [`sweep`] removes what a crashed controller left behind.
//! - [`result`]: the terminated pod and its JSON turned into a typed outcome:
//!   [`WorkerPodError`] (with condition reason and retry advice) or [`CheckPodError`].

pub mod options;
pub mod render;
pub mod result;
pub mod run;

pub use options::{DataOptions, OptionsError};
pub use render::{
    CHECK_NAMESPACE, DATA_DIR, DEADLINE_MARGIN_SECS, KEY_FILE, KNOWN_HOST_FILE, MAPPING_LABEL,
    NAME_LABEL, PVC_LABEL, SSH_DIR, TERMINATION_LOG, WORKER_APP, WorkerRequest, check_pod,
    label_value, labels, mapping_selector, render_pod, render_secret, worker_args, worker_cli,
    worker_name,
};
pub use result::{
    CheckOutcome, CheckPodError, WorkerPodError, check_report, describe_state, result_from_pod,
};
pub use run::{Destination, PodRunError, START_GRACE, cleanup, run, run_check, run_to_end, sweep};
