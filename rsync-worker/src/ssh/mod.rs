//! SSH transport of the data plane, shared by the agent (server) and the worker (client).
//!
//! - [`keys`]: host key, authorized keys, pinned key, fingerprints (OpenSSH file formats).
//! - [`server`]: the agent's russh server; one subsystem, everything else refused.
//! - [`client`]: the worker's russh client; pinned host key, N channels on one connection.
//! - [`service`]: the data-plane protocol plugged into the server's subsystem.
//! - [`pump`]: drains channels, and the TCP socket under each session, into byte-bounded
//!   buffers so a busy writer never stalls the SSH session loop and two session loops never
//!   wait on each other's writes.
//! - [`tuning`]: window, packet and cipher choices both ends share.

pub mod client;
pub mod keys;
pub mod pump;
pub mod server;
pub mod service;
pub mod tuning;

pub use client::{AgentConnection, ClientError, ClientSettings, WorkerStream, connect};
pub use keys::{AuthorizedKeys, KeyError, fingerprint, load_pinned_key, load_private_key};
pub use pump::{PumpedStream, pump};
pub use server::{
    AgentServer, ChannelPeer, ServeFuture, ServerSettings, SubsystemService, SubsystemStream,
};
pub use service::ProtocolService;
