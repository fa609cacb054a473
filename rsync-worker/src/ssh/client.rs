//! The worker's SSH client: pinned host key, public-key auth, N subsystem channels.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelStream, Disconnect};

use super::keys::{fingerprint, same_key};
use super::pump::{PumpCapacity, PumpedStream, pump};
use super::tuning;

/// Why the worker could not get a channel to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent presented another host key than the pinned one: possible
    /// man-in-the-middle, or the agent's key was rotated without updating the pin.
    #[error(
        "host key does not match the pinned key: agent presented {actual}, pinned key is {expected}; refusing to connect"
    )]
    HostKeyMismatch {
        /// Fingerprint of the pinned key.
        expected: String,
        /// Fingerprint of the key the agent presented.
        actual: String,
    },
    /// The agent did not accept our client key.
    #[error(
        "authentication refused by the agent for client key {0} (is it in the agent's authorized keys?)"
    )]
    AuthRejected(String),
    /// TCP connect failed (agent down, not yet listening, network).
    #[error("cannot connect to agent at {addr}: {source}")]
    Connect {
        /// Address we dialed.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The agent did not answer within the timeout.
    #[error("timed out after {0:?} waiting for the agent")]
    Timeout(Duration),
    /// The agent refused to start our subsystem on a channel.
    #[error("agent refused subsystem {0}")]
    SubsystemRefused(String),
    /// Any other SSH-level failure (connection reset during handshake, protocol error).
    #[error("ssh: {0}")]
    Ssh(#[from] russh::Error),
}

impl ClientError {
    /// Whether retrying may help: network trouble yes, wrong keys no.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Timeout(_) => true,
            Self::Ssh(e) => matches!(
                e,
                russh::Error::IO(_)
                    | russh::Error::Disconnect
                    | russh::Error::ConnectionTimeout
                    | russh::Error::KeepaliveTimeout
                    | russh::Error::HUP
            ),
            Self::HostKeyMismatch { .. } | Self::AuthRejected(_) | Self::SubsystemRefused(_) => {
                false
            }
        }
    }
}

/// One subsystem channel of the worker, read through a [`pump`].
pub type WorkerStream = PumpedStream<ChannelStream<Msg>>;

/// What the worker needs to reach an agent.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// The agent's host key, pinned out of band (from the controller's Secret).
    pub pinned_host_key: PublicKey,
    /// The worker's private key, whose public half is in the agent's authorized keys.
    pub key: Arc<PrivateKey>,
    /// SSH user name; the agent ignores it, logs show it.
    pub user: String,
    /// Subsystem to request on every channel.
    pub subsystem: String,
    /// Bound on connect + handshake + auth.
    pub connect_timeout: Duration,
}

/// Checks the server key against the pin and remembers what it saw for the error.
struct PinnedHostKey {
    pinned: PublicKey,
    seen: Arc<Mutex<Option<PublicKey>>>,
}

impl russh::client::Handler for PinnedHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = server_key else {
            return Ok(false);
        };
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(key.clone());
        }
        Ok(same_key(key, &self.pinned))
    }
}

/// An authenticated connection to one agent.
pub struct AgentConnection {
    handle: Handle<PinnedHostKey>,
    subsystem: String,
    /// Read-ahead of the socket under the session, grown by each open channel's window.
    read_ahead: PumpCapacity,
}

/// Connects to `addr`, verifies the pinned host key and authenticates.
pub async fn connect(
    addr: &str,
    settings: &ClientSettings,
) -> Result<AgentConnection, ClientError> {
    tokio::time::timeout(settings.connect_timeout, connect_inner(addr, settings))
        .await
        .map_err(|_| ClientError::Timeout(settings.connect_timeout))?
}

