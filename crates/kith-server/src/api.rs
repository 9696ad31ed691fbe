//! The `/v1` routes: thin handlers that decode, call the authority, encode.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use kith_api::wire::{
    AuthorityStatus, AuthorityView, CaResponse, IssueResponse, IssuedCertificate, JoinRequest,
    NodeSelf, NodeView, RenewRequest, RevokeRequest, RevokeResponse, RevokedView, SecretInfo,
    SecretPutRequest, SecretValue, SecretVersionView, StatusResponse, TokenCreateRequest,
    TokenCreated, TokenView, MAX_BODY_BYTES,
};
use kith_api::{ErrorCode, JoinToken, TokenId};
use kith_authority::{Authority, Issued, NodeRecord, RevokeOutcome, TokenRecord};
use kith_pki::{pem_encode, pem_encode_many, Profile, RevocationReason, Serial};
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;

/// Who is on the other end of a connection: its address and the client
/// certificate it presented, if any (the handshake proved its key).
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) addr: SocketAddr,
    pub(crate) cert: Option<Arc<Vec<u8>>>,
}

pub(crate) struct AppState {
    pub(crate) authority: Authority,
    pub(crate) renew_grace: time::Duration,
    pub(crate) crls: Arc<crate::crl::CrlPublisher>,
}

impl AppState {
    /// Publish the CRLs touched by `outcomes` (debounced), then report
    /// each touched authority's CRL number.
    async fn publish(&self, outcomes: &[RevokeOutcome]) -> Result<Vec<(String, u64)>, ApiError> {
        let mut touched: Vec<&str> = outcomes
            .iter()
            .filter(|o| matches!(o, RevokeOutcome::Revoked(_)))
            .map(|o| o.record().authority.as_str())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for name in touched {
            self.crls.changed(&self.authority, name).await?;
        }
        Ok(crl_numbers(self, outcomes).await)
    }
}

type St = State<Arc<AppState>>;

/// A path parameter whose rejection (bad percent-encoding, not UTF-8) is a
/// JSON error like every other, not axum's plain-text one.
pub(crate) struct Param(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Param {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(p)) => Ok(Param(p)),
            Err(e) => Err(ApiError::new(
                ErrorCode::MalformedRequest,
                format!("bad path: {e}"),
            )),
        }
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/ca", get(ca))
        .route("/v1/crl/{authority}", get(crl))
        .route("/v1/join", post(join))
        .route("/v1/renew", post(renew))
        .route("/v1/node", get(node_self))
        .route("/v1/admin/tokens", post(token_create).get(token_list))
        .route("/v1/admin/tokens/{id}", delete(token_revoke))
        .route("/v1/admin/nodes", get(node_list))
        .route("/v1/admin/nodes/{name}", delete(node_remove))
        .route("/v1/admin/revoke", post(revoke))
        .route("/v1/admin/status", get(status))
        .route("/v1/admin/secrets", get(secret_list))
        .route(
            "/v1/admin/secrets/{name}",
            axum::routing::put(secret_put).delete(secret_delete),
        )
        .route("/v1/admin/secrets/{name}/history", get(secret_history))
        .route("/v1/secrets/{name}", get(secret_get))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that method",
            )
        })
        .with_state(state)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// Read a JSON body: the right media type, at most [`MAX_BODY_BYTES`], well formed.
async fn read_json<T: DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    read_json_limited(req, MAX_BODY_BYTES).await
}

async fn read_json_limited<T: DeserializeOwned>(req: Request, limit: usize) -> Result<T, ApiError> {
    decode_json(&read_body_limited(req, limit).await?)
}

fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::MalformedRequest,
            format!("the body is not a valid request: {e}"),
        )
    })
}

/// The raw body of a JSON request: the right media type, at most [`MAX_BODY_BYTES`].
async fn read_body(req: Request) -> Result<bytes::Bytes, ApiError> {
    read_body_limited(req, MAX_BODY_BYTES).await
}

async fn read_body_limited(req: Request, limit: usize) -> Result<bytes::Bytes, ApiError> {
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
    let bytes = axum::body::to_bytes(req.into_body(), limit)
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
        })?;
    Ok(bytes)
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

fn issue_response(authority: &Authority, node: &NodeRecord, issued: &[Issued]) -> IssueResponse {
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
            .root_cert(&node.authority)
            .map(|r| pem_encode("CERTIFICATE", &r))
            .unwrap_or_default(),
        crl_path: format!("/v1/crl/{}", node.authority),
    }
}

