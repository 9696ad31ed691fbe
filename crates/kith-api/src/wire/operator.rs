//! What `kith ca show`, `cert ls`, `cert issue`, `cert sign`, `crl`,
//! `authority add`, `ca rotate` and `kith admin` send and receive when a server holds
//! the store (`/v1/admin/...`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::IssuedCertificate;

/// `GET /v1/admin/ca`: the cluster's public facts (`kith ca show`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CaInfo {
    /// Cluster name.
    pub cluster: String,
    /// When it was initialised (RFC 3339).
    pub created: String,
    /// Every authority, in name order.
    pub authorities: Vec<CaAuthority>,
}

/// One authority of [`CaInfo`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CaAuthority {
    /// Name.
    pub name: String,
    /// Key type (`p256`, ...).
    pub key_type: String,
    /// Root, PEM.
    pub root: String,
    /// Intermediate, PEM.
    pub intermediate: String,
}

/// One recorded certificate in `GET /v1/admin/certs` (`kith cert ls`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CertificateView {
    /// Serial, hex.
    pub serial: String,
    /// Holder name (node, operator or server).
    pub node: String,
    /// Role.
    pub role: String,
    /// Profile.
    pub profile: String,
    /// Issuing authority.
    pub authority: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
    /// SHA-256 of the DER, hex.
    pub fingerprint_sha256: String,
    /// Its revocation, if revoked.
    pub revoked: Option<CertificateRevocation>,
}

/// The revocation of a [`CertificateView`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CertificateRevocation {
    /// Reason.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// `POST /v1/admin/certs` (`kith cert issue` online): a certificate
/// for a key made on the operator's machine, proven by a CSR. The identity
/// is the one named here, never the CSR's subject.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateIssueRequest {
    /// Node name.
    pub node: String,
    /// Role.
    pub role: String,
    /// `peer`, `server` or `client` (operators: `kith admin add`).
    pub profile: String,
    /// Authority; absent means the default one.
    #[serde(default)]
    pub authority: Option<String>,
    /// Lifetime, seconds; absent means the profile's default.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Extra SANs (DNS names or IP addresses) as the operator gave them.
    #[serde(default)]
    pub sans: Vec<String>,
    /// PKCS#10 request over the new key, PEM.
    pub csr: String,
}

/// A certificate issued to an operator's request (`cert issue`, `admin
/// add`, `admin renew`), with what a credential directory needs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CertificateIssued {
    /// Cluster name.
    pub cluster: String,
    /// Holder name.
    pub node: String,
    /// Role.
    pub role: String,
    /// Authority that signed.
    pub authority: String,
    /// The certificate.
    pub certificate: IssuedCertificate,
    /// The issuing authority's root, PEM.
    pub root: String,
}

/// `POST /v1/admin/authorities` (`kith authority add`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorityAddRequest {
    /// Name (a DNS label).
    pub name: String,
    /// Key type of its root and intermediate (`p256`, ...).
    pub key_type: String,
}

/// `GET /v1/admin/crl/{authority}` and `POST` (sign a new one): an
/// authority's current CRL (`kith crl`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct CrlView {
    /// Authority.
    pub authority: String,
    /// CRL number.
    pub number: u64,
    /// Entries.
    pub entries: usize,
    /// nextUpdate (RFC 3339).
    pub next_update: String,
    /// The CRL, PEM.
    pub pem: String,
}

/// One operator in `GET /v1/admin/operators` (`kith admin ls`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct OperatorView {
    /// Name (`admin` for the one `kith init` made).
    pub name: String,
    /// `live`, `expired` or `revoked`.
    pub state: String,
    /// Serial of its latest certificate.
    pub serial: String,
    /// When that certificate was issued (RFC 3339).
    pub issued_at: String,
    /// Its expiry (RFC 3339).
    pub not_after: String,
    /// Its unexpired, unrevoked certificates.
    pub live: usize,
}

/// `POST /v1/admin/operators` (`kith admin add`, with `name`) and
/// `POST /v1/admin/operators/renew` (`kith admin renew`, without: the
/// caller's own name).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorRequest {
    /// The new operator's name (add only).
    #[serde(default)]
    pub name: Option<String>,
    /// PKCS#10 request over the new key, PEM.
    pub csr: String,
}

/// `POST /v1/admin/operators/{name}/revoke` (`kith admin revoke`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorRevokeRequest {
    /// Reason (as `kith revoke --reason`); absent: privilege-withdrawn.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/admin/certs/sign` (`kith cert sign` online): a
/// certificate for a CSR made elsewhere; the names it asks for are judged
/// by the policy given here, the identity is the one named here.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CsrSignRequest {
    /// Node name.
    pub node: String,
    /// Role.
    pub role: String,
    /// `peer`, `server` or `client`.
    pub profile: String,
    /// Authority; absent means the default one.
    #[serde(default)]
    pub authority: Option<String>,
    /// Lifetime, seconds; absent means the profile's default.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// DNS names the CSR may ask for besides the node's own.
    #[serde(default)]
    pub allow_sans: Vec<String>,
    /// Allow wildcard names (each listed in `allow_sans` too).
    #[serde(default)]
    pub allow_wildcards: bool,
    /// Refuse IP address SANs.
    #[serde(default)]
    pub no_ip_sans: bool,
    /// The PKCS#10 request, PEM.
    pub csr: String,
}

