//! What a handler may take from a request, and the two gates in front of
//! the routes that need a client certificate.
//!
//! - [`require_admin`] guards the whole `/v1/admin` router: a live operator
//!   (`admin`) certificate, or the request never reaches a handler. The
//!   handlers learn who acts through [`Admin`].
//! - [`require_member`] guards the node routes: a live certificate issued
//!   here, and for a node, its record (presenting the certificate). The
//!   handlers take [`NodeCaller`] or [`SecretReader`] from it.
//! - [`Body`] is the only way a handler reads a body: `application/json`, a
//!   size limit per type ([`RequestBody`]), decoded strictly (every request
//!   type of `kith_api::wire` denies unknown fields).
//!
//! The extractors read what the gates stored in the request and fail closed
//! if it is missing, so a handler mounted outside its gate answers an error,
//! never unauthenticated data.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kith_api::wire::{
    JoinRequest, RenewRequest, RevokeRequest, SecretPutRequest, SettingsUpdate, TokenCreateRequest,
    MAX_BODY_BYTES,
};
use kith_authority::{CertRecord, NodeRecord};
use kith_pki::{Namespace, Profile};
use serde::de::DeserializeOwned;

use super::{rfc3339, AppState};
use crate::error::ApiError;
use kith_api::ErrorCode;

/// Who is on the other end of a connection: its address and the client
/// certificate it presented, if any (the handshake proved its key).
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) cert: Option<Arc<Vec<u8>>>,
}

/// A path parameter whose rejection (bad percent-encoding, not UTF-8) is a
/// JSON error like every other, not axum's plain-text one.
pub(crate) struct Param(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Param {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(Param(p)),
            Err(e) => Err(ApiError::new(
                ErrorCode::MalformedRequest,
                format!("bad path: {e}"),
            )),
        }
    }
}

// ------------------------------------------------------------------ bodies

/// A request type a route may take as its body, with its size limit.
/// Implemented only for `kith_api::wire` requests, which deny unknown
/// fields, so a client's typo is an error rather than a default.
pub(crate) trait RequestBody: DeserializeOwned {
    /// The largest body accepted, in bytes.
    fn limit(_state: &AppState) -> usize {
        MAX_BODY_BYTES
    }
}

impl RequestBody for JoinRequest {}
impl RequestBody for RenewRequest {}
impl RequestBody for TokenCreateRequest {}
impl RequestBody for RevokeRequest {}
impl RequestBody for SettingsUpdate {}
impl RequestBody for kith_api::wire::CertificateIssueRequest {}
impl RequestBody for kith_api::wire::AuthorityAddRequest {}
impl RequestBody for kith_api::wire::CsrSignRequest {}
impl RequestBody for kith_api::wire::CrlSignRequest {}
impl RequestBody for kith_api::wire::OperatorRequest {}
impl RequestBody for kith_api::wire::OperatorRevokeRequest {}

impl RequestBody for SecretPutRequest {
    fn limit(state: &AppState) -> usize {
        // base64 grows a value by 4/3; leave room for the JSON around it.
        // The cluster's setting of the moment: another replica may change it.
        state.authority.cluster_settings().secret_max_bytes / 3 * 4 + 8 + MAX_BODY_BYTES
    }
}

/// A JSON body: the right media type, at most `T::limit` bytes, well formed.
pub(crate) struct Body<T>(pub(crate) T);

impl<T: RequestBody> FromRequest<Arc<AppState>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let bytes = read_body(req, T::limit(state)).await?;
        decode_json(&bytes).map(Body)
    }
}

/// Decode a JSON body already read (the fuzz target's entry as well).
pub(crate) fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedRequest,
            format!("the body is not a valid request: {e}"),
        )
    })
}

/// The raw body of a JSON request: the right media type, at most `limit` bytes.
async fn read_body(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(kith_api::JSON) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("send the body as {} (got {ct:?})", kith_api::JSON),
        ));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!("the body is larger than {limit} bytes"),
                )
            } else {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("the body could not be read: {e}"),
                )
            }
        })
}

// ------------------------------------------------------ client certificates

/// The client certificate of a request, DER: required, but judged by the
/// authority alone (`/v1/renew`, where an expired one may still renew
/// within the grace window).
pub(crate) struct ClientCert(pub(crate) Arc<Vec<u8>>);

impl<S: Send + Sync> FromRequestParts<S> for ClientCert {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        client_cert(parts.extensions.get::<Peer>()).map(|c| ClientCert(c.clone()))
    }
}

fn client_cert(peer: Option<&Peer>) -> Result<&Arc<Vec<u8>>, ApiError> {
    peer.and_then(|p| p.cert.as_ref()).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ClientCertificateRequired,
            "this endpoint needs mutual TLS with a certificate from this cluster",
        )
    })
}

/// The record of the client certificate: issued here, not revoked, not
/// expired (the TLS layer lets expired ones through for the renewal grace).
async fn live_certificate(s: &AppState, der: &[u8]) -> Result<CertRecord, ApiError> {
    let rec = s.authority.recorded_certificate(der).await?;
    if s.authority.now() > rec.not_after {
        return Err(ApiError::new(
            ErrorCode::CertificateExpired,
            format!(
                "the client certificate expired at {}",
                rfc3339(rec.not_after)
            ),
        ));
    }
    Ok(rec)
}

