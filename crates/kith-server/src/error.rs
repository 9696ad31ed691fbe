//! Every error answer: an HTTP status, a stable code and a human message,
//! as JSON ([`kith_api::wire::ErrorBody`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kith_api::wire::ErrorBody;

/// An error answer.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Seconds for a `Retry-After` header (429 and 503 answers).
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// With a `Retry-After` header.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

/// What a client is told to wait after `store-unavailable`: the store
/// probes for recovery every second.
const STORE_RETRY_AFTER_SECS: u64 = 5;

/// The status of each authority error code. Refusals the caller can fix are
/// 4xx; failures of the server itself are 5xx, and their details go to the
/// log rather than to an unauthenticated caller.
pub(crate) fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid-token" => StatusCode::UNAUTHORIZED,
        "token-wrong-cluster" | "token-revoked" | "token-expired" | "token-used-up" => {
            StatusCode::FORBIDDEN
        }
        "node-name-taken" | "node-name-retired" | "node-name-reserved" | "ip-taken" => {
            StatusCode::CONFLICT
        }
        "node-name-mismatch" | "identity-mismatch" | "profile-not-allowed" => StatusCode::FORBIDDEN,
        "certificate-revoked"
        | "certificate-superseded"
        | "node-removed"
        | "renewal-window-passed"
        | "unknown-certificate" => StatusCode::FORBIDDEN,
        "san-not-allowed"
        | "wildcard-not-allowed"
        | "ip-not-allowed"
        | "ca-not-allowed"
        | "too-many-sans" => StatusCode::FORBIDDEN,
        "csr-too-large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unknown-node"
        | "unknown-token"
        | "unknown-authority"
        | "unknown-secret"
        | "unknown-secret-version" => StatusCode::NOT_FOUND,
        "secret-forbidden" => StatusCode::FORBIDDEN,
        "secret-too-large" => StatusCode::PAYLOAD_TOO_LARGE,
        "secret-conflict" => StatusCode::CONFLICT,
        "contended" | "store-locked" | "store-unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "rate-limited" => StatusCode::TOO_MANY_REQUESTS,
        "store-error" | "store-corrupt" | "integrity-error" | "internal" | "wrong-passphrase"
        | "not-initialized" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<kith_authority::Error> for ApiError {
    fn from(e: kith_authority::Error) -> Self {
        let code = e.code();
        let status = status_of(code);
        if let kith_authority::Error::RateLimited { retry_after } = &e {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            return Self::new(status, code, e.to_string()).retry_after(secs);
        }
        if code == "store-unavailable" {
            // The detail (disk full, which I/O error) is the operator's.
            tracing::error!(code, error = %e, "request failed: the store cannot write");
            return Self::new(
                status,
                code,
                "the server's storage is full or failing; retry later",
            )
            .retry_after(STORE_RETRY_AFTER_SECS);
        }
        if status.is_server_error() {
            tracing::error!(code, error = %e, "request failed");
            return Self::new(status, code, "the server failed; its log says why");
        }
        Self::new(status, code, e.to_string())
    }
}

/// The code of an error answer, kept in the response's extensions so that
/// layers around the router (the per-source limits) can tell failures apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}
