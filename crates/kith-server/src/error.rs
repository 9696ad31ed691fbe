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
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The status of each authority error code. Refusals the caller can fix are
/// 4xx; failures of the server itself are 5xx, and their details go to the
/// log rather than to an unauthenticated caller.
pub(crate) fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid-token" => StatusCode::UNAUTHORIZED,
        "token-wrong-cluster" | "token-revoked" | "token-expired" | "token-used-up" => {
            StatusCode::FORBIDDEN
        }
        "node-name-taken" => StatusCode::CONFLICT,
        "node-name-mismatch" | "identity-mismatch" | "profile-not-allowed" => StatusCode::FORBIDDEN,
        "certificate-revoked"
        | "node-removed"
        | "renewal-window-passed"
        | "unknown-certificate" => StatusCode::FORBIDDEN,
        "san-not-allowed" | "wildcard-not-allowed" | "ip-not-allowed" | "ca-not-allowed" => {
            StatusCode::FORBIDDEN
        }
        "csr-too-large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unknown-node"
        | "unknown-token"
        | "unknown-authority"
        | "unknown-secret"
        | "unknown-secret-version" => StatusCode::NOT_FOUND,
        "secret-forbidden" => StatusCode::FORBIDDEN,
        "secret-too-large" => StatusCode::PAYLOAD_TOO_LARGE,
        "secret-conflict" => StatusCode::CONFLICT,
        "contended" | "store-locked" => StatusCode::SERVICE_UNAVAILABLE,
        "store-error" | "store-corrupt" | "integrity-error" | "internal" | "wrong-passphrase"
        | "not-initialized" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<kith_authority::Error> for ApiError {
    fn from(e: kith_authority::Error) -> Self {
        let code = e.code();
        let status = status_of(code);
        if status.is_server_error() {
            tracing::error!(code, error = %e, "request failed");
            return Self::new(status, code, "the server failed; its log says why");
        }
        Self::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}
