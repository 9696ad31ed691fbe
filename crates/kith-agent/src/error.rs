use kith_api::{ErrorCode, WireCode};

/// Everything the node side can fail at, grouped by cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server's chain does not end in the root the token pins: nothing was sent.
    #[error("the server at {server} did not present the cluster root that the token pins (expected SPKI SHA-256 {expected}); nothing was sent to it. Check the address, or ask for a token from this server")]
    PinMismatch {
        /// Server address.
        server: String,
        /// The pin, hex.
        expected: String,
    },
    /// The server's certificate chains to the cluster's roots but is not a
    /// kith server's (a node's, say): nothing was sent to it.
    #[error("refusing {server}: not a kith server: {detail}; nothing was sent to it. Check the server address")]
    NotKithServer {
        /// Server address.
        server: String,
        /// Why.
        detail: String,
    },
    /// The server is a kith server of this cluster, but its certificate
    /// does not carry the name or address dialled: nothing was sent to it.
    #[error("{server} answered with a certificate that is not for {host} (it names {names}); nothing was sent to it")]
    ServerNameMismatch {
        /// Server address.
        server: String,
        /// The name or address dialled.
        host: String,
        /// The names the certificate carries, or "other names".
        names: String,
    },
    /// The server offered a trust bundle this node must not accept.
    #[error("refusing the CA bundle from {server}: {detail}; ca.pem is unchanged")]
    BundleRefused {
        /// Server address.
        server: String,
        /// Why.
        detail: String,
    },
    /// The server answered with an error.
    #[error("server refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// Stable code, as the server spelled it (known to this build or not).
        code: WireCode,
        /// Human message.
        message: String,
    },
    /// The CRL this node fetched lists its own certificate: it can no longer
    /// renew, and its peers refuse it.
    #[error("this node ({node}) is revoked: the CRL lists its certificate {serial} (revoked at {revoked_at}{}); its peers refuse it and it cannot renew", reason.as_deref().map(|r| format!(", reason {r}")).unwrap_or_default())]
    Revoked {
        /// Node name.
        node: String,
        /// Serial of the revoked certificate, hex.
        serial: String,
        /// When, RFC 3339.
        revoked_at: String,
        /// The CRL's reason, if it gives one.
        reason: Option<String>,
    },
    /// The server or network failed (connect, TLS, HTTP).
    #[error("cannot reach {server}: {detail}")]
    Transport {
        /// Server address.
        server: String,
        /// What failed.
        detail: String,
    },
    /// The server's answer does not hold up (wrong key, bad chain, unparsable).
    #[error("the server's answer is not acceptable: {0}")]
    BadResponse(String),
    /// The node directory is missing something or is unreadable.
    #[error("node directory: {0}")]
    NodeDir(String),
    /// Bad input (token, name, address).
    #[error("{0}")]
    Invalid(String),
    /// Certificate-level failure.
    #[error(transparent)]
    Pki(#[from] kith_pki::Error),
    /// A file write failed.
    #[error(transparent)]
    Files(#[from] kith_nodedir::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

impl Error {
    /// The stable code, as the CLI prints it: the wire spelling of
    /// [`Error::error_code`], or a newer server's code verbatim.
    pub fn code(&self) -> &str {
        match self {
            Self::Api { code, .. } => code.as_str(),
            other => other.local_code().as_str(),
        }
    }

    /// The code, if this build knows it. `None` only for a code a newer
    /// server answered that this build has never heard of: such a failure
    /// is not taken to need a new token, and retried as its status says.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => code.known(),
            other => Some(other.local_code()),
        }
    }

    /// The code of a failure found on this side of the wire.
    fn local_code(&self) -> ErrorCode {
        match self {
            Self::PinMismatch { .. } => ErrorCode::PinMismatch,
            Self::NotKithServer { .. } => ErrorCode::NotKithServer,
            Self::ServerNameMismatch { .. } => ErrorCode::ServerNameMismatch,
            Self::BundleRefused { .. } => ErrorCode::BundleRefused,
            // Not reached: `code` and `error_code` read a server's code themselves.
            Self::Api { code, .. } => code.known().unwrap_or(ErrorCode::HttpError),
            Self::Revoked { .. } => ErrorCode::CertificateRevoked,
            Self::Transport { .. } => ErrorCode::Unreachable,
            Self::BadResponse(_) => ErrorCode::BadResponse,
            Self::NodeDir(_) => ErrorCode::NodeDir,
            Self::Invalid(_) => ErrorCode::InvalidArgument,
            Self::Pki(e) => e.code(),
            Self::Files(e) => e.code(),
            Self::Tls(_) => ErrorCode::TlsConfig,
        }
    }

    /// True when retrying cannot help: only a new token (or an operator) can.
    pub fn needs_new_token(&self) -> bool {
        self.error_code().is_some_and(ErrorCode::needs_new_token)
    }

    /// True when this server is out of service rather than answering: it
    /// cannot be reached, timed out, or failed (5xx, 503 included). Worth
    /// trying another replica; a refusal (4xx) is an answer and is not.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// True for failures worth retrying later (network, server overload).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}
