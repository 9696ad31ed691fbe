//! The plain-HTTP listener of `--metrics-listen`, shared by `serve` and
//! `agent`: `GET /metrics` answers the text its caller renders, anything
//! else is 404. It is off unless asked for, on its own address (a scraper
//! needs no client certificate), and costs a bounded amount: at most
//! [`MAX_CONNECTIONS`] at once, each with a deadline for its headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use kith_api::ErrorCode;
use tokio::net::TcpListener;

use crate::output::CliError;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

/// How long a client may take to send its request headers.
const HEADER_DEADLINE: Duration = Duration::from_secs(5);

/// How long one connection may stay open at all.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// What renders the metrics text, and its content type.
pub(crate) type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Bind `addr` now (so a taken port is an error at start), then serve in
/// a task for as long as the process runs.
pub(crate) async fn start(
    addr: SocketAddr,
    content_type: &'static str,
    render: Render,
) -> Result<SocketAddr, CliError> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        CliError::new(
            ErrorCode::InvalidArgument,
            format!("--metrics-listen {addr}: {e}"),
        )
    })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::new(ErrorCode::ServeFailed, e))?;
    tracing::info!(%local, "serving metrics on http://{local}/metrics");
    tokio::spawn(serve(listener, content_type, render));
    Ok(local)
}

async fn serve(listener: TcpListener, content_type: &'static str, render: Render) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let render = render.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, content_type, &render)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
            drop(permit);
        });
    }
}

fn answer(req: &Request<Incoming>, content_type: &str, render: &Render) -> Response<Full<Bytes>> {
    let (status, ctype, body) = if req.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        )
    } else if req.method() != Method::GET && req.method() != Method::HEAD {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".to_string(),
        )
    } else {
        (StatusCode::OK, content_type, render())
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}
