//! The kith certificate authority engine.
//!
//! [`Authority`] holds the unlocked CA keys of one cluster and does everything
//! that needs them: issue leaves (from a public key or a CSR), revoke, sign
//! CRLs, export keys. It knows the [`kith_store::Store`] trait and nothing
//! about concrete backends, HTTP or files; the time comes from an injected
//! [`Clock`]. Every operation that changes state writes single-key records
//! (see `records`), never relying on a transaction across keys.
//!
//! Read-only questions that need no passphrase (which authorities exist, the
//! trust bundle, recorded certificates) are answered by [`ClusterInfo`].
//!
//! One concern per module, layered without import circles: leaves (`keys`,
//! every store key; `records`; `cas`, the one compare-and-swap retry;
//! `vault`, `limits`, `clock`, `error`), then the keyring snapshot, the
//! [`Authority`] handle, and the operations, one file each (`issue`,
//! `revoke`, `crl`, `join`, `renew`, `secrets`, ...). docs/ARCHITECTURE.md
//! draws the layers.

mod audit;
mod authority;
mod cas;
mod catalog;
mod claims;
mod clock;
mod crl;
mod error;
mod info;
mod init;
mod issue;
mod join;
mod keyring;
mod keys;
mod limits;
mod names;
mod nodes;
mod records;
mod refresh;
mod refusals;
mod rekey;
mod renew;
mod revoke;
mod secrets;
mod servers;
mod tokens;
mod vault;

use kith_pki::{CsrPolicy, KeyType, PublicKey, San};
use time::Duration;

pub use audit::AuditLimits;
pub use authority::Authority;
pub use catalog::{AuthorityStatusView, NodeView, StatusView};
pub use clock::{Clock, ManualClock, SystemClock};
pub use crl::stored_crl;
pub use error::Error;
pub use info::{find_certificate, list_certificates, AuthorityInfo, ClusterInfo};
pub use issue::{Identity, Issued};
pub use limits::{MAX_CERT_TTL, MAX_CRL_VALIDITY, MAX_RENEW_GRACE};
pub use nodes::{list_nodes, NodeRecord, NodeState, DEFAULT_RENEW_GRACE, MAX_CSRS, RETRY_WINDOW};
pub use records::{
    AuditRecord, AuthorityRecord, CertRecord, ClusterRecord, CrlRecord, PendingMaster,
    RevokedRecord,
};
pub use rekey::RotationReport;
pub use revoke::{Publish, RevokeOutcome, RevokeTarget};
pub use secrets::{
    list_secrets, validate_secret_name, Reader, SecretRecord, SecretUpdate, SecretVersion,
    DEFAULT_KEEP_VERSIONS, DEFAULT_SECRET_MAX_BYTES,
};
pub use servers::{ServerState, ServerView};
pub use tokens::{list_tokens, TokenRecord, TokenSpec, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
pub use vault::{KdfParams, SecretBytes};

/// The authority every cluster starts with.
pub const DEFAULT_AUTHORITY: &str = "cluster";
/// Root lifetime.
pub const ROOT_TTL: Duration = Duration::days(3650);
/// Intermediate lifetime.
pub const INTERMEDIATE_TTL: Duration = Duration::days(1825);
/// Default CRL validity (nextUpdate − thisUpdate).
pub const DEFAULT_CRL_VALIDITY: Duration = Duration::days(7);
/// Actor name recorded for commands run on the CA machine itself.
pub const LOCAL_OPERATOR: &str = "local-operator";

/// What `init` needs.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Cluster name (a DNS name of two labels or more).
    pub cluster: String,
    /// CA key type.
    pub key_type: KeyType,
    /// Argon2id parameters for the passphrase.
    pub kdf: KdfParams,
}

/// Tunables that are not part of the stored cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// CRL validity.
    pub crl_validity: Duration,
    /// Default CSR policy.
    pub policy: CsrPolicy,
    /// Largest secret value accepted, in bytes.
    pub secret_max_bytes: usize,
    /// Versions kept per secret; older ones are deleted.
    pub keep_versions: usize,
    /// What one identity can make the CA record: refusals and reads
    /// summarised per window, refusals and renewals limited.
    pub audit_limits: AuditLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            crl_validity: DEFAULT_CRL_VALIDITY,
            policy: CsrPolicy::default(),
            secret_max_bytes: DEFAULT_SECRET_MAX_BYTES,
            keep_versions: DEFAULT_KEEP_VERSIONS,
            audit_limits: AuditLimits::default(),
        }
    }
}

/// A request to issue a leaf for a public key the caller holds the private key of.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// Who the certificate is for.
    pub identity: Identity,
    /// The subject's public key.
    pub public_key: PublicKey,
    /// SANs beyond `<node>.<cluster>` and the SPIFFE ID (already approved by the caller).
    pub extra_sans: Vec<San>,
}
