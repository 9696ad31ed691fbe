use std::fmt;

use kith_api::ErrorCode;

/// Everything that can go wrong in `kith-pki`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A certificate signing request was refused; the rejection names the reason.
    #[error("{0}")]
    Csr(#[from] CsrRejection),
    /// Input could not be parsed as the artefact it claimed to be.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was being parsed ("certificate", "CRL", ...).
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// A name (node, role, cluster, SAN) is not acceptable.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which kind of name.
        what: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Key generation, loading or encryption failed.
    #[error("key error: {0}")]
    Key(String),
    /// Building or signing a certificate or CRL failed.
    #[error("cannot build {what}: {detail}")]
    Build {
        /// What was being built.
        what: &'static str,
        /// Why it failed.
        detail: String,
    },
    /// A certificate chain did not verify.
    #[error("verification failed: {0}")]
    Verify(String),
    /// The chain verified, but a CRL lists the certificate.
    #[error("certificate is revoked")]
    Revoked,
}

impl Error {
    pub(crate) fn parse(what: &'static str, e: impl fmt::Display) -> Self {
        Self::Parse {
            what,
            detail: e.to_string(),
        }
    }

    pub(crate) fn build(what: &'static str, e: impl fmt::Display) -> Self {
        Self::Build {
            what,
            detail: e.to_string(),
        }
    }

    /// A stable machine-readable code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Csr(r) => r.kind.code(),
            Self::Parse { .. } => ErrorCode::MalformedInput,
            Self::InvalidName { .. } => ErrorCode::InvalidName,
            Self::Key(_) => ErrorCode::KeyError,
            Self::Build { .. } => ErrorCode::BuildFailed,
            Self::Verify(_) => ErrorCode::VerifyFailed,
            Self::Revoked => ErrorCode::Revoked,
        }
    }
}

/// Why a CSR was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrRejectionKind {
    /// Not a PEM `CERTIFICATE REQUEST` or DER CSR.
    Malformed,
    /// Larger than [`crate::MAX_CSR_BYTES`].
    TooLarge,
    /// The signature does not verify with the CSR's own key (no proof of possession).
    BadSignature,
    /// The signature uses a digest kith refuses (SHA-1) or an unknown algorithm.
    WeakSignature,
    /// The key is below the policy's minimum strength.
    WeakKey,
    /// The key algorithm or curve is not supported.
    UnsupportedKey,
    /// The CSR asks for no name at all.
    NoNames,
    /// A requested name is not allowed for this node.
    SanNotAllowed,
    /// A wildcard was requested and the policy does not allow them.
    WildcardNotAllowed,
    /// An IP address was requested and the policy does not allow them.
    IpNotAllowed,
    /// The CSR asks for basicConstraints CA:TRUE.
    CaNotAllowed,
    /// The CSR asks for more names, or longer ones, than a leaf may carry.
    TooManySans,
}

impl CsrRejectionKind {
    /// The stable code, as shown to users and sent over the API.
    pub fn code(self) -> ErrorCode {
        match self {
            Self::Malformed => ErrorCode::MalformedCsr,
            Self::TooLarge => ErrorCode::CsrTooLarge,
            Self::BadSignature => ErrorCode::BadSignature,
            Self::WeakSignature => ErrorCode::WeakSignature,
            Self::WeakKey => ErrorCode::WeakKey,
            Self::UnsupportedKey => ErrorCode::UnsupportedKey,
            Self::NoNames => ErrorCode::NoNames,
            Self::SanNotAllowed => ErrorCode::SanNotAllowed,
            Self::WildcardNotAllowed => ErrorCode::WildcardNotAllowed,
            Self::IpNotAllowed => ErrorCode::IpNotAllowed,
            Self::CaNotAllowed => ErrorCode::CaNotAllowed,
            Self::TooManySans => ErrorCode::TooManySans,
        }
    }
}

/// A refused CSR: a kind (with a stable code) and a human detail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrRejection {
    /// Why.
    pub kind: CsrRejectionKind,
    /// Specifics, e.g. `RSA 1024 < 2048` or the refused name.
    pub detail: String,
}

impl CsrRejection {
    pub(crate) fn new(kind: CsrRejectionKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for CsrRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.code(), self.detail)
    }
}

impl std::error::Error for CsrRejection {}
