//! Escape attempts at the protocol level, each refused and asserted: `..` and absolute
//! paths, symlinks pointing out of the root, a symlink swapped in during the transfer,
//! a malicious sender trying to make the receiver write outside its destination, and
//! the frame and request limits.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "core_common/mod.rs"]
mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use dr_syncer_rsync::filelist::{Entry, EntryKind};
use dr_syncer_rsync::paths::WirePath;
use dr_syncer_rsync::protocol::{
    FetchRequest, FrameReader, FrameWriter, MAX_FRAME, Message, ProtocolError, VERSION,
};
use dr_syncer_rsync::{Limits, ReceiveError, ServeStats, StaticVolumes, SyncOptions};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

type Reader = FrameReader<ReadHalf<DuplexStream>>;
type Writer = FrameWriter<WriteHalf<DuplexStream>>;
type Client = (Reader, Writer);

/// Sends `m` and flushes it, so the server sees it before the test reads a reply.
async fn say(w: &mut Writer, m: &Message) {
    w.send(m).await.unwrap();
    w.flush().await.unwrap();
}

/// Asks for the file list (no excludes, no xattrs), hashing `hash_percent` of the files.
async fn request_list(w: &mut Writer, hash_percent: u8) {
    say(
        w,
        &Message::ListRequest {
            excludes: vec![],
            hash_percent,
            xattrs: false,
        },
    )
    .await;
}

/// The client's first message, asking for `volume` uncompressed.
fn hello(volume: &str) -> Message {
    Message::Hello {
        version: VERSION,
        volume: volume.into(),
        compress_level: 0,
    }
}

/// Starts a real `serve` on `root` and returns a raw protocol client after the hello.
async fn connect(
    root: &Path,
    limits: Limits,
) -> (Client, JoinHandle<Result<ServeStats, ProtocolError>>) {
    let vols: StaticVolumes = format!("vol={}", root.display()).parse().unwrap();
    let (c, s) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move { dr_syncer_rsync::serve(s, &vols, &limits).await });
    let (rd, wr) = tokio::io::split(c);
    let mut r = FrameReader::new(rd, MAX_FRAME);
    let mut w = FrameWriter::new(wr, 0);
    say(&mut w, &hello("vol")).await;
    assert_eq!(
        r.read().await.unwrap(),
        Message::HelloOk { version: VERSION }
    );
    ((r, w), server)
}

fn wp(s: &[u8]) -> WirePath {
    WirePath::new(s.to_vec()).unwrap()
}

fn fetch(path: &[u8]) -> Message {
    Message::Fetch(FetchRequest {
        id: 1,
        path: wp(path),
        window: 1 << 20,
        sig_count: 0,
    })
}

/// Writes one raw frame (for payloads our encoder refuses to produce).
async fn raw_frame(w: &mut WriteHalf<DuplexStream>, payload: &[u8]) {
    w.write_all(&(payload.len() as u32).to_be_bytes())
        .await
        .unwrap();
    w.write_all(&[0]).await.unwrap();
    w.write_all(payload).await.unwrap();
    w.flush().await.unwrap();
}

/// Encodes `msg` then overwrites the first occurrence of `from` with `to` (same length),
/// producing a payload with a path no `WirePath` would allow.
fn corrupt(msg: &Message, from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut p = msg.encode();
    let i = p.windows(from.len()).position(|w| w == from).unwrap();
    p[i..i + to.len()].copy_from_slice(to);
    p
}

#[tokio::test]
async fn dotdot_and_absolute_paths_are_refused() {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("f"), b"x").unwrap();
    for (from, to) in [
        (&b"zz/etc/passwd"[..], &b"../etc/passwd"[..]),
        (b"zetc/passwd", b"/etc/passwd"),
        (b"a/zz/zz/x", b"a/../../x"),
    ] {
        let ((mut r, w), server) = connect(root.path(), Limits::default()).await;
        let mut inner = w;
        let payload = corrupt(&fetch(from), from, to);
        // bypass FrameWriter: write the raw frame through the same half
        let mut half = into_inner(&mut inner);
        raw_frame(&mut half, &payload).await;
        let reply = r.read().await.unwrap();
        assert!(
            matches!(&reply, Message::Error(e) if e.contains("refused")),
            "{reply:?}"
        );
        let res = server.await.unwrap();
        assert!(
            matches!(res, Err(ProtocolError::PathRefused { .. })),
            "{to:?}: {res:?}"
        );
    }
}

