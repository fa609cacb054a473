//! The SSH layer on its own (echo subsystem): pinning, client keys, channels, refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ssh_common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{EchoService, TestAgent, assert_names_both_host_keys, client_settings, key};
use dr_syncer_rsync::ssh::{ClientError, fingerprint};
use russh::ChannelMsg;
use russh::keys::PrivateKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Regression test for the multi-channel stall (issue 4): 4 channels on one connection each
/// echo 6 MB in both directions at once. It used to stall in most runs until the agent's
/// inactivity timeout ("channel closed" after ~60 s): russh 0.65's session loop does not
/// read the socket while it writes all its queued output, so once both ends had more output
/// queued than the kernel buffers between them hold, each waited in `write_all` for the
/// other to read. Both ends now read the socket through a pump sized to the windows they
/// granted (`ssh::pump`, `tuning::READ_AHEAD_*`), so a compliant peer's writes always
/// complete and its loop gets back to reading ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_parallel_channels_on_one_connection() {
    echo_in_parallel(4, 6_000_000).await;
}

/// The same with twice the channels and payloads well beyond a window (16 MiB) each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_eight_channels_of_32_mb_each() {
    echo_in_parallel(8, 32_000_000).await;
}

/// Opens `channels` streams on one connection to an echo agent and, on all of them at once,
/// writes `len` pseudo-random bytes while reading the echo back and checking it. Fails
/// with each stream's progress if the transfer stalls (well before the 60 s idle timeout).
async fn echo_in_parallel(channels: usize, len: u64) {
    let (host, client) = (key(1), key(2));
    let agent = TestAgent::echo(&host, &client).await;
    let conn = agent.connect(&host, &client).await.unwrap();
    let streams = conn.open_streams(channels).await.unwrap();
    let progress: Arc<Vec<[AtomicU64; 2]>> =
        Arc::new((0..channels).map(|_| Default::default()).collect());
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut s) in streams.into_iter().enumerate() {
        let progress = progress.clone();
        tasks.spawn(async move {
            let [sent, echoed] = &progress[i];
            let (mut r, mut w) = tokio::io::split(&mut s);
            let write = async {
                let mut chunk = vec![0u8; 64 * 1024];
                let mut offset = 0;
                while offset < len {
                    let n = chunk.len().min((len - offset) as usize);
                    pattern(i, offset, &mut chunk[..n]);
                    w.write_all(&chunk[..n]).await.unwrap();
                    offset += n as u64;
                    sent.store(offset, Ordering::Relaxed);
                }
                w.shutdown().await.unwrap();
            };
            let read = async {
                let (mut buf, mut expected) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
                let mut offset = 0;
                loop {
                    let n = r.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    assert!(offset + n as u64 <= len, "stream {i} echoed too much");
                    pattern(i, offset, &mut expected[..n]);
                    assert!(
                        buf[..n] == expected[..n],
                        "stream {i} echoed different bytes at {offset}"
                    );
                    offset += n as u64;
                    echoed.store(offset, Ordering::Relaxed);
                }
                assert_eq!(offset, len, "stream {i} echo ended early");
            };
            tokio::join!(write, read);
        });
    }
    let all = async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    };
    if tokio::time::timeout(Duration::from_secs(45), all)
        .await
        .is_err()
    {
        let report: Vec<String> = progress
            .iter()
            .map(|[s, e]| {
                format!(
                    "{}/{}",
                    s.load(Ordering::Relaxed),
                    e.load(Ordering::Relaxed)
                )
            })
            .collect();
        panic!("stalled; sent/echoed per stream: {report:?}");
    }
    conn.close().await;
    agent.stop().await;
}

/// Deterministic pseudo-random bytes `offset..offset + out.len()` of stream `stream`.
fn pattern(stream: usize, offset: u64, out: &mut [u8]) {
    let mut word = offset / 8;
    let mut skip = (offset % 8) as usize;
    let mut pos = 0;
    while pos < out.len() {
        // splitmix64 of the word index, distinct per stream.
        let mut z = (word ^ ((stream as u64) << 48)).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let bytes = (z ^ (z >> 31)).to_le_bytes();
        let take = (8 - skip).min(out.len() - pos);
        out[pos..pos + take].copy_from_slice(&bytes[skip..skip + take]);
        (pos, skip, word) = (pos + take, 0, word + 1);
    }
}

/// Starts an echo agent with host key `host` that lets `client` in, connects pinning `pin`
/// and logging in with `login`, and returns the error that must refuse it, a permanent one
/// (retrying cannot fix a key).
async fn refused_login(
    (host, client): (&PrivateKey, &PrivateKey),
    (pin, login): (&PrivateKey, &PrivateKey),
    why: &str,
) -> ClientError {
    let agent = TestAgent::echo(host, client).await;
    let err = agent.connect(pin, login).await.err().expect(why);
    assert!(!err.is_transient(), "{err:?}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_key_is_refused_with_both_fingerprints() {
    let (host, impostor_pin, client) = (key(1), key(9), key(2));
    let err = refused_login(
        (&host, &client),
        (&impostor_pin, &client),
        "a connection to an agent with another host key must fail",
    )
    .await;
    assert!(
        matches!(err, ClientError::HostKeyMismatch { .. }),
        "{err:?}"
    );
    assert_names_both_host_keys(&err.to_string(), &host, &impostor_pin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_key_is_refused() {
    let (host, client, stranger) = (key(1), key(2), key(3));
    let err = refused_login(
        (&host, &client),
        (&host, &stranger),
        "an unknown client key must not log in",
    )
    .await;
    assert!(matches!(err, ClientError::AuthRejected(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains(&fingerprint(stranger.public_key()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_shell_pty_env_and_unknown_subsystem_are_refused() {
    let (host, client) = (key(1), key(2));
    let agent = TestAgent::echo(&host, &client).await;
    let settings = client_settings(host.public_key(), &client);
    let conn = agent.connect(&host, &client).await.unwrap();
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
    let agent = TestAgent::start_with(Arc::new(EchoService), host.clone(), &client, 2).await;
    let conn = agent.connect(&host, &client).await.unwrap();
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
    tokio::time::timeout(Duration::from_secs(20), answer)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer from the agent"));
}
