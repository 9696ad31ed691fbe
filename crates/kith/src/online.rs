//! The online commands: `serve`, the admin commands that talk to a running
//! server over mutual TLS (`token`, `node`, `status`, online `revoke`), and
//! the node commands (`join`, `renew`, `agent`). Wiring only: the server is
//! kith-server, the node side kith-agent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use std::io::Write;

use clap::Args;
use hyper::Method;
use kith_agent::{Connection, ServerAddr};
use kith_api::wire::{
    NodeView, RevokeRequest, RevokeResponse, StatusResponse, TokenCreateRequest, TokenCreated,
    TokenView,
};
use kith_api::ErrorCode;
use kith_authority::{Settings, TokenSpec, LOCAL_OPERATOR};
use kith_pki::{KeyType, Profile};
use serde_json::json;
use time::Duration;

use crate::output::{print_json, CliError};
use crate::util::{self, parse_duration};

/// Written by `serve` in its data directory so admin commands on the same
/// machine find it.
const SERVER_FILE: &str = "server.json";

fn key_type_parser(s: &str) -> Result<KeyType, String> {
    s.parse().map_err(|e: kith_pki::Error| e.to_string())
}

fn profile_parser(s: &str) -> Result<Profile, String> {
    s.trim().parse().map_err(|e: kith_pki::Error| e.to_string())
}

fn std_duration(d: Duration) -> std::time::Duration {
    std::time::Duration::try_from(d).unwrap_or(std::time::Duration::ZERO)
}

// ---------------------------------------------------------------- serve

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7443")]
    listen: SocketAddr,
    /// The URL nodes use to reach this server (its host goes into the
    /// server certificate), e.g. https://ca.example:7443.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// File holding the CA passphrase (else KITH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// A throwaway CA in a temporary directory, no passphrase to manage;
    /// prints a join token and the next commands.
    #[arg(long)]
    dev: bool,
    /// How long after expiry a certificate may still renew (proving its old key).
    #[arg(long, value_parser = util::parse_renew_grace, default_value = "7d")]
    renew_grace: Duration,
    /// Largest secret value accepted: bytes, or with K/M (KiB/MiB), e.g. 1M.
    #[arg(long, value_parser = parse_size, default_value = "1M")]
    secret_max_size: usize,
    /// Audit window for refusals and repeated reads: per identity, the
    /// first is recorded, the rest summarised with their count when the
    /// window ends (1s to 24h, e.g. 30s, 1m, 1h).
    #[arg(long, value_parser = parse_audit_window, default_value = "1m")]
    audit_window: std::time::Duration,
    /// Refusals of one identity per audit window answered as refusals; the
    /// ones past it get 429 rate-limited until the window ends.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000), default_value = "30")]
    refusal_limit: u32,
    /// Renewals of one node per audit window (each writes certificates);
    /// the ones past it get 429 rate-limited until the window ends.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000), default_value = "10")]
    renew_limit: u32,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `--audit-window`: a number of seconds, minutes or hours, 1s to 24h.
fn parse_audit_window(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?}: expected a window from 1s to 24h, such as 30s, 1m or 1h");
    let t = s.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    n.checked_mul(unit)
        .filter(|secs| (1..=86_400).contains(secs))
        .map(std::time::Duration::from_secs)
        .ok_or_else(bad)
}

