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
mod audit_chain;
mod audit_state;
mod audit_verify;
mod authority;
mod backup;
mod cas;
mod catalog;
mod chunks;
mod claims;
mod clock;
mod cluster_settings;
mod crl;
mod error;
mod health;
mod info;
mod init;
mod intermediates;
mod issue;
mod join;
mod keyring;
mod keys;
mod lease;
mod limits;
mod names;
mod nodes;
mod offline;
mod operators;
mod records;
mod refresh;
mod refusals;
mod rekey;
mod renew;
mod replicas;
mod request_id;
mod revoke;
mod root_abort;
mod root_progress;
mod roots;
mod rotation;
mod secrets;
mod servers;
mod settings;
mod tokens;
mod vault;

use kith_pki::{KeyType, PublicKey, San};
use time::Duration;

pub use audit::AuditLimits;
pub use audit_state::AuditSink;
pub use audit_verify::{list_audit, AuditAnchor, AuditQuery};
pub use authority::Authority;
pub use backup::{
    read_backup, restore_backup, take_backup, Backup, Manifest, Restored, BACKUP_FORMAT,
    BACKUP_VERSION, RESTORE_CRL_NUMBER_GAP,
};
pub use catalog::{AuthorityStatusView, NodeView, StatusView};
pub use clock::{Clock, ManualClock, SystemClock};
pub use cluster_settings::{
    ClusterSettings, DEFAULT_CRL_VALIDITY, DEFAULT_KEEP_VERSIONS, DEFAULT_SECRET_MAX_BYTES,
    MAX_KEEP_VERSIONS, MAX_SECRET_MAX_BYTES, MIN_CRL_VALIDITY,
};
pub use crl::{forget_crl_coverage, stored_crl, stored_crl_of, CrlIssuer};
pub use error::Error;
pub use health::{CaExpiry, CrlHealth, HealthView, Problem, ProblemKind};
pub use info::{find_certificate, list_certificates, AuthorityInfo, ClusterInfo};
pub use intermediates::{
    IntermediateStatus, IntermediateStep, IntermediateView, DEFAULT_INTERMEDIATE_PUBLISH,
    DEFAULT_INTERMEDIATE_RENEW_PERCENT,
};
pub use issue::{Identity, Issued};
pub use lease::{LeaseView, MAINTENANCE_LEASE};
pub use limits::{check_cert_ttl, MAX_CERT_TTL, MAX_CRL_VALIDITY, MAX_RENEW_GRACE, MIN_CERT_TTL};
pub use nodes::{
    list_nodes, NodeRecord, NodeState, DEFAULT_RENEW_GRACE, MAX_CSRS, OFFLINE_TOKEN, RETRY_WINDOW,
};
pub use operators::{list_operators, OperatorState, OperatorView, FIRST_OPERATOR, OPERATOR_ROLE};
pub use records::{
    AuditRecord, AuthorityRecord, CertRecord, ClusterRecord, CrlRecord, OtherIntermediate,
    OtherRoot, PendingMaster, RevokedRecord, RootPhase, RootRotation,
};
pub use rekey::RotationReport;
pub use replicas::{Registration, ReplicaView, HEARTBEAT_PERIOD, LIVE_PERIODS};
pub use request_id::{
    current_request_id, new_request_id, valid_request_id, with_request_id, MAX_REQUEST_ID_LEN,
};
pub use revoke::{Publish, RevokeOutcome, RevokeTarget};
pub use root_progress::{RootRotationStatus, DEFAULT_ROOT_RENEW_SPREAD};
pub use roots::{RootRotationOptions, RootStep};
pub use secrets::{
    list_secrets, validate_secret_name, Reader, SecretRecord, SecretUpdate, SecretVersion,
};
pub use servers::{ServerState, ServerView};
pub use settings::{cluster_settings, Settings, SettingsChange};
pub use tokens::{list_tokens, TokenRecord, TokenSpec, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
pub use vault::{KdfParams, SecretBytes};

/// The authority every cluster starts with.
pub const DEFAULT_AUTHORITY: &str = "cluster";
/// Root lifetime.
pub const ROOT_TTL: Duration = Duration::days(3650);
/// Intermediate lifetime.
pub const INTERMEDIATE_TTL: Duration = Duration::days(1825);
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
