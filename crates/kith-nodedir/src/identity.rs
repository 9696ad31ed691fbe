//! `identity.json`: what a node directory is (cluster, node, role, the
//! certificate's serial and validity) and, when it was made by `kith join`,
//! the server it renews with. One type for every writer (`kith join`, the
//! agent's renewals, `kith cert issue`) and every reader.

use std::path::Path;

use kith_pki::{KeyType, Profile};
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use kith_api::ErrorCode;

use crate::{Error, IDENTITY};

/// The default port of `kith serve`.
pub const DEFAULT_PORT: u16 = 7443;

/// `identity.json`: what the node is and where it renews.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Cluster name.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// Role.
    pub role: String,
    /// Issuing authority.
    pub authority: String,
    /// The server it joined (and renews with); `None` for a directory
    /// issued offline by `kith cert issue`, which no server renews.
    pub server: Option<ServerAddr>,
    /// Profiles it holds; the first is `cert.pem`, others `<profile>-cert.pem`.
    pub profiles: Vec<Profile>,
    /// Serial of `cert.pem`.
    pub serial: String,
    /// Start of validity of `cert.pem`.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity of `cert.pem`.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Key type used for new keys.
    pub key_type: KeyType,
    /// Extra SANs asked for at join (asked again at each renewal).
    pub sans: Vec<String>,
    /// CRL path on the server.
    pub crl_path: String,
    /// Whether this host's interface addresses go into the certificate.
    #[serde(default)]
    pub interface_ips: bool,
    /// The other replicas of the server's cluster, as the last join or
    /// renewal answer listed them: where node commands and the agent go
    /// when `server` is unreachable. Absent from files written before
    /// replicas (they load with none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ServerAddr>,
}

