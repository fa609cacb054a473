//! Helpers shared by the `ssh_*` integration tests: keys written in OpenSSH formats, an
//! in-process agent on an ephemeral loopback port, a trivial echo subsystem, a client
//! connection to it, and the worker binary run to completion.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use dr_syncer_rsync::ssh::keys::ed25519_from_seed;
use dr_syncer_rsync::ssh::{
    AgentConnection, AgentServer, AuthorizedKeys, ChannelPeer, ClientError, ClientSettings,
    ProtocolService, ServeFuture, ServerSettings, SubsystemService, SubsystemStream, connect,
    fingerprint,
};
use dr_syncer_rsync::{Limits, SUBSYSTEM_NAME, StaticVolumes};
use russh::keys::ssh_key::LineEnding;
use russh::keys::{PrivateKey, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A deterministic ed25519 key per seed byte.
pub fn key(seed: u8) -> PrivateKey {
    ed25519_from_seed(&[seed; 32])
}

/// Writes a private key as an OpenSSH file with mode 0600 (OpenSSH insists).
pub fn write_private_key(dir: &Path, name: &str, key: &PrivateKey) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, key.to_openssh(LineEnding::LF).unwrap().as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Writes one public key line.
pub fn write_public_key(dir: &Path, name: &str, key: &PublicKey) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", key.to_openssh().unwrap())).unwrap();
    path
}

/// Echoes everything it reads, then exits 0: enough to prove the SSH plumbing.
pub struct EchoService;

impl SubsystemService for EchoService {
    fn serve<'a>(&'a self, stream: &'a mut SubsystemStream, _peer: ChannelPeer) -> ServeFuture<'a> {
        Box::pin(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return 1;
                        }
                    }
                }
            }
            let _ = stream.flush().await;
            0
        })
    }
}

/// An agent running in this test process until dropped.
pub struct TestAgent {
    pub addr: SocketAddr,
    pub host_key: PrivateKey,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestAgent {
    /// Starts an agent with the given service on 127.0.0.1:0 that lets only `client` log in.
    pub async fn start(
        service: Arc<dyn SubsystemService>,
        host_key: PrivateKey,
        client: &PrivateKey,
    ) -> Self {
        Self::start_with(service, host_key, client, 16).await
    }

    /// An echo agent (the SSH layer on its own) with host key `host` that lets `client` in.
    pub async fn echo(host: &PrivateKey, client: &PrivateKey) -> Self {
        Self::start(Arc::new(EchoService), host.clone(), client).await
    }

    /// Same as [`TestAgent::start`], with a channel limit per connection.
    pub async fn start_with(
        service: Arc<dyn SubsystemService>,
        host_key: PrivateKey,
        client: &PrivateKey,
        max_channels: usize,
    ) -> Self {
        let settings = ServerSettings {
            host_key: host_key.clone(),
            authorized_keys: AuthorizedKeys::from_keys(vec![client.public_key().clone()]),
            subsystem: SUBSYSTEM_NAME.to_string(),
            max_connections: 8,
            max_channels_per_connection: max_channels,
            idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = AgentServer::new(settings, service);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .run(listener, async {
                    let _ = rx.await;
                })
                .await;
        });
        Self {
            addr,
            host_key,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts an agent serving the data-plane protocol for `volumes`.
    pub async fn protocol(
        volumes: &[(&str, &Path)],
        host_key: PrivateKey,
        client: &PrivateKey,
    ) -> Self {
        let mut v = StaticVolumes::default();
        for (name, dir) in volumes {
            v.0.insert((*name).to_string(), dir.to_path_buf());
        }
        let service = ProtocolService::new(Arc::new(v), Limits::default());
        Self::start(Arc::new(service), host_key, client).await
    }

    /// Connects to this agent pinning `pin`'s public key and logging in with `client`.
    pub async fn connect(
        &self,
        pin: &PrivateKey,
        client: &PrivateKey,
    ) -> Result<AgentConnection, ClientError> {
        connect(
            &self.addr.to_string(),
            &client_settings(pin.public_key(), client),
        )
        .await
    }

    /// Stops accepting and waits for the server loop to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Client settings pinning `host` and logging in with `client`.
pub fn client_settings(host: &PublicKey, client: &PrivateKey) -> ClientSettings {
    ClientSettings {
        pinned_host_key: host.clone(),
        key: Arc::new(client.clone()),
        user: "test".to_string(),
        subsystem: SUBSYSTEM_NAME.to_string(),
        connect_timeout: Duration::from_secs(20),
    }
}

/// Checks that `msg` says the host key did not match the pin and names both keys, so an
/// operator can tell which key the agent has and which one was expected.
pub fn assert_names_both_host_keys(msg: &str, host: &PrivateKey, pinned: &PrivateKey) {
    assert!(
        msg.contains("host key does not match the pinned key"),
        "{msg}"
    );
    assert!(msg.contains(&fingerprint(host.public_key())), "{msg}");
    assert!(msg.contains(&fingerprint(pinned.public_key())), "{msg}");
}

/// A command for the worker binary built with these tests, logging warnings only.
pub fn worker_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dr-syncer-rsync-worker"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `cmd` to completion off the async runtime and returns what it printed.
pub async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Checks that `out` exited 0, showing its stderr if not.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
