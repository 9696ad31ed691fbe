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
        /// Stable code.
        code: String,
        /// Human message.
        message: String,
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
    /// A stable machine-readable code.
    pub fn code(&self) -> &str {
        match self {
            Self::PinMismatch { .. } => "pin-mismatch",
            Self::NotKithServer { .. } => "not-kith-server",
            Self::BundleRefused { .. } => "bundle-refused",
            Self::Api { code, .. } => code,
            Self::Transport { .. } => "unreachable",
            Self::BadResponse(_) => "bad-response",
            Self::NodeDir(_) => "node-dir",
            Self::Invalid(_) => "invalid-argument",
            Self::Pki(e) => e.code(),
            Self::Files(e) => e.code(),
            Self::Tls(_) => "tls-config",
        }
    }

    /// True when retrying cannot help: only a new token (or an operator) can.
    pub fn needs_new_token(&self) -> bool {
        matches!(
            self.code(),
            "certificate-revoked"
                | "certificate-superseded"
                | "node-removed"
                | "renewal-window-passed"
                | "unknown-certificate"
                | "unknown-node"
                | "identity-mismatch"
        )
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
