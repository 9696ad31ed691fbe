//! `/v1/admin/audit`: the audit trail for `kith audit ls|verify`, and the
//! request ids every answer carries ([`request_id`]).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use kith_api::wire::{AuditPage, AuditVerifyReport, MAX_AUDIT_PAGE};
use kith_api::ErrorCode;
use kith_authority::AuditQuery;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::extract::Admin;
use super::St;
use crate::error::ApiError;

/// The header a request id comes in and goes out in.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// Give every request an id: the client's `x-request-id` if it is short
/// and plain (see [`kith_authority::valid_request_id`]), else a new one.
/// The handler runs with it in scope (its audit records carry it) and the
/// answer names it in the same header.
pub(crate) async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| kith_authority::valid_request_id(v))
        .map_or_else(kith_authority::new_request_id, str::to_string);
    let mut answer = kith_authority::with_request_id(id.clone(), next.run(req)).await;
    // Always a valid header value: checked above, or hex.
    if let Ok(v) = HeaderValue::from_str(&id) {
        answer.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    answer
}

/// The query of `GET /v1/admin/audit`: `since` (RFC 3339), `node`,
/// `action`, `limit` (1 to [`MAX_AUDIT_PAGE`]), each at most once.
pub(crate) struct AuditParams(AuditQuery);

/// Longest `node` or `action` value accepted.
const MAX_FILTER_LEN: usize = 253;

impl<S: Send + Sync> FromRequestParts<S> for AuditParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let bad = |why: String| ApiError::new(ErrorCode::InvalidArgument, why);
        let mut q = AuditQuery::default();
        let mut seen = Vec::new();
        let query = parts.uri.query().unwrap_or("");
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            if seen.contains(&k) {
                return Err(bad(format!("query parameter {k} given twice")));
            }
            match &*k {
                "since" => {
                    q.since = Some(OffsetDateTime::parse(&v, &Rfc3339).map_err(|_| {
                        bad(format!("since={v:?}: expected an RFC 3339 time"))
                    })?)
                }
                "node" | "action" if v.is_empty() || v.len() > MAX_FILTER_LEN => {
                    return Err(bad(format!(
                        "{k}: 1 to {MAX_FILTER_LEN} characters"
                    )))
                }
                "node" => q.node = Some(v.to_string()),
                "action" => q.action = Some(v.to_string()),
                "limit" => {
                    q.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
                        .ok_or_else(|| bad(format!("limit: 1 to {MAX_AUDIT_PAGE}")))?
                }
                other => {
                    return Err(bad(format!(
                        "unknown query parameter {other:?}: this endpoint takes since, node, action and limit"
                    )))
                }
            }
            seen.push(k);
        }
        Ok(Self(q))
    }
}

/// `GET /v1/admin/audit`: records in the global order, one page.
pub(super) async fn list(
    State(s): St,
    Admin(_): Admin,
    AuditParams(q): AuditParams,
) -> Result<Json<AuditPage>, ApiError> {
    Ok(Json(
        kith_authority::list_audit(&**s.authority.store(), &q).await?,
    ))
}

/// `GET /v1/admin/audit/verify`: every chain verified here, this server's
/// own against the head it keeps in memory.
pub(super) async fn verify(
    State(s): St,
    Admin(_): Admin,
) -> Result<Json<AuditVerifyReport>, ApiError> {
    Ok(Json(s.authority.verify_audit().await?))
}
