use kith_api::ErrorCode;
use kith_pki::CsrRejection;

/// Everything the authority can refuse or fail at, grouped by cause. Each
/// has a stable machine-readable [`Error::code`] for the CLI and the API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The passphrase does not unwrap the master key.
    #[error("wrong passphrase: it does not unlock this cluster's keys")]
    WrongPassphrase,
    /// No cluster has been initialised in this store.
    #[error("no cluster here: run `kith init --cluster NAME` first")]
    NotInitialized,
    /// `init` found a cluster already.
    #[error("a cluster ({0}) is already initialised here; refusing to overwrite it")]
    AlreadyInitialized(String),
    /// No authority of that name.
    #[error("unknown authority {0:?}")]
    UnknownAuthority(String),
    /// An authority of that name exists already.
    #[error("authority {0:?} already exists")]
    AuthorityExists(String),
    /// No certificate with that serial was issued here.
    #[error("no certificate with serial {0} was issued by this cluster")]
    UnknownCertificate(String),
    /// No live certificate for that node.
    #[error("node {0:?} has no certificate to act on")]
    UnknownNode(String),
    /// No token with that id, or its secret does not match (one answer for
    /// both, so ids cannot be probed).
    #[error("invalid join token")]
    InvalidToken,
    /// An operator named a token id that does not exist.
    #[error("no token with id {0}")]
    UnknownToken(String),
    /// The token was minted by another cluster (its pin is not this root's).
    #[error("the token was minted for another cluster (its pin does not match this CA's root)")]
    TokenWrongCluster,
    /// The token was revoked.
    #[error("the token was revoked at {0}; ask the operator for a new one")]
    TokenRevoked(time::OffsetDateTime),
    /// The token expired.
    #[error("the token expired at {0}; ask the operator for a new one")]
    TokenExpired(time::OffsetDateTime),
    /// The token has no use left.
    #[error("the token has been used as many times as it allows; ask the operator for a new one")]
    TokenUsedUp,
    /// The node name is held by a live certificate over another key.
    #[error("node name {0:?} is taken by a live certificate with another key; revoke it, or mint a token for that name")]
    NodeNameTaken(String),
    /// The name belonged to a node that was revoked, removed or expired, or
    /// to certificates issued offline: only a token minted for it can bring
    /// it back, so a name (and what its policy grants) is never taken over.
    #[error("node name {0:?} belonged to a node that was revoked, removed or has expired (or to certificates issued offline); only a token minted for that name brings it back: `kith token create --name {0} --role ROLE`")]
    NodeNameRetired(String),
    /// A token minted for this name can still be used: the name waits for it.
    #[error("node name {name:?} is reserved by token {token}, minted for it: join with that token, or revoke it (`kith token revoke {token}`)")]
    NodeNameReserved {
        /// The name.
        name: String,
        /// The reserving token's id.
        token: String,
    },
    /// No certificate was ever issued to a kith server of that name.
    #[error("no kith server named {0:?} has a certificate here (`kith server ls` lists them)")]
    UnknownServer(String),
    /// No operator of that name holds a certificate.
    #[error("no operator named {0:?} has a certificate here (`kith admin ls` lists them)")]
    UnknownOperator(String),
    /// An operator of that name holds a live certificate already.
    #[error("operator {0:?} already holds a live certificate: it renews its own (`kith admin renew`), or revoke it first (`kith admin revoke {0}`)")]
    OperatorExists(String),
    /// Revoking this operator would leave the cluster without one.
    #[error("operator {0:?} is the last with a live certificate: revoking it would leave nobody to run the admin API")]
    LastOperator(String),
    /// A kith server name with a revoked certificate: the name is retired,
    /// so a revoked replica can never issue itself a fresh certificate.
    #[error("server name {0:?} was revoked and is retired: start this server under another name (`--server-name kith-server-NAME` or KITH_SERVER_NAME)")]
    ServerNameRetired(String),
    /// An IP address asked for is held by another live certificate.
    #[error("IP address {ip} is held by {holder}'s live certificate; a node may share it only if its token allows it (`kith token create --allow-san {ip}`), or leave it out of `kith join --san`")]
    IpTaken {
        /// The address.
        ip: std::net::IpAddr,
        /// Who holds it (`node node-1`, `server kith-server-ca1`).
        holder: String,
    },
    /// A certificate that a renewal replaced tried to renew again.
    #[error("certificate {serial} of node {node:?} was replaced by a renewal; only the node's current certificate renews (a node that lost it needs a new token)")]
    CertificateSuperseded {
        /// The presented certificate.
        serial: String,
        /// Its node.
        node: String,
    },
    /// The token fixes a node name and the request asked for another.
    #[error("this token is for node {token:?}, not {asked:?}")]
    NodeNameMismatch {
        /// The token's name.
        token: String,
        /// The name asked for.
        asked: String,
    },
    /// A profile that cannot be asked for here (admin by join, or not granted).
    #[error("profile {0:?} is not allowed here")]
    ProfileNotAllowed(String),
    /// The CSRs of one request are over different keys.
    #[error("all CSRs of one request must be over the same key")]
    CsrKeyMismatch,
    /// The presented certificate is revoked.
    #[error("certificate {0} is revoked; this node needs a new token to rejoin")]
    CertificateRevoked(String),
    /// The node was removed by an operator.
    #[error("node {0:?} was removed; it needs a new token to rejoin")]
    NodeRemoved(String),
    /// The certificate expired longer ago than the grace window allows.
    #[error("the certificate expired at {expired}, more than {grace_days} days ago: ask the operator to mint a token (`kith token create`) and join again")]
    RenewalWindowPassed {
        /// When it expired.
        expired: time::OffsetDateTime,
        /// The grace window, in days.
        grace_days: i64,
    },
    /// A renewal named another node than its client certificate.
    #[error("the client certificate is node {certificate:?}'s; it cannot renew {asked:?}")]
    IdentityMismatch {
        /// The certificate's node.
        certificate: String,
        /// The node asked for.
        asked: String,
    },
    /// No secret of that name (operators only: nodes get `SecretForbidden`).
    #[error("no secret named {0:?}")]
    UnknownSecret(String),
    /// The secret exists but not that version.
    #[error("secret {name:?} has no version {version}")]
    UnknownSecretVersion {
        /// Secret name.
        name: String,
        /// Version asked for.
        version: u64,
    },
    /// The reader's role and name are not in the secret's policy.
    #[error(
        "{reader} may not read secret {name:?}: its policy names neither this node nor its role"
    )]
    SecretForbidden {
        /// Who asked.
        reader: String,
        /// Which secret.
        name: String,
    },
    /// A secret value over the size limit.
    #[error("the value is {size} bytes; secrets are limited to {max} bytes")]
    SecretTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A write based on a version that is no longer the latest.
    #[error("secret {name:?} is at version {current}, not {expected}: someone else changed it; read it again and retry")]
    SecretConflict {
        /// Secret name.
        name: String,
        /// The version the writer based its change on.
        expected: u64,
        /// The latest version now.
        current: u64,
    },
    /// A CSR was refused by policy.
    #[error("CSR refused: {0}")]
    Csr(#[from] CsrRejection),
    /// A bad argument (name, lifetime, parameter).
    #[error("{0}")]
    Invalid(String),
    /// A stored record failed its integrity check or could not be decoded.
    #[error("integrity error: {0}")]
    Integrity(String),
    /// A certificate-level failure from kith-pki.
    #[error(transparent)]
    Pki(kith_pki::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kith_store::Error),
    /// Too many concurrent writers kept winning a compare-and-swap.
    #[error("gave up after repeated concurrent updates of {0}")]
    Contended(String),
    /// A CA rotation cannot take that step yet; the message says why.
    #[error("{0}")]
    RotationNotReady(String),
    /// One identity was refused, or renewed, too often in a short time
    /// ([`crate::AuditLimits`]); it is answered with this until the window ends.
    #[error("too many requests of this kind from this identity; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When the caller may try again.
        retry_after: std::time::Duration,
    },
    /// A bug or an environment failure (RNG, thread pool).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<kith_pki::Error> for Error {
    fn from(e: kith_pki::Error) -> Self {
        match e {
            kith_pki::Error::Csr(r) => Error::Csr(r),
            other => Error::Pki(other),
        }
    }
}