/// `POST /v1/admin/crl/{authority}` (`kith crl --force-new`): sign a new
/// CRL now. No fields: a body still goes through the one extractor.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CrlSignRequest {}

/// `POST /v1/admin/ca/rotate` (`kith ca rotate`): take the next step of an
/// authority's intermediate rotation, or start a root rotation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// The authority.
    pub authority: String,
    /// Rotate the intermediate: prepare one when none is prepared, else
    /// make the prepared one issue. Exactly one of this and `root`.
    #[serde(default)]
    pub intermediate: bool,
    /// Activate before the publish delay has passed (peers that have not
    /// fetched the new intermediate's CRL refuse its leaves until they do).
    /// Intermediate only.
    #[serde(default)]
    pub force: bool,
    /// Start a root rotation: prepare a new root, its intermediate and the
    /// cross-signed certificates (the phases go on with
    /// `/v1/admin/ca/rotate/activate` and `/finish`).
    #[serde(default)]
    pub root: bool,
    /// Key type of the new root and intermediate (root only; default: the
    /// current one's).
    #[serde(default)]
    pub key_type: Option<String>,
    /// The old keys are compromised (root only): at activation the old
    /// root revokes the old intermediate and every node renews at once.
    #[serde(default)]
    pub compromised: bool,
    /// How long the old root stays trusted once the rotation finishes, in
    /// seconds (root only; default: until the last leaf under it expires).
    /// For an emergency, after every node was told to renew at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_seconds: Option<u64>,
}

/// `POST /v1/admin/ca/rotate/activate` and `/finish` (`kith ca rotate
/// activate|finish`): the next phase of a root rotation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RootStepRequest {
    /// The authority.
    pub authority: String,
    /// Move on although live nodes are not ready (they are listed as left
    /// behind).
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/admin/ca/rotate/abort` (`kith ca rotate abort`): return to
/// the old root alone.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RootAbortRequest {
    /// The authority.
    pub authority: String,
}

/// Where a root rotation stands (in [`RotationStatus::root`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RootRotationView {
    /// `prepared`, `active` or `finished`.
    pub phase: String,
    /// When the rotation started (RFC 3339).
    pub started: String,
    /// When this phase began (RFC 3339).
    pub since: String,
    /// SHA-256 pin of the root being replaced, hex.
    pub old_root_pin: String,
    /// SHA-256 pin of the root replacing it, hex.
    pub new_root_pin: String,
    /// Live nodes ready for the next phase, by name.
    pub converged: Vec<String>,
    /// Live nodes heard from in this phase but not ready.
    pub pending: Vec<String>,
    /// Live nodes not heard from since this phase began.
    pub offline: Vec<String>,
    /// Nodes a forced step left behind.
    pub left_behind: Vec<String>,
    /// Why the rotation does not move on by itself, if it waits.
    #[serde(default)]
    pub waiting_for: Option<String>,
    /// When the other root leaves the bundle (finished only; RFC 3339).
    #[serde(default)]
    pub other_root_until: Option<String>,
    /// Started because the old keys are compromised.
    pub compromised: bool,
    /// Aborted after activation (the new root is the one leaving).
    pub aborted: bool,
}

/// What [`RotateRequest`] did, and where the rotation stands after it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RotateResponse {
    /// `prepared` or `activated`.
    pub step: String,
    /// The generation prepared or activated.
    pub generation: u32,
    /// Where the authority's intermediates stand now.
    pub status: RotationStatus,
}

/// What a root rotation step did (`POST /v1/admin/ca/rotate` with `root`,
/// `/activate`, `/finish`, `/abort`), and where the authority stands after it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RootRotateResponse {
    /// `prepared`, `activated`, `finished` or `aborted`.
    pub step: String,
    /// Where the authority's intermediates and root rotation stand now.
    pub status: RotationStatus,
}

/// `GET /v1/admin/ca/rotation[?authority=NAME]` (`kith ca rotate status`),
/// one per authority: where its intermediates stand.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct RotationStatus {
    /// The authority.
    pub authority: String,
    /// `steady` (nothing prepared), `publishing` (a prepared intermediate
    /// waits for agents to fetch its CRL) or `ready` (it may issue: the
    /// next `kith ca rotate` or maintenance tick activates it).
    pub phase: String,
    /// Why the rotation waits, or what comes next, in words.
    pub detail: String,
    /// The generation of the intermediate that issues.
    pub generation: u32,
    /// Its expiry (RFC 3339).
    pub not_after: String,
    /// When a renewal is prepared by itself (RFC 3339).
    pub renew_at: String,
    /// The intermediate prepared to issue next, if any.
    #[serde(default)]
    pub prepared: Option<PreparedIntermediate>,
    /// Replaced intermediates whose leaves may still be alive (their CRLs
    /// are still signed and served), oldest first.
    #[serde(default)]
    pub previous: Vec<PreviousIntermediate>,
    /// The authority's root rotation, while one is under way.
    #[serde(default)]
    pub root: Option<RootRotationView>,
}

/// The prepared intermediate of a [`RotationStatus`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PreparedIntermediate {
    /// Its generation.
    pub generation: u32,
    /// Its expiry (RFC 3339).
    pub not_after: String,
    /// When it may start issuing (RFC 3339): its publish delay ends.
    pub activate_at: String,
}

/// A replaced intermediate of a [`RotationStatus`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct PreviousIntermediate {
    /// Its generation.
    pub generation: u32,
    /// Its expiry (RFC 3339): its CRL is served until then.
    pub not_after: String,
}
