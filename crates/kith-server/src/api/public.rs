//! Routes anyone may call: health, readiness, the CA bundle, CRLs (every
//! intermediate's, the root's).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kith_api::wire::{AuthorityView, CaResponse};
use kith_authority::{Authority, CrlIssuer};
use kith_pki::{pem_encode, pem_encode_many};

use super::extract::Param;
use super::{AppState, St};
use crate::error::ApiError;
use kith_api::ErrorCode;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/ca", get(ca))
        .route("/v1/crl/{authority}", get(crl))
        .route("/v1/crl/{authority}/root", get(root_crl))
        .route("/v1/crl/{authority}/others", get(other_crls))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// How long `/readyz` waits for the store to answer a read: a store that
/// hangs (a NATS leader election without end, a wedged disk) is not ready.
pub(crate) const READY_READ_BOUND: std::time::Duration = std::time::Duration::from_secs(2);

/// Process alive (`/livez`, `/healthz`): this answer is the proof.
/// Ready (`/readyz`): the CA keys unlocked (every authority has its signer
/// in the keyring), the store writable and answering a read within
/// [`READY_READ_BOUND`]; else `503 not-ready`.
async fn readyz(State(s): St) -> Response {
    let names = s.authority.authority_names();
    if names.is_empty()
        || names
            .iter()
            .any(|n| s.authority.intermediate_cert(n).is_err())
    {
        return ApiError::new(ErrorCode::NotReady, "the CA keys are not unlocked").into_response();
    }
    // Not ready while writes fail (a full disk): reads alone would say ready.
    if let Err(e) = s.authority.store().writable() {
        tracing::warn!(error = %e, "not ready: the store cannot write");
        return ApiError::new(
            ErrorCode::NotReady,
            "the store cannot write (the disk is full or failing)",
        )
        .into_response();
    }
    let read = tokio::time::timeout(READY_READ_BOUND, s.authority.store().get("cluster/meta"));
    let Ok(read) = read.await else {
        tracing::warn!(bound = ?READY_READ_BOUND, "not ready: the store did not answer a read in time");
        return ApiError::new(ErrorCode::NotReady, "the store does not answer in time")
            .into_response();
    };
    match read {
        Ok(Some(_)) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Ok(None) => ApiError::new(ErrorCode::NotReady, "the store has no cluster").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::new(ErrorCode::NotReady, "the store does not answer").into_response()
        }
    }
}

/// The OpenAPI description of this API ([`crate::openapi_json`]).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, kith_api::JSON)],
        crate::openapi_json(),
    )
        .into_response()
}

fn bundle(authority: &Authority) -> String {
    pem_encode_many("CERTIFICATE", authority.roots().iter().map(Vec::as_slice))
}

async fn ca(State(s): St) -> Result<Json<CaResponse>, ApiError> {
    let a = &s.authority;
    let mut authorities = Vec::new();
    for name in a.authority_names() {
        let root = a.root_cert(&name)?;
        authorities.push(AuthorityView {
            pin: hex::encode(kith_pki::spki_pin(&root).map_err(kith_authority::Error::from)?),
            // Every root of the authority, the active one first: during a
            // root rotation the other one too, vouched for by `cross_signed`.
            root: pem_encode_many(
                "CERTIFICATE",
                a.authority_roots(&name)?.iter().map(Vec::as_slice),
            ),
            intermediate: pem_encode("CERTIFICATE", &a.intermediate_cert(&name)?),
            cross_signed: a
                .cross_signed(&name)?
                .iter()
                .map(|c| pem_encode("CERTIFICATE", c))
                .collect(),
            name,
        });
    }
    Ok(Json(CaResponse {
        cluster: a.cluster().to_string(),
        authorities,
        bundle: bundle(a),
        replicas: s.replica_urls(),
    }))
}

/// The intermediate's CRL: the revoked leaves of `authority`.
async fn crl(State(s): St, Param(authority): Param) -> Result<Response, ApiError> {
    crl_of(&s, &authority, CrlIssuer::Intermediate).await
}

/// The root's CRL: the revoked intermediates (none today). Relying parties
/// that want a CRL for every CA of a chain (nginx `ssl_crl`, `openssl
/// verify -crl_check_all`) need both; the agent writes both into `crl.pem`.
async fn root_crl(State(s): St, Param(authority): Param) -> Result<Response, ApiError> {
    crl_of(&s, &authority, CrlIssuer::Root).await
}

/// The authority's other CRLs, PEM, one after the other (empty when there
/// are none): its other intermediates' (prepared, or replaced and not
/// expired) and, during a root rotation, the other root's (after a
/// compromise it revokes the old intermediate). A peer needs the CRL of
/// every CA whose certificates it may meet: a prepared intermediate's
/// before it issues, a replaced one's until its leaves expire. Each through
/// the CRL cache, so a burst of refreshes signs once.
async fn other_crls(State(s): St, Param(authority): Param) -> Result<Response, ApiError> {
    kith_pki::validate_label("authority", &authority).map_err(kith_authority::Error::from)?;
    let mut pem = String::new();
    for issuer in s.authority.other_crl_issuers(&authority)? {
        let rec = s.crls.current(&s.authority, &authority, issuer).await?;
        pem.push_str(&pem_encode("X509 CRL", &rec.der));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        pem,
    )
        .into_response())
}

async fn crl_of(s: &AppState, authority: &str, issuer: CrlIssuer) -> Result<Response, ApiError> {
    kith_pki::validate_label("authority", authority).map_err(kith_authority::Error::from)?;
    let rec = s.crls.current(&s.authority, authority, issuer).await?;
    Ok((
        [
            (header::CONTENT_TYPE, kith_api::PKIX_CRL.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        rec.der,
    )
        .into_response())
}
