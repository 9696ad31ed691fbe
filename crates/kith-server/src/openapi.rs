//! The OpenAPI 3.1 description of the API, served at `GET /v1/openapi.json`
//! and kept in `docs/openapi.json`.
//!
//! Each route is a `#[utoipa::path]` on an empty function below: method,
//! path, parameters, request body and success answer, with the bodies'
//! schemas derived from the wire types of [`kith_api::wire`] (their
//! `ToSchema`, so a field added there reaches the document by itself).
//! What every route shares is added once, by [`Shared`]: the error answer
//! ([`kith_api::wire::ErrorBody`], its `code` an enum of every
//! [`kith_api::ErrorCode`]) and the `mutualTLS` security scheme.
//!
//! The functions are never called: they carry the attributes. A test
//! (`tests/openapi.rs`) holds the document and the router to each other,
//! both ways, so a route added to one and not the other fails it.

// The functions exist for their `#[utoipa::path]` attribute alone.
#![allow(dead_code)]

use std::sync::OnceLock;

use kith_api::wire::{
    AuditPage, AuditVerifyReport, AuthorityAddRequest, CaAuthority, CaInfo, CaResponse,
    CertificateIssueRequest, CertificateIssued, CertificateView, CrlSignRequest, CrlView,
    CsrSignRequest, ErrorBody, HealthStatus, IssueResponse, JoinRequest, NodeSelf, NodeView,
    OperatorRequest, OperatorRevokeRequest, OperatorView, RenewRequest, RevokeRequest,
    RevokeResponse, RootAbortRequest, RootRotateResponse, RootStepRequest, RotateRequest,
    RotateResponse, RotationStatus, SecretDeleted, SecretInfo, SecretPutRequest, SecretValue,
    SecretVersionView, ServerView, SettingsUpdate, SettingsView, StatusResponse,
    TokenCreateRequest, TokenCreated, TokenView,
};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::SecurityScheme;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// The name of the security scheme: a client certificate, verified
/// against the cluster's roots (a node's, or an operator's for `/v1/admin`).
pub(crate) const MUTUAL_TLS: &str = "mutualTLS";

/// The document, as a value.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as served and as kept in `docs/openapi.json`: pretty JSON
/// with a final newline, built once.
pub fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut s = openapi()
            .to_pretty_json()
            .expect("the OpenAPI document is plain data and serializes");
        s.push('\n');
        s
    })
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kith",
        description = "kith's HTTPS API: join, renewal, CRLs, secrets, and the operator \
            endpoints under /v1/admin. TLS always; routes marked mutualTLS want a client \
            certificate issued by this cluster (an operator's `admin` certificate under \
            /v1/admin). Every refusal is an ErrorBody with a stable code. Request bodies \
            refuse unknown fields; query parameters other than those listed are refused.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        livez, healthz, readyz, openapi_doc, ca, crl, root_crl, other_crls, join, renew, node,
        secret_get,
        token_create, token_list, token_revoke, node_list, node_remove, server_list, revoke,
        status, backup, audit_list, audit_verify, secret_list, secret_put, secret_delete, secret_history, settings_show,
        settings_update, ca_show, cert_list, cert_issue, cert_sign, authority_add, crl_show,
        crl_new, root_crl_show, root_crl_new, rotate, rotate_activate, rotate_finish,
        rotate_abort, rotation_status, operator_list, operator_add, operator_renew,
        operator_revoke,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Shared),
    tags(
        (name = "public", description = "Anyone may call these: health, the CA bundle, CRLs, this document."),
        (name = "node", description = "Joining (a token authenticates it), renewal and what a node reads with its certificate."),
        (name = "admin", description = "Operator routes: mutual TLS with a live `admin` certificate."),
    ),
)]
struct Doc;