/// Takes the write half out of a FrameWriter-less client (tests write raw frames).
fn into_inner(w: &mut Writer) -> WriteHalf<DuplexStream> {
    let placeholder = FrameWriter::new(tokio::io::split(tokio::io::duplex(1).0).1, 0);
    let taken = std::mem::replace(w, placeholder);
    taken.into_inner()
}

#[tokio::test]
async fn symlinks_out_of_the_root_are_listed_not_followed_and_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("secret"), b"TOP-SECRET").unwrap();
    symlink(outside.path(), root.path().join("dirlink")).unwrap();
    symlink(outside.path().join("secret"), root.path().join("filelink")).unwrap();
    let ((mut r, mut w), server) = connect(root.path(), Limits::default()).await;

    request_list(&mut w, 100).await;
    let mut entries: Vec<Entry> = Vec::new();
    loop {
        match r.read().await.unwrap() {
            Message::Entries(b) => entries.extend(b),
            Message::ListEnd { .. } => break,
            m => panic!("{m:?}"),
        }
    }
    assert_eq!(
        entries.len(),
        2,
        "nothing below the symlinked dir: {entries:?}"
    );
    assert!(entries.iter().all(|e| e.kind == EntryKind::Symlink));

    for (i, p) in [&b"dirlink/secret"[..], b"filelink"]
        .into_iter()
        .enumerate()
    {
        let mut m = fetch(p);
        if let Message::Fetch(f) = &mut m {
            f.id = i as u64;
        }
        say(&mut w, &m).await;
        let reply = r.read().await.unwrap();
        assert!(
            matches!(&reply, Message::FileError { id, .. } if *id == i as u64),
            "{reply:?}"
        );
    }
    say(&mut w, &Message::Bye).await;
    let stats = server.await.unwrap().unwrap();
    assert_eq!(stats.refused, 2);
    assert_eq!(stats.files_sent, 0);
}

#[tokio::test]
async fn symlink_swapped_in_during_the_transfer_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    common::write_files(root.path(), &[("d/f", b"innocent")]);
    common::write_files(outside.path(), &[("f", b"TOP-SECRET")]);
    let ((mut r, mut w), server) = connect(root.path(), Limits::default()).await;
    // the list says d/f is a regular file in a directory...
    request_list(&mut w, 0).await;
    while !matches!(r.read().await.unwrap(), Message::ListEnd { .. }) {}
    // ...then d is swapped for a symlink pointing outside before the fetch
    fs::rename(root.path().join("d"), root.path().join("d.orig")).unwrap();
    symlink(outside.path(), root.path().join("d")).unwrap();
    w.send(&fetch(b"d/f")).await.unwrap();
    // and the file itself swapped for a symlink
    fs::write(root.path().join("g"), b"x").unwrap();
    w.flush().await.unwrap();
    let reply = r.read().await.unwrap();
    assert!(matches!(reply, Message::FileError { .. }), "{reply:?}");
    fs::remove_file(root.path().join("g")).unwrap();
    symlink(outside.path().join("f"), root.path().join("g")).unwrap();
    say(&mut w, &fetch(b"g")).await;
    let reply = r.read().await.unwrap();
    assert!(matches!(reply, Message::FileError { .. }), "{reply:?}");
    say(&mut w, &Message::Bye).await;
    let stats = server.await.unwrap().unwrap();
    assert_eq!((stats.refused, stats.files_sent), (2, 0));
}

/// The sending end of a fake sender on `s`, past the handshake: it has read the hello,
/// accepted it, and read the list request, so the caller answers that with its own list.
async fn fake_sender_listing(s: DuplexStream) -> (Reader, Writer) {
    let (rd, wr) = tokio::io::split(s);
    let mut r = FrameReader::new(rd, MAX_FRAME);
    let mut w = FrameWriter::new(wr, 0);
    let _hello = r.read().await;
    say(&mut w, &Message::HelloOk { version: VERSION }).await;
    let _list = r.read().await;
    (r, w)
}