/// The operator behind an admin request, as `admin:<name>` for the audit
/// trail. Only [`require_admin`] makes one.
#[derive(Clone, Debug)]
pub(crate) struct Admin(pub(crate) String);

/// The gate of the `/v1/admin` router: a live operator (`admin`)
/// certificate of this cluster, or the answer is a refusal.
pub(crate) async fn require_admin(
    State(s): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    match admin(&s, req.extensions().get::<Peer>()).await {
        Ok(actor) => {
            req.extensions_mut().insert(actor);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn admin(s: &AppState, peer: Option<&Peer>) -> Result<Admin, ApiError> {
    let rec = live_certificate(s, client_cert(peer)?).await?;
    if rec.profile != Profile::Admin || rec.holder() != Namespace::Operator {
        return Err(ApiError::new(
            ErrorCode::AdminRequired,
            format!(
                "this endpoint needs an admin certificate; {} holds a {} certificate",
                rec.node, rec.profile
            ),
        ));
    }
    Ok(Admin(format!("admin:{}", rec.node)))
}

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Admin>().cloned().ok_or_else(ungated)
    }
}

/// A handler taking an identity was mounted outside the gate that makes
/// it: a wiring bug, refused rather than served.
fn ungated() -> ApiError {
    tracing::error!("a handler needing an identity is mounted outside its gate");
    ApiError::new(ErrorCode::Internal, "the server failed; its log says why")
}

/// The holder of a live certificate on a node route; for a node, its
/// record (none for certificates issued offline).
#[derive(Clone, Debug)]
pub(crate) struct Member {
    cert: CertRecord,
    node: Option<NodeRecord>,
}

/// The gate of the node routes: a live certificate issued here; a node's
/// is presented ([`kith_authority::Authority::present_certificate`]: its
/// node must not be removed, and the certificate it replaced is dead from
/// now on).
pub(crate) async fn require_member(
    State(s): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    match member(&s, req.extensions().get::<Peer>()).await {
        Ok(m) => {
            req.extensions_mut().insert(m);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn member(s: &AppState, peer: Option<&Peer>) -> Result<Member, ApiError> {
    let der = client_cert(peer)?;
    let cert = live_certificate(s, der).await?;
    if cert.holder() != Namespace::Node {
        return Ok(Member { cert, node: None });
    }
    let (cert, node) = s.authority.present_certificate(der).await?;
    Ok(Member { cert, node })
}

/// A node on a node route: its certificate's record and its node record.
pub(crate) struct NodeCaller {
    pub(crate) cert: CertRecord,
    pub(crate) node: Option<NodeRecord>,
}

impl<S: Send + Sync> FromRequestParts<S> for NodeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let m = parts.extensions.get::<Member>().ok_or_else(ungated)?;
        if m.cert.holder() != Namespace::Node {
            return Err(ApiError::new(
                ErrorCode::NodeRequired,
                format!(
                    "this endpoint is for nodes; this is a {} certificate",
                    m.cert.holder()
                ),
            ));
        }
        Ok(NodeCaller {
            cert: m.cert.clone(),
            node: m.node.clone(),
        })
    }
}

/// Who reads a secret: an operator (`admin` certificate) or a node, whose
/// role or name the secret's policy must list.
pub(crate) enum SecretReader {
    Admin(String),
    Node { name: String, role: String },
}

impl SecretReader {
    pub(crate) fn as_reader(&self) -> kith_authority::Reader<'_> {
        match self {
            Self::Admin(actor) => kith_authority::Reader::Admin(actor),
            Self::Node { name, role } => kith_authority::Reader::Node { name, role },
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SecretReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let m = parts.extensions.get::<Member>().ok_or_else(ungated)?;
        match m.cert.holder() {
            Namespace::Operator if m.cert.profile == Profile::Admin => {
                Ok(Self::Admin(format!("admin:{}", m.cert.node)))
            }
            Namespace::Node => Ok(Self::Node {
                name: m.cert.node.clone(),
                role: m.cert.role.clone(),
            }),
            other => Err(ApiError::new(
                ErrorCode::NodeRequired,
                format!("a {other} certificate reads no secrets"),
            )),
        }
    }
}

/// The value of the one query parameter `name` a route takes, if given:
/// `Err(())` for any other parameter, a parameter without a value, or
/// `name` twice. Each route says what it takes in its own refusal.
pub(crate) fn only_param<'a>(parts: &'a Parts, name: &str) -> Result<Option<&'a str>, ()> {
    let mut value = None;
    for pair in parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some((k, v)) if k == name && value.is_none() => value = Some(v),
            _ => return Err(()),
        }
    }
    Ok(value)
}

/// The optional `?version=N` of the secret endpoints (and nothing else).
pub(crate) struct VersionQuery(pub(crate) Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for VersionQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::new(
                ErrorCode::InvalidArgument,
                "the only query parameter is version=N",
            )
        };
        match only_param(parts, "version").map_err(|()| bad())? {
            Some(v) => Ok(VersionQuery(Some(v.parse().map_err(|_| bad())?))),
            None => Ok(VersionQuery(None)),
        }
    }
}