/// What a client may cost the server before it has proven anything
/// (defaults: `kith_server::Limits`).
#[derive(Args, Debug)]
struct LimitArgs {
    /// Most client connections open at once; more are refused before the TLS handshake.
    #[arg(long, default_value_t = kith_server::Limits::default().max_connections)]
    max_connections: usize,
    /// Most connections open at once from one source address (an IPv6 /64 counts as one).
    #[arg(long, default_value_t = kith_server::Limits::default().max_connections_per_source)]
    max_connections_per_source: usize,
    /// New connections per source address, as COUNT/PERIOD (each costs a TLS handshake);
    /// off unless given.
    #[arg(long, value_name = "RATE")]
    connection_rate: Option<kith_server::Rate>,
    /// Longest a client may take to send a whole request, headers and body (ms, s, m or h).
    #[arg(long, default_value_t = kith_server::Timeout(kith_server::Limits::default().request_timeout))]
    request_timeout: kith_server::Timeout,
    /// Longest a kept-alive connection may wait for its next request.
    #[arg(long, default_value_t = kith_server::Timeout(kith_server::Limits::default().idle_timeout))]
    idle_timeout: kith_server::Timeout,
    /// Longest a client may take to finish the TLS handshake.
    #[arg(long, default_value_t = kith_server::Timeout(kith_server::Limits::default().handshake_timeout))]
    handshake_timeout: kith_server::Timeout,
    /// Requests without a client certificate (join, CA bundle, CRLs, health) per source
    /// address, as COUNT/PERIOD; a successful join does not count.
    #[arg(long, default_value_t = kith_server::Limits::default().public_requests)]
    public_rate: kith_server::Rate,
    /// Failed token guesses per source address, as COUNT/PERIOD; past it every join from
    /// that address is refused (429) until the budget refills.
    #[arg(long, default_value_t = kith_server::Limits::default().failed_joins)]
    failed_join_rate: kith_server::Rate,
}

impl LimitArgs {
    fn limits(&self) -> Result<kith_server::Limits, CliError> {
        let mut l = kith_server::Limits::default();
        l.max_connections = self.max_connections;
        l.max_connections_per_source = self.max_connections_per_source;
        l.new_connections = self.connection_rate;
        l.request_timeout = self.request_timeout.0;
        l.idle_timeout = self.idle_timeout.0;
        l.handshake_timeout = self.handshake_timeout.0;
        l.public_requests = self.public_rate;
        l.failed_joins = self.failed_join_rate;
        l.check()
            .map_err(|e| CliError::new(ErrorCode::InvalidArgument, e))?;
        Ok(l)
    }
}

fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 1usize << 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 1usize << 20),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0 && *n <= 64 << 20)
        .ok_or_else(|| format!("{s:?}: expected a size such as 1M, 256K or 4096 (at most 64M)"))
}