fn bundle(authority: &Authority) -> String {
    pem_encode_many("CERTIFICATE", authority.roots().iter().map(Vec::as_slice))
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(s): St) -> Response {
    // Not ready while writes fail (a full disk): reads alone would say ready.
    if let Err(e) = s.authority.store().writable() {
        tracing::warn!(error = %e, "not ready: the store cannot write");
        return ApiError::new(
            ErrorCode::NotReady,
            "the store cannot write (the disk is full or failing)",
        )
        .into_response();
    }
    match s.authority.store().get("cluster/meta").await {
        Ok(Some(_)) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Ok(None) => ApiError::new(ErrorCode::NotReady, "the store has no cluster").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            ApiError::new(ErrorCode::NotReady, "the store does not answer").into_response()
        }
    }
}

async fn ca(State(s): St) -> Result<Json<CaResponse>, ApiError> {
    let a = &s.authority;
    let mut authorities = Vec::new();
    for name in a.authority_names() {
        let root = a.root_cert(&name)?;
        authorities.push(AuthorityView {
            pin: hex::encode(kith_pki::spki_pin(&root).map_err(kith_authority::Error::from)?),
            root: pem_encode("CERTIFICATE", &root),
            intermediate: pem_encode("CERTIFICATE", &a.intermediate_cert(&name)?),
            cross_signed: Vec::new(),
            name,
        });
    }
    Ok(Json(CaResponse {
        cluster: a.cluster().to_string(),
        authorities,
        bundle: bundle(a),
    }))
}

async fn crl(State(s): St, Param(authority): Param) -> Result<Response, ApiError> {
    kith_pki::validate_label("authority", &authority).map_err(kith_authority::Error::from)?;
    let rec = s.crls.current(&s.authority, &authority).await?;
    Ok((
        [
            (header::CONTENT_TYPE, kith_api::PKIX_CRL.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
        ],
        rec.der,
    )
        .into_response())
}

/// A join request as the handler hands it to the authority.
pub(crate) struct DecodedJoin {
    pub(crate) token: JoinToken,
    pub(crate) node: Option<String>,
    pub(crate) csrs: Vec<(Profile, Vec<u8>)>,
}

/// Decode a join body: JSON shape, token syntax, profile names. Pure, so
/// that the fuzz target runs exactly what the handler runs.
pub(crate) fn decode_join(bytes: &[u8]) -> Result<DecodedJoin, ApiError> {
    let body: JoinRequest = decode_json(bytes)?;
    let token =
        JoinToken::parse(&body.token).map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let csrs = csr_pairs(&body.csrs)?;
    Ok(DecodedJoin {
        token,
        node: body.node,
        csrs,
    })
}

async fn join(
    State(s): St,
    Extension(peer): Extension<Peer>,
    req: Request,
) -> Result<Json<IssueResponse>, ApiError> {
    let bytes = read_body(req).await?;
    let d = decode_join(&bytes)?;
    let (node, issued) = s
        .authority
        .join(&d.token, d.node.as_deref(), &d.csrs, &peer.addr.to_string())
        .await?;
    tracing::info!(node = %node.name, role = %node.role, peer = %peer.addr, "joined");
    Ok(Json(issue_response(&s.authority, &node, &issued)))
}

fn client_cert(peer: &Peer) -> Result<&[u8], ApiError> {
    peer.cert.as_deref().map(Vec::as_slice).ok_or_else(|| {
        ApiError::new(
            ErrorCode::ClientCertificateRequired,
            "this endpoint needs mutual TLS with a certificate from this cluster",
        )
    })
}

async fn renew(
    State(s): St,
    Extension(peer): Extension<Peer>,
    req: Request,
) -> Result<Json<IssueResponse>, ApiError> {
    let cert = client_cert(&peer)?;
    let body: RenewRequest = read_json(req).await?;
    let csrs = csr_pairs(&body.csrs)?;
    let (node, issued) = s
        .authority
        .renew(cert, body.node.as_deref(), &csrs, s.renew_grace)
        .await?;
    tracing::info!(node = %node.name, peer = %peer.addr, "renewed");
    Ok(Json(issue_response(&s.authority, &node, &issued)))
}

/// The record of the client certificate: issued here, not revoked, not
/// expired (the TLS layer lets expired ones through for the renewal grace).
async fn live_certificate(
    s: &AppState,
    peer: &Peer,
) -> Result<kith_authority::CertRecord, ApiError> {
    let rec = s.authority.recorded_certificate(client_cert(peer)?).await?;
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

/// The node behind a client certificate (see [`Authority::present_certificate`]).
async fn node_self(
    State(s): St,
    Extension(peer): Extension<Peer>,
) -> Result<Json<NodeSelf>, ApiError> {
    live_certificate(&s, &peer).await?;
    let (cert, node) = s.authority.present_certificate(client_cert(&peer)?).await?;
    if cert.holder() != kith_pki::Namespace::Node {
        return Err(ApiError::new(
            ErrorCode::NodeRequired,
            format!(
                "this endpoint is for nodes; this is a {} certificate",
                cert.holder()
            ),
        ));
    }
    Ok(Json(NodeSelf {
        cluster: s.authority.cluster().to_string(),
        current: node.as_ref().is_some_and(|n| n.is_current(&cert.serial)),
        node: cert.node,
        role: cert.role,
        authority: cert.authority,
        serial: cert.serial,
        not_after: rfc3339(cert.not_after),
    }))
}

/// The operator behind an admin request: a live operator (`admin`)
/// certificate of this cluster.
async fn admin(s: &AppState, peer: &Peer) -> Result<String, ApiError> {
    let rec = live_certificate(s, peer).await?;
    if rec.profile != Profile::Admin || rec.holder() != kith_pki::Namespace::Operator {
        return Err(ApiError::new(
            ErrorCode::AdminRequired,
            format!(
                "this endpoint needs an admin certificate; {} holds a {} certificate",
                rec.node, rec.profile
            ),
        ));
    }
    Ok(format!("admin:{}", rec.node))
}

fn token_view(t: &TokenRecord, now: OffsetDateTime) -> TokenView {
    TokenView {
        id: t.id.clone(),
        role: t.role.clone(),
        node: t.node.clone(),
        allow_sans: t.allow_sans.clone(),
        authority: t.authority.clone(),
        created: rfc3339(t.created),
        expires: rfc3339(t.expires),
        uses: t.uses,
        uses_left: t.uses_left,
        state: t.state(now).to_string(),
    }
}

async fn token_create(
    State(s): St,
    Extension(peer): Extension<Peer>,
    req: Request,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let actor = admin(&s, &peer).await?;
    let body: TokenCreateRequest = read_json(req).await?;
    let ttl = match body.ttl_seconds {
        Some(secs) => time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
        None => kith_authority::DEFAULT_TOKEN_TTL,
    };
    let (record, token) = s
        .authority
        .create_token(
            kith_authority::TokenSpec {
                role: body.role,
                node: body.node,
                ttl,
                uses: body.uses.unwrap_or(1),
                allow_sans: body.allow_sans,
                authority: body.authority,
            },
            &actor,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: token.encode().to_string(),
            info: token_view(&record, s.authority.now()),
        }),
    ))
}

