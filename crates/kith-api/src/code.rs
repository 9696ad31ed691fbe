//! Every stable error code kith emits, typed once.
//!
//! The wire spelling (`node-name-taken`) is what the API answers in
//! [`crate::wire::ErrorBody::code`] and what the CLI prints in
//! `error[code]: message`; it never changes for a variant. What a code means
//! (its HTTP status, whether only a new token helps, a hint for the CLI) is
//! matched exhaustively below, so a new variant does not compile until every
//! mapping says what it means.

use std::fmt;
use std::str::FromStr;

/// Declares the enum, its wire spellings and the list of all variants from
/// one table, so a spelling is written exactly once.
macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident => $wire:literal, )*) => {
        /// A stable machine-readable error code, one variant per code the
        /// API, the agent and the CLI emit.
        ///
        /// Deliberately not `#[non_exhaustive]`: the workspace matches it
        /// exhaustively, so adding a variant is a compile error until
        /// [`ErrorCode::http_status`], [`ErrorCode::needs_new_token`] and
        /// [`ErrorCode::hint`] say what it means. A client that meets a code
        /// it does not know (a newer server's) reads it as
        /// [`WireCode::Unknown`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire spelling, as answered by the API and printed by the CLI.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $wire, )*
                }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $wire => Ok(ErrorCode::$variant), )*
                    other => Err(UnknownErrorCode(other.to_string())),
                }
            }
        }
    };
}

