//! Node routes. Join (its token authenticates it) and renew (the authority
//! judges the client certificate, which may be expired within the grace
//! window) are open to any connection; the node's own record and secret
//! reads sit behind [`super::extract::require_member`].

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kith_api::wire::{
    IssueResponse, IssuedCertificate, JoinRequest, NodeSelf, RenewRequest, SecretValue,
};
use kith_api::JoinToken;
use kith_authority::{Authority, Issued, NodeRecord};
use kith_pki::{pem_encode, pem_encode_many, Profile};

use super::extract::{
    decode_json, Body, ClientCert, NodeCaller, Param, Peer, SecretReader, VersionQuery,
};
use super::{rfc3339, AppState, St};
use crate::error::ApiError;
use kith_api::ErrorCode;

/// Join and renew: no gate, each authenticates itself.
pub(super) fn open_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/join", post(join))
        .route("/v1/renew", post(renew))
}

/// The routes for a live certificate of this cluster (put behind
/// [`super::extract::require_member`]).
pub(super) fn member_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/node", get(node_self))
        .route("/v1/secrets/{name}", get(secret_get))
}

/// Parse the (profile, CSR) pairs of a request; the profile names are the
/// caller's, so bad ones are refused here.
fn csr_pairs(csrs: &[kith_api::wire::CsrSubmission]) -> Result<Vec<(Profile, Vec<u8>)>, ApiError> {
    csrs.iter()
        .map(|c| {
            let p: Profile = c.profile.parse().map_err(|_| {
                ApiError::new(
                    ErrorCode::UnknownProfile,
                    format!("unknown profile {:?} (peer, server or client)", c.profile),
                )
            })?;
            Ok((p, c.csr.as_bytes().to_vec()))
        })
        .collect()
}

fn issue_response(s: &AppState, node: &NodeRecord, issued: &[Issued]) -> IssueResponse {
    let authority: &Authority = &s.authority;
    let certificates = issued
        .iter()
        .map(|i| IssuedCertificate {
            profile: i.record.profile.as_str().to_string(),
            serial: i.record.serial.clone(),
            not_before: rfc3339(i.record.not_before),
            not_after: rfc3339(i.record.not_after),
            certificate: pem_encode("CERTIFICATE", &i.record.der),
            chain: pem_encode_many("CERTIFICATE", i.chain.iter().map(Vec::as_slice)),
            truncated: i.truncated,
        })
        .collect();
    IssueResponse {
        cluster: authority.cluster().to_string(),
        node: node.name.clone(),
        role: node.role.clone(),
        authority: node.authority.clone(),
        certificates,
        // Only the roots of the node's own authority: authorities are
        // separate trust domains.
        ca_bundle: authority
            .authority_roots(&node.authority)
            .map(|r| pem_encode_many("CERTIFICATE", r.iter().map(Vec::as_slice)))
            .unwrap_or_default(),
        crl_path: format!("/v1/crl/{}", node.authority),
        replicas: s.replica_urls(),
    }
}

/// A join request as the handler hands it to the authority.
pub(crate) struct DecodedJoin {
    pub(crate) token: JoinToken,
    pub(crate) node: Option<String>,
    pub(crate) csrs: Vec<(Profile, Vec<u8>)>,
    pub(crate) may_leave_out: Vec<std::net::IpAddr>,
}

impl TryFrom<JoinRequest> for DecodedJoin {
    type Error = ApiError;

    /// Token syntax and profile names: what the JSON shape does not check.
    fn try_from(body: JoinRequest) -> Result<Self, ApiError> {
        let token =
            JoinToken::parse(&body.token).map_err(|e| ApiError::new(e.code(), e.to_string()))?;
        let csrs = csr_pairs(&body.csrs)?;
        Ok(DecodedJoin {
            token,
            node: body.node,
            csrs,
            may_leave_out: body.may_leave_out,
        })
    }
}

/// Decode a join body: JSON shape, token syntax, profile names. Pure, and
/// the same steps as [`Body`] then [`DecodedJoin::try_from`], so that the
/// fuzz target runs exactly what the handler runs.
pub(crate) fn decode_join(bytes: &[u8]) -> Result<DecodedJoin, ApiError> {
    DecodedJoin::try_from(decode_json::<JoinRequest>(bytes)?)
}

