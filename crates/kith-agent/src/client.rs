//! A small HTTPS client over rustls and hyper: one connection, keep-alive,
//! JSON in and out. The agent talks to one server at a time, so it needs no
//! pool; the load driver reuses one [`Connection`] per worker.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::Error;

/// The address type lives with `identity.json`, which records it.
pub use kith_nodedir::{ServerAddr, DEFAULT_PORT};

/// The bound on opening a connection (TCP connect and TLS handshake
/// together): a replica that accepts TCP and never answers (black-holed)
/// costs at most this before the next replica is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// One TLS connection to the server, reusable for many requests.
pub struct Connection {
    server: ServerAddr,
    sender: SendRequest<Full<Bytes>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connect and finish the TLS handshake with `config`.
    pub async fn open(server: &ServerAddr, config: Arc<ClientConfig>) -> Result<Self, Error> {
        Self::open_as(server, config, None).await
    }

    /// [`Connection::open`], sending `tls_name` as the TLS server name
    /// instead of the server's host: how a node asks the kith server for
    /// its authority's chain ([`kith_api::authority_sni`],
    /// [`kith_api::pin_sni`]). `config`'s verifier must then check the
    /// certificate against the host itself (the configurations of this
    /// crate built for a host do).
    pub async fn open_as(
        server: &ServerAddr,
        config: Arc<ClientConfig>,
        tls_name: Option<&str>,
    ) -> Result<Self, Error> {
        let transport = |detail: String| Error::Transport {
            server: server.to_string(),
            detail,
        };
        // One deadline for both steps, so the bound is CONNECT_TIMEOUT in all.
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let tcp = tokio::time::timeout_at(
            deadline,
            TcpStream::connect((server.host.as_str(), server.port)),
        )
        .await
        .map_err(|_| transport("connection timed out".into()))?
        .map_err(|e| transport(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let host = tls_name.unwrap_or(&server.host).to_string();
        let name = ServerName::try_from(host.clone())
            .map_err(|e| Error::Invalid(format!("server name {host}: {e}")))?;
        let tls = tokio::time::timeout_at(deadline, TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| transport("TLS handshake timed out".into()))?
            .map_err(|e| {
                // A chain that verified but is not a kith server's, or is not
                // for the name dialled, gets its own error: the server is up,
                // and "is it running?" would send the user the wrong way.
                let tls = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                match tls {
                    Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) => {
                        match o.0.downcast_ref::<crate::verify::NotKithServer>() {
                            Some(n) => Error::NotKithServer {
                                server: server.to_string(),
                                detail: n.0.clone(),
                            },
                            None => transport(format!("TLS: {e}")),
                        }
                    }
                    Some(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName,
                    )) => Error::ServerNameMismatch {
                        server: server.to_string(),
                        host: server.host.clone(),
                        names: "other names".into(),
                    },
                    Some(rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForNameContext { presented, .. },
                    )) => Error::ServerNameMismatch {
                        server: server.to_string(),
                        host: server.host.clone(),
                        names: presented.join(", "),
                    },
                    _ => transport(format!("TLS: {e}")),
                }
            })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| transport(format!("HTTP: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            server: server.clone(),
            sender,
        })
    }

    /// The server this connection is to.
    pub fn server(&self) -> &ServerAddr {
        &self.server
    }

    /// Send a request (JSON body if any); the raw status and body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), Error> {
        let ct = body.as_ref().map(|_| kith_api::JSON);
        self.send_raw(method, path, ct, body.unwrap_or_default())
            .await
    }

    /// Send a request with any content type (or none); the raw status and body.
    pub async fn send_raw(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), Error> {
        self.exchange(
            method,
            path,
            content_type,
            body,
            Bounds {
                max: MAX_RESPONSE,
                head: REQUEST_TIMEOUT,
                whole: REQUEST_TIMEOUT,
            },
        )
        .await
    }

    /// GET a large answer (a backup of the CA's store, which the server
    /// reads whole before it answers): up to `max` bytes, the whole of it,
    /// the wait for its first byte included, within `timeout`.
    pub async fn download(
        &mut self,
        path: &str,
        max: usize,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let (status, bytes) = self
            .exchange(
                Method::GET,
                path,
                None,
                Vec::new(),
                Bounds {
                    max,
                    head: timeout,
                    whole: timeout,
                },
            )
            .await?;
        check_status(status, &bytes)?;
        Ok(bytes)
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        bounds: Bounds,
    ) -> Result<(StatusCode, Bytes), Error> {
        let transport = |detail: String| Error::Transport {
            server: self.server.to_string(),
            detail,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.server.host.as_str());
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Invalid(format!("request: {e}")))?;
        self.sender
            .ready()
            .await
            .map_err(|e| transport(e.to_string()))?;
        let exchange = async {
            let resp = tokio::time::timeout(bounds.head, self.sender.send_request(req))
                .await
                .map_err(|_| transport("no answer in time".into()))?
                .map_err(|e| transport(e.to_string()))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), bounds.max)
                .collect()
                .await
                .map_err(|e| transport(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(bounds.whole, exchange)
            .await
            .map_err(|_| transport("the answer did not arrive in time".into()))?
    }

    /// Send JSON (or nothing) and decode a JSON answer; an error status
    /// becomes [`Error::Api`] with the server's code and message.
    pub async fn json<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, Error> {
        let body = match body {
            Some(b) => {
                Some(serde_json::to_vec(b).map_err(|e| Error::Invalid(format!("encoding: {e}")))?)
            }
            None => None,
        };
        let (status, bytes) = self.send(method, path, body).await?;
        check_status(status, &bytes)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::BadResponse(format!("{path}: undecodable answer: {e}")))
    }

    /// GET raw bytes (a CRL).
    pub async fn get_bytes(&mut self, path: &str) -> Result<Bytes, Error> {
        let (status, bytes) = self.send(Method::GET, path, None).await?;
        check_status(status, &bytes)?;
        Ok(bytes)
    }
}

/// How much of an answer is read, and how long it may take.
struct Bounds {
    /// The most bytes of the body.
    max: usize,
    /// Until the status line and headers.
    head: Duration,
    /// The whole exchange.
    whole: Duration,
}

fn check_status(status: StatusCode, bytes: &[u8]) -> Result<(), Error> {
    if status.is_success() {
        return Ok(());
    }
    let (code, message) = match serde_json::from_slice::<kith_api::wire::ErrorBody>(bytes) {
        Ok(b) => (b.wire_code(), b.message),
        Err(_) => (
            kith_api::ErrorCode::HttpError.into(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        ),
    };
    Err(Error::Api {
        status: status.as_u16(),
        code,
        message,
    })
}
