//! JSON bodies of the `/v1` HTTP API. Requests refuse unknown fields, so a
//! typo in a client is an error rather than a silently ignored option.
//! Times are RFC 3339 strings; certificates are PEM.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest request body the server reads (a join with a few CSRs is ~2 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body of every error answer, whatever the status.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`invalid-token`, `san-not-allowed`, …):
    /// an [`crate::ErrorCode`]'s spelling. A string rather than the enum, so
    /// that a client reads a newer server's codes ([`ErrorBody::wire_code`]).
    #[schema(schema_with = error_code_schema)]
    pub code: String,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
    /// On a failure of the server itself (5xx), the id under which the
    /// server logged the detail; the message is then generic. Absent
    /// otherwise, and from servers older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The schema of [`ErrorBody::code`]: the string of one of
/// [`crate::ErrorCode::ALL`], listed as an enum so that a client generated
/// from the API description knows every code this build emits.
fn error_code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(
            "Stable machine-readable error code; a newer server may answer one not listed here.",
        ))
        .enum_values(Some(crate::ErrorCode::ALL.iter().map(|c| c.as_str())))
        .build()
}

impl ErrorBody {
    /// The code, parsed: known to this build or not.
    pub fn wire_code(&self) -> crate::WireCode {
        crate::WireCode::parse(&self.code)
    }
}

/// `GET /healthz` and `GET /readyz` when all is well: `{"status": "ok"}`
/// or `{"status": "ready"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct HealthStatus {
    /// `ok` (the process answers) or `ready` (the store answers and writes).
    pub status: String,
}

/// One CSR and the profile it asks for.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsrSubmission {
    /// `peer`, `server` or `client`.
    pub profile: String,
    /// PKCS#10 request, PEM.
    pub csr: String,
}

/// `POST /v1/join`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The whole `KITH1-…` token.
    pub token: String,
    /// Node name asked for; a token minted for a name decides it instead.
    #[serde(default)]
    pub node: Option<String>,
    /// One CSR per profile, all over the node's one key.
    pub csrs: Vec<CsrSubmission>,
    /// Addresses of the CSRs the node found on its own interfaces (not
    /// asked for by name): one another live node holds is left out of the
    /// certificate instead of refusing the join `ip-taken`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<String>)]
    pub may_leave_out: Vec<std::net::IpAddr>,
}

/// `POST /v1/renew` (mutual TLS: the identity is the client certificate's).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// If present, must be the node of the client certificate.
    #[serde(default)]
    pub node: Option<String>,
    /// One CSR per profile the node holds.
    pub csrs: Vec<CsrSubmission>,
}

/// A certificate issued by a join or a renewal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct IssuedCertificate {
    /// Profile it was cut for.
    pub profile: String,
    /// Serial, 32 lowercase hex digits.
    pub serial: String,
    /// Start of validity (RFC 3339).
    pub not_before: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// The leaf, PEM.
    pub certificate: String,
    /// Intermediates, leaf's issuer first, PEM.
    pub chain: String,
    /// True when the lifetime was cut short to the issuer's expiry.
    pub truncated: bool,
}

/// Answer to a join or a renewal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct IssueResponse {
    /// Cluster name.
    pub cluster: String,
    /// Node name the server chose.
    pub node: String,
    /// Role granted.
    pub role: String,
    /// Authority that signed.
    pub authority: String,
    /// One per CSR, in request order.
    pub certificates: Vec<IssuedCertificate>,
    /// Roots to trust, PEM.
    pub ca_bundle: String,
    /// Path of the CRL of the signing authority (`/v1/crl/<authority>`).
    pub crl_path: String,
    /// The advertise URLs of the live replicas (`https://host:port`), the
    /// answering one among them: where the node may renew next. Empty from
    /// servers that predate replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

/// One authority in `GET /v1/ca`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuthorityView {
    /// Name.
    pub name: String,
    /// Root, PEM.
    pub root: String,
    /// Intermediate, PEM.
    pub intermediate: String,
    /// SHA-256 of the root's SubjectPublicKeyInfo, hex.
    pub pin: String,
    /// Newer roots of this authority, each cross-signed by an older root
    /// (PEM); empty outside a root rotation. A node adds a root to its
    /// `ca.pem` only when one of these, signed by a root it already trusts,
    /// vouches for it.
    #[serde(default)]
    pub cross_signed: Vec<String>,
}

/// `GET /v1/ca`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CaResponse {
    /// Cluster name.
    pub cluster: String,
    /// Every authority.
    pub authorities: Vec<AuthorityView>,
    /// Every root, PEM: what a node writes to `ca.pem`.
    pub bundle: String,
    /// The advertise URLs of the live replicas (`https://host:port`).
    /// Empty from servers that predate replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