async fn join(
    State(s): St,
    Extension(peer): Extension<Peer>,
    Body(body): Body<JoinRequest>,
) -> Result<Json<IssueResponse>, ApiError> {
    let d = DecodedJoin::try_from(body)?;
    let started = std::time::Instant::now();
    let joined = s
        .authority
        .join_leaving_out(
            &d.token,
            d.node.as_deref(),
            &d.csrs,
            &d.may_leave_out,
            &peer.addr.to_string(),
        )
        .await;
    s.metrics.join_took(started.elapsed());
    let (node, issued) = joined?;
    for i in &issued {
        s.metrics
            .issued(&i.record.authority, i.record.profile.as_str(), false);
    }
    tracing::info!(node = %node.name, role = %node.role, peer = %peer.addr, "joined");
    Ok(Json(issue_response(&s, &node, &issued)))
}

async fn renew(
    State(s): St,
    Extension(peer): Extension<Peer>,
    ClientCert(cert): ClientCert,
    Body(body): Body<RenewRequest>,
) -> Result<Json<IssueResponse>, ApiError> {
    let csrs = csr_pairs(&body.csrs)?;
    let started = std::time::Instant::now();
    let renewed = s
        .authority
        .renew(&cert, body.node.as_deref(), &csrs, s.renew_grace)
        .await;
    s.metrics.renew_took(started.elapsed());
    let (node, issued) = renewed?;
    for i in &issued {
        s.metrics
            .issued(&i.record.authority, i.record.profile.as_str(), true);
    }
    tracing::info!(node = %node.name, peer = %peer.addr, "renewed");
    Ok(Json(issue_response(&s, &node, &issued)))
}

/// The node behind a client certificate (see
/// [`Authority::present_certificate`]). The roots it reports trusting
/// (`?trusts=`) are recorded for a root rotation's progress, and the
/// answer says whether the CA asks it to renew now.
async fn node_self(
    State(s): St,
    caller: NodeCaller,
    TrustsQuery(trusts): TrustsQuery,
) -> Result<Json<NodeSelf>, ApiError> {
    let NodeCaller { cert, node } = caller;
    if let (Some(pins), Some(n)) = (trusts, node.as_ref()) {
        // Progress bookkeeping: a store failure must not cost the node its
        // answer (it reports again at its next refresh).
        if let Err(e) = s.authority.record_node_trust(&n.name, &pins).await {
            tracing::warn!(node = %n.name, error = %e, "could not record the roots the node trusts");
        }
    }
    Ok(Json(NodeSelf {
        cluster: s.authority.cluster().to_string(),
        renew_now: s.authority.renew_now(&cert),
        current: node.as_ref().is_some_and(|n| n.is_current(&cert.serial)),
        node: cert.node,
        role: cert.role,
        authority: cert.authority,
        serial: cert.serial,
        not_after: rfc3339(cert.not_after),
    }))
}

/// A secret's value: for an admin certificate, or a node whose role or
/// name the secret's policy lists (a removed node never gets here).
async fn secret_get(
    State(s): St,
    Param(name): Param,
    VersionQuery(version): VersionQuery,
    reader: SecretReader,
) -> Result<Json<SecretValue>, ApiError> {
    let (v, plain) = s
        .authority
        .get_secret(&name, version, reader.as_reader())
        .await?;
    use base64::Engine;
    Ok(Json(SecretValue {
        name,
        version: v,
        value: base64::engine::general_purpose::STANDARD.encode(plain.as_slice()),
    }))
}

/// `GET /v1/node`'s query: `trusts=HEX,HEX` ([`kith_api::parse_trusts`]),
/// or nothing (a node from before trust reports).
struct TrustsQuery(Option<Vec<[u8; 32]>>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TrustsQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, ApiError> {
        let bad = |m: String| ApiError::new(ErrorCode::MalformedRequest, m);
        let value = super::extract::only_param(parts, kith_api::TRUSTS_PARAM).map_err(|()| {
            bad(format!(
                "the only query parameter is {}=HEX,HEX (at most {} root pins), once",
                kith_api::TRUSTS_PARAM,
                kith_api::MAX_TRUSTS
            ))
        })?;
        let trusts = value.map(kith_api::parse_trusts).transpose().map_err(bad)?;
        Ok(TrustsQuery(trusts))
    }
}
