//! A stock OpenSSH client against the agent: the subsystem opens and carries data, while
//! exec and an interactive shell are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "ssh_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{TestAgent, key, write_private_key};
use dr_syncer_rsync::SUBSYSTEM_NAME;

/// Arguments that make `ssh` use only our key and our pinned host key, never prompt.
fn ssh_args(agent: &TestAgent, dir: &Path, identity: &Path) -> Vec<String> {
    let known_hosts = dir.join("known_hosts");
    let line = format!(
        "[127.0.0.1]:{} {}\n",
        agent.addr.port(),
        agent.host_key.public_key().to_openssh().unwrap()
    );
    std::fs::write(&known_hosts, line).unwrap();
    [
        "-F",
        "/dev/null",
        "-p",
        &agent.addr.port().to_string(),
        "-i",
        identity.to_str().unwrap(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        &format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=20",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn run_ssh(args: Vec<String>, stdin: &'static [u8]) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("ssh")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh (openssh-client) must be installed");
        {
            use std::io::Write;
            let mut input = child.stdin.take().unwrap();
            input.write_all(stdin).unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

struct Setup {
    _agent: TestAgent,
    _dir: tempfile::TempDir,
    args: Vec<String>,
}

async fn setup() -> Setup {
    let (host, client) = (key(11), key(12));
    let agent = TestAgent::echo(&host, &client).await;
    let dir = tempfile::tempdir().unwrap();
    let identity: PathBuf = write_private_key(dir.path(), "id_ed25519", &client);
    let args = ssh_args(&agent, dir.path(), &identity);
    Setup {
        _agent: agent,
        _dir: dir,
        args,
    }
}

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_opens_the_subsystem() {
    let s = setup().await;
    let out = run_ssh(
        with(
            s.args.clone(),
            &["-s", "dr-syncer@127.0.0.1", SUBSYSTEM_NAME],
        ),
        b"hello over openssh\n",
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.stdout, b"hello over openssh\n", "stderr: {stderr}");
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
}

/// Runs `ssh` with `extra` arguments and `stdin` and checks that the agent refused what
/// it asked for (`what`): stderr says `refusal`, stdout never shows the injected command's
/// output, and, where `fails`, ssh exits non-zero.
async fn assert_refused(
    what: &str,
    extra: &[&str],
    stdin: &'static [u8],
    refusal: &str,
    fails: bool,
) {
    let s = setup().await;
    let out = run_ssh(with(s.args.clone(), extra), stdin).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if fails {
        assert_ne!(
            out.status.code(),
            Some(0),
            "{what} must fail; stderr: {stderr}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("PWNED"),
        "{what}: stderr: {stderr}"
    );
    assert!(stderr.contains(refusal), "{what}: stderr: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_gets_no_exec() {
    assert_refused(
        "exec",
        &["dr-syncer@127.0.0.1", "id; echo PWNED"],
        b"",
        "exec request failed",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_gets_no_shell() {
    assert_refused(
        "a shell",
        &["-T", "dr-syncer@127.0.0.1"],
        b"echo PWNED\nexit\n",
        "shell request failed",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_gets_no_interactive_terminal() {
    assert_refused(
        "a terminal",
        &["-tt", "dr-syncer@127.0.0.1"],
        b"echo PWNED\nexit\n",
        "PTY allocation request failed",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_client_gets_no_other_subsystem() {
    assert_refused(
        "another subsystem",
        &["-s", "dr-syncer@127.0.0.1", "sftp"],
        b"",
        "subsystem request failed",
        true,
    )
    .await;
}