async fn token_list(
    State(s): St,
    Extension(peer): Extension<Peer>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    admin(&s, &peer).await?;
    let now = s.authority.now();
    let tokens = kith_authority::list_tokens(&**s.authority.store()).await?;
    Ok(Json(tokens.iter().map(|t| token_view(t, now)).collect()))
}

async fn token_revoke(
    State(s): St,
    Extension(peer): Extension<Peer>,
    Param(id): Param,
) -> Result<Json<TokenView>, ApiError> {
    let actor = admin(&s, &peer).await?;
    let id = TokenId::parse(&id).map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let rec = s.authority.revoke_token(&id, &actor).await?;
    Ok(Json(token_view(&rec, s.authority.now())))
}

async fn node_list(
    State(s): St,
    Extension(peer): Extension<Peer>,
) -> Result<Json<Vec<NodeView>>, ApiError> {
    admin(&s, &peer).await?;
    let nodes = kith_authority::list_nodes(&**s.authority.store(), s.authority.now()).await?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|(n, state)| NodeView {
                // The first profile's certificate is the node's cert.pem.
                serial: n
                    .profiles
                    .first()
                    .and_then(|p| n.serials.get(p))
                    .cloned()
                    .unwrap_or_default(),
                profiles: n.profiles.iter().map(|p| p.as_str().to_string()).collect(),
                not_after: rfc3339(n.not_after),
                joined: rfc3339(n.joined),
                last_renewal: rfc3339(n.last_renewal),
                state: state.as_str().to_string(),
                name: n.name,
                role: n.role,
            })
            .collect(),
    ))
}

