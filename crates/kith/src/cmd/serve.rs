//! `kith serve`: unlock the authority and run kith-server (or `--dev`, a throwaway CA).

use kith_api::ErrorCode;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use kith_agent::ServerAddr;
use kith_authority::{Settings, TokenSpec, LOCAL_OPERATOR};
use serde_json::json;
use time::Duration;

use crate::admin::SERVER_FILE;
use crate::output::CliError;
use crate::util;
use crate::util::Home;

type StoreRef = std::sync::Arc<dyn kith_store::Store>;

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:7443")]
    listen: SocketAddr,
    /// The URL nodes use to reach this server (its host goes into the
    /// server certificate), e.g. https://ca.example:7443.
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// This server's name, so that replicas sharing a store can be told
    /// apart and revoked one by one (`kith revoke --server-name NAME`):
    /// `kith-server` or `kith-server-*`. Default: `kith-server-<host>`, this
    /// machine's host name lowercased, other characters than a-z, 0-9 and
    /// `-` turned into `-`, cut to 51 characters.
    #[arg(long, env = "KITH_SERVER_NAME", value_name = "NAME")]
    server_name: Option<String>,
    /// How often the server checks its own certificate (renewal, and
    /// whether it was revoked: then it stops) and the CRLs (1s to 24h).
    #[arg(long, value_parser = parse_audit_window, default_value = "1m")]
    maintenance_interval: std::time::Duration,
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
    /// Lifetime of the certificates issued at join and renewal to nodes
    /// whose token sets none (1m to the intermediate's five years; default:
    /// each profile's, 30 days for peer).
    #[arg(long, value_parser = util::parse_leaf_ttl, value_name = "DURATION")]
    leaf_ttl: Option<Duration>,
    /// Audit window for refusals and repeated reads: per identity, the
    /// first is recorded, the rest summarised with their count when the
    /// window ends (1s to 24h, e.g. 30s, 1m, 1h).
    #[arg(long, value_parser = parse_audit_window, default_value = "1m")]
    audit_window: std::time::Duration,
    /// Also write every audit record, once stored, as one JSON line to FILE
    /// (opened for appending, created 0600) or to stdout (`-`): for a log
    /// shipper, and a copy of each chain's MACs kept outside the store.
    #[arg(long, value_name = "FILE|-")]
    audit_log: Option<PathBuf>,
    /// Refusals of one identity per audit window answered as refusals; the
    /// ones past it get 429 rate-limited until the window ends.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000), default_value = "30")]
    refusal_limit: u32,
    /// Renewals of one node per audit window (each writes certificates);
    /// the ones past it get 429 rate-limited until the window ends.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000), default_value = "10")]
    renew_limit: u32,
    /// How long a prepared intermediate is published (its CRL served to
    /// every node) before it issues (1s to 30d). Every agent must refresh
    /// within it: a peer without the new intermediate's CRL refuses the
    /// leaves it signs.
    #[arg(long, value_parser = parse_intermediate_publish, default_value = "1h", value_name = "DURATION")]
    intermediate_publish: Duration,
    /// The share of its lifetime left, in percent (1 to 90), at which an
    /// intermediate is renewed by itself.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=90), default_value = "33", value_name = "N")]
    intermediate_renew_percent: u8,
    /// Over how long the nodes asked to renew by a root rotation's
    /// activation are spread (1s to 7d; a compromised rotation asks every
    /// node at once).
    #[arg(long, value_parser = parse_root_renew_spread, default_value = "10m", value_name = "DURATION")]
    root_renew_spread: Duration,
    /// Serve Prometheus metrics on plain HTTP at this address
    /// (`GET /metrics`; e.g. 127.0.0.1:9464). Off by default. The README's
    /// "Monitoring" section lists the metrics; none holds a secret.
    #[arg(long, env = "KITH_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// How often the metrics read from the store (CA expiries, CRLs, nodes,
    /// tokens, replicas) are refreshed: each refresh lists those records,
    /// so a scrape never makes the server scan its store (1s to 24h).
    #[arg(long, value_parser = parse_audit_window, default_value = "30s", value_name = "DURATION")]
    metrics_refresh: std::time::Duration,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `--audit-window`: a number of seconds, minutes or hours, 1s to 24h.
/// `--intermediate-publish`: 1s to 30 days.
fn parse_intermediate_publish(s: &str) -> Result<Duration, String> {
    crate::duration::parse_duration_at_most(s, Duration::days(30))
}

/// `--root-renew-spread`: up to 7 days.
fn parse_root_renew_spread(s: &str) -> Result<Duration, String> {
    crate::duration::parse_duration_at_most(s, Duration::days(7))
}

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

/// What a server failure is printed as: the authority's own code when it
/// names the fix (a retired or invalid server name), else `serve-failed`.
fn serve_error(e: kith_server::Error) -> CliError {
    match e {
        kith_server::Error::Authority(a)
            if matches!(
                a.code(),
                ErrorCode::ServerNameRetired | ErrorCode::InvalidName
            ) =>
        {
            a.into()
        }
        other => CliError::new(ErrorCode::ServeFailed, other),
    }
}