impl NodeIdentity {
    /// Read `identity.json` from `dir` (through [`crate::read`]: owner,
    /// mode and size checked). A file that is not a node identity, or
    /// one that cannot be read, is `node-dir` (saying to join first).
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(IDENTITY);
        let bytes = crate::read(dir, IDENTITY).map_err(|e| match e.code() {
            ErrorCode::IoError => Error::invalid(
                ErrorCode::NodeDir,
                &path,
                format!("node directory: {e} (has this node joined? run `kith join`)"),
            ),
            _ => e,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(
                ErrorCode::NodeDir,
                &path,
                format!("node directory: {}: {e}", path.display()),
            )
        })
    }

    /// The JSON written to `identity.json`.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec_pretty(self)
    }

    /// The server this node renews with, or `no-server` for a directory
    /// issued offline (`kith cert issue`): it holds valid TLS files, but no
    /// server to talk to is recorded in it.
    pub fn server(&self, dir: &Path) -> Result<&ServerAddr, Error> {
        self.server.as_ref().ok_or_else(|| {
            let path = dir.join(IDENTITY);
            Error::invalid(
                ErrorCode::NoServer,
                &path,
                format!(
                    "node directory {} was issued offline (`kith cert issue`) and records no server to talk to",
                    dir.display()
                ),
            )
        })
    }

    /// Every server to try, in order: the recorded one (the one that last
    /// worked) first, then the other known replicas; `no-server` as
    /// [`NodeIdentity::server`] says.
    pub fn servers(&self, dir: &Path) -> Result<Vec<ServerAddr>, Error> {
        let mut out = vec![self.server(dir)?.clone()];
        for r in &self.replicas {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    /// This identity, recording `worked` as the server to try first and
    /// `replicas` (advertise URLs from a server's answer; ones that do not
    /// parse are skipped) as the others, or the known ones when the answer
    /// lists none. The server tried first before stays among the replicas.
    pub fn with_servers(mut self, worked: &ServerAddr, replicas: &[String]) -> Self {
        let mut known: Vec<ServerAddr> = if replicas.is_empty() {
            self.replicas.clone()
        } else {
            replicas
                .iter()
                .filter_map(|u| ServerAddr::parse(u).ok())
                .collect()
        };
        if replicas.is_empty() {
            if let Some(old) = self.server.take() {
                known.insert(0, old);
            }
        }
        known.retain(|s| s != worked);
        let mut seen = Vec::new();
        known.retain(|s| {
            let new = !seen.contains(s);
            seen.push(s.clone());
            new
        });
        // A server's answer is trusted, but a node tries every entry in
        // turn on an outage: a list without bound would be a list of waits.
        known.truncate(MAX_REPLICAS);
        self.server = Some(worked.clone());
        self.replicas = known;
        self
    }

    /// When the agent should renew: two thirds into the lifetime.
    pub fn renew_at(&self) -> OffsetDateTime {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// The most replicas a node remembers besides the server that last worked.
pub(crate) const MAX_REPLICAS: usize = 16;

/// A server address: `host`, `host:port` or `https://host[:port][/]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAddr {
    /// DNS name or IP address (brackets stripped).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// A server address that does not parse (code `invalid-argument`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAddress(pub String);

impl std::fmt::Display for InvalidAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidAddress {}

impl InvalidAddress {
    /// The stable code: `invalid-argument`.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::InvalidArgument
    }
}

impl ServerAddr {
    /// Parse an address as users write it.
    pub fn parse(s: &str) -> Result<Self, InvalidAddress> {
        let bad = |why: &str| InvalidAddress(format!("server address {s:?}: {why}"));
        let mut rest = s.trim();
        if let Some(r) = rest.strip_prefix("https://") {
            rest = r;
        } else if rest.contains("://") {
            return Err(bad("only https:// is spoken"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') {
            return Err(bad("expected host[:port]"));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, tail) = r.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None if tail.is_empty() => DEFAULT_PORT,
                None => return Err(bad("junk after ']'")),
            };
            (h.to_string(), port)
        } else if rest.matches(':').count() > 1 {
            (rest.to_string(), DEFAULT_PORT) // a bare IPv6 address
        } else if let Some((h, p)) = rest.split_once(':') {
            (h.to_string(), p.parse().map_err(|_| bad("bad port"))?)
        } else {
            (rest.to_string(), DEFAULT_PORT)
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        ServerName::try_from(host.clone()).map_err(|_| bad("not a DNS name or IP address"))?;
        Ok(Self { host, port })
    }

    /// `https://host:port`.
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeIdentity {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("a time");
        NodeIdentity {
            cluster: "c.example".into(),
            node: "n1".into(),
            role: "worker".into(),
            authority: "cluster".into(),
            server: Some(ServerAddr::parse("a.example:7443").expect("addr")),
            profiles: vec![Profile::Peer],
            serial: "00".into(),
            not_before: t,
            not_after: t,
            key_type: KeyType::P256,
            sans: Vec::new(),
            crl_path: "/v1/crl/cluster".into(),
            interface_ips: false,
            replicas: Vec::new(),
        }
    }

    /// A file from before replicas has no `replicas` field and loads with
    /// none; one with them round-trips, and lists the recorded server first.
    #[test]
    fn replicas_are_optional_and_round_trip() {
        let mut v = serde_json::to_value(sample()).expect("json");
        assert!(v.get("replicas").is_none(), "not written when empty");
        v.as_object_mut().expect("object").remove("replicas");
        let old: NodeIdentity = serde_json::from_value(v).expect("an old file loads");
        assert!(old.replicas.is_empty());
        let dir = Path::new("/nonexistent");
        let with = old.with_servers(
            &ServerAddr::parse("b.example:7443").expect("addr"),
            &[
                "https://a.example:7443".into(),
                "https://b.example:7443".into(),
                "not a url/x".into(),
            ],
        );
        let back: NodeIdentity =
            serde_json::from_slice(&with.to_json().expect("json")).expect("round trip");
        assert_eq!(back, with);
        let servers: Vec<String> = back
            .servers(dir)
            .expect("servers")
            .iter()
            .map(|s| s.url())
            .collect();
        assert_eq!(
            servers,
            ["https://b.example:7443", "https://a.example:7443"]
        );
        // An answer without a list keeps the known ones, the old first server included.
        let again = back.with_servers(&ServerAddr::parse("a.example:7443").expect("addr"), &[]);
        let servers: Vec<String> = again
            .servers(dir)
            .expect("servers")
            .iter()
            .map(|s| s.url())
            .collect();
        assert_eq!(
            servers,
            ["https://a.example:7443", "https://b.example:7443"]
        );
    }

    #[test]
    fn addresses() {
        let a = ServerAddr::parse("ca.example").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("ca.example", DEFAULT_PORT));
        let a = ServerAddr::parse("https://ca.example:9000/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("ca.example", 9000));
        let a = ServerAddr::parse("[::1]:7000").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 7000));
        assert_eq!(a.url(), "https://[::1]:7000");
        let a = ServerAddr::parse("127.0.0.1:7443").unwrap();
        assert_eq!(a.host, "127.0.0.1");
        for bad in ["", "http://x", "x:port", "https://x/path", "[::1", "a b"] {
            assert!(ServerAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_replica_list_is_bounded_and_has_no_repeats() {
        let first = ServerAddr::parse("https://ca-0:7443").expect("addr");
        let mut urls: Vec<String> = (0..100)
            .map(|i| format!("https://ca-{}:7443", i % 50))
            .collect();
        urls.push("https://ca-1:7443".into());
        let id = sample().with_servers(&first, &urls);
        assert_eq!(id.replicas.len(), MAX_REPLICAS);
        assert!(
            !id.replicas.contains(&first),
            "the server that worked is not repeated"
        );
        let distinct: std::collections::HashSet<String> = id
            .replicas
            .iter()
            .map(|r| format!("{}:{}", r.host, r.port))
            .collect();
        assert_eq!(distinct.len(), id.replicas.len(), "no address twice");
    }
}
