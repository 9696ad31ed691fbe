//! Operator routes, nested at `/v1/admin` behind
//! [`super::extract::require_admin`]: tokens, nodes, servers, revocation,
//! status, secrets, cluster settings (handlers in [`super::settings`]), the
//! CA's own views and issuance ([`super::ca`]), operators
//! ([`super::operators`]). A
//! handler learns who acts from [`Admin`]; none checks a
//! certificate itself.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use kith_api::wire::{
    AuthorityStatus, NodeView, ReplicaStatus, RevokeRequest, RevokeResponse, SecretInfo,
    SecretPutRequest, SecretVersionView, ServerView, StatusProblem, StatusResponse,
    TokenCreateRequest, TokenCreated, TokenView,
};
use kith_api::TokenId;
use kith_authority::{Publish, RevokeTarget, TokenRecord};
use kith_pki::{RevocationReason, Serial};
use time::OffsetDateTime;

use super::extract::{Admin, Body, Param, VersionQuery};
use super::revocations::revoked_views;
use super::{rfc3339, AppState, St};
use crate::error::ApiError;
use kith_api::ErrorCode;

/// One admin route: method, path under `/v1/admin`, handler.
type Entry = (Method, &'static str, MethodRouter<Arc<AppState>>);

/// `METHOD "path" => handler`: the method is written once, for the router
/// and for the list.
macro_rules! table {
    ($($method:ident $path:literal => $handler:expr),* $(,)?) => {
        vec![$((Method::$method, $path, on(MethodFilter::$method, $handler))),*]
    };
}

/// Every admin route. The router is built from this table alone.
fn table() -> Vec<Entry> {
    table![
        POST "/tokens" => token_create,
        GET "/tokens" => token_list,
        DELETE "/tokens/{id}" => token_revoke,
        GET "/nodes" => node_list,
        DELETE "/nodes/{name}" => node_remove,
        GET "/servers" => server_list,
        POST "/revoke" => revoke,
        GET "/status" => status,
        GET "/backup" => super::backup::download,
        GET "/secrets" => secret_list,
        PUT "/secrets/{name}" => secret_put,
        DELETE "/secrets/{name}" => secret_delete,
        GET "/secrets/{name}/history" => secret_history,
        GET "/settings" => super::settings::show,
        PATCH "/settings" => super::settings::update,
        GET "/ca" => super::ca::show,
        GET "/certs" => super::ca::certificates,
        POST "/certs" => super::ca::issue,
        POST "/certs/sign" => super::ca::sign,
        POST "/authorities" => super::ca::add_authority,
        GET "/crl/{name}" => super::ca::crl,
        POST "/crl/{name}" => super::ca::crl_new,
        GET "/crl/{name}/root" => super::ca::root_crl,
        POST "/crl/{name}/root" => super::ca::root_crl_new,
        POST "/ca/rotate" => super::rotation::rotate,
        POST "/ca/rotate/activate" => super::rotation::activate,
        POST "/ca/rotate/finish" => super::rotation::finish,
        POST "/ca/rotate/abort" => super::rotation::abort,
        GET "/ca/rotation" => super::rotation::status,
        GET "/operators" => super::operators::list,
        POST "/operators" => super::operators::add,
        POST "/operators/renew" => super::operators::renew,
        POST "/operators/{name}/revoke" => super::operators::revoke,
        GET "/audit" => super::audit::list,
        GET "/audit/verify" => super::audit::verify,
    ]
}

/// The admin router, before its gate (see [`super::router`]).
pub(super) fn routes() -> Router<Arc<AppState>> {
    table()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(path, handler)
        })
}

/// `(method, path under /v1/admin)` of every admin route.
pub(super) fn listed() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
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
        cert_ttl_seconds: t.cert_ttl_seconds,
    }
}

async fn token_create(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<TokenCreateRequest>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let ttl = match body.ttl_seconds {
        Some(secs) => time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)),
        None => kith_authority::DEFAULT_TOKEN_TTL,
    };
    let (record, token) = s
        .authority
        .create_token_with_cert_ttl(
            kith_authority::TokenSpec {
                role: body.role,
                node: body.node,
                ttl,
                uses: body.uses.unwrap_or(1),
                allow_sans: body.allow_sans,
                authority: body.authority,
            },
            body.cert_ttl_seconds
                .map(|s| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))),
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

async fn token_list(State(s): St) -> Result<Json<Vec<TokenView>>, ApiError> {
    let now = s.authority.now();
    let tokens = s.authority.tokens().await?;
    Ok(Json(tokens.iter().map(|t| token_view(t, now)).collect()))
}

async fn token_revoke(
    State(s): St,
    Admin(actor): Admin,
    Param(id): Param,
) -> Result<Json<TokenView>, ApiError> {
    let id = TokenId::parse(&id).map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let rec = s.authority.revoke_token(&id, &actor).await?;
    Ok(Json(token_view(&rec, s.authority.now())))
}