pub(crate) async fn serve(dir: &Home, a: ServeArgs) -> Result<(), CliError> {
    // Checked before anything is unlocked or created.
    let limits = a.limits.limits()?;
    let server_name = a
        .server_name
        .clone()
        .unwrap_or_else(kith_server::default_server_name);
    kith_pki::validate_server_name(&server_name)?;
    let settings = Settings {
        audit_limits: kith_authority::AuditLimits {
            window: a.audit_window,
            max_refusals: a.refusal_limit,
            max_renewals: a.renew_limit,
        },
        leaf_ttl: a.leaf_ttl,
        intermediate_publish: Some(a.intermediate_publish),
        intermediate_renew_percent: Some(a.intermediate_renew_percent),
        root_renew_spread: Some(a.root_renew_spread),
        // One audit chain per replica, named like it.
        audit_writer: Some(server_name.clone()),
        ..Settings::default()
    };
    // Opened before anything is unlocked: a log that cannot be written stops the start.
    let audit_log = a.audit_log.as_deref().map(audit_log_sink).transpose()?;
    if a.dev && dir.store_args().is_nats() {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "--dev runs a throwaway CA in a temporary directory; it takes no --store",
        ));
    }
    let on_nats = dir.store_args().is_nats();
    // The store is timed from the start, so the metrics cover the unlock.
    let metrics = a
        .metrics_listen
        .map(|_| std::sync::Arc::new(kith_server::metrics::Metrics::new()));
    let timed = |store: StoreRef| -> StoreRef {
        match &metrics {
            Some(m) => m.timed_store(store),
            None => store,
        }
    };
    let (dir, authority, dev_token) = if a.dev {
        let (dir, authority, token) = dev_setup(settings, &timed).await?;
        (dir, authority, Some(token))
    } else {
        let authority =
            util::unlock_wrapped(dir, a.passphrase_file.as_deref(), settings, &timed).await?;
        util::prepare_local_dir(dir)?;
        (dir.to_path_buf(), authority, None)
    };
    let mut names = Vec::new();
    let advertised = match &a.advertise {
        Some(url) => {
            let addr = crate::admin::parse_server(url)?;
            names.push(addr.host.clone());
            Some(addr)
        }
        None => {
            if on_nats {
                // Replicas list each other's advertised URL to nodes: without
                // one, this replica offers its bound address (loopback for
                // 0.0.0.0), which remote nodes cannot fail over to.
                tracing::warn!(
                    "no --advertise: nodes elsewhere cannot fail over to this replica; \
                     pass --advertise https://HOST:PORT naming this machine"
                );
            }
            None
        }
    };
    if let Some(h) = kith_agent::default_node_name() {
        names.push(h);
    }
    let mut opts = kith_server::Options::new(a.listen);
    opts.server_name = server_name.clone();
    opts.maintenance_interval = a.maintenance_interval;
    opts.names = names;
    opts.renew_grace = a.renew_grace;
    opts.limits = limits;
    // The replica registry lists the advertised URL (else the bound address).
    opts.advertise = advertised.as_ref().map(ServerAddr::url);
    opts.metrics = metrics.clone();
    opts.metrics_refresh = a.metrics_refresh;
    if let (Some(addr), Some(m)) = (a.metrics_listen, metrics) {
        crate::metrics_http::start(
            addr,
            kith_server::metrics::CONTENT_TYPE,
            std::sync::Arc::new(move || m.encode()),
        )
        .await?;
    }
    if let Some(sink) = audit_log {
        authority.set_audit_sink(sink);
    }
    let server = kith_server::Server::bind(authority.clone(), opts)
        .await
        .map_err(serve_error)?;
    authority
        .audit(LOCAL_OPERATOR, "unlock", &server_name, "kith serve started")
        .await?;
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
    let info = json!({
        "server": reach.url(),
        "listen": local.to_string(),
        "pid": std::process::id(),
        "server_name": server_name,
    });
    kith_nodedir::write_atomic(&dir, SERVER_FILE, info.to_string().as_bytes(), 0o644)?;
    let _ = writeln!(
        std::io::stderr(),
        "kith: server {server_name} serving cluster {} on {} (listening on {local})",
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
    result.map_err(serve_error)
}

async fn dev_setup(
    settings: Settings,
    wrap: &(dyn Fn(StoreRef) -> StoreRef + Sync),
) -> Result<(PathBuf, kith_authority::Authority, String), CliError> {
    let dir = std::env::temp_dir().join(format!("kith-dev-{}", std::process::id()));
    kith_nodedir::create_dir(&dir)?;
    // The name is predictable: a directory someone else made first is refused.
    kith_nodedir::check_private_dir(&dir)?;
    let pass = util::generate_passphrase()?;
    kith_nodedir::write_atomic(&dir, "passphrase", pass.as_bytes(), 0o600)?;
    crate::cmd::init::init_quiet(&dir, "dev.kith", &dir.join("passphrase")).await?;
    let home = Home::embedded(dir.clone());
    let authority =
        util::unlock_wrapped(&home, Some(&dir.join("passphrase")), settings, wrap).await?;
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

/// The `--audit-log` sink: JSON lines appended to a 0600 file, or stdout.
fn audit_log_sink(path: &std::path::Path) -> Result<kith_authority::AuditSink, CliError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let out: Box<dyn Write + Send> = if path == std::path::Path::new("-") {
        Box::new(std::io::stdout())
    } else {
        let shown = path.display();
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| CliError::new(ErrorCode::IoError, format!("--audit-log {shown}: {e}")))?;
        let meta = f
            .metadata()
            .map_err(|e| CliError::new(ErrorCode::IoError, format!("--audit-log {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(CliError::new(
                ErrorCode::NotRegularFile,
                format!("--audit-log {shown} is not a regular file"),
            ));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(CliError::new(
                ErrorCode::InsecurePermissions,
                format!("--audit-log {shown} is open to other users"),
            )
            .hint(format!("chmod 600 {shown}")));
        }
        Box::new(f)
    };
    let out = std::sync::Mutex::new(out);
    Ok(std::sync::Arc::new(
        move |r: &kith_authority::AuditRecord| {
            let Ok(mut line) = serde_json::to_vec(r) else {
                return;
            };
            line.push(b'\n');
            let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = w.write_all(&line).and_then(|()| w.flush()) {
                tracing::error!(error = %e, "writing the audit log failed");
            }
        },
    ))
}