fn revoked_views(outcomes: &[RevokeOutcome]) -> Vec<RevokedView> {
    outcomes
        .iter()
        .map(|o| {
            let r = o.record();
            RevokedView {
                serial: r.serial.clone(),
                node: r.node.clone(),
                reason: r.reason.as_str().to_string(),
                revoked_at: rfc3339(r.revoked_at),
                newly_revoked: matches!(o, RevokeOutcome::Revoked(_)),
            }
        })
        .collect()
}

async fn crl_numbers(s: &AppState, outcomes: &[RevokeOutcome]) -> Vec<(String, u64)> {
    let mut names: Vec<String> = outcomes
        .iter()
        .map(|o| o.record().authority.clone())
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for n in names {
        if let Ok(Some(c)) = kith_authority::stored_crl(&**s.authority.store(), &n).await {
            out.push((n, c.number));
        }
    }
    out
}

async fn node_remove(
    State(s): St,
    Extension(peer): Extension<Peer>,
    Param(name): Param,
) -> Result<Json<RevokeResponse>, ApiError> {
    let actor = admin(&s, &peer).await?;
    let outcomes = s
        .authority
        .remove_node_deferred(&name, RevocationReason::CessationOfOperation, &actor)
        .await?;
    Ok(Json(RevokeResponse {
        revoked: revoked_views(&outcomes),
        crl_numbers: s.publish(&outcomes).await?,
    }))
}

async fn revoke(
    State(s): St,
    Extension(peer): Extension<Peer>,
    req: Request,
) -> Result<Json<RevokeResponse>, ApiError> {
    let actor = admin(&s, &peer).await?;
    let body: RevokeRequest = read_json(req).await?;
    let reason: RevocationReason = match &body.reason {
        Some(r) => r.parse().map_err(kith_authority::Error::from)?,
        None => RevocationReason::Unspecified,
    };
    let outcomes = match (&body.serial, &body.node) {
        (Some(serial), None) if !body.remove => {
            let serial = Serial::parse(serial).map_err(kith_authority::Error::from)?;
            vec![s.authority.revoke_deferred(&serial, reason, &actor).await?]
        }
        (None, Some(node)) if body.remove => {
            s.authority
                .remove_node_deferred(node, reason, &actor)
                .await?
        }
        (None, Some(node)) => {
            s.authority
                .revoke_node_deferred(node, reason, &actor)
                .await?
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "name exactly one of serial and node (remove goes with node)",
            ))
        }
    };
    Ok(Json(RevokeResponse {
        revoked: revoked_views(&outcomes),
        crl_numbers: s.publish(&outcomes).await?,
    }))
}

async fn status(
    State(s): St,
    Extension(peer): Extension<Peer>,
) -> Result<Json<StatusResponse>, ApiError> {
    admin(&s, &peer).await?;
    let a = &s.authority;
    let store = &**a.store();
    let now = a.now();
    let mut authorities = Vec::new();
    for name in a.authority_names() {
        let (_, root_na) = kith_pki::certificate_validity(&a.root_cert(&name)?)
            .map_err(kith_authority::Error::from)?;
        let (_, int_na) = kith_pki::certificate_validity(&a.intermediate_cert(&name)?)
            .map_err(kith_authority::Error::from)?;
        let crl = kith_authority::stored_crl(store, &name).await?;
        authorities.push(AuthorityStatus {
            root_not_after: rfc3339(root_na),
            intermediate_not_after: rfc3339(int_na),
            crl_number: crl.as_ref().map_or(0, |c| c.number),
            crl_entries: crl.as_ref().map_or(0, |c| c.entries),
            name,
        });
    }
    let mut nodes = std::collections::BTreeMap::<String, usize>::new();
    for (_, st) in kith_authority::list_nodes(store, now).await? {
        *nodes.entry(st.as_str().to_string()).or_default() += 1;
    }
    let mut tokens = std::collections::BTreeMap::<String, usize>::new();
    for t in kith_authority::list_tokens(store).await? {
        *tokens.entry(t.state(now).to_string()).or_default() += 1;
    }
    Ok(Json(StatusResponse {
        cluster: a.cluster().to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        now: rfc3339(now),
        authorities,
        nodes: nodes.into_iter().collect(),
        tokens: tokens.into_iter().collect(),
    }))
}

// ---------------------------------------------------------------- secrets