pub(crate) async fn serve(dir: &Path, a: ServeArgs) -> Result<(), CliError> {
    // Checked before anything is unlocked or created.
    let limits = a.limits.limits()?;
    let settings = Settings {
        secret_max_bytes: a.secret_max_size,
        audit_limits: kith_authority::AuditLimits {
            window: a.audit_window,
            max_refusals: a.refusal_limit,
            max_renewals: a.renew_limit,
        },
        ..Settings::default()
    };
    let (dir, authority, dev_token) = if a.dev {
        let (dir, authority, token) = dev_setup(settings).await?;
        (dir, authority, Some(token))
    } else {
        let authority = util::unlock(dir, a.passphrase_file.as_deref(), settings).await?;
        (dir.to_path_buf(), authority, None)
    };
    let mut names = Vec::new();
    let advertised = match &a.advertise {
        Some(url) => {
            let addr = ServerAddr::parse(url).map_err(CliError::from)?;
            names.push(addr.host.clone());
            Some(addr)
        }
        None => None,
    };
    if let Some(h) = kith_agent::default_node_name() {
        names.push(h);
    }
    let mut opts = kith_server::Options::new(a.listen);
    opts.names = names;
    opts.renew_grace = a.renew_grace;
    opts.limits = limits;
    let server = kith_server::Server::bind(authority.clone(), opts)
        .await
        .map_err(|e| CliError::new(ErrorCode::ServeFailed, e))?;
    let local = server
        .local_addr()
        .map_err(|e| CliError::new(ErrorCode::ServeFailed, e))?;
    let reach = match advertised {
        Some(a) => a,
        None => ServerAddr {
            host: if local.ip().is_unspecified() {
                "127.0.0.1".into()
            } else {
                local.ip().to_string()
            },
            port: local.port(),
        },
    };
    let server_file = dir.join(SERVER_FILE);
    let info =
        json!({ "server": reach.url(), "listen": local.to_string(), "pid": std::process::id() });
    kith_nodedir::write_atomic(&dir, SERVER_FILE, info.to_string().as_bytes(), 0o644)?;
    let _ = writeln!(
        std::io::stderr(),
        "kith: serving cluster {} on {} (listening on {local})",
        authority.cluster(),
        reach.url()
    );
    if let Some(token) = dev_token {
        let d = dir.display();
        // A server must outlive whoever reads its stdout: ignore a closed pipe.
        let _ = writeln!(
            std::io::stdout().lock(),
            "\nDevelopment CA in {d} (throwaway: keys are not protected by a passphrase you keep).\n\n\
             Join a node (token valid 1 hour, 10 uses):\n\n  \
             kith join --server {server} --token {token} --name node-1 --dir ./node-1\n\n\
             Then keep it renewed:   kith agent --dir ./node-1\n\
             Operator commands:      KITH_DATA_DIR={d} kith status | kith node ls | kith token create --role worker\n",
            server = reach.url(),
        );
        let _ = std::io::stdout().flush();
    }
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler only fails if signals are unusable");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let result = server.run(shutdown).await;
    // Counts of refusals not yet summarised go into the audit trail.
    authority.flush_audit_summaries().await;
    let _ = std::fs::remove_file(&server_file);
    if a.dev {
        // Throwaway means throwaway: the keys go with the process.
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = writeln!(std::io::stderr(), "kith: server stopped");
    result.map_err(|e| CliError::new(ErrorCode::ServeFailed, e))
}

async fn dev_setup(
    settings: Settings,
) -> Result<(PathBuf, kith_authority::Authority, String), CliError> {
    let dir = std::env::temp_dir().join(format!("kith-dev-{}", std::process::id()));
    kith_nodedir::create_dir(&dir)?;
    // The name is predictable: a directory someone else made first is refused.
    kith_nodedir::check_private_dir(&dir)?;
    let pass = util::generate_passphrase()?;
    kith_nodedir::write_atomic(&dir, "passphrase", pass.as_bytes(), 0o600)?;
    crate::commands::init_quiet(&dir, "dev.kith", &dir.join("passphrase")).await?;
    let authority = util::unlock(&dir, Some(&dir.join("passphrase")), settings).await?;
    let (_, token) = authority
        .create_token(
            TokenSpec {
                role: "worker".into(),
                node: None,
                ttl: Duration::hours(1),
                uses: 10,
                allow_sans: Vec::new(),
                authority: None,
            },
            LOCAL_OPERATOR,
        )
        .await?;
    Ok((dir, authority, token.encode().to_string()))
}

// ---------------------------------------------------------------- admin connection

/// How admin commands find the server and the operator credential.
#[derive(Args, Debug, Clone)]
pub(crate) struct AdminArgs {
    /// Server address (else KITH_SERVER, else the server.json that `kith
    /// serve` writes in the data directory).
    #[arg(long, env = "KITH_SERVER", value_name = "ADDR")]
    server: Option<String>,
    /// Operator credential directory (else KITH_ADMIN_DIR, else <data-dir>/admin).
    #[arg(long, env = "KITH_ADMIN_DIR", value_name = "DIR")]
    admin_dir: Option<PathBuf>,
}

impl AdminArgs {
    /// The server to talk to, if one is configured anywhere.
    fn server(&self, data_dir: &Path) -> Result<Option<ServerAddr>, CliError> {
        if let Some(s) = &self.server {
            return Ok(Some(ServerAddr::parse(s)?));
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
        Ok(Some(ServerAddr::parse(url)?))
    }

    async fn connect_to(
        &self,
        data_dir: &Path,
        server: &ServerAddr,
    ) -> Result<Connection, CliError> {
        let admin = self
            .admin_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("admin"));
        if !admin.join(kith_nodedir::KEY).exists() {
            return Err(CliError::new(
                ErrorCode::NoAdminCredential,
                format!("no operator credential in {}", admin.display()),
            )
            .hint("pass --admin-dir (the admin/ folder `kith init` wrote) or set KITH_ADMIN_DIR"));
        }
        let config = kith_agent::api_client_config(&admin)?;
        Ok(Connection::open(server, config).await?)
    }

    pub(crate) async fn connect(&self, data_dir: &Path) -> Result<Connection, CliError> {
        let server = self.server(data_dir)?.ok_or_else(|| {
            CliError::new(ErrorCode::NoServer, "which server? none is configured")
                .hint("pass --server HOST:PORT or set KITH_SERVER (run `kith serve` first)")
        })?;
        self.connect_to(data_dir, &server).await
    }
}

// ---------------------------------------------------------------- token

#[derive(Args, Debug)]
pub(crate) struct TokenCreateArgs {
    /// Role of the nodes that join with it.
    #[arg(long)]
    role: String,
    /// The only node name it can join as.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime, e.g. 1h, 30m, 2d (at most 30d).
    #[arg(long, value_parser = util::parse_token_ttl, default_value = "1h")]
    ttl: Duration,
    /// How many joins it allows.
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// A DNS name joining nodes may ask for besides their own (repeatable).
    #[arg(long = "allow-san", value_name = "DNS")]
    allow_san: Vec<String>,
    /// Authority that signs its nodes (default cluster).
    #[arg(long)]
    authority: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn token_create(dir: &Path, a: TokenCreateArgs) -> Result<(), CliError> {
    let mut conn = a.admin.connect(dir).await?;
    let body = TokenCreateRequest {
        role: a.role,
        node: a.name,
        ttl_seconds: Some(u64::try_from(a.ttl.whole_seconds()).unwrap_or(0)),
        uses: Some(a.uses),
        allow_sans: a.allow_san,
        authority: a.authority,
    };
    let created: TokenCreated = conn
        .json(Method::POST, "/v1/admin/tokens", Some(&body))
        .await?;
    if a.json {
        print_json(&created);
    } else {
        println!("{}", created.token);
        eprintln!(
            "token {} for role {}{}: {} use(s), expires {}",
            created.info.id,
            created.info.role,
            created
                .info
                .node
                .as_ref()
                .map(|n| format!(" (node {n} only)"))
                .unwrap_or_default(),
            created.info.uses,
            created.info.expires
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct AdminJsonArgs {
    #[command(flatten)]
    pub(crate) admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn token_ls(dir: &Path, a: AdminJsonArgs) -> Result<(), CliError> {
    let mut conn = a.admin.connect(dir).await?;
    let tokens: Vec<TokenView> = conn
        .json(Method::GET, "/v1/admin/tokens", None::<&()>)
        .await?;
    if a.json {
        print_json(&tokens);
        return Ok(());
    }
    println!(
        "{:<16}  {:<10}  {:<12}  {:<8}  {:<5}  EXPIRES",
        "ID", "ROLE", "NODE", "STATE", "USES"
    );
    for t in tokens {
        println!(
            "{:<16}  {:<10}  {:<12}  {:<8}  {:>2}/{:<2}  {}",
            t.id,
            t.role,
            t.node.as_deref().unwrap_or("-"),
            t.state,
            t.uses_left,
            t.uses,
            t.expires
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct TokenRevokeArgs {
    /// Token id (16 hex digits, as `kith token ls` shows).
    id: String,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn token_revoke(dir: &Path, a: TokenRevokeArgs) -> Result<(), CliError> {
    kith_api::TokenId::parse(&a.id).map_err(|e| CliError::new(e.code(), e))?;
    let mut conn = a.admin.connect(dir).await?;
    let t: TokenView = conn
        .json(
            Method::DELETE,
            &format!("/v1/admin/tokens/{}", a.id),
            None::<&()>,
        )
        .await?;
    if a.json {
        print_json(&t);
    } else {
        println!("token {} is {}", t.id, t.state);
    }
    Ok(())
}

// ---------------------------------------------------------------- node, status

pub(crate) async fn node_ls(dir: &Path, a: AdminJsonArgs) -> Result<(), CliError> {
    let mut conn = a.admin.connect(dir).await?;
    let nodes: Vec<NodeView> = conn
        .json(Method::GET, "/v1/admin/nodes", None::<&()>)
        .await?;
    if a.json {
        print_json(&nodes);
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    println!(
        "{:<16}  {:<10}  {:<8}  {:<32}  {:<14}  LAST RENEWAL",
        "NAME", "ROLE", "STATE", "SERIAL", "EXPIRES IN"
    );
    for n in nodes {
        let exp = parse(&n.not_after)
            .map(|t| util::relative(t, now))
            .unwrap_or_else(|| n.not_after.clone());
        println!(
            "{:<16}  {:<10}  {:<8}  {:<32}  {:<14}  {}",
            n.name, n.role, n.state, n.serial, exp, n.last_renewal
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct NodeRmArgs {
    /// Node name.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn node_rm(dir: &Path, a: NodeRmArgs) -> Result<(), CliError> {
    kith_pki::validate_label("node name", &a.name)?;
    let mut conn = a.admin.connect(dir).await?;
    let r: RevokeResponse = conn
        .json(
            Method::DELETE,
            &format!("/v1/admin/nodes/{}", a.name),
            None::<&()>,
        )
        .await?;
    if a.json {
        print_json(&r);
    } else {
        println!(
            "node {} removed; {} certificate(s) revoked",
            a.name,
            r.revoked.iter().filter(|v| v.newly_revoked).count()
        );
    }
    Ok(())
}

pub(crate) async fn status(dir: &Path, a: AdminJsonArgs) -> Result<(), CliError> {
    let mut conn = a.admin.connect(dir).await?;
    let s: StatusResponse = conn
        .json(Method::GET, "/v1/admin/status", None::<&()>)
        .await?;
    if a.json {
        print_json(&s);
        return Ok(());
    }
    println!(
        "cluster {} (kith {}), server time {}",
        s.cluster, s.version, s.now
    );
    for au in &s.authorities {
        println!(
            "  authority {:<10} root until {}, intermediate until {}, CRL #{} ({} entries)",
            au.name, au.root_not_after, au.intermediate_not_after, au.crl_number, au.crl_entries
        );
    }
    let fmt = |v: &[(String, usize)]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("  nodes:  {}", fmt(&s.nodes));
    println!("  tokens: {}", fmt(&s.tokens));
    Ok(())
}

/// `kith revoke` through a running server, if one is configured. Returns
/// `None` when no server is configured (the caller revokes offline).
pub(crate) async fn revoke_online(
    dir: &Path,
    admin: &AdminArgs,
    serial: Option<&str>,
    node: Option<&str>,
    reason: &str,
    json_out: bool,
) -> Result<Option<()>, CliError> {
    let explicit = admin.server.is_some();
    let Some(server) = admin.server(dir)? else {
        return Ok(None);
    };
    let mut conn = match admin.connect_to(dir, &server).await {
        Ok(c) => c,
        // A server.json left by a server that is gone: work offline.
        Err(e) if !explicit && e.code == ErrorCode::Unreachable.as_str() => return Ok(None),
        Err(e) => return Err(e),
    };
    let body = RevokeRequest {
        serial: serial.map(str::to_string),
        node: node.map(str::to_string),
        reason: Some(reason.to_string()),
        remove: false,
    };
    let r: RevokeResponse = conn
        .json(Method::POST, "/v1/admin/revoke", Some(&body))
        .await?;
    if json_out {
        print_json(&r);
        return Ok(Some(()));
    }
    for v in &r.revoked {
        if v.newly_revoked {
            println!(
                "revoked {} (node {}, reason {})",
                v.serial, v.node, v.reason
            );
        } else {
            println!(
                "{} (node {}) was already revoked at {} with reason {}; nothing changed",
                v.serial, v.node, v.revoked_at, v.reason
            );
        }
    }
    for (a, n) in &r.crl_numbers {
        println!("CRL of authority {a} is now number {n}; peers see it at their next refresh");
    }
    Ok(Some(()))
}

// ---------------------------------------------------------------- node side

#[derive(Args, Debug)]
pub(crate) struct JoinArgs {
    /// Server address: host[:port] or https://host[:port].
    #[arg(long, env = "KITH_SERVER")]
    server: String,
    /// The join token (KITH1-…); else KITH_TOKEN.
    #[arg(long, env = "KITH_TOKEN", hide_env_values = true)]
    token: String,
    /// Node name (default: this host's name).
    #[arg(long)]
    name: Option<String>,
    /// Extra name for the certificate, DNS or IP (repeatable).
    #[arg(long)]
    san: Vec<String>,
    /// Node directory to write.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// Profiles, comma-separated: peer, server, client.
    #[arg(long, default_value = "peer", value_delimiter = ',', value_parser = profile_parser)]
    profile: Vec<Profile>,
    /// Key type for the node key.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    /// Do not put this host's interface addresses in the certificate.
    #[arg(long)]
    no_interface_ips: bool,
    /// Replace an identity already in --dir.
    #[arg(long)]
    force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

fn print_identity(id: &kith_agent::NodeIdentity, dir: &Path, verb: &str, json_out: bool) {
    if json_out {
        print_json(&json!({
            "node": id.node, "role": id.role, "cluster": id.cluster, "serial": id.serial,
            "not_after": util::rfc3339(id.not_after), "dir": dir, "server": id.server.url(),
            "profiles": id.profiles,
        }));
    } else {
        println!(
            "{verb} {} as {} (role {}), certificate {} valid until {}; files in {}",
            id.cluster,
            id.node,
            id.role,
            id.serial,
            util::rfc3339(id.not_after),
            dir.display()
        );
    }
}

pub(crate) async fn join(a: JoinArgs) -> Result<(), CliError> {
    let server = ServerAddr::parse(&a.server)?;
    // An existing directory (a package's /var/lib/kith is often 0755) is
    // made 0700, or refused if others can write it, before the token is sent.
    if a.dir.symlink_metadata().is_ok() {
        kith_nodedir::tighten_private_dir(&a.dir)?;
    }
    let opts = kith_agent::JoinOptions {
        server,
        token: a.token,
        node: a.name,
        sans: a.san,
        dir: a.dir.clone(),
        profiles: a.profile,
        key_type: a.key_type,
        interface_ips: !a.no_interface_ips,
        force: a.force,
    };
    let id = kith_agent::join(&opts).await?;
    print_identity(&id, &a.dir, "joined", a.json);
    if !a.json {
        println!("keep it renewed: kith agent --dir {}", a.dir.display());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct RenewArgs {
    /// Node directory.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn renew(a: RenewArgs) -> Result<(), CliError> {
    let id = kith_agent::renew(&a.dir).await?;
    print_identity(&id, &a.dir, "renewed", a.json);
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    /// Node directory.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// Shell command to run after the files change (e.g. "systemctl reload myapp").
    #[arg(long, conflicts_with = "signal")]
    exec: Option<String>,
    /// Signal a process after the files change: PID:SIGNAL (e.g. 1234:HUP).
    #[arg(long)]
    signal: Option<String>,
    /// How often to refresh the CA bundle, the CRL and the secrets.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    refresh: Duration,
    /// Secrets to keep as files in --secrets-dir, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "secrets_dir")]
    secrets: Vec<String>,
    /// Where the secret files go (0400 each; the directory must be private;
    /// use tmpfs, e.g. /run/kith/secrets).
    #[arg(long, value_name = "DIR")]
    secrets_dir: Option<PathBuf>,
}

pub(crate) async fn agent(a: AgentArgs) -> Result<(), CliError> {
    // Refuse an unsafe directory now, not at the first renewal hours later.
    kith_nodedir::check_node_dir(&a.dir)?;
    let mut opts = kith_agent::agent::AgentOptions::new(a.dir);
    opts.refresh_every = std_duration(a.refresh).max(std::time::Duration::from_secs(1));
    opts.secrets = a.secrets;
    opts.secrets_dir = a.secrets_dir;
    opts.hook = match (a.exec, a.signal) {
        (Some(cmd), _) => Some(kith_agent::agent::Hook::Exec(cmd)),
        (None, Some(s)) => Some(kith_agent::agent::Hook::parse_signal(&s)?),
        (None, None) => None,
    };
    kith_agent::agent::run(opts).await?;
    Ok(())
}