/// What every operation shares: the error answer, and the security scheme
/// the gated ones name.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            MUTUAL_TLS,
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate issued by this cluster, presented in the TLS handshake: \
                     a node's for /v1/renew, /v1/node and /v1/secrets, a live operator (admin) \
                     certificate for /v1/admin."
                        .into(),
                ),
                deprecated: None,
                extensions: None,
            },
        );
        let error = ResponseBuilder::new()
            .description(
                "Refused or failed: the status says the class, `code` the reason (stable), \
                 `message` what to do; a 5xx carries the `request_id` the server logged.",
            )
            .content(
                kith_api::JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                    .build(),
            )
            .build();
        components.responses.insert("Error".into(), RefOr::T(error));
        for item in doc.paths.paths.values_mut() {
            let ops: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                for class in ["4XX", "5XX"] {
                    op.responses.responses.insert(
                        class.into(),
                        RefOr::Ref(Ref::new("#/components/responses/Error")),
                    );
                }
            }
        }
    }
}

/// A DER CRL (`application/pkix-crl`), bytes.
struct DerCrl;

impl utoipa::PartialSchema for DerCrl {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type(kith_api::PKIX_CRL)
            .description(Some("A CRL, DER (RFC 5280)."))
            .into()
    }
}

impl ToSchema for DerCrl {}

/// PEM text (`application/x-pem-file`).
struct Pem;

impl utoipa::PartialSchema for Pem {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("PEM blocks, one after the other (possibly none)."))
            .into()
    }
}

impl ToSchema for Pem {}

/// A backup file (`application/x-ndjson`): a manifest line, then one line
/// per record.
struct BackupFile;

impl utoipa::PartialSchema for BackupFile {
    fn schema() -> RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type("application/x-ndjson")
            .description(Some(
                "One JSON object per line: the manifest (format kith-backup, version, cluster, \
                 created, records, value_bytes, max_crl_number, sha256 of every byte after its \
                 line), then {key, value (base64), sha256} per record, in key order. Values \
                 are as stored: CA keys and secrets stay sealed by the master key.",
            ))
            .into()
    }
}

impl ToSchema for BackupFile {}

/// What `POST /v1/admin/ca/rotate` answers: an intermediate step, or the
/// start of a root rotation (`"root": true`).
#[derive(serde::Serialize, ToSchema)]
#[serde(untagged)]
enum RotateAnswer {
    /// The intermediate's step.
    Intermediate(RotateResponse),
    /// A root rotation prepared.
    Root(RootRotateResponse),
}

// ------------------------------------------------------------------ public

/// Liveness: the process answers (a Kubernetes liveness probe).
#[utoipa::path(get, path = "/livez", tag = "public",
    responses((status = 200, description = "Alive.", body = HealthStatus)))]
fn livez() {}

/// Liveness, the older name of `/livez`.
#[utoipa::path(get, path = "/healthz", tag = "public",
    responses((status = 200, description = "Alive.", body = HealthStatus)))]
fn healthz() {}

/// Readiness: every authority's keys are unlocked and the store answered a
/// read within 2 s (503 `not-ready` otherwise; a Kubernetes readiness probe).
#[utoipa::path(get, path = "/readyz", tag = "public",
    responses((status = 200, description = "Ready.", body = HealthStatus)))]
fn readyz() {}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "public",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API.",
        content_type = "application/json", body = Object)))]
fn openapi_doc() {}

/// The cluster's authorities (roots, intermediates, pins) and the bundle of
/// every root.
#[utoipa::path(get, path = "/v1/ca", tag = "public",
    responses((status = 200, description = "The CA bundle.", body = CaResponse)))]
fn ca() {}

/// The CRL of an authority's intermediate: its revoked leaves.
#[utoipa::path(get, path = "/v1/crl/{authority}", tag = "public",
    params(("authority" = String, Path, description = "Authority name (`cluster` by default).")),
    responses((status = 200, description = "The CRL, DER.", content_type = "application/pkix-crl", body = DerCrl)))]