/// `GET /v1/node`: the node behind the client certificate, as the CA sees
/// it. Presenting a current certificate here (or on any node route) is what
/// ends the renewal rights of the certificate it replaced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct NodeSelf {
    /// Cluster name.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Role.
    pub role: String,
    /// Authority.
    pub authority: String,
    /// Serial of the certificate presented.
    pub serial: String,
    /// Whether it is the node's current certificate.
    pub current: bool,
    /// Its expiry (RFC 3339).
    pub not_after: String,
    /// The CA asks this node to renew now, during a CA rotation (absent
    /// otherwise, and from servers older than this field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub renew_now: bool,
}

/// `POST /v1/admin/tokens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenCreateRequest {
    /// Role granted.
    pub role: String,
    /// The only node name it can join as.
    #[serde(default)]
    pub node: Option<String>,
    /// Lifetime in seconds (default one hour).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Joins allowed (default 1).
    #[serde(default)]
    pub uses: Option<u32>,
    /// DNS names a node may ask for besides its own.
    #[serde(default)]
    pub allow_sans: Vec<String>,
    /// Authority signing its nodes (default `cluster`).
    #[serde(default)]
    pub authority: Option<String>,
    /// Lifetime in seconds of the certificates its nodes get, at join and
    /// at every renewal (60 s at least; default: the server's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ttl_seconds: Option<u64>,
}

/// A token as listed (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TokenView {
    /// Id, 16 hex digits.
    pub id: String,
    /// Role granted.
    pub role: String,
    /// Fixed node name.
    pub node: Option<String>,
    /// Extra DNS names allowed.
    pub allow_sans: Vec<String>,
    /// Authority.
    pub authority: String,
    /// Created (RFC 3339).
    pub created: String,
    /// Expires (RFC 3339).
    pub expires: String,
    /// Uses granted.
    pub uses: u32,
    /// Uses left.
    pub uses_left: u32,
    /// `active`, `expired`, `used-up` or `revoked`.
    pub state: String,
    /// Lifetime in seconds of its nodes' certificates, if it sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ttl_seconds: Option<i64>,
}

/// Answer to a token creation: the only time the secret is shown.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TokenCreated {
    /// The token to hand to the node.
    pub token: String,
    /// Its record.
    pub info: TokenView,
}

/// A node as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct NodeView {
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Profiles it holds.
    pub profiles: Vec<String>,
    /// Serial of its newest certificate.
    pub serial: String,
    /// Expiry of its newest certificate (RFC 3339).
    pub not_after: String,
    /// Joined (RFC 3339).
    pub joined: String,
    /// Last join or renewal (RFC 3339).
    pub last_renewal: String,
    /// `active`, `expired`, `revoked` or `removed`.
    pub state: String,
}

/// `POST /v1/admin/revoke`: exactly one of `serial`, `node` and `server`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// A certificate serial.
    #[serde(default)]
    pub serial: Option<String>,
    /// Every live certificate of a node.
    #[serde(default)]
    pub node: Option<String>,
    /// RFC 5280 reason (`key-compromise`, `superseded`, …); default unspecified.
    #[serde(default)]
    pub reason: Option<String>,
    /// With `node`: also remove the node, so it can never renew.
    #[serde(default)]
    pub remove: bool,
    /// Every live certificate of the kith server of that name (one
    /// replica); its name is retired. Not written when absent, so a server
    /// that predates it still reads the other requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// One revoked certificate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RevokedView {
    /// Serial.
    pub serial: String,
    /// Node.
    pub node: String,
    /// Reason.
    pub reason: String,
    /// When (RFC 3339).
    pub revoked_at: String,
    /// False when it was revoked already (the first reason stands).
    pub newly_revoked: bool,
}

/// Answer to a revocation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RevokeResponse {
    /// What was revoked.
    pub revoked: Vec<RevokedView>,
    /// CRL number now published, per authority touched.
    pub crl_numbers: Vec<(String, u64)>,
}

/// An authority in `GET /v1/admin/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuthorityStatus {
    /// Name.
    pub name: String,
    /// Root expiry (RFC 3339).
    pub root_not_after: String,
    /// Intermediate expiry (RFC 3339).
    pub intermediate_not_after: String,
    /// Current CRL number (0 before the first CRL).
    pub crl_number: u64,
    /// Entries in the current CRL.
    pub crl_entries: usize,
}

