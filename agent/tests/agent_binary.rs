//! The `dr-syncer-agent` binary: starts from mounted key files, serves a volume to a
//! pinned client, writes JSON logs without key material, stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dr_syncer_rsync::ssh::keys::ed25519_from_seed;
use dr_syncer_rsync::ssh::{ClientSettings, connect, fingerprint};
use dr_syncer_rsync::{SUBSYSTEM_NAME, SyncOptions, pull};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::LineEnding;

struct Setup {
    dir: tempfile::TempDir,
    host: PrivateKey,
    client: PrivateKey,
    port: u16,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (host, client) = (ed25519_from_seed(&[51; 32]), ed25519_from_seed(&[52; 32]));
    std::fs::write(
        dir.path().join("host_key"),
        host.to_openssh(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let authorized = format!("{} worker\n", client.public_key().to_openssh().unwrap());
    std::fs::write(dir.path().join("authorized_keys"), authorized).unwrap();
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(vol.join("d")).unwrap();
    std::fs::write(vol.join("d/file.txt"), b"served by the agent binary\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    Setup {
        dir,
        host,
        client,
        port,
    }
}

fn agent(s: &Setup, extra: &[&str]) -> Child {
    let d = s.dir.path();
    Command::new(env!("CARGO_BIN_EXE_dr-syncer-agent"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", s.port))
        .arg("--host-key-file")
        .arg(d.join("host_key"))
        .arg("--authorized-keys-file")
        .arg(d.join("authorized_keys"))
        .arg("--volume")
        .arg(format!("data={}", d.join("vol").display()))
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads stderr lines until one contains `needle` (or the agent exits); the rest of
/// stderr stays readable from `child.stderr`.
fn wait_for_line(child: &mut Child, needle: &str) -> Vec<String> {
    let mut stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while std::io::Read::read(&mut stderr, &mut byte).unwrap() == 1 {
        if byte[0] != b'\n' {
            line.push(byte[0]);
            continue;
        }
        let text = String::from_utf8_lossy(&line).into_owned();
        line.clear();
        let done = text.contains(needle);
        lines.push(text);
        if done {
            break;
        }
    }
    child.stderr = Some(stderr);
    lines
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "agent did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_a_pinned_client_and_stops_on_sigterm() {
    let s = setup();
    let mut child = agent(&s, &["--log-format", "json"]);
    let mut lines = wait_for_line(&mut child, "agent listening");
    let settings = ClientSettings {
        pinned_host_key: s.host.public_key().clone(),
        key: Arc::new(s.client.clone()),
        user: "worker".into(),
        subsystem: SUBSYSTEM_NAME.into(),
        connect_timeout: Duration::from_secs(20),
    };
    let conn = connect(&format!("127.0.0.1:{}", s.port), &settings)
        .await
        .unwrap();
    let dest = s.dir.path().join("dest");
    let summary = pull(
        conn.open_streams(2).await.unwrap(),
        "data",
        &dest,
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    conn.close().await;
    assert_eq!(summary.files_transferred, 1);
    assert_eq!(
        std::fs::read(dest.join("d/file.txt")).unwrap(),
        b"served by the agent binary\n"
    );

    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child, Duration::from_secs(20));
        (status, child)
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "SIGTERM must be a clean exit: {:?}",
        status.0
    );

    // Logs: JSON lines, fingerprints only, never key material.
    let mut child = status.1;
    if let Some(stderr) = child.stderr.take() {
        lines.extend(BufReader::new(stderr).lines().map_while(Result::ok));
    }
    let text = lines.join("\n");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some());
    }
    assert!(text.contains(&fingerprint(s.host.public_key())), "{text}");
    assert!(text.contains("client authenticated"), "{text}");
    let host_b64 = s.host.public_key().to_openssh().unwrap();
    let host_b64 = host_b64.split_whitespace().nth(1).unwrap();
    assert!(!text.contains(host_b64), "logs must not contain keys");
    assert!(
        !text.contains("OPENSSH PRIVATE KEY"),
        "logs must not contain keys"
    );
}

#[test]
fn agent_refuses_to_start_without_its_host_key() {
    let s = setup();
    std::fs::remove_file(s.dir.path().join("host_key")).unwrap();
    let out = agent(&s, &[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&path_str(&s.dir.path().join("host_key"))),
        "{stderr}"
    );
}

#[test]
fn agent_refuses_an_empty_authorized_keys_file() {
    let s = setup();
    std::fs::write(s.dir.path().join("authorized_keys"), "# nobody\n").unwrap();
    let out = agent(&s, &[]).wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains no key"));
}

#[test]
fn agent_has_help_and_version() {
    let bin = env!("CARGO_BIN_EXE_dr-syncer-agent");
    let help = Command::new(bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--host-key-file",
        "--authorized-keys-file",
        "--volume",
        "--log-format",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

fn path_str(p: &Path) -> String {
    PathBuf::from(p).display().to_string()
}

#[test]
fn listen_ip_and_port_from_the_environment_override_listen() {
    let s = setup();
    let d = s.dir.path();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dr-syncer-agent"))
        .args(["--listen", "0.0.0.0:1"])
        .arg("--host-key-file")
        .arg(d.join("host_key"))
        .arg("--authorized-keys-file")
        .arg(d.join("authorized_keys"))
        .env("DR_SYNCER_AGENT_LISTEN_IP", "127.0.0.1")
        .env("DR_SYNCER_AGENT_PORT", s.port.to_string())
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = wait_for_line(&mut child, "agent listening");
    let listening = lines.last().unwrap();
    assert!(
        listening.contains(&format!("127.0.0.1:{}", s.port)),
        "{listening}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok());
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(20)).success());
}

#[test]
fn node_name_without_any_cluster_config_is_a_clear_startup_error() {
    let s = setup();
    let out = Command::new(env!("CARGO_BIN_EXE_dr-syncer-agent"))
        .arg("--host-key-file")
        .arg(s.dir.path().join("host_key"))
        .arg("--authorized-keys-file")
        .arg(s.dir.path().join("authorized_keys"))
        .args(["--node-name", "node-a"])
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("HOME", s.dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no Kubernetes client configuration (in-cluster or KUBECONFIG)"),
        "{stderr}"
    );
}