fn crl() {}

/// The CRL of an authority's root: its revoked intermediates.
#[utoipa::path(get, path = "/v1/crl/{authority}/root", tag = "public",
    params(("authority" = String, Path, description = "Authority name.")),
    responses((status = 200, description = "The CRL, DER.", content_type = "application/pkix-crl", body = DerCrl)))]
fn root_crl() {}

/// The authority's other CRLs (prepared or replaced intermediates; the
/// other root's during a root rotation), PEM, possibly none.
#[utoipa::path(get, path = "/v1/crl/{authority}/others", tag = "public",
    params(("authority" = String, Path, description = "Authority name.")),
    responses((status = 200, description = "CRLs, PEM.", content_type = "application/x-pem-file", body = Pem)))]
fn other_crls() {}

// -------------------------------------------------------------------- node

/// Join with a token and one CSR per profile: the node's certificates.
#[utoipa::path(post, path = "/v1/join", tag = "node", request_body = JoinRequest,
    responses((status = 200, description = "Joined.", body = IssueResponse)))]
fn join() {}

/// Renew with the node's certificate (expired within the grace window, if
/// the CSRs prove its key).
#[utoipa::path(post, path = "/v1/renew", tag = "node", request_body = RenewRequest,
    security(("mutualTLS" = [])),
    responses((status = 200, description = "Renewed.", body = IssueResponse)))]
fn renew() {}

/// The node behind the client certificate, as the CA sees it.
#[utoipa::path(get, path = "/v1/node", tag = "node", security(("mutualTLS" = [])),
    params(("trusts" = Option<String>, Query,
        description = "The root pins the node trusts, hex, comma-separated (at most 8): how a root rotation learns who is ready.")),
    responses((status = 200, description = "The node.", body = NodeSelf)))]
fn node() {}

/// A secret's value, for a node whose role or name may read it.
#[utoipa::path(get, path = "/v1/secrets/{name}", tag = "node", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Secret name."),
        ("version" = Option<u64>, Query, description = "A version; default the latest.")),
    responses((status = 200, description = "The value.", body = SecretValue)))]
fn secret_get() {}

// ------------------------------------------------------------------- admin

/// Mint a join token: the only answer that shows its secret.
#[utoipa::path(post, path = "/v1/admin/tokens", tag = "admin", security(("mutualTLS" = [])),
    request_body = TokenCreateRequest,
    responses((status = 201, description = "Created.", body = TokenCreated)))]
fn token_create() {}

/// Every token (never a secret).
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Tokens.", body = Vec<TokenView>)))]
fn token_list() {}

/// Revoke a token.
#[utoipa::path(delete, path = "/v1/admin/tokens/{id}", tag = "admin", security(("mutualTLS" = [])),
    params(("id" = String, Path, description = "Token id, 16 hex digits.")),
    responses((status = 200, description = "The token, revoked.", body = TokenView)))]
fn token_revoke() {}

/// Every node.
#[utoipa::path(get, path = "/v1/admin/nodes", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Nodes.", body = Vec<NodeView>)))]
fn node_list() {}

/// Remove a node: revoke its certificates; it can never renew.
#[utoipa::path(delete, path = "/v1/admin/nodes/{name}", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Node name.")),
    responses((status = 200, description = "Revoked.", body = RevokeResponse)))]
fn node_remove() {}

/// Every kith server (replica).
#[utoipa::path(get, path = "/v1/admin/servers", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Servers.", body = Vec<ServerView>)))]
fn server_list() {}

/// Revoke a certificate, a node's certificates or a server's.
#[utoipa::path(post, path = "/v1/admin/revoke", tag = "admin", security(("mutualTLS" = [])),
    request_body = RevokeRequest,
    responses((status = 200, description = "Revoked.", body = RevokeResponse)))]
fn revoke() {}

