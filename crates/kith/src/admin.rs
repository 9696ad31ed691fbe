//! How operator commands reach a running server: its address (flag,
//! variable, or the `server.json` that `kith serve` writes) and the operator
//! credential presented over mutual TLS.

use kith_api::ErrorCode;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::Args;
use kith_agent::{Connection, ServerAddr};

use crate::output::CliError;

/// Written by `serve` in its data directory so admin commands on the same
/// machine find it.
pub(crate) const SERVER_FILE: &str = "server.json";

/// How admin commands find the server and the operator credential.
#[derive(Args, Debug, Clone)]
pub(crate) struct AdminArgs {
    /// Server address, or several replicas' comma-separated, tried in turn
    /// (else KITH_SERVER, else the server.json that `kith serve` writes in
    /// the data directory).
    #[arg(long, env = "KITH_SERVER", value_name = "ADDR")]
    pub(crate) server: Option<String>,
    /// Operator credential directory (else KITH_ADMIN_DIR, else <data-dir>/admin).
    #[arg(long, env = "KITH_ADMIN_DIR", value_name = "DIR")]
    admin_dir: Option<PathBuf>,
}

impl AdminArgs {
    /// The operator credential directory: `--admin-dir`, KITH_ADMIN_DIR, or
    /// `<data-dir>/admin`.
    pub(crate) fn admin_dir(&self, data_dir: &Path) -> PathBuf {
        self.admin_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("admin"))
    }

    /// Where to reach the server, in the order to try: `--server` alone
    /// when given; else the URL in `server.json` and then its listen
    /// address, which reaches a server on this machine whose advertised
    /// name does not resolve here. Both verify the server the same way (its
    /// certificate names its listen address, or the loopback addresses when
    /// it listens on every interface, and carries the kith server identity).
    fn candidates(&self, data_dir: &Path) -> Result<Option<Vec<ServerAddr>>, CliError> {
        if let Some(s) = &self.server {
            return parse_servers(s).map(Some);
        }
        let f = data_dir.join(SERVER_FILE);
        let Ok(bytes) = std::fs::read(&f) else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::new(ErrorCode::InvalidConfig, format!("{}: {e}", f.display()))
        })?;
        let url = v["server"].as_str().ok_or_else(|| {
            CliError::new(
                ErrorCode::InvalidConfig,
                format!("{}: no \"server\"", f.display()),
            )
        })?;
        let mut out = vec![parse_server(url)?];
        if let Some(local) = v["listen"]
            .as_str()
            .and_then(|l| l.parse::<SocketAddr>().ok())
            .map(local_addr)
        {
            if !out.contains(&local) {
                out.push(local);
            }
        }
        Ok(Some(out))
    }

    /// A connection to the server at the first of `servers` that answers;
    /// the last failure when none does.
    async fn connect_any(
        &self,
        data_dir: &Path,
        servers: &[ServerAddr],
    ) -> Result<Connection, CliError> {
        let admin = self.admin_dir(data_dir);
        if !admin.join(kith_nodedir::KEY).exists() {
            return Err(CliError::new(
                ErrorCode::NoAdminCredential,
                format!("no operator credential in {}", admin.display()),
            )
            .hint("pass --admin-dir (the admin/ folder `kith init` wrote) or set KITH_ADMIN_DIR"));
        }
        let config = kith_agent::api_client_config(&admin)?;
        let mut last = None;
        for server in servers {
            match Connection::open(server, config.clone()).await {
                Ok(mut c) => {
                    // The credential follows a root rotation as a node does,
                    // or it could not reach the server once the old root left.
                    if let Err(e) =
                        kith_agent::refresh_roots(&mut c, &admin, kith_authority::DEFAULT_AUTHORITY)
                            .await
                    {
                        tracing::warn!(error = %e, "could not update the credential's ca.pem");
                    }
                    return Ok(c);
                }
                // Not there (or its name does not resolve here): the next
                // address may be. Any other failure (a server that is not
                // ours, a refused credential) is the answer.
                Err(e) if e.code() == ErrorCode::Unreachable.as_str() => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.map_or_else(
            || CliError::new(ErrorCode::NoServer, "which server? none is configured"),
            CliError::from,
        ))
    }

    /// The one decision every operator command makes: a connection to the
    /// running server if one is configured (`--server`, KITH_SERVER, or the
    /// `server.json` that `kith serve` writes), else `None` and the command
    /// works on the store directly. A `server.json` left by a server that is
    /// gone (no address in it answers) is `None` too; an explicit
    /// `--server` that does not answer is an error.
    pub(crate) async fn online(&self, data_dir: &Path) -> Result<Option<Connection>, CliError> {
        let explicit = self.server.is_some();
        let Some(servers) = self.candidates(data_dir)? else {
            return Ok(None);
        };
        match self.connect_any(data_dir, &servers).await {
            Ok(c) => Ok(Some(c)),
            Err(e) if !explicit && e.code == ErrorCode::Unreachable.as_str() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A connection to the server, which must be configured.
    pub(crate) async fn connect(&self, data_dir: &Path) -> Result<Connection, CliError> {
        let servers = self.candidates(data_dir)?.ok_or_else(|| {
            CliError::new(ErrorCode::NoServer, "which server? none is configured")
                .hint("pass --server HOST:PORT or set KITH_SERVER (run `kith serve` first)")
        })?;
        self.connect_any(data_dir, &servers).await
    }
}

/// The address that reaches a server listening on `listen` from this
/// machine: the loopback address when it listens on every interface.
fn local_addr(listen: SocketAddr) -> ServerAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    ServerAddr {
        host: ip.to_string(),
        port: listen.port(),
    }
}

/// `--server a,b,c`: the replicas to try, in order (each as [`parse_server`]).
pub(crate) fn parse_servers(s: &str) -> Result<Vec<ServerAddr>, CliError> {
    let mut out: Vec<ServerAddr> = Vec::new();
    for one in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let addr = parse_server(one)?;
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            format!("server address {s:?}: expected host[:port][,host[:port]...]"),
        ));
    }
    Ok(out)
}

