//! The small HTTP server for `/metrics`, `/healthz` and `/readyz`.
//!
//! Built directly on hyper (already in the tree through kube) so there is one HTTP stack.
//! `/healthz` answers as long as the process serves requests; `/readyz` answers 200 only once
//! the controllers run (this replica is the leader, or leader election is off), so a
//! Service in front of several replicas points at the one that works.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Shared state the endpoints report on.
#[derive(Clone)]
pub struct Health {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Health {
    /// State with readiness off until [`Health::set_ready`] is called.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Health {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks this replica ready (or not) for `/readyz`.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, body, content_type) = match path {
            "/metrics" => (
                StatusCode::OK,
                self.metrics.render(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            "/healthz" | "/livez" => (StatusCode::OK, "ok\n".to_owned(), "text/plain"),
            "/readyz" if self.is_ready() => (StatusCode::OK, "ok\n".to_owned(), "text/plain"),
            "/readyz" => (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: waiting for leadership or controller start\n".to_owned(),
                "text/plain",
            ),
            _ => (
                StatusCode::NOT_FOUND,
                "not found\n".to_owned(),
                "text/plain",
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    }
}

/// Binds `addr` (so a port conflict fails startup rather than later).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves connections until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, health: Health, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, _) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection failed");
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                let response = health.respond(request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%error, "metrics connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn endpoints_answer() {
        let metrics = Arc::new(Metrics::new());
        metrics.record_objects(
            &crate::metrics::MappingLabels {
                namespace: "a".into(),
                mapping: "b".into(),
            },
            "Secret",
            "updated",
            1,
        );
        let health = Health::new(metrics);
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(listener, health.clone(), shutdown.clone()));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.contains("dr_syncer_objects_synced_total"),
            "{metrics}"
        );
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));

        shutdown.cancel();
        server.await.unwrap();
    }
}