async fn connect_inner(
    addr: &str,
    settings: &ClientSettings,
) -> Result<AgentConnection, ClientError> {
    let socket = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let _ = socket.set_nodelay(true);
    // Read the socket independently of the session loop (russh 0.65 does not read while it
    // writes; see `pump`), so that this end never stops draining the agent's output.
    let socket = pump(socket, tuning::READ_AHEAD_BASE);
    let read_ahead = socket.capacity();
    let seen = Arc::new(Mutex::new(None));
    let handler = PinnedHostKey {
        pinned: settings.pinned_host_key.clone(),
        seen: seen.clone(),
    };
    let mut handle =
        match russh::client::connect_stream(Arc::new(client_config()), socket, handler).await {
            Ok(handle) => handle,
            Err(e) => return Err(handshake_error(e, &settings.pinned_host_key, &seen)),
        };
    authenticate(&mut handle, settings).await?;
    Ok(AgentConnection {
        handle,
        subsystem: settings.subsystem.clone(),
        read_ahead,
    })
}

fn handshake_error(
    e: russh::Error,
    pinned: &PublicKey,
    seen: &Mutex<Option<PublicKey>>,
) -> ClientError {
    let seen = seen.lock().ok().and_then(|s| s.clone());
    match (e, seen) {
        (russh::Error::UnknownKey, Some(actual)) if !same_key(&actual, pinned) => {
            ClientError::HostKeyMismatch {
                expected: fingerprint(pinned),
                actual: fingerprint(&actual),
            }
        }
        (e, _) => ClientError::Ssh(e),
    }
}

async fn authenticate(
    handle: &mut Handle<PinnedHostKey>,
    settings: &ClientSettings,
) -> Result<(), ClientError> {
    // Only RSA keys need the server's preferred signature hash (an extra round trip).
    let hash = if settings.key.algorithm().is_rsa() {
        handle.best_supported_rsa_hash().await?.flatten()
    } else {
        None
    };
    let key = PrivateKeyWithHashAlg::new(settings.key.clone(), hash);
    let result = handle
        .authenticate_publickey(settings.user.clone(), key)
        .await?;
    if result.success() {
        Ok(())
    } else {
        Err(ClientError::AuthRejected(fingerprint(
            settings.key.public_key(),
        )))
    }
}

fn client_config() -> russh::client::Config {
    russh::client::Config {
        window_size: tuning::WINDOW_SIZE,
        maximum_packet_size: tuning::MAX_PACKET_SIZE,
        channel_buffer_size: tuning::CHANNEL_BUFFER,
        keepalive_interval: Some(tuning::KEEPALIVE_INTERVAL),
        keepalive_max: 4,
        inactivity_timeout: None,
        preferred: tuning::preferred(),
        nodelay: true,
        ..Default::default()
    }
}

impl AgentConnection {
    /// Opens one channel and starts our subsystem on it, waiting for the agent's answer
    /// so that a refusal is an error here rather than a confusing protocol failure later.
    pub async fn open_stream(&self) -> Result<WorkerStream, ClientError> {
        // Room for everything the window we are about to grant lets the agent send on this
        // channel, held until the stream is dropped.
        let grant = self.read_ahead.grant(tuning::READ_AHEAD_PER_CHANNEL);
        let mut channel = self.handle.channel_open_session().await?;
        channel
            .request_subsystem(true, self.subsystem.clone())
            .await?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => {
                    return Ok(pump(channel.into_stream(), tuning::PUMP_BUFFER).holding(grant));
                }
                Some(ChannelMsg::Failure) | Some(ChannelMsg::Close) | None => {
                    return Err(ClientError::SubsystemRefused(self.subsystem.clone()));
                }
                Some(_) => {}
            }
        }
    }

    /// Opens `n` parallel streams on this one connection.
    pub async fn open_streams(&self, n: usize) -> Result<Vec<WorkerStream>, ClientError> {
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n.max(1) {
            streams.push(self.open_stream().await?);
        }
        Ok(streams)
    }

    /// Says goodbye politely so the agent logs a clean close instead of a reset.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "done", "en")
            .await;
    }
}