impl Error {
    /// A stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::WrongPassphrase => ErrorCode::WrongPassphrase,
            Self::NotInitialized => ErrorCode::NotInitialized,
            Self::AlreadyInitialized(_) => ErrorCode::AlreadyInitialized,
            Self::UnknownAuthority(_) => ErrorCode::UnknownAuthority,
            Self::AuthorityExists(_) => ErrorCode::AuthorityExists,
            Self::UnknownCertificate(_) => ErrorCode::UnknownCertificate,
            Self::UnknownNode(_) => ErrorCode::UnknownNode,
            Self::InvalidToken => ErrorCode::InvalidToken,
            Self::UnknownToken(_) => ErrorCode::UnknownToken,
            Self::TokenWrongCluster => ErrorCode::TokenWrongCluster,
            Self::TokenRevoked(_) => ErrorCode::TokenRevoked,
            Self::TokenExpired(_) => ErrorCode::TokenExpired,
            Self::TokenUsedUp => ErrorCode::TokenUsedUp,
            Self::NodeNameTaken(_) => ErrorCode::NodeNameTaken,
            Self::NodeNameMismatch { .. } => ErrorCode::NodeNameMismatch,
            Self::NodeNameRetired(_) => ErrorCode::NodeNameRetired,
            Self::NodeNameReserved { .. } => ErrorCode::NodeNameReserved,
            Self::UnknownServer(_) => ErrorCode::UnknownServer,
            Self::ServerNameRetired(_) => ErrorCode::ServerNameRetired,
            Self::UnknownOperator(_) => ErrorCode::UnknownOperator,
            Self::OperatorExists(_) => ErrorCode::Exists,
            Self::LastOperator(_) => ErrorCode::LastOperator,
            Self::IpTaken { .. } => ErrorCode::IpTaken,
            Self::CertificateSuperseded { .. } => ErrorCode::CertificateSuperseded,
            Self::ProfileNotAllowed(_) => ErrorCode::ProfileNotAllowed,
            Self::CsrKeyMismatch => ErrorCode::CsrKeyMismatch,
            Self::CertificateRevoked(_) => ErrorCode::CertificateRevoked,
            Self::NodeRemoved(_) => ErrorCode::NodeRemoved,
            Self::RenewalWindowPassed { .. } => ErrorCode::RenewalWindowPassed,
            Self::IdentityMismatch { .. } => ErrorCode::IdentityMismatch,
            Self::UnknownSecret(_) => ErrorCode::UnknownSecret,
            Self::UnknownSecretVersion { .. } => ErrorCode::UnknownSecretVersion,
            Self::SecretForbidden { .. } => ErrorCode::SecretForbidden,
            Self::SecretTooLarge { .. } => ErrorCode::SecretTooLarge,
            Self::SecretConflict { .. } => ErrorCode::SecretConflict,
            Self::Csr(r) => r.kind.code(),
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::Integrity(_) => ErrorCode::IntegrityError,
            Self::Pki(e) => e.code(),
            Self::Store(kith_store::Error::Locked(_)) => ErrorCode::StoreLocked,
            Self::Store(kith_store::Error::Unavailable(_)) => ErrorCode::StoreUnavailable,
            Self::Store(kith_store::Error::Corrupt { .. }) => ErrorCode::StoreCorrupt,
            Self::Store(kith_store::Error::Inconsistent { .. }) => ErrorCode::IntegrityError,
            Self::Store(kith_store::Error::Contended { .. }) => ErrorCode::Contended,
            Self::Store(_) => ErrorCode::StoreError,
            Self::Contended(_) => ErrorCode::Contended,
            Self::RotationNotReady(_) => ErrorCode::RotationNotReady,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }
}