error_codes! {
    // The authority: unlocking and setup.
    /// The passphrase does not unwrap the master key.
    WrongPassphrase => "wrong-passphrase",
    /// No cluster has been initialised in this store.
    NotInitialized => "not-initialized",
    /// `init` found a cluster already.
    AlreadyInitialized => "already-initialized",
    /// No authority of that name.
    UnknownAuthority => "unknown-authority",
    /// An authority of that name exists already.
    AuthorityExists => "authority-exists",
    // The authority: tokens and joins.
    /// No certificate with that serial was issued here.
    UnknownCertificate => "unknown-certificate",
    /// No live certificate for that node.
    UnknownNode => "unknown-node",
    /// No token with that id, or its secret does not match.
    InvalidToken => "invalid-token",
    /// An operator named a token id that does not exist.
    UnknownToken => "unknown-token",
    /// The token was minted by another cluster.
    TokenWrongCluster => "token-wrong-cluster",
    /// The token was revoked.
    TokenRevoked => "token-revoked",
    /// The token expired.
    TokenExpired => "token-expired",
    /// The token has no use left.
    TokenUsedUp => "token-used-up",
    /// The node name is held by a live certificate over another key.
    NodeNameTaken => "node-name-taken",
    /// The token fixes a node name and the request asked for another.
    NodeNameMismatch => "node-name-mismatch",
    /// The name had a past; only a token minted for it brings it back.
    NodeNameRetired => "node-name-retired",
    /// A token minted for this name can still be used.
    NodeNameReserved => "node-name-reserved",
    /// No certificate was ever issued to a kith server of that name.
    UnknownServer => "unknown-server",
    /// A kith server name whose certificates were revoked: it never serves again.
    ServerNameRetired => "server-name-retired",
    /// No operator of that name holds a certificate.
    UnknownOperator => "unknown-operator",
    /// Revoking this operator would leave no operator with a live certificate.
    LastOperator => "last-operator",
    /// An IP address asked for is held by another live certificate.
    IpTaken => "ip-taken",
    /// A certificate that a renewal replaced tried to renew again.
    CertificateSuperseded => "certificate-superseded",
    /// A profile that cannot be asked for here.
    ProfileNotAllowed => "profile-not-allowed",
    /// The CSRs of one request are over different keys.
    CsrKeyMismatch => "csr-key-mismatch",
    /// The presented certificate is revoked.
    CertificateRevoked => "certificate-revoked",
    /// The node was removed by an operator.
    NodeRemoved => "node-removed",
    /// The certificate expired longer ago than the grace window allows.
    RenewalWindowPassed => "renewal-window-passed",
    /// A request named another node than its client certificate.
    IdentityMismatch => "identity-mismatch",
    // The authority: secrets.
    /// No secret of that name.
    UnknownSecret => "unknown-secret",
    /// The secret exists but not that version.
    UnknownSecretVersion => "unknown-secret-version",
    /// The reader is not in the secret's policy.
    SecretForbidden => "secret-forbidden",
    /// A secret value over the size limit.
    SecretTooLarge => "secret-too-large",
    /// A write based on a version that is no longer the latest.
    SecretConflict => "secret-conflict",
    // The authority: everything else.
    /// A bad argument (name, lifetime, parameter).
    InvalidArgument => "invalid-argument",
    /// A stored record failed its integrity check or could not be decoded.
    IntegrityError => "integrity-error",
    /// Another process holds the store.
    StoreLocked => "store-locked",
    /// The store cannot write now (disk full, I/O error); retry later.
    StoreUnavailable => "store-unavailable",
    /// The store's file is damaged.
    StoreCorrupt => "store-corrupt",
    /// Any other failure of the store.
    StoreError => "store-error",
    /// Too many concurrent writers kept winning a compare-and-swap.
    Contended => "contended",
    /// A CA rotation cannot take that step now (nothing prepared, or what
    /// was prepared is not published long enough).
    RotationNotReady => "rotation-not-ready",
    /// Refused or renewed too often in a short time; retry later.
    RateLimited => "rate-limited",
    /// A bug or an environment failure.
    Internal => "internal",
    // kith-pki.
    /// Input could not be parsed as the artefact it claimed to be.
    MalformedInput => "malformed-input",
    /// A name (node, role, cluster, SAN) is not acceptable.
    InvalidName => "invalid-name",
    /// Key generation, loading or encryption failed.
    KeyError => "key-error",
    /// Building or signing a certificate or CRL failed.
    BuildFailed => "build-failed",
    /// A certificate chain did not verify.
    VerifyFailed => "verify-failed",
    /// The chain verified, but the certificate is revoked.
    Revoked => "revoked",
    // kith-pki: refused CSRs.
    /// Not a PEM or DER CSR.
    MalformedCsr => "malformed-csr",
    /// The CSR is larger than a CSR may be.
    CsrTooLarge => "csr-too-large",
    /// The CSR's signature does not verify with its own key.
    BadSignature => "bad-signature",
    /// The CSR is signed with a refused digest or an unknown algorithm.
    WeakSignature => "weak-signature",
    /// The key is below the minimum strength.
    WeakKey => "weak-key",
    /// The key algorithm or curve is not supported.
    UnsupportedKey => "unsupported-key",
    /// The CSR asks for no name at all.
    NoNames => "no-names",
    /// A requested name is not allowed for this node.
    SanNotAllowed => "san-not-allowed",
    /// A wildcard was requested and is not allowed.
    WildcardNotAllowed => "wildcard-not-allowed",
    /// An IP address was requested and is not allowed.
    IpNotAllowed => "ip-not-allowed",
    /// The CSR asks to be a CA.
    CaNotAllowed => "ca-not-allowed",
    /// The CSR asks for more names, or longer ones, than a leaf may carry.
    TooManySans => "too-many-sans",
    // kith-nodedir: files on the local machine.
    /// The operating system refused or failed a file operation.
    IoError => "io-error",
    /// A file's owner or mode lets someone else read or replace it.
    InsecurePermissions => "insecure-permissions",
    /// A FIFO, device, socket, directory or link where a file belongs.
    NotRegularFile => "not-regular-file",
    /// Something else where a directory belongs.
    NotADirectory => "not-a-directory",
    /// A file larger than kith reads.
    FileTooLarge => "file-too-large",
    // The server's own refusals.
    /// The request could not be read (path, body, encoding).
    MalformedRequest => "malformed-request",
    /// No such endpoint.
    NotFound => "not-found",
    /// The endpoint does not take that method.
    MethodNotAllowed => "method-not-allowed",
    /// The body is not `application/json`.
    UnsupportedMediaType => "unsupported-media-type",
    /// The body is larger than the server reads.
    BodyTooLarge => "body-too-large",
    /// A profile name that does not exist.
    UnknownProfile => "unknown-profile",
    /// `/readyz`: the server cannot serve writes now.
    NotReady => "not-ready",
    /// The string is not a join token.
    MalformedToken => "malformed-token",
    /// The endpoint needs mutual TLS.
    ClientCertificateRequired => "client-certificate-required",
    /// The client certificate expired.
    CertificateExpired => "certificate-expired",
    /// The endpoint is for node certificates.
    NodeRequired => "node-required",
    /// The endpoint is for admin certificates.
    AdminRequired => "admin-required",
    // The node side (kith-agent): what it found wrong with a server.
    /// The server's chain does not end in the root the token pins.
    PinMismatch => "pin-mismatch",
    /// The server's certificate is not a kith server's.
    NotKithServer => "not-kith-server",
    /// The server's certificate does not carry the name or address dialled.
    ServerNameMismatch => "server-name-mismatch",
    /// The server offered a trust bundle the node must not accept.
    BundleRefused => "bundle-refused",
    /// The server or network failed (connect, TLS, HTTP).
    Unreachable => "unreachable",
    /// The server's answer does not hold up.
    BadResponse => "bad-response",
    /// The server answered an error without a JSON error body.
    HttpError => "http-error",
    /// The node directory is missing something or is unreadable.
    NodeDir => "node-dir",
    /// rustls refused a configuration.
    TlsConfig => "tls-config",
    // The CLI.
    /// A file the command would write exists already.
    Exists => "exists",
    /// A configuration file cannot be used.
    InvalidConfig => "invalid-config",
    /// An online command found no server to talk to.
    NoServer => "no-server",
    /// An online command found no admin credential.
    NoAdminCredential => "no-admin-credential",
    /// The command needs a passphrase and has no way to ask for one.
    PassphraseRequired => "passphrase-required",
    /// An input (file, standard input) is larger than the command reads.
    InputTooLarge => "input-too-large",
    /// `kith serve` could not start or stopped on an error.
    ServeFailed => "serve-failed",
    /// `kith exec` could not run the program.
    ExecFailed => "exec-failed",
    /// `kith audit verify` found a record that breaks its chain (edited,
    /// forged, reordered, deleted, or a truncated tail).
    AuditChainBroken => "audit-chain-broken",
}

