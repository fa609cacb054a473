//! The agent's SSH server: public-key auth, one subsystem, nothing else.
//!
//! Every SSH feature that could give a client more than our protocol (shell, exec, pty,
//! environment, port and agent forwarding, X11) is refused explicitly, so the agent stays
//! safe even though it runs privileged with the host filesystem mounted.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelStream, MethodKind, MethodSet};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::keys::{AuthorizedKeys, fingerprint};
use super::pump::{CapacityGrant, PumpCapacity, PumpedStream, pump};
use super::tuning;

/// The future a [`SubsystemService`] returns for one channel; its output is the exit
/// status sent to the client (0 success), as a command-line SSH client expects one.
pub type ServeFuture<'a> = Pin<Box<dyn Future<Output = u32> + Send + 'a>>;

/// What runs on a channel once the client asked for our subsystem. The agent plugs the
/// data-plane protocol in here; keeping it a trait keeps the SSH policy testable on its own.
pub trait SubsystemService: Send + Sync + 'static {
    /// Serves one channel until the protocol ends; errors are logged by the service. The
    /// stream is borrowed so that the exit status goes out before the channel closes.
    fn serve<'a>(&'a self, stream: &'a mut SubsystemStream, peer: ChannelPeer) -> ServeFuture<'a>;
}

/// The byte stream of one subsystem channel, read through a [`pump`] so the session
/// loop never waits on a service that is busy writing.
pub type SubsystemStream = PumpedStream<ChannelStream<Msg>>;

/// Who is on the other end of a channel, for the service's logs.
#[derive(Debug, Clone)]
pub struct ChannelPeer {
    /// Remote socket address of the connection.
    pub addr: Option<SocketAddr>,
    /// Fingerprint of the client key that authenticated the connection.
    pub key_fingerprint: String,
    /// SSH channel number, to tell parallel streams apart.
    pub channel: u32,
}

/// The agent's SSH policy and limits, read from flags and mounted files at startup.
#[derive(Debug)]
pub struct ServerSettings {
    /// Host key presented to workers (they pin its public half).
    pub host_key: PrivateKey,
    /// Client keys allowed to log in.
    pub authorized_keys: AuthorizedKeys,
    /// The only subsystem name served; anything else is refused.
    pub subsystem: String,
    /// Concurrent connections; extra connections are closed at once.
    pub max_connections: usize,
    /// Concurrent channels per connection (parallel streams of one worker).
    pub max_channels_per_connection: usize,
    /// A connection that exchanges nothing for this long is closed.
    pub idle_timeout: Duration,
    /// After SIGTERM, how long running transfers may take to finish.
    pub shutdown_grace: Duration,
}

/// A running agent server: the accept loop with its connection limit.
pub struct AgentServer {
    config: Arc<russh::server::Config>,
    settings: Arc<ServerSettings>,
    service: Arc<dyn SubsystemService>,
}

impl AgentServer {
    /// Prepares a server; nothing is bound until [`AgentServer::run`].
    pub fn new(settings: ServerSettings, service: Arc<dyn SubsystemService>) -> Self {
        let config = russh_config(&settings);
        Self {
            config: Arc::new(config),
            settings: Arc::new(settings),
            service,
        }
    }

    /// Accepts connections on `listener` until `shutdown` resolves, then lets running
    /// sessions finish for at most the configured grace period.
    pub async fn run(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let permits = Arc::new(Semaphore::new(self.settings.max_connections));
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((socket, peer)) => self.admit(&mut sessions, &permits, socket, peer),
                    Err(e) => warn!(error = %e, "accept failed"),
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        drop(listener);
        info!(sessions = sessions.len(), grace = ?self.settings.shutdown_grace, "shutting down, waiting for running sessions");
        let drain = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(self.settings.shutdown_grace, drain)
            .await
            .is_err()
        {
            warn!("grace period over, dropping remaining sessions");
        }
    }

    fn admit(
        &self,
        sessions: &mut JoinSet<()>,
        permits: &Arc<Semaphore>,
        socket: TcpStream,
        peer: SocketAddr,
    ) {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            warn!(%peer, limit = self.settings.max_connections, "connection limit reached, refusing connection");
            return;
        };
        let _ = socket.set_nodelay(true);
        // Read the socket independently of the session loop (russh 0.65 does not read while
        // it writes; see `pump`), so that this end never stops draining the worker's output.
        let socket = pump(socket, tuning::READ_AHEAD_BASE);
        let handler = ConnectionHandler::new(
            self.settings.clone(),
            self.service.clone(),
            peer,
            socket.capacity(),
        );
        sessions.spawn(run_session(self.config.clone(), socket, handler, permit));
    }
}

async fn run_session(
    config: Arc<russh::server::Config>,
    socket: PumpedStream<TcpStream>,
    handler: ConnectionHandler,
    _permit: OwnedSemaphorePermit,
) {
    let peer = handler.peer;
    debug!(%peer, "connection accepted");
    let result = match russh::server::run_stream(config, socket, handler).await {
        Ok(running) => running.await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => debug!(%peer, "connection closed"),
        Err(russh::Error::IO(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            debug!(%peer, "connection closed by the client")
        }
        Err(e) => info!(%peer, error = %e, "connection ended with an error"),
    }
}

fn russh_config(settings: &ServerSettings) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-dr-syncer-agent_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![settings.host_key.clone()],
        max_auth_attempts: 6,
        inactivity_timeout: Some(settings.idle_timeout),
        keepalive_interval: Some(tuning::KEEPALIVE_INTERVAL),
        window_size: tuning::WINDOW_SIZE,
        maximum_packet_size: tuning::MAX_PACKET_SIZE,
        channel_buffer_size: tuning::CHANNEL_BUFFER,
        preferred: tuning::preferred(),
        nodelay: true,
        ..Default::default()
    }
}