/// A server address as users write it (`host`, `host:port`, `https://host[:port]`).
pub(crate) fn parse_server(s: &str) -> Result<ServerAddr, CliError> {
    ServerAddr::parse(s).map_err(|e| CliError::new(e.code(), e))
}

/// A mutual-TLS connection as the node of directory `dir`, to the server
/// it records or, for a directory issued offline (`kith cert issue`,
/// which records none), to `server` (`--server` / `KITH_SERVER`).
pub(crate) async fn node_connect(dir: &Path, server: Option<&str>) -> Result<Connection, CliError> {
    let identity = kith_nodedir::NodeIdentity::load(dir)?;
    let addr = match (identity.server(dir), server) {
        // The recorded server, then the other known replicas while one is
        // out of service (kith_agent::connect).
        (Ok(_), _) => return Ok(kith_agent::connect(dir).await?.1),
        (Err(_), Some(s)) => parse_server(s)?,
        (Err(e), None) => {
            return Err(CliError::from(e)
                .hint("pass --server HOST:PORT (or set KITH_SERVER) to name the server"))
        }
    };
    // Asks for the node's authority's chain, as the agent does.
    Ok(kith_agent::connect_to(dir, &identity, &addr).await?)
}

/// A CSR over `key`, PEM, for an operator request to the server: it only
/// proves the key (the CA decides subject and extensions).
pub(crate) fn csr_pem(key: &kith_pki::PrivateKey, name: &str) -> Result<String, CliError> {
    let der = kith_pki::build_csr(key, name, &[])?;
    Ok(kith_pki::pem_encode("CERTIFICATE REQUEST", &der))
}

/// The server's answer to an issuance, as the record the offline path
/// would have (what `stage_node_files` writes from).
pub(crate) fn issued_from_wire(
    r: &kith_api::wire::CertificateIssued,
) -> Result<kith_authority::Issued, CliError> {
    use time::format_description::well_known::Rfc3339;
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        CliError::new(ErrorCode::BadResponse, format!("{what} in the answer: {e}"))
    };
    let one = |pem: &str, what: &str| -> Result<Vec<u8>, CliError> {
        kith_pki::certs_from_pem_or_der(pem.as_bytes())
            .map_err(|e| bad(what, &e))?
            .into_iter()
            .next()
            .ok_or_else(|| bad(what, &"none"))
    };
    let time = |s: &str| time::OffsetDateTime::parse(s, &Rfc3339).map_err(|e| bad("a time", &e));
    let c = &r.certificate;
    let der = one(&c.certificate, "the certificate")?;
    let chain = if c.chain.trim().is_empty() {
        Vec::new()
    } else {
        kith_pki::certs_from_pem_or_der(c.chain.as_bytes()).map_err(|e| bad("the chain", &e))?
    };
    let profile: kith_pki::Profile = c.profile.parse()?;
    let not_before = time(&c.not_before)?;
    Ok(kith_authority::Issued {
        record: kith_authority::CertRecord {
            serial: c.serial.clone(),
            node: r.node.clone(),
            role: r.role.clone(),
            profile,
            authority: r.authority.clone(),
            not_before,
            not_after: time(&c.not_after)?,
            fingerprint: kith_pki::fingerprint(&der),
            sans: Vec::new(),
            issued_at: not_before,
            der,
            namespace: None,
        },
        chain,
        root: one(&r.root, "the root")?,
        truncated: c.truncated,
    })
}