/// A fake sender that answers the hello and the list request with `entries` (raw payload).
async fn fake_sender(list_payload: Vec<u8>) -> DuplexStream {
    let (c, s) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let (mut r, w) = fake_sender_listing(s).await;
        let mut half = w.into_inner();
        raw_frame(&mut half, &list_payload).await;
        let mut w = FrameWriter::new(half, 0);
        w.send(&Message::ListEnd { count: 2 }).await.unwrap();
        w.flush().await.unwrap();
        // keep the stream open until the receiver gives up
        while r.read().await.is_ok() {}
    });
    c
}

/// A list of a directory `d` and one file whose `placeholder` path is patched into
/// `hostile` after encoding (our encoder cannot produce a hostile path).
fn list_with_hostile_file(placeholder: &[u8], hostile: &[u8]) -> Vec<u8> {
    corrupt(
        &Message::Entries(vec![
            entry(b"d", EntryKind::Dir, b""),
            entry(placeholder, EntryKind::File, b""),
        ]),
        placeholder,
        hostile,
    )
}

fn entry(path: &[u8], kind: EntryKind, target: &[u8]) -> Entry {
    Entry {
        path: wp(path),
        kind,
        mode: if kind == EntryKind::Dir {
            0o40755
        } else {
            0o100644
        },
        uid: 0,
        gid: 0,
        size: 0,
        mtime_sec: 0,
        mtime_nsec: 0,
        link_target: target.to_vec(),
        hardlink_to: None,
        hash: None,
        xattrs: vec![],
    }
}

#[tokio::test]
async fn malicious_sender_cannot_make_the_receiver_write_outside() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().as_os_str().as_encoded_bytes().to_vec();
    // 1. a symlink "a" pointing outside, then a file "a/x" through it
    let list = Message::Entries(vec![
        entry(b"a", EntryKind::Symlink, &target),
        entry(b"a/x", EntryKind::File, b""),
    ])
    .encode();
    // 2. a path with ".." (encoded raw: our encoder cannot produce it)
    let dotdot = list_with_hostile_file(b"zz/x", b"../x");
    // 3. an absolute path
    let absolute = list_with_hostile_file(b"zx", b"/x");
    for (name, payload) in [
        ("symlink parent", list),
        ("dotdot", dotdot),
        ("absolute", absolute),
    ] {
        let dest = tempfile::tempdir().unwrap();
        let stream = fake_sender(payload).await;
        let res =
            dr_syncer_rsync::pull(vec![stream], "vol", dest.path(), &SyncOptions::default()).await;
        match (name, &res) {
            ("symlink parent", Err(ReceiveError::Refused { .. }))
            | (_, Err(ReceiveError::Protocol(ProtocolError::PathRefused { .. }))) => {}
            _ => panic!("{name}: {res:?}"),
        }
        assert!(!outside.path().join("x").exists(), "{name}");
        assert_eq!(
            fs::read_dir(dest.path()).unwrap().count(),
            0,
            "{name}: nothing written"
        );
    }
}

#[tokio::test]
async fn symlink_in_the_destination_is_replaced_not_followed() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::create_dir(src.path().join("d")).unwrap();
    fs::write(src.path().join("d/f"), b"data").unwrap();
    fs::write(src.path().join("plain"), b"data").unwrap();
    symlink(outside.path(), dst.path().join("d")).unwrap();
    symlink(outside.path().join("plain"), dst.path().join("plain")).unwrap();
    common::pull_over(src.path(), dst.path(), &SyncOptions::default(), 1)
        .await
        .unwrap();
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(fs::symlink_metadata(dst.path().join("d")).unwrap().is_dir());
    assert!(
        fs::symlink_metadata(dst.path().join("plain"))
            .unwrap()
            .is_file()
    );
    common::assert_same_tree(src.path(), dst.path());
}