/// Authorities, nodes and tokens by state, CRL numbers, replicas.
#[utoipa::path(get, path = "/v1/admin/status", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Status.", body = StatusResponse)))]
fn status() {}

/// Every record of the CA's store, in one backup file (`kith backup`).
#[utoipa::path(get, path = "/v1/admin/backup", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "The backup.", content_type = "application/x-ndjson", body = BackupFile)))]
fn backup() {}

/// Audit records in their global order (time, writer, sequence), one page.
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", security(("mutualTLS" = [])),
    params(
        ("since" = Option<String>, Query, description = "Only records at or after this time (RFC 3339)."),
        ("node" = Option<String>, Query, description = "Only records whose actor is `node:N` or whose subject is N."),
        ("action" = Option<String>, Query, description = "Only this action (`join`, `renew`, `revoke`, ...)."),
        ("limit" = Option<u64>, Query, description = "At most this many records (1 to 1000; default 1000)."),
    ),
    responses((status = 200, description = "A page of records.", body = AuditPage)))]
fn audit_list() {}

/// Every audit chain verified by the server (its own also against the
/// head it keeps in memory).
#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "The verification report (`broken` lists any break).", body = AuditVerifyReport)))]
fn audit_verify() {}

/// Every secret (never a value).
#[utoipa::path(get, path = "/v1/admin/secrets", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Secrets.", body = Vec<SecretInfo>)))]
fn secret_list() {}

/// Write a secret's next version.
#[utoipa::path(put, path = "/v1/admin/secrets/{name}", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Secret name.")),
    request_body = SecretPutRequest,
    responses((status = 200, description = "Written.", body = SecretInfo)))]
fn secret_put() {}

/// Remove a secret, or one version of it.
#[utoipa::path(delete, path = "/v1/admin/secrets/{name}", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Secret name."),
        ("version" = Option<u64>, Query, description = "Only this version.")),
    responses((status = 200, description = "Removed.", body = SecretDeleted)))]
fn secret_delete() {}

/// A secret's versions (never a value).
#[utoipa::path(get, path = "/v1/admin/secrets/{name}/history", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Secret name.")),
    responses((status = 200, description = "Versions.", body = Vec<SecretVersionView>)))]
fn secret_history() {}

/// The settings every replica shares.
#[utoipa::path(get, path = "/v1/admin/settings", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Settings.", body = SettingsView)))]
fn settings_show() {}

/// Change shared settings.
#[utoipa::path(patch, path = "/v1/admin/settings", tag = "admin", security(("mutualTLS" = [])),
    request_body = SettingsUpdate,
    responses((status = 200, description = "The settings now.", body = SettingsView)))]
fn settings_update() {}

/// The cluster's public facts.
#[utoipa::path(get, path = "/v1/admin/ca", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "The CA.", body = CaInfo)))]
fn ca_show() {}

/// Every certificate issued.
#[utoipa::path(get, path = "/v1/admin/certs", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Certificates.", body = Vec<CertificateView>)))]
fn cert_list() {}

/// Issue a certificate whose key the caller made.
#[utoipa::path(post, path = "/v1/admin/certs", tag = "admin", security(("mutualTLS" = [])),
    request_body = CertificateIssueRequest,
    responses((status = 201, description = "Issued.", body = CertificateIssued)))]
fn cert_issue() {}

/// Sign a CSR.
#[utoipa::path(post, path = "/v1/admin/certs/sign", tag = "admin", security(("mutualTLS" = [])),
    request_body = CsrSignRequest,
    responses((status = 201, description = "Issued.", body = CertificateIssued)))]
fn cert_sign() {}

/// Add an authority (a separate CA hierarchy).
#[utoipa::path(post, path = "/v1/admin/authorities", tag = "admin", security(("mutualTLS" = [])),
    request_body = AuthorityAddRequest,
    responses((status = 201, description = "Added.", body = CaAuthority)))]
fn authority_add() {}