/// `GET /v1/admin/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct StatusResponse {
    /// Cluster name.
    pub cluster: String,
    /// Server version.
    pub version: String,
    /// Server time (RFC 3339).
    pub now: String,
    /// Authorities.
    pub authorities: Vec<AuthorityStatus>,
    /// Nodes by state (`active`, `expired`, `revoked`, `removed`).
    pub nodes: Vec<(String, usize)>,
    /// Tokens by state.
    pub tokens: Vec<(String, usize)>,
    /// The name of the server that answered (absent from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Every registered replica, live or not (absent from older servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaStatus>,
    /// What needs an operator, most urgent first (empty: nothing; absent
    /// from older servers): `kith status` exits non-zero for these.
    #[serde(default)]
    pub problems: Vec<StatusProblem>,
}

/// One problem in `GET /v1/admin/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct StatusProblem {
    /// `crl-stale`, `nodes-expired` or `rotation-due` (a newer server may
    /// send others).
    pub kind: String,
    /// One line, for a human.
    pub reason: String,
}

/// A replica in `GET /v1/admin/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ReplicaStatus {
    /// Its server name (`--server-name`).
    pub name: String,
    /// Where nodes reach it.
    pub advertise: String,
    /// The kith version it runs.
    pub version: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339).
    pub heartbeat: String,
    /// Seconds from that heartbeat to the server's time.
    pub heartbeat_age_seconds: i64,
    /// Whether the heartbeat is recent enough to count it live.
    pub live: bool,
}

/// A kith server in `GET /v1/admin/servers`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct ServerView {
    /// Its name (`kith-server-<host>`, `--server-name`).
    pub name: String,
    /// `live`, `expired` or `revoked`.
    pub state: String,
    /// Serial of its latest certificate.
    pub serial: String,
    /// When its latest certificate was issued (RFC 3339).
    pub issued_at: String,
    /// Expiry of its latest certificate (RFC 3339).
    pub not_after: String,
    /// The DNS names and addresses its latest certificate carries.
    pub names: Vec<String>,
    /// Its unexpired, unrevoked certificates.
    pub live: usize,
}

/// `PUT /v1/admin/secrets/{name}`: a new version.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretPutRequest {
    /// The value, base64 (standard, padded).
    pub value: String,
    /// New description (kept if absent).
    #[serde(default)]
    pub description: Option<String>,
    /// Roles whose nodes may read it (kept if absent).
    #[serde(default)]
    pub allow_roles: Option<Vec<String>>,
    /// Node names that may read it (kept if absent).
    #[serde(default)]
    pub allow_nodes: Option<Vec<String>>,
    /// Check-and-set: only if the latest version is this one (0: must not exist).
    #[serde(default)]
    pub if_version: Option<u64>,
}

/// A secret as listed: never its value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecretInfo {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Roles allowed to read.
    pub allow_roles: Vec<String>,
    /// Nodes allowed to read.
    pub allow_nodes: Vec<String>,
    /// Versions kept.
    pub versions: usize,
    /// Latest version.
    pub latest: u64,
    /// Size of the latest version in bytes.
    pub size: usize,
    /// Last change (RFC 3339).
    pub updated: String,
}

/// One version in a secret's history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecretVersionView {
    /// Version.
    pub version: u64,
    /// Size in bytes.
    pub size: usize,
    /// Written (RFC 3339).
    pub created: String,
    /// By whom.
    pub created_by: String,
}

/// Answer to `DELETE /v1/admin/secrets/{name}[?version=N]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecretDeleted {
    /// The secret's name.
    pub deleted: String,
    /// The version removed; absent (null) when the whole secret was.
    pub version: Option<u64>,
}

/// `GET /v1/secrets/{name}`: a value.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SecretValue {
    /// Name.
    pub name: String,
    /// Version read.
    pub version: u64,
    /// The value, base64.
    pub value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

/// `GET /v1/admin/settings`, and the answer to a change: the settings every
/// replica of the cluster shares (kept in the cluster record).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct SettingsView {
    /// Validity (nextUpdate − thisUpdate) of the CRLs signed from now on, seconds.
    pub crl_validity_seconds: u64,
    /// Largest secret value accepted, bytes.
    pub secret_max_bytes: u64,
    /// Versions kept per secret.
    pub keep_versions: u32,
}

/// `PATCH /v1/admin/settings`: the settings to change; an absent one keeps
/// its value, and at least one must be given.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    /// New CRL validity, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_validity_seconds: Option<u64>,
    /// New secret size limit, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_max_bytes: Option<u64>,
    /// New number of versions kept per secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_versions: Option<u32>,
}

// The bodies of the operator commands that work online as well as offline
// (`ca show`, `cert ls|issue|sign`, `crl`, `authority add`, `kith admin`).
mod operator;
pub use operator::*;

// The audit trail (`kith audit ls|verify`, `/v1/admin/audit`).
mod audit;
pub use audit::*;
