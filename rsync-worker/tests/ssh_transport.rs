//! The SSH layer on its own (echo subsystem): pinning, client keys, channels, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ssh_common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{EchoService, TestAgent, client_settings, key};
use dr_syncer_rsync::ssh::{ClientError, connect, fingerprint};
use russh::ChannelMsg;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// KNOWN BUG (open in issue 4): with 4 channels each echoing 6 MB in both directions at
/// once, the connection stalls in most runs until the agent's inactivity timeout closes it
/// ("channel closed" after ~60 s); 1 channel never stalls. Both directions fit in the 16 MiB
/// windows and raising `CHANNEL_BUFFER` does not help, so a russh session loop is stuck in
/// message passing, not flow control. The pipelined data protocol has not been seen to hit it
/// (`ssh_kill`, `ssh_worker`, the bench), but until it is understood this test stays out of
/// CI: run it with `cargo test -p dr-syncer-rsync-worker --test ssh_transport -- --ignored`.
#[ignore = "known multi-channel stall in the SSH transport; see the doc comment"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_parallel_channels_on_one_connection() {
    let (host, client) = (key(1), key(2));
    let agent = TestAgent::start(
        Arc::new(EchoService),
        host.clone(),
        vec![client.public_key().clone()],
    )
    .await;
    let conn = connect(
        &agent.addr.to_string(),
        &client_settings(host.public_key(), &client),
    )
    .await
    .unwrap();
    let streams = conn.open_streams(4).await.unwrap();
    let mut tasks = Vec::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let payload: Vec<u8> = (0..6_000_000u32)
                .map(|b| (b as usize * 7 + i) as u8)
                .collect();
            let (mut r, mut w) = tokio::io::split(&mut s);
            let write = async {
                w.write_all(&payload).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let read = r.read_to_end(&mut back);
            let ((), n) = tokio::join!(write, read);
            n.unwrap();
            assert_eq!(back, payload, "stream {i} echoed different bytes");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    conn.close().await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_refused_with_both_fingerprints() {
    let (host, impostor_pin, client) = (key(1), key(9), key(2));
    let agent = TestAgent::start(
        Arc::new(EchoService),
        host.clone(),
        vec![client.public_key().clone()],
    )
    .await;
    let err = connect(
        &agent.addr.to_string(),
        &client_settings(impostor_pin.public_key(), &client),
    )
    .await
    .err()
    .expect("a connection to an agent with another host key must fail");
    assert!(
        matches!(err, ClientError::HostKeyMismatch { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let msg = err.to_string();
    assert!(
        msg.contains("host key does not match the pinned key"),
        "{msg}"
    );
    assert!(msg.contains(&fingerprint(host.public_key())), "{msg}");
    assert!(
        msg.contains(&fingerprint(impostor_pin.public_key())),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_key_is_refused() {
    let (host, client, stranger) = (key(1), key(2), key(3));
    let agent = TestAgent::start(
        Arc::new(EchoService),
        host.clone(),
        vec![client.public_key().clone()],
    )
    .await;
    let err = connect(
        &agent.addr.to_string(),
        &client_settings(host.public_key(), &stranger),
    )
    .await
    .err()
    .expect("an unknown client key must not log in");
    assert!(matches!(err, ClientError::AuthRejected(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains(&fingerprint(stranger.public_key()))
    );
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_shell_pty_env_and_unknown_subsystem_are_refused() {
    let (host, client) = (key(1), key(2));
    let agent = TestAgent::start(
        Arc::new(EchoService),
        host.clone(),
        vec![client.public_key().clone()],
    )
    .await;
    let settings = client_settings(host.public_key(), &client);
    let conn = connect(&agent.addr.to_string(), &settings).await.unwrap();
    // Each refused request on its own connection: a refusal closes the channel.
    let (_conn, mut ch) = fresh_channel(&agent, &settings).await;
    ch.exec(true, "cat /etc/shadow").await.unwrap();
    assert_refused(&mut ch, "exec", true).await;

    let (_conn, mut ch) = fresh_channel(&agent, &settings).await;
    ch.request_pty(true, "xterm", 80, 24, 0, 0, &[])
        .await
        .unwrap();
    assert_refused(&mut ch, "pty", true).await;

    let (_conn, mut ch) = fresh_channel(&agent, &settings).await;
    ch.request_shell(true).await.unwrap();
    assert_refused(&mut ch, "shell", true).await;

    let (_conn, mut ch) = fresh_channel(&agent, &settings).await;
    ch.set_env(true, "LD_PRELOAD", "/tmp/x.so").await.unwrap();
    assert_refused(&mut ch, "env", false).await;

    let (_conn, mut ch) = fresh_channel(&agent, &settings).await;
    ch.request_subsystem(true, "sftp").await.unwrap();
    assert_refused(&mut ch, "sftp subsystem", true).await;

    let handle = raw_handle(&agent, &settings).await;
    let fwd = handle
        .channel_open_direct_tcpip("127.0.0.1", 22, "127.0.0.1", 5555)
        .await;
    assert!(fwd.is_err(), "direct-tcpip must be refused");
    assert!(
        handle.tcpip_forward("127.0.0.1", 0).await.is_err(),
        "tcpip-forward must be refused"
    );

    // The real subsystem still works on the same agent.
    let mut s = conn.open_stream().await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_limit_per_connection_is_enforced() {
    let (host, client) = (key(1), key(2));
    let agent = TestAgent::start_with(
        Arc::new(EchoService),
        host.clone(),
        vec![client.public_key().clone()],
        2,
    )
    .await;
    let conn = connect(
        &agent.addr.to_string(),
        &client_settings(host.public_key(), &client),
    )
    .await
    .unwrap();
    let _streams = conn.open_streams(2).await.unwrap();
    assert!(
        conn.open_stream().await.is_err(),
        "a third channel must be refused"
    );
}

struct AcceptAny;
impl russh::client::Handler for AcceptAny {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A raw russh client handle, to send requests our own client never sends.
async fn raw_handle(
    agent: &TestAgent,
    settings: &dr_syncer_rsync::ssh::ClientSettings,
) -> russh::client::Handle<AcceptAny> {
    let mut h = russh::client::connect(
        Arc::new(russh::client::Config::default()),
        agent.addr,
        AcceptAny,
    )
    .await
    .unwrap();
    let key = russh::keys::PrivateKeyWithHashAlg::new(settings.key.clone(), None);
    assert!(
        h.authenticate_publickey("test", key)
            .await
            .unwrap()
            .success()
    );
    h
}

/// A session channel on a new authenticated raw connection (keep the handle alive).
async fn fresh_channel(
    agent: &TestAgent,
    settings: &dr_syncer_rsync::ssh::ClientSettings,
) -> (
    russh::client::Handle<AcceptAny>,
    russh::Channel<russh::client::Msg>,
) {
    let handle = raw_handle(agent, settings).await;
    let ch = handle.channel_open_session().await.unwrap();
    (handle, ch)
}

/// Waits for the agent's explicit refusal (a silent agent fails the test after 20 s).
async fn assert_refused(ch: &mut russh::Channel<russh::client::Msg>, what: &str, closes: bool) {
    let answer = async {
        loop {
            match ch.wait().await {
                Some(ChannelMsg::Failure) => break,
                Some(ChannelMsg::Success) => panic!("{what} request was accepted"),
                Some(ChannelMsg::Data { .. }) => panic!("{what} produced data"),
                None => panic!("{what}: channel closed without an explicit refusal"),
                Some(_) => {}
            }
        }
        if closes {
            // Refused shell/exec/pty/subsystem requests also end the channel.
            while let Some(msg) = ch.wait().await {
                assert!(
                    !matches!(msg, ChannelMsg::Data { .. }),
                    "{what} produced data"
                );
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), answer)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer from the agent"));
}
