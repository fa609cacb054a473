//! The real `dr-syncer-controller` binary as a child process of the test: started against
//! the controller cluster, asked over its metrics/health port, killed at the end.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{CONTROLLER, DEADLINE, bed, poll_until};

/// The `dr-syncer-controller` binary built next to `testbed`.
pub fn controller_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("DR_SYNCER_CONTROLLER_BIN") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_BIN_EXE_testbed"))
        .parent()
        .unwrap()
        .join("dr-syncer-controller")
}

/// A free loopback port for the metrics endpoint.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running controller process (killed on drop).
pub struct ControllerProcess {
    /// The child.
    pub child: Child,
    /// Its metrics/health port.
    pub port: u16,
    /// Its log file (stderr).
    pub log: std::path::PathBuf,
}

impl Drop for ControllerProcess {
    /// When a test fails while the controller runs, shows the end of its log: the test
    /// bed's directory (and the log with it) is gone once the test binary exits.
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(text) = std::fs::read_to_string(&self.log)
        {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(120)..];
            eprintln!(
                "---- last {} lines of {} ----\n{}\n---- end of controller log ----",
                tail.len(),
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}

/// Starts the controller against the controller cluster. `lease`: leader election with
/// that Lease (namespace, name), or `None` for no election.
pub async fn start_controller(lease: Option<(&str, &str)>) -> ControllerProcess {
    start_controller_with(lease, &[]).await
}

/// [`start_controller`] with extra environment variables (e.g. `POD_NAMESPACE`, the
/// namespace the controller believes it runs in).
pub async fn start_controller_with(
    lease: Option<(&str, &str)>,
    env: &[(&str, &str)],
) -> ControllerProcess {
    let bed = bed().await;
    let port = free_port();
    let mut cmd = Command::new(controller_bin());
    cmd.envs(env.iter().copied());
    cmd.env("KUBECONFIG", bed.kubeconfig(CONTROLLER))
        .env("RUST_LOG", "info,dr_syncer_controller=debug")
        .arg(format!("--metrics-addr=127.0.0.1:{port}"))
        .arg("--log-format=text")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    let log_path = bed.dir().join(format!("controller-{port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    cmd.stderr(log);
    match lease {
        None => {
            cmd.arg("--leader-elect=false");
        }
        Some((namespace, name)) => {
            cmd.arg("--leader-elect=true")
                .arg(format!("--lease-namespace={namespace}"))
                .arg(format!("--lease-name={name}"));
        }
    }
    let child = cmd.spawn().unwrap();
    let process = ControllerProcess {
        child,
        port,
        log: log_path,
    };
    if lease.is_none() {
        process.wait_ready().await;
    }
    process
}

impl ControllerProcess {
    /// GET a path of the metrics server; `None` when it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut out = String::new();
        stream.read_to_string(&mut out).await.ok()?;
        let code = out.split_whitespace().nth(1)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
        Some((code, body))
    }

    /// Whether `/readyz` answers 200.
    pub async fn is_ready(&self) -> bool {
        matches!(self.get("/readyz").await, Some((200, _)))
    }

    /// Polls `/readyz` until 200 (deadline [`DEADLINE`]).
    pub async fn wait_ready(&self) {
        let what = format!("controller on port {} ready", self.port);
        poll_until(&what, DEADLINE, Duration::from_millis(100), || async move {
            match self.get("/readyz").await {
                Some((200, _)) => Ok(()),
                other => Err(other),
            }
        })
        .await;
    }

    /// The value of a metric line starting with `prefix` (name + labels).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}
