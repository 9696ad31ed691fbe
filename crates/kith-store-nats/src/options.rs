//! How to reach the NATS cluster and which bucket to use.

use std::path::PathBuf;
use std::time::Duration;

/// Where kith's store lives on NATS, and how to connect.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NatsOptions {
    /// Server addresses, `host:port` (or `nats://host:port`), tried in turn.
    pub servers: Vec<String>,
    /// The key-value bucket (one JetStream stream, `KV_<bucket>`).
    pub bucket: String,
    /// Replicas of the bucket's stream when kith creates it (1 to 5).
    pub replicas: usize,
    /// A NATS credentials file (JWT + nkey seed).
    pub creds: Option<PathBuf>,
    /// CA certificates (PEM) that sign the NATS servers' certificates;
    /// setting it requires TLS.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM) for a cluster that requires them.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// How long an operation is retried through leader elections and
    /// reconnects before it fails with `Unavailable`.
    pub retry_window: Duration,
}

/// The default bucket name.
pub const DEFAULT_BUCKET: &str = "kith";
/// The default number of stream replicas.
pub const DEFAULT_REPLICAS: usize = 3;
/// The default retry window: long enough for a JetStream leader election.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(20);

impl NatsOptions {
    /// Options for `servers` with the defaults: bucket `kith`, 3 replicas,
    /// no credentials, no TLS, a 20 s retry window.
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            bucket: DEFAULT_BUCKET.to_string(),
            replicas: DEFAULT_REPLICAS,
            creds: None,
            ca: None,
            client_cert: None,
            retry_window: DEFAULT_RETRY_WINDOW,
        }
    }

    /// Parse a store address `nats://host:port[,host:port...]` into options
    /// with the defaults. Anything else is refused with a message for a human.
    pub fn from_url(url: &str) -> Result<Self, String> {
        let rest = url.strip_prefix("nats://").ok_or_else(|| {
            format!("{url:?} is not a NATS store address (nats://host:port[,host:port...])")
        })?;
        let mut servers = Vec::new();
        for part in rest.split(',') {
            let part = part.strip_prefix("nats://").unwrap_or(part).trim();
            let (host, port) = part
                .rsplit_once(':')
                .ok_or_else(|| format!("{part:?} in {url:?} needs a port (host:port)"))?;
            if host.is_empty() || host.contains('/') || host.contains('@') {
                return Err(format!("{part:?} in {url:?} is not host:port"));
            }
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{part:?} in {url:?} has no valid port"))?;
            servers.push(format!("nats://{part}"));
        }
        Ok(Self::new(servers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_addresses() {
        let o = NatsOptions::from_url("nats://10.0.0.1:4222,10.0.0.2:4222").expect("parse");
        assert_eq!(o.servers, ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]);
        assert_eq!((o.bucket.as_str(), o.replicas), ("kith", 3));
        for bad in [
            "/var/lib/kith",
            "nats://",
            "nats://h",
            "nats://h:0",
            "nats://u@h:1",
            "nats://h:x",
        ] {
            assert!(NatsOptions::from_url(bad).is_err(), "{bad}");
        }
    }
}
