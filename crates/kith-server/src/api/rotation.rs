//! `POST /v1/admin/ca/rotate` and `GET /v1/admin/ca/rotation`: intermediate
//! rotation on the operator's word (`kith ca rotate --intermediate`), the
//! start of a root rotation (`--root`), and where every authority's
//! rotation stands (`kith ca rotate status`); `POST
//! /v1/admin/ca/rotate/{activate,finish,abort}`: the root rotation's next
//! phases (`kith ca rotate activate|finish|abort`).
//! Mounted in the admin table ([`super::admin`]), behind its gate; the
//! authority decides and audits, these only translate.

use axum::extract::State;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kith_api::wire::{
    RootAbortRequest, RootRotateResponse, RootStepRequest, RotateRequest, RotateResponse,
    RotationStatus,
};
use kith_api::ErrorCode;
use kith_authority::{IntermediateStep, RootRotationOptions};
use kith_pki::KeyType;

use super::extract::{Admin, Body, RequestBody};
use super::St;
use crate::error::ApiError;

impl RequestBody for RotateRequest {}
impl RequestBody for RootStepRequest {}
impl RequestBody for RootAbortRequest {}

/// Prepare the next intermediate when none is prepared, else activate the
/// prepared one (409 `rotation-not-ready` before its publish delay unless
/// `force`); answers what it did and the status after it. With `root`:
/// start a root rotation (answers a [`RootRotateResponse`]).
pub(super) async fn rotate(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<RotateRequest>,
) -> Result<Response, ApiError> {
    kith_pki::validate_label("authority", &body.authority).map_err(kith_authority::Error::from)?;
    if body.intermediate == body.root {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "say what rotates: exactly one of \"intermediate\": true and \"root\": true",
        ));
    }
    let a = &s.authority;
    if body.root {
        if body.force {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "\"force\" does not apply to preparing a root rotation (it applies to activate and finish)",
            ));
        }
        let key_type = body
            .key_type
            .as_deref()
            .map(str::parse::<KeyType>)
            .transpose()
            .map_err(kith_authority::Error::from)?;
        let mut opts = RootRotationOptions::new(key_type, body.compromised);
        if let Some(secs) = body.overlap_seconds {
            let secs = i64::try_from(secs).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidArgument,
                    "\"overlap_seconds\" is too large",
                )
            })?;
            opts = opts.with_overlap(time::Duration::seconds(secs));
        }
        a.prepare_root_rotation(&body.authority, &opts, &actor)
            .await?;
        return root_answer(&s, &body.authority, "prepared").await;
    }
    if body.key_type.is_some() || body.compromised || body.overlap_seconds.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "\"key_type\", \"compromised\" and \"overlap_seconds\" are for a root rotation only",
        ));
    }
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
    let status = a.rotation_view(&body.authority).await?;
    Ok(Json(RotateResponse {
        step: step.to_string(),
        generation,
        status,
    })
    .into_response())
}

async fn root_answer(
    s: &super::AppState,
    authority: &str,
    step: &str,
) -> Result<Response, ApiError> {
    let status = s.authority.rotation_view(authority).await?;
    Ok(Json(RootRotateResponse {
        step: step.to_string(),
        status,
    })
    .into_response())
}

/// Activate a prepared root rotation: the new intermediate issues (409
/// `rotation-not-ready` while a live node does not trust the new root,
/// unless `force`).
pub(super) async fn activate(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<RootStepRequest>,
) -> Result<Response, ApiError> {
    kith_pki::validate_label("authority", &body.authority).map_err(kith_authority::Error::from)?;
    s.authority
        .activate_root_rotation(&body.authority, body.force, &actor)
        .await?;
    root_answer(&s, &body.authority, "activated").await
}

/// Finish an active root rotation: new tokens pin the new root (409
/// `rotation-not-ready` while a live node holds no leaf under the new
/// intermediate, unless `force`).
pub(super) async fn finish(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<RootStepRequest>,
) -> Result<Response, ApiError> {
    kith_pki::validate_label("authority", &body.authority).map_err(kith_authority::Error::from)?;
    s.authority
        .finish_root_rotation(&body.authority, body.force, &actor)
        .await?;
    root_answer(&s, &body.authority, "finished").await
}

/// Abort a root rotation before it finished: back to the old root alone.
pub(super) async fn abort(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<RootAbortRequest>,
) -> Result<Response, ApiError> {
    kith_pki::validate_label("authority", &body.authority).map_err(kith_authority::Error::from)?;
    s.authority
        .abort_root_rotation(&body.authority, &actor)
        .await?;
    root_answer(&s, &body.authority, "aborted").await
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
        let authority = super::extract::only_param(parts, "authority").map_err(|()| bad())?;
        if let Some(v) = authority {
            // A label needs no percent-decoding; anything else is refused.
            kith_pki::validate_label("authority", v).map_err(kith_authority::Error::from)?;
        }
        let authority = authority.map(String::from);
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
    let mut out = Vec::new();
    for name in names {
        out.push(a.rotation_view(&name).await?);
    }
    Ok(Json(out))
}
