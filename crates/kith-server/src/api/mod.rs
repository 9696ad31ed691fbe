//! The `/v1` routes: thin handlers that decode, call the authority, encode.
//!
//! Three routers, each behind one gate, so that a route cannot forget who
//! may call it:
//! - public ([`public`]): health, the CA bundle, CRLs; and in [`nodes`], join
//!   (its token authenticates it) and renew (the authority judges the
//!   certificate, which may be expired within the grace window);
//! - node ([`nodes`]): `/v1/node` and secret reads, behind
//!   [`extract::require_member`], a live certificate issued here, presented
//!   if it is a node's;
//! - admin ([`admin`]): nested at `/v1/admin` behind
//!   [`extract::require_admin`], a live operator (`admin`) certificate.
//!
//! The gates are route layers: an unknown path is `404 not-found` and a
//! wrong method `405 method-not-allowed` before any certificate is looked at,
//! as for every other path.

mod admin;
mod audit;
mod backup;
mod ca;
mod extract;
mod nodes;
mod operators;
mod public;
mod revocations;
mod rotation;
mod settings;

use std::sync::Arc;

use axum::extract::State;
use axum::middleware::from_fn_with_state;
use axum::Router;
use kith_authority::Authority;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(crate) use extract::Peer;
pub(crate) use nodes::decode_join;

use crate::error::ApiError;
use kith_api::ErrorCode;

pub(crate) struct AppState {
    /// This replica's name (`kith status` shows which server answered).
    pub(crate) server_name: String,
    pub(crate) authority: Authority,
    pub(crate) renew_grace: time::Duration,
    pub(crate) crls: Arc<crate::crl::CrlPublisher>,
    /// The live replicas' advertise URLs, as of this replica's last
    /// heartbeat: what `/v1/ca` and the join and renew answers list.
    pub(crate) replicas: std::sync::RwLock<Vec<String>>,
    /// This process's metrics (`--metrics-listen` serves them).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

impl AppState {
    /// The live replicas' advertise URLs, as last read.
    pub(crate) fn replica_urls(&self) -> Vec<String> {
        self.replicas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

type St = State<Arc<AppState>>;

/// Where the admin router is nested.
const ADMIN_PREFIX: &str = "/v1/admin";

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let node = nodes::member_routes()
        .route_layer(from_fn_with_state(state.clone(), extract::require_member));
    let admin =
        admin::routes().route_layer(from_fn_with_state(state.clone(), extract::require_admin));
    public::routes()
        .merge(nodes::open_routes())
        .merge(node)
        .nest(ADMIN_PREFIX, admin)
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        // After the nesting, so that it reaches the admin routes too and
        // answers a wrong method without passing their gate.
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "this endpoint does not take that method",
            )
        })
        // Outside the gates, so that it counts what they refuse too; routes by
        // their template (`MatchedPath`), never the path the client sent.
        .layer(from_fn_with_state(state.clone(), count_request))
        // Outermost: every answer of the router names its request id.
        .layer(axum::middleware::from_fn(audit::request_id))
        .with_state(state)
}

/// Count one answer by its matched route and its outcome code.
async fn count_request(
    State(s): St,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let response = next.run(req).await;
    let code = response.extensions().get::<ErrorCode>().copied();
    // An answer without a code (none today) is counted by its status.
    let outcome = match code {
        Some(c) => c.as_str().to_string(),
        None if response.status().is_success() => "ok".to_string(),
        None => format!("status-{}", response.status().as_u16()),
    };
    s.metrics.request(&route, &outcome);
    response
}

/// Every admin route, `(method, full path)`: the table the admin router is
/// built from, so a list walked by a test is the router itself.
pub(crate) fn admin_routes() -> Vec<(axum::http::Method, String)> {
    admin::listed()
        .into_iter()
        .map(|(m, p)| (m, format!("{ADMIN_PREFIX}{p}")))
        .collect()
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
