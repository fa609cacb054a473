//! The receiving side (worker): [`pull`] a volume into a directory over one or more streams.
//!
//! One pull, in order ([`pull`]):
//! - `session`: each stream's hello, the file list request, the goodbye.
//! - `plan`: the sender's list checked, directories created, what needs data decided.
//! - `stream`: the files spread over the streams; each stream pipelines requests
//!   (`basis`: basis choice, signatures) and received deltas into verified temp files.
//! - `commit`: verified files, symlinks and hard links renamed into place, durably.
//! - `finish`: links, deletions (`prune`, behind the `guard` that refuses mass deletions
//!   from an empty or shrunken source), directory metadata, durability.
//!
//! Shared by all of them: `dest` (the destination root, options, metadata, this run's temp
//! names), `lock` (one pull per destination), `error` ([`ReceiveError`]) and the
//! [`SyncSummary`].

mod basis;
mod commit;
mod dest;
mod error;
mod finish;
mod guard;
mod lock;
mod plan;
mod prune;
mod pull;
mod session;
mod stream;
mod summary;

pub use error::ReceiveError;
pub use pull::pull;
pub use summary::SyncSummary;