async fn node_list(State(s): St) -> Result<Json<Vec<NodeView>>, ApiError> {
    let nodes = s.authority.node_views().await?;
    Ok(Json(
        nodes
            .into_iter()
            .map(|n| NodeView {
                serial: n.serial,
                profiles: n.profiles.iter().map(|p| p.as_str().to_string()).collect(),
                not_after: rfc3339(n.not_after),
                joined: rfc3339(n.joined),
                last_renewal: rfc3339(n.last_renewal),
                state: n.state.as_str().to_string(),
                name: n.name,
                role: n.role,
            })
            .collect(),
    ))
}

async fn node_remove(
    State(s): St,
    Admin(actor): Admin,
    Param(name): Param,
) -> Result<Json<RevokeResponse>, ApiError> {
    let outcomes = s
        .authority
        .remove_node(
            &name,
            RevocationReason::CessationOfOperation,
            &actor,
            Publish::ByCaller,
        )
        .await?;
    Ok(Json(RevokeResponse {
        revoked: revoked_views(&outcomes),
        crl_numbers: s.publish(&outcomes).await?,
    }))
}

async fn revoke(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let reason: RevocationReason = match &body.reason {
        Some(r) => r.parse().map_err(kith_authority::Error::from)?,
        None => RevocationReason::Unspecified,
    };
    let outcomes = match (&body.serial, &body.node, &body.server) {
        (Some(serial), None, None) if !body.remove => {
            let serial = Serial::parse(serial).map_err(kith_authority::Error::from)?;
            let target = RevokeTarget::Serial(serial);
            s.authority
                .revoke(target, reason, &actor, Publish::ByCaller)
                .await?
        }
        (None, Some(node), None) if body.remove => {
            s.authority
                .remove_node(node, reason, &actor, Publish::ByCaller)
                .await?
        }
        (None, Some(node), None) => {
            let target = RevokeTarget::Node(node.clone());
            s.authority
                .revoke(target, reason, &actor, Publish::ByCaller)
                .await?
        }
        (None, None, Some(server)) if !body.remove => {
            let target = RevokeTarget::Server(server.clone());
            s.authority
                .revoke(target, reason, &actor, Publish::ByCaller)
                .await?
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidArgument,
                "name exactly one of serial, node and server (remove goes with node)",
            ))
        }
    };
    Ok(Json(RevokeResponse {
        revoked: revoked_views(&outcomes),
        crl_numbers: s.publish(&outcomes).await?,
    }))
}

async fn server_list(State(s): St) -> Result<Json<Vec<ServerView>>, ApiError> {
    let servers = s.authority.server_views().await?;
    Ok(Json(
        servers
            .into_iter()
            .map(|v| ServerView {
                state: v.state.as_str().to_string(),
                serial: v.serial,
                issued_at: rfc3339(v.issued_at),
                not_after: rfc3339(v.not_after),
                names: v
                    .sans
                    .iter()
                    .filter_map(|san| match san {
                        kith_pki::San::Dns(d) => Some(d.clone()),
                        kith_pki::San::Ip(ip) => Some(ip.to_string()),
                        kith_pki::San::Uri(_) => None,
                    })
                    .collect(),
                live: v.live,
                name: v.name,
            })
            .collect(),
    ))
}

async fn status(State(s): St) -> Result<Json<StatusResponse>, ApiError> {
    let v = s.authority.status_view().await?;
    let problems = s
        .authority
        .health_view()
        .await?
        .problems()
        .into_iter()
        .map(|p| StatusProblem {
            kind: p.kind.as_str().to_string(),
            reason: p.reason,
        })
        .collect();
    Ok(Json(StatusResponse {
        problems,
        cluster: v.cluster,
        version: env!("CARGO_PKG_VERSION").to_string(),
        now: rfc3339(v.now),
        authorities: v
            .authorities
            .into_iter()
            .map(|a| AuthorityStatus {
                root_not_after: rfc3339(a.root_not_after),
                intermediate_not_after: rfc3339(a.intermediate_not_after),
                crl_number: a.crl_number,
                crl_entries: a.crl_entries,
                name: a.name,
            })
            .collect(),
        nodes: v
            .nodes
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        tokens: v
            .tokens
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .collect(),
        server_name: Some(s.server_name.clone()),
        replicas: s
            .authority
            .replicas()
            .await?
            .into_iter()
            .map(|r| ReplicaStatus {
                heartbeat_age_seconds: (v.now - r.heartbeat).whole_seconds(),
                started_at: rfc3339(r.started_at),
                heartbeat: rfc3339(r.heartbeat),
                live: r.live,
                name: r.name,
                advertise: r.advertise,
                version: r.version,
            })
            .collect(),
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

async fn secret_put(
    State(s): St,
    Admin(actor): Admin,
    Param(name): Param,
    Body(body): Body<SecretPutRequest>,
) -> Result<Json<SecretInfo>, ApiError> {
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

async fn secret_list(State(s): St) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    let all = s.authority.secrets().await?;
    Ok(Json(all.iter().map(secret_info).collect()))
}

async fn secret_history(
    State(s): St,
    Param(name): Param,
) -> Result<Json<Vec<SecretVersionView>>, ApiError> {
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
    Admin(actor): Admin,
    Param(name): Param,
    VersionQuery(version): VersionQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    s.authority.delete_secret(&name, version, &actor).await?;
    Ok(Json(
        serde_json::json!({ "deleted": name, "version": version }),
    ))
}
