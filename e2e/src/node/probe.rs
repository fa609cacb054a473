//! Readiness checks as the kubelet runs them, against the pod IP (the node IP here):
//! `tcpSocket` connects, `httpGet` sends a real HTTP/1.1 GET and wants a 2xx/3xx status
//! (HTTPS is checked as a TCP connect: the test bed carries no trust for pod certificates);
//! `exec` and `grpc` handlers pass while the container runs.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs one readiness check; `true` means ready.
pub(crate) async fn ready(probe: &Probe, container: &Container, node_ip: Ipv4Addr) -> bool {
    let timeout =
        Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1)).unwrap_or(1));
    let check = async {
        if let Some(tcp) = &probe.tcp_socket {
            let host = tcp.host.clone().unwrap_or_else(|| node_ip.to_string());
            let Some(port) = resolve_port(&tcp.port, container) else {
                return false;
            };
            return TcpStream::connect((host.as_str(), port)).await.is_ok();
        }
        if let Some(http) = &probe.http_get {
            return http_ready(http, container, node_ip).await;
        }
        true
    };
    tokio::time::timeout(timeout, check).await.unwrap_or(false)
}

/// An httpGet check: 200-399 is ready.
async fn http_ready(http: &HTTPGetAction, container: &Container, node_ip: Ipv4Addr) -> bool {
    let host = http.host.clone().unwrap_or_else(|| node_ip.to_string());
    let Some(port) = resolve_port(&http.port, container) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect((host.as_str(), port)).await else {
        return false;
    };
    if http.scheme.as_deref() == Some("HTTPS") {
        return true;
    }
    let path = http
        .path
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/testbed\r\n\
         Accept: */*\r\nConnection: close\r\n"
    );
    for h in http.http_headers.iter().flatten() {
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).await.unwrap_or(0);
    status_ok(&head[..n])
}

/// Whether an HTTP response starts with a 2xx or 3xx status line.
pub(crate) fn status_ok(head: &[u8]) -> bool {
    let line = String::from_utf8_lossy(head);
    let code = line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok());
    matches!(code, Some(200..=399))
}

/// A probe port: a number, or the name of one of the container's ports.
pub(crate) fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn status_line_decides() {
        assert!(status_ok(b"HTTP/1.1 200 OK\r\n"));
        assert!(status_ok(b"HTTP/1.0 302 Found\r\n"));
        assert!(!status_ok(b"HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(!status_ok(b"garbage"));
        assert!(!status_ok(b""));
    }

    #[test]
    fn probe_ports_resolve_by_number_or_name() {
        let c: Container = serde_json::from_value(json!({
            "name": "c", "ports": [{"name": "ssh", "containerPort": 2222}],
        }))
        .unwrap();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Some(80));
        assert_eq!(
            resolve_port(&IntOrString::String("ssh".into()), &c),
            Some(2222)
        );
        assert_eq!(resolve_port(&IntOrString::String("nope".into()), &c), None);
    }

    /// Serves one fixed HTTP response per connection; returns the port.
    async fn serve(status: &'static str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let reply = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        port
    }

    fn http_probe(port: u16) -> (Probe, Container) {
        let probe = serde_json::from_value(json!({
            "httpGet": {"path": "/readyz", "port": "http"}, "timeoutSeconds": 2,
        }))
        .unwrap();
        let container = serde_json::from_value(json!({
            "name": "c", "ports": [{"name": "http", "containerPort": port}],
        }))
        .unwrap();
        (probe, container)
    }

    #[tokio::test]
    async fn http_get_probes_for_real() {
        let ok = serve("200 OK").await;
        let (probe, container) = http_probe(ok);
        assert!(ready(&probe, &container, Ipv4Addr::LOCALHOST).await);
        let failing = serve("500 Internal Server Error").await;
        let (probe, container) = http_probe(failing);
        assert!(!ready(&probe, &container, Ipv4Addr::LOCALHOST).await);
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let (probe, container) = http_probe(port);
        assert!(
            !ready(&probe, &container, Ipv4Addr::LOCALHOST).await,
            "nothing listens"
        );
    }
}
