//! Path escape attempts over real SSH: a client that names volumes or files outside the
//! agent's roots (`..`, absolute paths, symlinks pointing out) gets an error, never data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ssh_common/mod.rs"]
mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use common::{TestAgent, key};
use dr_syncer_rsync::paths::WirePath;
use dr_syncer_rsync::protocol::{FetchRequest, FrameReader, Message, VERSION};
use dr_syncer_rsync::ssh::AgentConnection;
use dr_syncer_rsync::{Limits, SyncOptions, pull};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

const SECRET: &[u8] = b"TOP-SECRET-OUTSIDE-THE-VOLUME";

struct World {
    dir: tempfile::TempDir,
    agent: TestAgent,
    conn: AgentConnection,
}

/// A volume root next to a secret directory, with symlinks pointing out of the root.
async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("volume");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
    std::fs::write(root.join("sub/ok.txt"), b"fine").unwrap();
    symlink("../outside", root.join("dirlink")).unwrap();
    symlink(outside.join("secret.txt"), root.join("abslink")).unwrap();
    symlink("../../outside/secret.txt", root.join("sub/rellink")).unwrap();
    let (host, client) = (key(41), key(42));
    let agent = TestAgent::protocol(&[("data", &root)], host.clone(), &client).await;
    let conn = agent.connect(&host, &client).await.unwrap();
    World { dir, agent, conn }
}

async fn send_raw<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.push(0);
    frame.extend_from_slice(payload);
    w.write_all(&frame).await.unwrap();
    w.flush().await.unwrap();
}

/// Reads replies until the stream ends or errors; returns every message and whether any
/// frame carried the secret.
async fn drain<R: AsyncRead + Unpin>(r: R) -> (Vec<Message>, bool) {
    let mut reader = FrameReader::new(r, Limits::default().max_frame);
    let mut seen = Vec::new();
    let mut leaked = false;
    while let Ok(Ok(msg)) =
        tokio::time::timeout(std::time::Duration::from_secs(20), reader.read()).await
    {
        leaked |= format!("{msg:?}").contains("TOP-SECRET")
            || msg.encode().windows(SECRET.len()).any(|w| w == SECRET);
        let end = matches!(
            msg,
            Message::Error(_) | Message::FileError { .. } | Message::FileEnd { .. }
        );
        seen.push(msg);
        if end {
            break;
        }
    }
    (seen, leaked)
}

fn hello(volume: &str) -> Vec<u8> {
    Message::Hello {
        version: VERSION,
        volume: volume.to_string(),
        compress_level: 0,
    }
    .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_names_outside_the_configured_map_are_refused() {
    let w = world().await;
    let outside = w.dir.path().join("outside");
    for volume in [
        "../outside",
        "data/../outside",
        outside.to_str().unwrap(),
        "/",
        "",
        "data/..",
    ] {
        let stream = w.conn.open_stream().await.unwrap();
        let (r, mut wr) = tokio::io::split(stream);
        send_raw(&mut wr, &hello(volume)).await;
        let (seen, leaked) = drain(r).await;
        assert!(!leaked);
        assert!(
            !seen.iter().any(|m| matches!(m, Message::HelloOk { .. })),
            "volume {volume:?} was accepted: {seen:?}"
        );
        assert!(
            seen.iter().any(|m| matches!(m, Message::Error(_))),
            "volume {volume:?}: no explicit refusal: {seen:?}"
        );
    }
    drop(w.agent);
}

/// Fetches `path` after patching the placeholder bytes of a valid path into a hostile
/// one, so the request reaches the agent exactly as an attacker would send it.
async fn hostile_fetch(
    conn: &AgentConnection,
    valid: &[u8],
    placeholder: &[u8],
    hostile: &[u8],
) -> (Vec<Message>, bool) {
    let stream = conn.open_stream().await.unwrap();
    let (r, mut wr) = tokio::io::split(stream);
    send_raw(&mut wr, &hello("data")).await;
    let fetch = Message::Fetch(FetchRequest {
        id: 1,
        path: WirePath::new(valid.to_vec()).unwrap(),
        window: 1 << 20,
        sig_count: 0,
    })
    .encode();
    let at = fetch
        .windows(placeholder.len())
        .position(|w| w == placeholder)
        .unwrap();
    let mut patched = fetch.clone();
    patched[at..at + hostile.len()].copy_from_slice(hostile);
    send_raw(&mut wr, &patched).await;
    drain(r).await
}

fn assert_refused(what: &str, (seen, leaked): (Vec<Message>, bool)) {
    assert!(!leaked, "{what}: the secret left the agent: {seen:?}");
    assert!(
        !seen.iter().any(|m| matches!(m, Message::FileEnd { .. })),
        "{what}: a file was served: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| matches!(m, Message::Error(_) | Message::FileError { .. }))
            || seen.len() <= 1,
        "{what}: no refusal: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotdot_absolute_and_symlinked_paths_are_refused() {
    let w = world().await;
    let abs = w.dir.path().join("outside/secret.txt");
    let abs = abs.to_str().unwrap().as_bytes();
    // `..` component.
    assert_refused(
        "..",
        hostile_fetch(&w.conn, b"QQ/outside/secret.txt", b"QQ", b"..").await,
    );
    // Absolute path: a valid relative path whose first byte becomes '/'.
    let mut valid = abs.to_vec();
    valid[0] = b'Q';
    assert_refused(
        "absolute",
        hostile_fetch(&w.conn, &valid, &valid[..4], &abs[..4]).await,
    );
    // Through a directory symlink pointing out of the root.
    assert_refused(
        "dir symlink",
        hostile_fetch(&w.conn, b"dirlink/secret.txt", b"dirlink", b"dirlink").await,
    );
    // Symlinks to the secret itself (absolute and relative targets).
    assert_refused(
        "abs symlink",
        hostile_fetch(&w.conn, b"abslink", b"abslink", b"abslink").await,
    );
    assert_refused(
        "rel symlink",
        hostile_fetch(&w.conn, b"sub/rellink", b"rellink", b"rellink").await,
    );
    drop(w.agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_copies_escaping_symlinks_verbatim_and_never_their_targets() {
    let w = world().await;
    let dest = w.dir.path().join("dest");
    let streams = w.conn.open_streams(2).await.unwrap();
    pull(streams, "data", &dest, &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!(std::fs::read(dest.join("sub/ok.txt")).unwrap(), b"fine");
    let outside = w.dir.path().join("outside");
    assert_eq!(
        std::fs::read_link(dest.join("dirlink")).unwrap(),
        Path::new("../outside")
    );
    assert_eq!(
        std::fs::read_link(dest.join("abslink")).unwrap(),
        outside.join("secret.txt")
    );
    assert_eq!(
        std::fs::read_link(dest.join("sub/rellink")).unwrap(),
        Path::new("../../outside/secret.txt")
    );
    for entry in walk(&dest) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() {
            assert_ne!(
                std::fs::read(&entry).unwrap(),
                SECRET,
                "{} holds the secret",
                entry.display()
            );
        }
    }
    drop(w.agent);
}

fn walk(root: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}
