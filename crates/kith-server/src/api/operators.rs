//! `/v1/admin/operators`: the operators (holders of `admin` certificates)
//! listed, added, renewed and revoked (`kith admin ls|add|renew|revoke`).
//! Mounted in the admin table ([`super::admin`]), behind its gate: the
//! caller is an operator already. A new operator's key is made on the
//! machine that asks (a CSR proves it); the CA picks subject and extensions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kith_api::wire::{
    CertificateIssued, OperatorRequest, OperatorRevokeRequest, OperatorView, RevokeResponse,
};
use kith_api::ErrorCode;
use kith_authority::Publish;
use kith_pki::RevocationReason;

use super::ca::{csr_key, issued_view};
use super::extract::{Admin, Body, Param};
use super::revocations::revoked_views;
use super::{rfc3339, St};
use crate::error::ApiError;

/// Every operator, in name order.
pub(super) async fn list(State(s): St) -> Result<Json<Vec<OperatorView>>, ApiError> {
    let views = s.authority.operator_views().await?;
    Ok(Json(
        views
            .into_iter()
            .map(|v| OperatorView {
                state: v.state.as_str().to_string(),
                serial: v.serial,
                issued_at: rfc3339(v.issued_at),
                not_after: rfc3339(v.not_after),
                live: v.live,
                name: v.name,
            })
            .collect(),
    ))
}

/// A new operator with its own certificate.
pub(super) async fn add(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<OperatorRequest>,
) -> Result<(StatusCode, Json<CertificateIssued>), ApiError> {
    let Some(name) = body.name else {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "name the new operator",
        ));
    };
    let key = csr_key(&body.csr)?;
    let issued = s.authority.add_operator(&name, key, None, &actor).await?;
    Ok((
        StatusCode::CREATED,
        Json(issued_view(s.authority.cluster(), &issued)),
    ))
}

/// The caller's own credential, renewed over the key the CSR proves.
pub(super) async fn renew(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<OperatorRequest>,
) -> Result<(StatusCode, Json<CertificateIssued>), ApiError> {
    if body.name.is_some() {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "a renewal is for the caller's own name: send no name",
        ));
    }
    // `Admin` is `admin:<name>`, made by the gate from the certificate.
    let name = actor.strip_prefix("admin:").unwrap_or(&actor).to_string();
    let key = csr_key(&body.csr)?;
    let issued = s.authority.renew_operator(&name, key, None, &actor).await?;
    Ok((
        StatusCode::CREATED,
        Json(issued_view(s.authority.cluster(), &issued)),
    ))
}

/// Revoke every live certificate of an operator (never the last one).
pub(super) async fn revoke(
    State(s): St,
    Admin(actor): Admin,
    Param(name): Param,
    Body(body): Body<OperatorRevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let reason: RevocationReason = match &body.reason {
        Some(r) => r.parse().map_err(kith_authority::Error::from)?,
        None => RevocationReason::PrivilegeWithdrawn,
    };
    let outcomes = s
        .authority
        .revoke_operator(&name, reason, &actor, Publish::ByCaller)
        .await?;
    Ok(Json(RevokeResponse {
        revoked: revoked_views(&outcomes),
        crl_numbers: s.publish(&outcomes).await?,
    }))
}
