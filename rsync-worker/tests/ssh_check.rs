//! `dr-syncer-rsync-worker --check`: the ClusterMapping connectivity probe. One JSON
//! result per agent, in order, saying who accepted us and why the others did not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ssh_common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;

use common::{
    TestAgent, assert_success, key, output, worker_command, write_private_key, write_public_key,
};

/// `--check` against `agents`, pinning the key in `pin` and logging in with `key_file`.
fn check_command(agents: &[&str], pin: &Path, key_file: &Path) -> Command {
    let mut cmd = worker_command();
    cmd.arg("--check");
    for agent in agents {
        cmd.args(["--agent", agent]);
    }
    cmd.arg("--host-key-file")
        .arg(pin)
        .arg("--key-file")
        .arg(key_file);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_agent_and_moves_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    let (host, client, stranger) = (key(41), key(42), key(43));
    let good = TestAgent::protocol(&[("data", &src)], host.clone(), &client).await;
    // Same host key, but our client key is not authorized there.
    let refusing = TestAgent::protocol(&[("data", &src)], host.clone(), &stranger).await;
    // Nothing listens on a port we just released.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let pin = write_public_key(dir.path(), "pin.pub", host.public_key());
    let key_file = write_private_key(dir.path(), "worker_key", &client);
    let log = dir.path().join("termination-log");
    let (good_addr, refusing_addr) = (good.addr.to_string(), refusing.addr.to_string());
    let mut cmd = check_command(&[&good_addr, &refusing_addr, &closed], &pin, &key_file);
    cmd.args(["--timeout", "5"])
        .arg("--termination-log")
        .arg(&log);
    let out = output(cmd).await;
    assert!(!out.status.success(), "one agent refused: exit must be 1");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&log).unwrap()).unwrap();
    assert_eq!(report["check"], true);
    assert_eq!(report["total"], 3);
    assert_eq!(report["connected"], 1, "{report}");
    let agents = report["agents"].as_array().unwrap();
    assert_eq!(agents[0]["agent"], good_addr);
    assert_eq!(agents[0]["connected"], true);
    assert_eq!(agents[1]["connected"], false);
    assert_eq!(agents[1]["kind"], "auth_rejected", "{report}");
    assert_eq!(agents[2]["connected"], false);
    assert_eq!(agents[2]["kind"], "connection", "{report}");
    assert!(!report.to_string().contains("PRIVATE KEY"));

    // All agents accept us: exit 0.
    let out = output(check_command(&[&good_addr], &pin, &key_file)).await;
    assert_success(&out);
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["connected"], 1);
}

#[test]
fn a_pull_still_needs_volume_and_dest() {
    let out = Command::new(env!("CARGO_BIN_EXE_dr-syncer-rsync-worker"))
        .args([
            "--agent",
            "127.0.0.1:1",
            "--host-key-file",
            "x",
            "--key-file",
            "y",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--volume") || stderr.contains("--dest"),
        "{stderr}"
    );
}
