//! The `dr-syncer-rsync-worker` binary end to end: JSON summary on stdout and in the
//! termination log, and clear, typed failures (pinned key, client key, retries).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ssh_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{
    TestAgent, assert_names_both_host_keys, assert_success, key, output, worker_command,
    write_private_key, write_public_key,
};
use dr_syncer_rsync::ssh::fingerprint;
use russh::keys::PrivateKey;

struct Files {
    dir: tempfile::TempDir,
    src: PathBuf,
    dest: PathBuf,
    log: PathBuf,
}

fn files() -> Files {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
    Files {
        src,
        dest: dir.path().join("dest"),
        log: dir.path().join("termination-log"),
        dir,
    }
}

async fn worker(
    f: &Files,
    addr: &str,
    pin: &PrivateKey,
    client: &PrivateKey,
    extra: &[&str],
) -> Output {
    let pin_file = write_public_key(f.dir.path(), "pin.pub", pin.public_key());
    let key_file = write_private_key(f.dir.path(), "worker_key", client);
    let mut cmd = worker_command();
    cmd.args(["--agent", addr, "--volume", "data"])
        .arg("--host-key-file")
        .arg(pin_file)
        .arg("--key-file")
        .arg(key_file)
        .arg("--dest")
        .arg(&f.dest)
        .arg("--termination-log")
        .arg(&f.log)
        .args(extra);
    output(cmd).await
}

/// Serves `f.src` as volume `data` from an agent with host key `host` that lets `client`
/// in, and runs the worker against it pinning `pin`, logging in with `login`.
async fn pull_from_agent(
    f: &Files,
    (host, client): (&PrivateKey, &PrivateKey),
    (pin, login): (&PrivateKey, &PrivateKey),
    extra: &[&str],
) -> Output {
    let agent = TestAgent::protocol(&[("data", &f.src)], host.clone(), client).await;
    worker(f, &agent.addr.to_string(), pin, login, extra).await
}

fn termination_log(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_prints_summary_and_writes_termination_log() {
    let f = files();
    let (host, client) = (key(31), key(32));
    let out = pull_from_agent(&f, (&host, &client), (&host, &client), &["--streams", "3"]).await;
    assert_success(&out);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed,
        termination_log(&f.log),
        "stdout and termination log must agree"
    );
    for field in [
        "files_scanned",
        "files_transferred",
        "files_deleted",
        "literal_bytes",
        "matched_bytes",
        "wire_bytes",
        "duration_seconds",
    ] {
        assert!(
            printed.get(field).is_some(),
            "summary lacks {field}: {printed}"
        );
    }
    assert_eq!(printed["files_transferred"], 2);
    assert_eq!(
        std::fs::read(f.dest.join("sub/b.bin")).unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(std::fs::read(f.dest.join("a.txt")).unwrap(), b"alpha\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_refuses_an_agent_with_another_host_key() {
    let f = files();
    let (host, pinned, client) = (key(31), key(33), key(32));
    let out = pull_from_agent(
        &f,
        (&host, &client),
        (&pinned, &client),
        &["--retries", "3"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_names_both_host_keys(&stderr, &host, &pinned);
    let log = termination_log(&f.log);
    assert_eq!(log["kind"], "host_key_mismatch", "{log}");
    assert_eq!(log["attempts"], 1, "a key mismatch is never retried: {log}");
    assert!(!f.dest.join("a.txt").exists(), "nothing may be written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_with_unknown_client_key_is_refused() {
    let f = files();
    let (host, client, stranger) = (key(31), key(32), key(34));
    let out = pull_from_agent(&f, (&host, &client), (&host, &stranger), &[]).await;
    assert!(!out.status.success());
    let log = termination_log(&f.log);
    assert_eq!(log["kind"], "auth_rejected", "{log}");
    assert!(
        log["error"]
            .as_str()
            .unwrap()
            .contains(&fingerprint(stranger.public_key()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_retries_transient_connection_errors_then_fails_clearly() {
    let f = files();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = worker(&f, &addr, &key(31), &key(32), &["--retries", "2"]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to agent"), "{stderr}");
    assert_eq!(
        stderr.matches("transient failure, retrying").count(),
        2,
        "{stderr}"
    );
    let log = termination_log(&f.log);
    assert_eq!(log["kind"], "connection");
    assert_eq!(log["transient"], true);
    assert_eq!(log["attempts"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_rejects_unknown_rsync_options() {
    let f = files();
    let out = worker(
        &f,
        "127.0.0.1:1",
        &key(31),
        &key(32),
        &["--rsync-option=--frobnicate"],
    )
    .await;
    assert!(!out.status.success());
    let log = termination_log(&f.log);
    assert_eq!(log["kind"], "option", "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_into_a_destination_another_pull_holds_reports_target_busy() {
    let f = files();
    std::fs::create_dir_all(&f.dest).unwrap();
    let lock = f.dest.join(".dr-syncer.lock");
    let held = nix::fcntl::Flock::lock(
        std::fs::File::create(&lock).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    )
    .unwrap();
    let (host, client) = (key(31), key(32));
    let out = pull_from_agent(&f, (&host, &client), (&host, &client), &["--retries", "0"]).await;
    assert!(!out.status.success());
    let log = termination_log(&f.log);
    assert_eq!(log["kind"], "target_busy", "{log}");
    assert_eq!(log["transient"], true, "{log}");
    assert!(!f.dest.join("a.txt").exists(), "nothing written");
    drop(held);
    let out = pull_from_agent(&f, (&host, &client), (&host, &client), &[]).await;
    assert_success(&out);
    assert_eq!(std::fs::read(f.dest.join("a.txt")).unwrap(), b"alpha\n");
    assert!(!lock.exists(), "a finished pull leaves no lock file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_keeps_every_file_when_the_source_is_empty_unless_allowed() {
    let f = files();
    std::fs::create_dir_all(&f.dest).unwrap();
    std::fs::write(f.dest.join("precious"), b"dr copy\n").unwrap();
    let empty = f.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (host, client) = (key(31), key(32));
    let agent = TestAgent::protocol(&[("data", &empty)], host.clone(), &client).await;
    let addr = agent.addr.to_string();
    let out = worker(&f, &addr, &host, &client, &[]).await;
    assert_success(&out);
    let log = termination_log(&f.log);
    assert_eq!(log["files_deleted"], 0, "{log}");
    assert!(
        log["prune_refused"].as_str().unwrap().contains("empty"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(f.dest.join("precious")).unwrap(),
        b"dr copy\n"
    );
    let out = worker(&f, &addr, &host, &client, &["--allow-mass-deletion"]).await;
    assert_success(&out);
    assert_eq!(termination_log(&f.log)["files_deleted"], 1);
    assert!(!f.dest.join("precious").exists());
}