/// What `kith admin renew` and `kith status` need of an operator
/// credential directory: whose it is and when its certificate runs out.
pub(crate) struct Credential {
    /// Operator name (`admin` for the one `kith init` made).
    pub(crate) name: String,
    /// Its key type (a renewal keeps it).
    pub(crate) key_type: kith_pki::KeyType,
    /// Serial of its certificate, hex.
    pub(crate) serial: String,
    /// Start of validity.
    pub(crate) not_before: time::OffsetDateTime,
    /// End of validity.
    pub(crate) not_after: time::OffsetDateTime,
}

impl Credential {
    /// Read the credential in `dir` (its certificate is the truth; the
    /// name and key type come from `identity.json`).
    pub(crate) fn load(dir: &Path) -> Result<Self, CliError> {
        let id = kith_nodedir::NodeIdentity::load(dir)?;
        let pem = kith_nodedir::read(dir, kith_nodedir::CERT)?;
        let der = kith_pki::certs_from_pem_or_der(&pem)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                CliError::new(
                    ErrorCode::MalformedInput,
                    format!(
                        "no certificate in {}",
                        dir.join(kith_nodedir::CERT).display()
                    ),
                )
            })?;
        let (not_before, not_after) = kith_pki::certificate_validity(&der)?;
        Ok(Self {
            name: id.node,
            key_type: id.key_type,
            serial: kith_pki::certificate_serial(&der)?.to_hex(),
            not_before,
            not_after,
        })
    }

    /// When it is due for renewal: two thirds into its lifetime, as a
    /// node's certificate (`kith admin renew --if-due` acts from then on).
    pub(crate) fn renew_at(&self) -> time::OffsetDateTime {
        self.not_before + (self.not_after - self.not_before) * 2 / 3
    }
}

/// How long before its expiry `kith status` warns about the operator
/// credential.
pub(crate) const EXPIRY_WARNING: time::Duration = time::Duration::days(30);

/// The warning `kith status` prints when the operator credential in `dir`
/// expires within [`EXPIRY_WARNING`] of `now` (or has expired).
pub(crate) fn expiry_warning(
    dir: &Path,
    not_after: time::OffsetDateTime,
    now: time::OffsetDateTime,
) -> Option<String> {
    let left = not_after - now;
    if left > EXPIRY_WARNING {
        return None;
    }
    let when = if left <= time::Duration::ZERO {
        format!("expired at {}", crate::util::rfc3339(not_after))
    } else {
        format!(
            "expires in {} days ({})",
            left.whole_days(),
            crate::util::rfc3339(not_after)
        )
    };
    Some(format!(
        "warning: the operator credential in {} {when}: renew it with `kith admin renew` (or `kith admin renew --if-due` from a daily timer)",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expiry_warning_starts_thirty_days_before() {
        let dir = Path::new("/d/admin");
        let expiry = datetime!(2027-01-31 00:00 UTC);
        assert_eq!(
            expiry_warning(dir, expiry, datetime!(2026-12-31 00:00 UTC)),
            None
        );
        let w = expiry_warning(dir, expiry, datetime!(2027-01-01 00:00 UTC)).expect("30 days");
        assert!(
            w.contains("expires in 30 days") && w.contains("kith admin renew"),
            "{w}"
        );
        let w = expiry_warning(dir, expiry, datetime!(2027-01-30 12:00 UTC)).expect("hours");
        assert!(w.contains("expires in 0 days"), "{w}");
        let w = expiry_warning(dir, expiry, datetime!(2027-02-01 00:00 UTC)).expect("after");
        assert!(w.contains("expired at 2027-01-31"), "{w}");
    }
}