/// An authority's current intermediate CRL, described.
#[utoipa::path(get, path = "/v1/admin/crl/{name}", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Authority name.")),
    responses((status = 200, description = "The CRL.", body = CrlView)))]
fn crl_show() {}

/// Sign a new intermediate CRL now.
#[utoipa::path(post, path = "/v1/admin/crl/{name}", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Authority name.")),
    request_body = CrlSignRequest,
    responses((status = 200, description = "The new CRL.", body = CrlView)))]
fn crl_new() {}

/// An authority's current root CRL, described.
#[utoipa::path(get, path = "/v1/admin/crl/{name}/root", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Authority name.")),
    responses((status = 200, description = "The CRL.", body = CrlView)))]
fn root_crl_show() {}

/// Sign a new root CRL now.
#[utoipa::path(post, path = "/v1/admin/crl/{name}/root", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Authority name.")),
    request_body = CrlSignRequest,
    responses((status = 200, description = "The new CRL.", body = CrlView)))]
fn root_crl_new() {}

/// The next step of an intermediate rotation, or the start of a root rotation.
#[utoipa::path(post, path = "/v1/admin/ca/rotate", tag = "admin", security(("mutualTLS" = [])),
    request_body = RotateRequest,
    responses((status = 200, description = "The step taken and where the rotation stands.", body = RotateAnswer)))]
fn rotate() {}

/// Activate a prepared root rotation.
#[utoipa::path(post, path = "/v1/admin/ca/rotate/activate", tag = "admin", security(("mutualTLS" = [])),
    request_body = RootStepRequest,
    responses((status = 200, description = "Activated.", body = RootRotateResponse)))]
fn rotate_activate() {}

/// Finish an active root rotation.
#[utoipa::path(post, path = "/v1/admin/ca/rotate/finish", tag = "admin", security(("mutualTLS" = [])),
    request_body = RootStepRequest,
    responses((status = 200, description = "Finished.", body = RootRotateResponse)))]
fn rotate_finish() {}

/// Abort a root rotation.
#[utoipa::path(post, path = "/v1/admin/ca/rotate/abort", tag = "admin", security(("mutualTLS" = [])),
    request_body = RootAbortRequest,
    responses((status = 200, description = "Aborted.", body = RootRotateResponse)))]
fn rotate_abort() {}

/// Where each authority's rotations stand.
#[utoipa::path(get, path = "/v1/admin/ca/rotation", tag = "admin", security(("mutualTLS" = [])),
    params(("authority" = Option<String>, Query, description = "Only this authority.")),
    responses((status = 200, description = "Rotations, by authority name.", body = Vec<RotationStatus>)))]
fn rotation_status() {}

/// Every operator credential.
#[utoipa::path(get, path = "/v1/admin/operators", tag = "admin", security(("mutualTLS" = [])),
    responses((status = 200, description = "Operators.", body = Vec<OperatorView>)))]
fn operator_list() {}

/// Add an operator: an `admin` certificate for a key the caller made.
#[utoipa::path(post, path = "/v1/admin/operators", tag = "admin", security(("mutualTLS" = [])),
    request_body = OperatorRequest,
    responses((status = 201, description = "Issued.", body = CertificateIssued)))]
fn operator_add() {}

/// Renew the calling operator's credential.
#[utoipa::path(post, path = "/v1/admin/operators/renew", tag = "admin", security(("mutualTLS" = [])),
    request_body = OperatorRequest,
    responses((status = 201, description = "Issued.", body = CertificateIssued)))]
fn operator_renew() {}

/// Revoke an operator's credentials.
#[utoipa::path(post, path = "/v1/admin/operators/{name}/revoke", tag = "admin", security(("mutualTLS" = [])),
    params(("name" = String, Path, description = "Operator name.")),
    request_body = OperatorRevokeRequest,
    responses((status = 200, description = "Revoked.", body = RevokeResponse)))]
fn operator_revoke() {}