impl ErrorCode {
    /// The HTTP status the API answers with this code.
    ///
    /// Refusals the caller can fix are 4xx; failures of the server itself
    /// are 5xx (answered with a generic message and a request id, the detail
    /// logged). Codes only a client emits (the agent, the CLI, local files)
    /// get the status they would mean if a server sent them.
    pub const fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            InvalidToken | ClientCertificateRequired => 401,
            TokenWrongCluster | TokenRevoked | TokenExpired | TokenUsedUp => 403,
            NodeNameMismatch | IdentityMismatch | ProfileNotAllowed => 403,
            CertificateRevoked
            | CertificateSuperseded
            | NodeRemoved
            | RenewalWindowPassed
            | UnknownCertificate
            | CertificateExpired => 403,
            SanNotAllowed | WildcardNotAllowed | IpNotAllowed | CaNotAllowed | TooManySans => 403,
            SecretForbidden | NodeRequired | AdminRequired => 403,
            UnknownNode | UnknownToken | UnknownAuthority | UnknownSecret
            | UnknownSecretVersion | NotFound => 404,
            UnknownServer => 404,
            ServerNameRetired => 409,
            UnknownOperator => 404,
            LastOperator | RotationNotReady => 409,
            MethodNotAllowed => 405,
            NodeNameTaken | NodeNameRetired | NodeNameReserved | IpTaken | SecretConflict
            | Exists => 409,
            CsrTooLarge | SecretTooLarge | BodyTooLarge | InputTooLarge => 413,
            UnsupportedMediaType => 415,
            RateLimited => 429,
            AlreadyInitialized | AuthorityExists | CsrKeyMismatch | InvalidArgument
            | MalformedRequest | UnknownProfile | MalformedToken | MalformedInput | InvalidName
            | VerifyFailed | Revoked => 400,
            MalformedCsr | BadSignature | WeakSignature | WeakKey | UnsupportedKey | NoNames => 400,
            InvalidConfig | NoServer | NoAdminCredential | PassphraseRequired => 400,
            // Failures of the server (or the machine) itself.
            WrongPassphrase | NotInitialized | IntegrityError | StoreCorrupt | StoreError
            | Internal | KeyError | BuildFailed | AuditChainBroken => 500,
            IoError | InsecurePermissions | NotRegularFile | NotADirectory | FileTooLarge
            | NodeDir | TlsConfig | ServeFailed | ExecFailed => 500,
            // What a node found wrong with the server it reached.
            PinMismatch | NotKithServer | ServerNameMismatch | BundleRefused | Unreachable
            | BadResponse | HttpError => 502,
            // Retry later.
            StoreLocked | StoreUnavailable | Contended | NotReady => 503,
        }
    }

    /// Whether only a new join token (or an operator) can fix this for a
    /// node: its certificate can no longer renew, so retrying is useless.
    pub const fn needs_new_token(self) -> bool {
        use ErrorCode::*;
        match self {
            CertificateRevoked
            | CertificateSuperseded
            | NodeRemoved
            | RenewalWindowPassed
            | UnknownCertificate
            | UnknownNode
            | IdentityMismatch => true,
            // A token that cannot be spent is the operator's to replace, but
            // the node has no certificate yet to give up on.
            InvalidToken | UnknownToken | TokenWrongCluster | TokenRevoked | TokenExpired
            | TokenUsedUp => false,
            WrongPassphrase | NotInitialized | AlreadyInitialized | UnknownAuthority
            | AuthorityExists | NodeNameTaken | NodeNameMismatch | NodeNameRetired
            | NodeNameReserved | IpTaken | ProfileNotAllowed | CsrKeyMismatch | UnknownSecret
            | UnknownSecretVersion | SecretForbidden | SecretTooLarge | SecretConflict
            | InvalidArgument | IntegrityError | StoreLocked | StoreUnavailable | StoreCorrupt
            | StoreError | Contended | RateLimited | Internal | RotationNotReady => false,
            UnknownServer | ServerNameRetired => false,
            UnknownOperator | LastOperator => false,
            MalformedInput | InvalidName | KeyError | BuildFailed | VerifyFailed | Revoked
            | MalformedCsr | CsrTooLarge | BadSignature | WeakSignature | WeakKey
            | UnsupportedKey | NoNames | SanNotAllowed | WildcardNotAllowed | IpNotAllowed
            | CaNotAllowed | TooManySans => false,
            IoError | InsecurePermissions | NotRegularFile | NotADirectory | FileTooLarge => false,
            MalformedRequest
            | NotFound
            | MethodNotAllowed
            | UnsupportedMediaType
            | BodyTooLarge
            | UnknownProfile
            | NotReady
            | MalformedToken
            | ClientCertificateRequired
            | CertificateExpired
            | NodeRequired
            | AdminRequired => false,
            PinMismatch | NotKithServer | ServerNameMismatch | BundleRefused | Unreachable
            | BadResponse | HttpError | NodeDir | TlsConfig => false,
            Exists | InvalidConfig | NoServer | NoAdminCredential | PassphraseRequired
            | InputTooLarge | ServeFailed | ExecFailed | AuditChainBroken => false,
        }
    }

    /// What the CLI prints after `hint:` for this code, if anything helps
    /// beyond the message. (A node that needs a new token is told
    /// [`ErrorCode::NEW_TOKEN_HINT`] instead.)
    pub const fn hint(self) -> Option<&'static str> {
        use ErrorCode::*;
        match self {
            WrongPassphrase => Some(
                "pass the CA's current passphrase (the one `kith init` printed, unless `kith passphrase` changed it since) with --passphrase-file or KITH_PASSPHRASE",
            ),
            SanNotAllowed => Some(
                "a node may carry a DNS name besides its own only when its token allows it: ask for a token made with `kith token create ... --allow-san NAME`",
            ),
            StoreLocked => Some(
                "another kith command or server is using this data directory; wait for it or stop it",
            ),
            PinMismatch => {
                Some("the token belongs to another cluster or the address reaches another server")
            }
            Unreachable => Some("is the server running and reachable at that address?"),
            ServerNameMismatch => Some(
                "dial the server by a name or address its certificate carries: its --advertise URL, or the listen address in its server.json",
            ),
            InvalidToken => Some("check that the token was copied whole"),
            TokenExpired | TokenUsedUp | TokenRevoked => Some("ask the operator for a new token"),
            ClientCertificateRequired | AdminRequired => {
                Some("use the admin/ credential that `kith init` wrote (--admin-dir)")
            }
            ServerNameRetired => Some(
                "start the server under another name: --server-name kith-server-NAME (or KITH_SERVER_NAME)",
            ),
            UnknownServer => Some("`kith server ls` lists the servers and their names"),
            UnknownOperator => Some("`kith admin ls` lists the operators"),
            LastOperator => Some(
                "add another operator first (`kith admin add NAME`), then revoke this one",
            ),
            NotInitialized | AlreadyInitialized | UnknownAuthority | AuthorityExists
            | UnknownCertificate | UnknownNode | UnknownToken | TokenWrongCluster
            | NodeNameTaken | NodeNameMismatch | NodeNameRetired | NodeNameReserved | IpTaken
            | CertificateSuperseded | ProfileNotAllowed | CsrKeyMismatch | CertificateRevoked
            | NodeRemoved | RenewalWindowPassed | IdentityMismatch | UnknownSecret
            | UnknownSecretVersion | SecretForbidden | SecretTooLarge | SecretConflict
            | InvalidArgument | IntegrityError | StoreUnavailable | StoreCorrupt | StoreError
            | Contended | RateLimited | Internal => None,
            AuditChainBroken => Some(
                "the store was changed by something other than kith: `kith audit ls --json` shows the records around the break; compare them with a copy shipped elsewhere (`kith serve --audit-log`)",
            ),
            RotationNotReady => Some(
                "`kith ca rotate status` says what the rotation waits for; --force moves on at once",
            ),
            MalformedInput | InvalidName | KeyError | BuildFailed | VerifyFailed | Revoked
            | MalformedCsr | CsrTooLarge | BadSignature | WeakSignature | WeakKey
            | UnsupportedKey | NoNames | WildcardNotAllowed | IpNotAllowed | CaNotAllowed
            | TooManySans => None,
            IoError | InsecurePermissions | NotRegularFile | NotADirectory | FileTooLarge => None,
            MalformedRequest | NotFound | MethodNotAllowed | UnsupportedMediaType
            | BodyTooLarge | UnknownProfile | NotReady | MalformedToken | CertificateExpired
            | NodeRequired => None,
            NotKithServer | BundleRefused | BadResponse | HttpError | NodeDir | TlsConfig => None,
            Exists | InvalidConfig | NoServer | NoAdminCredential | PassphraseRequired
            | InputTooLarge | ServeFailed | ExecFailed => None,
        }
    }

    /// The hint for a node whose code [needs a new token](Self::needs_new_token).
    pub const NEW_TOKEN_HINT: &'static str = "only a new token can help: ask the operator for one (`kith token create --role ROLE --name NODE`) and run `kith join` again";

    /// Whether the API answers this code with a 5xx status: a failure of
    /// the server, whose detail is logged rather than answered.
    pub const fn is_server_error(self) -> bool {
        self.http_status() >= 500
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A string that is no [`ErrorCode`] this build knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code {0:?}")]
pub struct UnknownErrorCode(pub String);

/// An error code as read off the wire: one this build knows, or one it does
/// not (a newer server's), kept verbatim so it can still be shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireCode {
    /// A code this build knows.
    Known(ErrorCode),
    /// A code this build does not know.
    Unknown(String),
}

impl WireCode {
    /// Read a code off the wire; never fails.
    pub fn parse(s: &str) -> Self {
        match s.parse() {
            Ok(code) => Self::Known(code),
            Err(UnknownErrorCode(s)) => Self::Unknown(s),
        }
    }

    /// The code as sent.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Known(c) => c.as_str(),
            Self::Unknown(s) => s,
        }
    }

    /// The code, if this build knows it.
    pub fn known(&self) -> Option<ErrorCode> {
        match self {
            Self::Known(c) => Some(*c),
            Self::Unknown(_) => None,
        }
    }
}

impl fmt::Display for WireCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorCode> for WireCode {
    fn from(c: ErrorCode) -> Self {
        Self::Known(c)
    }
}
