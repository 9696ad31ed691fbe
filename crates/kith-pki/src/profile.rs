use std::fmt;
use std::str::FromStr;

use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use time::Duration;

use crate::Error;

/// How a leaf is cut: its key usages, extended key usages and default lifetime.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Profile {
    /// Node-to-node: TLS server and client authentication.
    Peer,
    /// TLS server authentication only.
    Server,
    /// TLS client authentication only.
    Client,
    /// Client authentication that the kith API accepts as an operator.
    Admin,
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 4] = [
        Profile::Peer,
        Profile::Server,
        Profile::Client,
        Profile::Admin,
    ];

    /// The CLI/config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Server => "server",
            Self::Client => "client",
            Self::Admin => "admin",
        }
    }

    /// Default lifetime: 90 days, one year for the operator credential.
    pub fn default_ttl(self) -> Duration {
        match self {
            Self::Admin => Duration::days(365),
            _ => Duration::days(90),
        }
    }

    /// Whether the certificate may authenticate a TLS server.
    pub fn server_auth(self) -> bool {
        matches!(self, Self::Peer | Self::Server)
    }

    /// Whether the certificate may authenticate a TLS client.
    pub fn client_auth(self) -> bool {
        matches!(self, Self::Peer | Self::Client | Self::Admin)
    }

    pub(crate) fn key_usages(self, rsa: bool) -> Vec<KeyUsagePurpose> {
        let mut ku = vec![KeyUsagePurpose::DigitalSignature];
        // RSA key transport (TLS 1.2 RSA key exchange) needs keyEncipherment on
        // servers; EC and Ed25519 keys must not carry it (RFC 5480, RFC 8410).
        if rsa && self.server_auth() {
            ku.push(KeyUsagePurpose::KeyEncipherment);
        }
        ku
    }

    pub(crate) fn extended_key_usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        let mut eku = Vec::new();
        if self.server_auth() {
            eku.push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if self.client_auth() {
            eku.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        eku
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Profile::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidName {
                what: "profile",
                value: s.to_string(),
                reason: "expected one of peer, server, client, admin",
            })
    }
}