#[tokio::test]
async fn limits_close_the_stream() {
    let root = tempfile::tempdir().unwrap();
    // a frame announcing more than the limit
    let ((mut r, mut w), server) = connect(root.path(), Limits::default()).await;
    let mut half = into_inner(&mut w);
    half.write_all(&(64u32 << 20).to_be_bytes()).await.unwrap();
    half.write_all(&[0]).await.unwrap();
    half.flush().await.unwrap();
    assert!(matches!(r.read().await.unwrap(), Message::Error(_)));
    assert!(matches!(
        server.await.unwrap(),
        Err(ProtocolError::FrameTooLarge { .. })
    ));
    // more requests than allowed
    let limits = Limits {
        max_requests: 2,
        ..Limits::default()
    };
    fs::write(root.path().join("f"), b"x").unwrap();
    let ((mut r, mut w), server) = connect(root.path(), limits).await;
    for _ in 0..3 {
        w.send(&fetch(b"f")).await.unwrap();
    }
    w.flush().await.unwrap();
    let mut saw_error = false;
    while let Ok(m) = r.read().await {
        saw_error |= matches!(m, Message::Error(_));
    }
    assert!(saw_error);
    assert!(matches!(
        server.await.unwrap(),
        Err(ProtocolError::Limit(_))
    ));
    // garbage instead of a hello
    let vols: StaticVolumes = format!("vol={}", root.path().display()).parse().unwrap();
    let (mut c, s) = tokio::io::duplex(1024);
    let server =
        tokio::spawn(async move { dr_syncer_rsync::serve(s, &vols, &Limits::default()).await });
    c.write_all(&[0, 0, 0, 3, 0, 0xee, 1, 2]).await.unwrap();
    assert!(matches!(
        server.await.unwrap(),
        Err(ProtocolError::Malformed(_))
    ));
    // an unknown volume
    let vols = Arc::new(StaticVolumes::default());
    let (c, s) = tokio::io::duplex(1024);
    let server =
        tokio::spawn(
            async move { dr_syncer_rsync::serve(s, vols.as_ref(), &Limits::default()).await },
        );
    let (rd, wr) = tokio::io::split(c);
    let (mut r, mut w) = (FrameReader::new(rd, MAX_FRAME), FrameWriter::new(wr, 0));
    say(&mut w, &hello("../../etc")).await;
    assert!(matches!(r.read().await.unwrap(), Message::Error(_)));
    assert!(matches!(
        server.await.unwrap(),
        Err(ProtocolError::Volume(_))
    ));
}

/// A sender that lists one 4-byte file "f" and answers its fetch with `reply(id)`.
fn scripted_sender(reply: fn(u64) -> Vec<Message>) -> DuplexStream {
    let (c, s) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let (mut r, mut w) = fake_sender_listing(s).await;
        let mut f = entry(b"f", EntryKind::File, b"");
        f.size = 4;
        w.send(&Message::Entries(vec![f])).await.unwrap();
        w.send(&Message::ListEnd { count: 1 }).await.unwrap();
        w.flush().await.unwrap();
        let Ok(Message::Fetch(req)) = r.read().await else {
            panic!("expected a fetch")
        };
        for m in reply(req.id) {
            w.send(&m).await.unwrap();
        }
        w.flush().await.unwrap();
        while r.read().await.is_ok() {}
    });
    c
}

fn literal_abcd() -> Vec<u8> {
    let mut delta = 0x7273_0236u32.to_be_bytes().to_vec();
    delta.extend_from_slice(&[4, b'a', b'b', b'c', b'd', 0]);
    delta
}

#[tokio::test]
async fn corrupted_data_fails_verification_and_never_lands() {
    let c = scripted_sender(|id| {
        vec![
            Message::FileStart { id, size: 4 },
            Message::Delta(literal_abcd()),
            // the hash of other bytes: what a collision or a changing source looks like
            Message::FileEnd {
                id,
                hash: *blake3::hash(b"abce").as_bytes(),
            },
        ]
    });
    let dest = tempfile::tempdir().unwrap();
    let res = dr_syncer_rsync::pull(vec![c], "vol", dest.path(), &SyncOptions::default()).await;
    let err = res.unwrap_err();
    assert!(matches!(err, ReceiveError::Verify { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        !dest.path().join("f").exists(),
        "never under its final name"
    );
}

#[tokio::test]
async fn a_file_aborted_mid_transfer_is_skipped_cleanly() {
    let c = scripted_sender(|id| {
        vec![
            Message::FileStart { id, size: 4 },
            Message::Delta(literal_abcd()[..6].to_vec()),
            Message::FileError {
                id,
                message: "file shrank during the transfer".into(),
            },
        ]
    });
    let dest = tempfile::tempdir().unwrap();
    let s = dr_syncer_rsync::pull(vec![c], "vol", dest.path(), &SyncOptions::default())
        .await
        .unwrap();
    assert_eq!((s.files_vanished, s.files_transferred), (1, 0), "{s:?}");
    assert_eq!(
        std::fs::read_dir(dest.path()).unwrap().count(),
        0,
        "no partial left"
    );
}
