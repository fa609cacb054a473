//! DR-Syncer data plane: the rolling-checksum core shared by the agent (sender) and the
//! rsync-worker (receiver), plus the SSH transport that carries it.
//!
//! The core is transport-agnostic: [`serve`] runs the sending side on any byte stream
//! (one SSH channel running the [`SUBSYSTEM_NAME`] subsystem), [`pull`] runs the receiving
//! side over one or more such streams. `docs/dataplane.md` specifies the wire protocol.
//!
//! Table of contents (each module uses only those above it):
//! - [`paths`]: wire paths (bytes) and the checks that keep every path inside its root.
//! - [`excludes`]: the rsync-style exclude matcher both sides apply.
//! - [`fsops`]: filesystem access relative to a directory fd (open, stat, rename, link,
//!   metadata, xattrs), never following symlinks.
//! - [`delta`]: windowed signatures, deltas and a streaming delta applier (on fast_rsync).
//! - [`filelist`]: the entry list the sender builds and the receiver validates.
//! - [`protocol`]: the messages, their bounded encoding, and length-prefixed frames.
//! - [`options`]: [`SyncOptions`] and the mapping of DR-Syncer `rsyncOptions`.
//! - [`bwlimit`]: a token bucket shared by all streams of one pull.
//! - [`sender`]: [`serve`], volume resolution, limits.
//! - [`receiver`]: [`pull`]: plan, stream, commit, finish; the [`SyncSummary`].
//! - [`ssh`]: the russh transport (agent server, worker client).
//! - [`testing`]: deterministic test data for the unit and integration tests (not an API).

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod bwlimit;
pub mod delta;
pub mod excludes;
pub mod filelist;
pub mod fsops;
pub mod options;
pub mod paths;
pub mod protocol;
pub mod receiver;
pub mod sender;
pub mod ssh;
#[doc(hidden)]
pub mod testing;

pub use options::{OptionError, SyncOptions};
pub use protocol::ProtocolError;
pub use receiver::{ReceiveError, SyncSummary, pull};
pub use sender::{
    Limits, ServeStats, StaticVolumes, VolumeError, VolumeResolver, is_unsafe_volume_refusal, serve,
};

/// Name of the SSH subsystem that speaks this protocol; the agent serves nothing else.
pub const SUBSYSTEM_NAME: &str = "dr-syncer-rsync";
