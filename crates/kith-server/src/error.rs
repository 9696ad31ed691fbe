//! Every error answer: an HTTP status, a stable code and a human message,
//! as JSON ([`kith_api::wire::ErrorBody`]). The status is the code's
//! ([`ErrorCode::http_status`]); a failure of the server itself (5xx) answers
//! a generic message and a request id, and only the log gets the detail.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kith_api::wire::ErrorBody;
use kith_api::ErrorCode;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub(crate) retry_after: Option<u64>,
    /// Set on every 5xx answer: the id the log line carries.
    pub(crate) request_id: Option<String>,
}

impl ApiError {
    /// An answer whose message the caller may read. A 5xx code still gets a
    /// request id (the message must then hold no detail: say a state, such
    /// as "not ready", never why).
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = message.into();
        let request_id = code.is_server_error().then(|| {
            let id = request_id();
            tracing::debug!(code = %code, request_id = %id, %message, "answered a server error");
            id
        });
        Self {
            code,
            message,
            retry_after: None,
            request_id,
        }
    }

    /// A failure of the server: `detail` goes to the log under a new
    /// request id, the caller gets `public` and that id.
    pub(crate) fn failed(code: ErrorCode, detail: &dyn Display, public: &str) -> Self {
        let id = request_id();
        tracing::error!(code = %code, request_id = %id, error = %detail, "request failed");
        Self {
            code,
            message: format!("{public} (request id {id})"),
            retry_after: None,
            request_id: Some(id),
        }
    }

    /// With a `Retry-After` header.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// The answer's status: the code's.
    pub(crate) fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// A random id for one failed request, 64 bits as hex: unguessable, so it
/// tells a caller nothing, and unique enough to find its log line.
fn request_id() -> String {
    // The id of the request being answered, when the router gave it one:
    // the answer's header, its body and the log line then agree.
    if let Some(id) = kith_authority::current_request_id() {
        return id;
    }
    let mut b = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // No RNG (never seen): an id unique in this process still finds the line.
        static FALLBACK: AtomicU64 = AtomicU64::new(0);
        b = FALLBACK.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    }
    hex::encode(b)
}

/// What a client is told to wait after `store-unavailable`: the store
/// probes for recovery every second.
const STORE_RETRY_AFTER_SECS: u64 = 5;

impl From<kith_authority::Error> for ApiError {
    fn from(e: kith_authority::Error) -> Self {
        let code = e.code();
        if let kith_authority::Error::RateLimited { retry_after } = &e {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            return Self::new(code, e.to_string()).retry_after(secs);
        }
        if code == ErrorCode::StoreUnavailable {
            // The detail (disk full, which I/O error) is the operator's.
            return Self::failed(
                code,
                &e,
                "the server's storage is full or failing; retry later",
            )
            .retry_after(STORE_RETRY_AFTER_SECS);
        }
        if code.is_server_error() {
            return Self::failed(code, &e, "the server failed; its log says why");
        }
        Self::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            code: self.code.as_str().to_string(),
            message: self.message,
            request_id: self.request_id,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        // Kept for layers around the router (the per-source limits), which
        // tell failures apart by code.
        response.extensions_mut().insert(self.code);
        response
    }
}
