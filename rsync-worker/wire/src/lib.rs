//! The rsync-worker's wire contract: what the controller tells a worker pod (its command
//! line) and what the worker tells the controller back (one JSON report in the pod's
//! termination message). Both sides use these types, so a flag or field renamed on one
//! side cannot silently go missing on the other; the tests pin the rendered flags and the
//! JSON field names.
//!
//! Table of contents:
//! - [`cli`]: [`WorkerArgs`], the worker's clap command line, and [`WorkerArgs::to_args`],
//!   which renders a value back to the argv the controller puts in the pod spec.
//! - [`report`]: the JSON reports: [`SyncSummary`] (a pull succeeded), [`FailureReport`]
//!   (the worker failed, with a stable [`kind`]) and [`CheckReport`] (`--check` mode).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod report;

pub use cli::{DEFAULT_RETRIES, DEFAULT_STREAMS, DEFAULT_USER, WorkerArgs};
pub use report::{AgentCheck, CheckReport, FailureReport, SyncSummary, kind};
