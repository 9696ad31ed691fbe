//! `POST /v1/admin/ca/rotate` and `GET /v1/admin/ca/rotation`: intermediate
//! rotation on the operator's word (`kith ca rotate --intermediate`) and
//! where every authority's rotation stands (`kith ca rotate status`).
//! Mounted in the admin table ([`super::admin`]), behind its gate; the
//! authority decides and audits, these only translate.

use axum::extract::State;
use axum::http::request::Parts;
use axum::Json;
use kith_api::wire::{RotateRequest, RotateResponse, RotationStatus};
use kith_api::ErrorCode;
use kith_authority::IntermediateStep;

use super::extract::{Admin, Body, RequestBody};
use super::St;
use crate::error::ApiError;

impl RequestBody for RotateRequest {}

/// Prepare the next intermediate when none is prepared, else activate the
/// prepared one (409 `rotation-not-ready` before its publish delay unless
/// `force`); answers what it did and the status after it.
pub(super) async fn rotate(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<RotateRequest>,
) -> Result<Json<RotateResponse>, ApiError> {
    kith_pki::validate_label("authority", &body.authority).map_err(kith_authority::Error::from)?;
    if !body.intermediate {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "only the intermediate rotates (set \"intermediate\": true); root rotation is not built yet",
        ));
    }
    let a = &s.authority;
    let (step, generation) = match a
        .rotate_intermediate(&body.authority, &actor, body.force)
        .await?
    {
        IntermediateStep::Prepared(g) => ("prepared", g),
        IntermediateStep::Activated(g) => ("activated", g),
        other => {
            return Err(ApiError::failed(
                ErrorCode::Internal,
                &format!("unexpected rotation step {other:?}"),
                "the rotation took no step",
            ))
        }
    };
    let status = a.intermediate_status(&body.authority)?.to_wire(a.now());
    Ok(Json(RotateResponse {
        step: step.to_string(),
        generation,
        status,
    }))
}

/// The `?authority=NAME` of the status route, if given (and nothing else).
pub(super) struct AuthorityQuery(Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuthorityQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::new(
                ErrorCode::InvalidArgument,
                "the only query parameter is authority=NAME",
            )
        };
        let mut authority = None;
        for pair in parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').ok_or_else(bad)?;
            if k != "authority" || authority.is_some() {
                return Err(bad());
            }
            // A label needs no percent-decoding; anything else is refused below.
            kith_pki::validate_label("authority", v).map_err(kith_authority::Error::from)?;
            authority = Some(v.to_string());
        }
        Ok(AuthorityQuery(authority))
    }
}

/// Where the intermediates of one authority (`?authority=NAME`) or of
/// every authority stand, in name order.
pub(super) async fn status(
    State(s): St,
    AuthorityQuery(authority): AuthorityQuery,
) -> Result<Json<Vec<RotationStatus>>, ApiError> {
    let a = &s.authority;
    let mut names = match authority {
        Some(name) => vec![name],
        None => a.authority_names(),
    };
    names.sort();
    let now = a.now();
    let mut out = Vec::new();
    for name in names {
        out.push(a.intermediate_status(&name)?.to_wire(now));
    }
    Ok(Json(out))
}