/// Per-connection state: which key logged in, which channels are open.
struct ConnectionHandler {
    settings: Arc<ServerSettings>,
    service: Arc<dyn SubsystemService>,
    peer: SocketAddr,
    key: Option<PublicKey>,
    channel_permits: Arc<Semaphore>,
    /// Read-ahead of the socket under the session, grown by each open channel's window.
    read_ahead: PumpCapacity,
    idle_channels: HashMap<ChannelId, (Channel<Msg>, ChannelSlot)>,
    serving: JoinSet<()>,
}

/// What an open channel holds until it ends: its place under the channel limit and its
/// share of the socket's read-ahead.
struct ChannelSlot {
    _permit: OwnedSemaphorePermit,
    _read_ahead: CapacityGrant,
}

impl ConnectionHandler {
    fn new(
        settings: Arc<ServerSettings>,
        service: Arc<dyn SubsystemService>,
        peer: SocketAddr,
        read_ahead: PumpCapacity,
    ) -> Self {
        let channel_permits = Arc::new(Semaphore::new(settings.max_channels_per_connection));
        Self {
            settings,
            service,
            peer,
            key: None,
            channel_permits,
            read_ahead,
            idle_channels: HashMap::new(),
            serving: JoinSet::new(),
        }
    }

    fn check_key(&self, key: &PublicKey) -> Auth {
        if self.settings.authorized_keys.contains(key) {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }

    fn refuse(
        &mut self,
        channel: ChannelId,
        what: &str,
        session: &mut Session,
        close: bool,
    ) -> Result<(), russh::Error> {
        warn!(peer = %self.peer, channel = %channel, request = what, "refused channel request");
        session.channel_failure(channel)?;
        if close {
            self.idle_channels.remove(&channel);
            session.exit_status_request(channel, 1)?;
            session.close(channel)?;
        }
        Ok(())
    }

    fn start_service(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some((chan, slot)) = self.idle_channels.remove(&channel) else {
            return self.refuse(channel, "subsystem on a busy channel", session, true);
        };
        session.channel_success(channel)?;
        while self.serving.try_join_next().is_some() {}
        let peer = ChannelPeer {
            addr: Some(self.peer),
            key_fingerprint: self.key.as_ref().map(fingerprint).unwrap_or_default(),
            channel: u32::from(channel),
        };
        info!(peer = %self.peer, channel = %channel, "subsystem started");
        let service = self.service.clone();
        let handle = session.handle();
        self.serving.spawn(async move {
            let mut stream = pump(chan.into_stream(), tuning::PUMP_BUFFER);
            let status = service.serve(&mut stream, peer).await;
            let _ = handle.eof(channel).await;
            let _ = handle.exit_status_request(channel, status).await;
            drop(stream);
            drop(slot);
        });
        Ok(())
    }
}

impl russh::server::Handler for ConnectionHandler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.check_key(offer.public_key))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let verdict = self.check_key(key.public_key);
        let fp = fingerprint(key.public_key);
        if verdict == Auth::Accept {
            info!(peer = %self.peer, user, key = %fp, "client authenticated");
            self.key = Some(key.public_key.clone());
        } else {
            warn!(peer = %self.peer, user, key = %fp, "unknown client key refused");
        }
        Ok(verdict)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Ok(permit) = self.channel_permits.clone().try_acquire_owned() else {
            warn!(peer = %self.peer, limit = self.settings.max_channels_per_connection, "channel limit reached");
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        // Room for everything the window we are about to grant lets the worker send on this
        // channel, before the confirmation grants it.
        let slot = ChannelSlot {
            _permit: permit,
            _read_ahead: self.read_ahead.grant(tuning::READ_AHEAD_PER_CHANNEL),
        };
        self.idle_channels.insert(channel.id(), (channel, slot));
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _addr: &str,
        _port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        warn!(peer = %self.peer, "refused x11 channel");
        prohibit(reply).await
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        _orig_addr: &str,
        _orig_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        warn!(peer = %self.peer, host, port, "refused port forwarding (direct-tcpip)");
        prohibit(reply).await
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        warn!(peer = %self.peer, "refused unix socket forwarding");
        prohibit(reply).await
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.idle_channels.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col: u32,
        _row: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "pty", session, true)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _proto: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "x11", session, false)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "shell", session, true)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, "exec", session, true)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == self.settings.subsystem {
            self.start_service(channel, session)
        } else {
            warn!(peer = %self.peer, channel = %channel, subsystem = name, "unknown subsystem refused");
            self.refuse(channel, "unknown subsystem", session, true)
        }
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        warn!(peer = %self.peer, channel = %channel, "refused agent forwarding");
        Ok(false)
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        warn!(peer = %self.peer, address, port = *port, "refused remote port forwarding");
        Ok(false)
    }

    async fn streamlocal_forward(
        &mut self,
        _path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        warn!(peer = %self.peer, "refused remote unix socket forwarding");
        Ok(false)
    }
}

/// Refuses a channel kind the agent never opens (x11, forwarding) as administratively
/// prohibited, so the client sees a policy refusal rather than a resource shortage.
async fn prohibit(reply: ChannelOpenHandle) -> Result<(), russh::Error> {
    reply
        .reject(ChannelOpenFailure::AdministrativelyProhibited)
        .await;
    Ok(())
}