fn secret_info(m: &kith_authority::SecretRecord) -> SecretInfo {
    SecretInfo {
        name: m.name.clone(),
        description: m.description.clone(),
        allow_roles: m.allow_roles.clone(),
        allow_nodes: m.allow_nodes.clone(),
        versions: m.versions.len(),
        latest: m.latest(),
        size: m.versions.last().map_or(0, |v| v.size),
        updated: rfc3339(m.updated),
    }
}

/// The optional `?version=N` of the secret endpoints (and nothing else).
fn version_query(uri: &axum::http::Uri) -> Result<Option<u64>, ApiError> {
    let bad = || {
        ApiError::new(
            ErrorCode::InvalidArgument,
            "the only query parameter is version=N",
        )
    };
    let mut version = None;
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').ok_or_else(bad)?;
        if k != "version" || version.is_some() {
            return Err(bad());
        }
        version = Some(v.parse().map_err(|_| bad())?);
    }
    Ok(version)
}

async fn secret_put(
    State(s): St,
    Extension(peer): Extension<Peer>,
    Param(name): Param,
    req: Request,
) -> Result<Json<SecretInfo>, ApiError> {
    let actor = admin(&s, &peer).await?;
    // base64 grows a value by 4/3; leave room for the JSON around it.
    let limit = s.authority.settings().secret_max_bytes / 3 * 4 + 8 + MAX_BODY_BYTES;
    let body: SecretPutRequest = read_json_limited(req, limit).await?;
    use base64::Engine;
    let value = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(body.value.as_bytes())
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("value is not base64: {e}"),
                )
            })?,
    );
    let meta = s
        .authority
        .put_secret(
            &name,
            &value,
            kith_authority::SecretUpdate {
                description: body.description.clone(),
                allow_roles: body.allow_roles.clone(),
                allow_nodes: body.allow_nodes.clone(),
                if_version: body.if_version,
            },
            &actor,
        )
        .await?;
    Ok(Json(secret_info(&meta)))
}

async fn secret_list(
    State(s): St,
    Extension(peer): Extension<Peer>,
) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    admin(&s, &peer).await?;
    let all = kith_authority::list_secrets(&**s.authority.store()).await?;
    Ok(Json(all.iter().map(secret_info).collect()))
}

async fn secret_history(
    State(s): St,
    Extension(peer): Extension<Peer>,
    Param(name): Param,
) -> Result<Json<Vec<SecretVersionView>>, ApiError> {
    admin(&s, &peer).await?;
    let meta = s.authority.secret_info(&name).await?;
    Ok(Json(
        meta.versions
            .iter()
            .map(|v| SecretVersionView {
                version: v.version,
                size: v.size,
                created: rfc3339(v.created),
                created_by: v.created_by.clone(),
            })
            .collect(),
    ))
}

async fn secret_delete(
    State(s): St,
    Extension(peer): Extension<Peer>,
    Param(name): Param,
    uri: axum::http::Uri,
) -> Result<Json<serde_json::Value>, ApiError> {
    let actor = admin(&s, &peer).await?;
    let version = version_query(&uri)?;
    s.authority.delete_secret(&name, version, &actor).await?;
    Ok(Json(
        serde_json::json!({ "deleted": name, "version": version }),
    ))
}

/// A secret's value: for an admin certificate, or a node whose role or
/// name the secret's policy lists. The node's certificate must be live and
/// its node not removed.
async fn secret_get(
    State(s): St,
    Extension(peer): Extension<Peer>,
    Param(name): Param,
    uri: axum::http::Uri,
) -> Result<Json<SecretValue>, ApiError> {
    let version = version_query(&uri)?;
    let rec = live_certificate(&s, &peer).await?;
    let actor;
    let reader = match rec.holder() {
        kith_pki::Namespace::Operator if rec.profile == Profile::Admin => {
            actor = format!("admin:{}", rec.node);
            kith_authority::Reader::Admin(&actor)
        }
        kith_pki::Namespace::Node => {
            // Certificates cut offline (`kith cert issue`) have no node
            // record; a node that joined and was removed reads nothing.
            s.authority.present_certificate(client_cert(&peer)?).await?;
            kith_authority::Reader::Node {
                name: &rec.node,
                role: &rec.role,
            }
        }
        other => {
            return Err(ApiError::new(
                ErrorCode::NodeRequired,
                format!("a {other} certificate reads no secrets"),
            ))
        }
    };
    let (v, plain) = s.authority.get_secret(&name, version, reader).await?;
    use base64::Engine;
    Ok(Json(SecretValue {
        name,
        version: v,
        value: base64::engine::general_purpose::STANDARD.encode(plain.as_slice()),
    }))
}
