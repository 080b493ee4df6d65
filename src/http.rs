//! The optional health and metrics listener: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Debug, Default)]
pub struct Health {
    /// A config is loaded and scheduled.
    pub config_loaded: AtomicBool,
    /// Tag selections not resolved yet (their instances do not fire yet).
    pending_selections: std::sync::Mutex<Vec<String>>,
}

impl Health {
    /// The tag selections not resolved yet.
    pub fn set_pending(&self, names: Vec<String>) {
        *self.pending_selections.lock().expect("health lock") = names;
    }

    fn pending(&self) -> Vec<String> {
        self.pending_selections.lock().expect("health lock").clone()
    }
}

/// Serves until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "health listener accept failed");
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let metrics = metrics.clone();
                let health = health.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&req, &metrics, &health)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: String, content_type: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// What `/readyz` says: ready, or why not.
fn readiness(metrics: &Metrics, health: &Health) -> Result<(), String> {
    let loaded = health.config_loaded.load(Ordering::Relaxed);
    let pending = health.pending();
    if !loaded {
        Err("no config loaded".to_string())
    } else if !pending.is_empty() {
        Err(format!(
            "tag selections not resolved yet (their instances do not fire; explicit targets do): {}",
            pending.join(", ")
        ))
    } else if !metrics.aws_ok() {
        Err("last AWS call failed".to_string())
    } else {
        Ok(())
    }
}

fn route(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into(), "text/plain"),
        "/readyz" => {
            let verdict = readiness(metrics, health);
            metrics.set_ready(verdict.is_ok());
            match verdict {
                Ok(()) => text(StatusCode::OK, "ready\n".into(), "text/plain"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                    "text/plain",
                ),
            }
        }
        "/metrics" => {
            // `orchestrator_ready`: what `/readyz` would answer at this scrape.
            metrics.set_ready(readiness(metrics, health).is_ok());
            text(
                StatusCode::OK,
                metrics.encode(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into(), "text/plain"),
    }
}

/// `orchestrator healthcheck`: GET /healthz on `addr`; true on 200.
pub async fn probe(addr: SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(Ok(mut s)) = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::net::TcpStream::connect(addr),
    )
    .await
    else {
        return false;
    };
    let req = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    matches!(read, Ok(Ok(_))) && buf.starts_with(b"HTTP/1.1 200")
}
