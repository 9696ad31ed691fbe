//! kith's HTTPS API server.
//!
//! A thin layer over [`kith_authority::Authority`]: rustls terminates TLS
//! (client certificates optional, verified against the cluster roots), axum
//! routes `/v1`, and every handler decodes, calls the authority and encodes.
//! The server issues its own certificate under each authority at start
//! (keys never leave memory), presents the one the client's TLS server name
//! asks for ([`kith_api::parse_sni`]; the default authority's otherwise),
//! renews them before they expire, and keeps each authority's CRLs (its
//! intermediate's and its root's) fresh. Each replica has a name of its own in the server
//! name space ([`Options::server_name`]), so one can be revoked without the
//! others; a revoked replica stops ([`Server::run`]). Replicas sharing a
//! store register and heartbeat (`replica/<name>`), list each other's
//! advertise URLs in `/v1/ca` and the join and renew answers, and run the
//! shared maintenance on one replica at a time (the `lease/maintenance`
//! holder).
//!
//! ```text
//! GET  /healthz, /readyz                 public
//! GET  /v1/openapi.json                  public: this API, described (OpenAPI 3.1)
//! GET  /v1/ca                            public: roots, intermediates, pins
//! GET  /v1/crl/{authority}               public: DER, application/pkix-crl
//! GET  /v1/crl/{authority}/root          public: the root's CRL (DER), for nginx & co.
//! GET  /v1/crl/{authority}/others        public: the other CAs' CRLs (PEM; rotations)
//! POST /v1/join                          a join token and CSRs
//! POST /v1/renew                         mutual TLS with the node's certificate
//! GET  /v1/node[?trusts=PIN,PIN]         mutual TLS: the node behind the certificate
//! GET  /v1/secrets/{name}                mutual TLS, a node whose role may read it
//! /v1/admin/{tokens,nodes,revoke,status,secrets,ca/rotate,...}  mutual TLS with an admin certificate
//! ```

mod api;
mod conn;
mod crl;
mod error;
mod gate;
mod limits;
pub mod metrics;
mod name;
mod openapi;
mod replicas;
mod throttle;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kith_authority::{Authority, CrlIssuer, RootStep};
use kith_pki::San;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use kith_authority::DEFAULT_RENEW_GRACE;
pub use limits::{Limits, Rate, Timeout};
pub use name::{default_server_name, server_name_for_host};
pub use openapi::{openapi, openapi_json};

/// What the server needs besides the authority.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on (port 0 picks one; see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// This replica's name, in the server name space (`kith-server` or
    /// `kith-server-*`, [`kith_pki::validate_server_name`]): its certificate
    /// says `spiffe://<cluster>/kith/server/<name>`, and revoking that name
    /// revokes this replica only. Default: [`default_server_name`].
    pub server_name: String,
    /// Names (DNS or IP) the server's certificate carries besides the
    /// listen address; the host of `--advertise` belongs here.
    pub names: Vec<String>,
    /// How long after expiry a certificate may still renew.
    pub renew_grace: time::Duration,
    /// How often to check the server certificate and the CRLs for renewal.
    pub maintenance_interval: Duration,
    /// What a client may cost before it has proven anything: connection
    /// caps, deadlines, per-source request rates ([`Limits::default`]).
    pub limits: Limits,
    /// Where nodes reach this replica (`https://host:port`), registered in
    /// the store for the others to list; default `https://` and the bound
    /// address (127.0.0.1 for an unspecified one).
    pub advertise: Option<String>,
    /// How often this replica writes its heartbeat
    /// ([`kith_authority::HEARTBEAT_PERIOD`]; liveness is judged against
    /// that constant, so a shorter interval only refreshes sooner).
    pub heartbeat_interval: Duration,
    /// Where this process's metrics go (the binary serves them on
    /// `--metrics-listen`); `None`: counted into a registry nobody reads,
    /// and the gauges read from the store are never refreshed.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// How often the gauges read from the store (CA expiries, CRLs, nodes,
    /// tokens, replicas) are refreshed: a few listings each time.
    pub metrics_refresh: Duration,
}

impl Options {
    /// Defaults for `listen`: grace 7 days, maintenance every minute, the
    /// limits of [`Limits::default`].
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            server_name: default_server_name(),
            names: Vec::new(),
            renew_grace: DEFAULT_RENEW_GRACE,
            maintenance_interval: Duration::from_secs(60),
            limits: Limits::default(),
            advertise: None,
            heartbeat_interval: kith_authority::HEARTBEAT_PERIOD,
            metrics: None,
            metrics_refresh: DEFAULT_METRICS_REFRESH,
        }
    }
}

/// How often the store-read gauges are refreshed by default.
pub const DEFAULT_METRICS_REFRESH: Duration = Duration::from_secs(30);

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding or accepting failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    /// The authority failed (issuing the server's certificate, reading the store).
    #[error(transparent)]
    Authority(#[from] kith_authority::Error),
    /// rustls refused a key or certificate.
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// Something else in the setup.
    #[error("{0}")]
    Setup(String),
}

impl From<kith_pki::Error> for Error {
    fn from(e: kith_pki::Error) -> Self {
        Self::Authority(e.into())
    }
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    cert: Arc<tls::ServerCert>,
    state: Arc<api::AppState>,
    maintenance_interval: Duration,
    limits: Limits,
    advertise: String,
    heartbeat_interval: Duration,
    /// Refresh the store-read gauges this often (only when exposed).
    metrics_refresh: Option<Duration>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

fn server_sans(opts: &Options) -> Result<Vec<San>, Error> {
    let mut names: Vec<String> = opts.names.clone();
    let ip = opts.listen.ip();
    if ip.is_unspecified() {
        names.extend(["localhost".into(), "127.0.0.1".into(), "::1".into()]);
    } else {
        names.push(ip.to_string());
    }
    let mut sans = Vec::new();
    for n in names {
        // The parser of --san: IP addresses, or DNS names checked and lowercased.
        let san: San = n.parse()?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

impl Server {
    /// Bind, issue the server's certificate, build the TLS configuration.
    /// A name outside the server name space is `invalid-name`; the name of
    /// a revoked server is [`kith_authority::Error::ServerNameRetired`].
    pub async fn bind(authority: Authority, opts: Options) -> Result<Self, Error> {
        kith_pki::validate_server_name(&opts.server_name)?;
        opts.limits.check().map_err(Error::Setup)?;
        let mut limits = opts.limits.clone();
        gate::fit_descriptors(&mut limits);
        let sans = server_sans(&opts)?;
        let cert =
            Arc::new(tls::ServerCert::issue(&authority, opts.server_name.clone(), sans).await?);
        let verifier = Arc::new(tls::ClientVerifier::new(&authority)?);
        let mut config = rustls::ServerConfig::builder_with_provider(tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(Error::Tls)?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let listener = TcpListener::bind(opts.listen).await?;
        let advertise = match &opts.advertise {
            Some(url) => url.clone(),
            None => default_advertise(listener.local_addr()?),
        };
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert,
            state: Arc::new(api::AppState {
                server_name: opts.server_name.clone(),
                authority,
                renew_grace: opts.renew_grace,
                crls: Arc::new(crl::CrlPublisher::default()),
                replicas: std::sync::RwLock::new(Vec::new()),
                metrics: opts.metrics.clone().unwrap_or_default(),
            }),
            maintenance_interval: opts.maintenance_interval,
            limits,
            advertise,
            heartbeat_interval: opts.heartbeat_interval,
            metrics_refresh: opts.metrics.is_some().then_some(opts.metrics_refresh),
        })
    }

    /// This replica's name (its certificate's server identity).
    pub fn name(&self) -> &str {
        self.cert.name()
    }

    /// Where nodes reach this replica, as registered ([`Options::advertise`]).
    pub fn advertise(&self) -> &str {
        &self.advertise
    }

    /// The router exactly as [`Server::run`] serves it, for the test that
    /// holds it and the OpenAPI document to each other. Not a stable API.
    #[doc(hidden)]
    pub fn router(&self) -> axum::Router {
        api::router(self.state.clone())
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, Error> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve until `shutdown` completes. A replica that finds itself
    /// revoked (at a maintenance tick: every [`Options::maintenance_interval`])
    /// stops accepting and returns
    /// [`kith_authority::Error::ServerNameRetired`] rather than renew
    /// itself past the revocation; nodes that have the CRL naming it refuse
    /// it before that.
    ///
    /// The replica registers itself (`replica/<server name>`) before it
    /// accepts, heartbeats while it runs, and on a clean stop (`shutdown`)
    /// removes its record and gives up the maintenance lease. Dropping the
    /// future instead (a crash) stops its tasks and leaves the record to
    /// age out of the live list.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let authority = self.state.authority.clone();
        let registration = Arc::new(
            authority
                .register_replica(self.cert.name(), &self.advertise, env!("CARGO_PKG_VERSION"))
                .await?,
        );
        replicas::refresh_list(&self.state).await;
        let mut heartbeat = replicas::AbortOnDrop(tokio::spawn(replicas::heartbeat(
            self.state.clone(),
            registration.clone(),
            self.heartbeat_interval,
        )));
        let mut maintenance = replicas::AbortOnDrop(tokio::spawn(maintain(
            self.state.authority.clone(),
            self.cert.clone(),
            self.state.crls.clone(),
            self.maintenance_interval,
        )));
        let _revocations = replicas::AbortOnDrop(tokio::spawn(watch_revocations(
            self.state.authority.clone(),
            self.state.crls.clone(),
        )));
        let _metrics = self.metrics_refresh.map(|every| {
            replicas::AbortOnDrop(tokio::spawn(metrics::refresh(
                self.state.authority.clone(),
                self.state.metrics.clone(),
                every,
            )))
        });
        let shared = Arc::new(conn::Shared {
            acceptor: self.acceptor.clone(),
            router: api::router(self.state.clone()),
            throttle: throttle::Throttle::new(&self.limits),
            limits: self.limits.clone(),
        });
        let gate = gate::Gate::new(
            self.limits.max_connections,
            self.limits.max_connections_per_source,
            self.limits.new_connections,
        );
        tokio::pin!(shutdown);
        loop {
            let (tcp, addr) = tokio::select! {
                _ = &mut shutdown => break,
                stopped = &mut maintenance.0 => {
                    replicas::leave(&authority, &registration, &mut heartbeat).await;
                    let e = stopped.unwrap_or_else(|j| Error::Setup(format!("the maintenance task failed: {j}")));
                    tracing::error!(server = %self.cert.name(), error = %e, "this server stops serving");
                    return Err(e);
                }
                r = self.listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let source = limits::Source::of(addr.ip());
            let slot = match gate.admit(source) {
                Ok(slot) => slot,
                Err(why) => {
                    // Refused before any TLS work and without a task: a
                    // reset frees the socket at once (no TIME_WAIT here).
                    let _ = tcp.set_zero_linger();
                    drop(tcp);
                    gate.refused(why, source);
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(conn::serve(tcp, addr, slot, shared.clone()));
        }
        drop(maintenance);
        replicas::leave(&authority, &registration, &mut heartbeat).await;
        Ok(())
    }
}

/// Check that this replica is not revoked, renew its certificate at two
/// thirds of its life and, when this replica holds the maintenance lease
/// (one replica at a time does the shared work), renew the intermediates
/// ([`Authority::maintain_intermediates`]), re-sign each CRL (every
/// intermediate's, the root's) before it goes stale (the authority re-signs
/// one past half its validity) and sweep orphaned chunks. Returns only when the
/// replica is revoked (its name retired): the server then stops.
async fn maintain(
    authority: Authority,
    cert: Arc<tls::ServerCert>,
    crls: Arc<crl::CrlPublisher>,
    every: Duration,
) -> Error {
    let retired = || kith_authority::Error::ServerNameRetired(cert.name().to_string()).into();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep: Option<tokio::time::Instant> = None;
    // An authority added by another replica reaches this one's keyring
    // through the store watch: its certificate is issued then, before a
    // client asks for it (the first join through this replica would
    // otherwise meet the default chain).
    let mut seen = authority.keyring_generation();
    let mut poll = tokio::time::interval(KEYRING_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            // A client asked for an authority added since: issue its certificate now.
            _ = cert.missing.notified() => {}
            _ = poll.tick() => {
                let now = authority.keyring_generation();
                if now == seen {
                    continue;
                }
                seen = now;
            }
        }
        match authority.server_retired(cert.name()).await {
            Ok(true) => return retired(),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "checking this server's own revocation failed"),
        }
        // This replica's own certificate is its own business; the rest is
        // shared work, done by the holder of the maintenance lease only.
        match cert.renew_if_due(&authority).await {
            Ok(true) => tracing::info!("server certificate renewed"),
            Ok(false) => {}
            Err(Error::Authority(kith_authority::Error::ServerNameRetired(_))) => return retired(),
            Err(e) => tracing::error!(error = %e, "renewing the server certificate failed"),
        }
        if !replicas::hold_maintenance(&authority, cert.name(), every).await {
            continue;
        }
        // Chunks of split values that no record names (a writer killed
        // half-way): an hourly sweep, as each costs a listing of them all.
        if last_sweep.is_none_or(|t| t.elapsed() >= CHUNK_SWEEP_EVERY) {
            last_sweep = Some(tokio::time::Instant::now());
            match authority.sweep_orphan_chunks().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(chunks = n, "removed orphaned chunks of split values"),
                Err(e) => tracing::warn!(error = %e, "sweeping orphaned chunks failed"),
            }
        }
        // Intermediates renew themselves: prepare, activate after the
        // publish delay, drop the expired replaced ones (each step it
        // takes is logged and audited by the authority, as this replica).
        let actor = format!("server:{}", cert.name());
        if let Err(e) = authority.maintain_intermediates(&actor).await {
            tracing::error!(error = %e, "renewing the intermediates failed");
        }
        // Root rotations move on by themselves once their condition holds
        // (every live node trusts both roots; holds a leaf under the new
        // intermediate; the old root's last leaf expired).
        match authority.maintain_root_rotations(&actor).await {
            Ok(steps) => {
                for (name, step) in steps.iter().filter(|(_, s)| *s != RootStep::Nothing) {
                    tracing::info!(authority = %name, ?step, "root rotation moved on");
                }
            }
            Err(e) => tracing::error!(error = %e, "moving the root rotations on failed"),
        }
        for name in authority.authority_names() {
            let mut issuers = vec![CrlIssuer::Intermediate, CrlIssuer::Root];
            // During a root rotation the other root signs a CRL too.
            if authority.cross_signed(&name).is_ok_and(|x| !x.is_empty()) {
                issuers.push(CrlIssuer::OtherRoot);
            }
            if let Ok(status) = authority.intermediate_status(&name) {
                issuers.extend(
                    status
                        .prepared
                        .iter()
                        .map(|(p, _)| p.generation)
                        .chain(status.previous.iter().map(|p| p.generation))
                        .map(CrlIssuer::Generation),
                );
            }
            for issuer in issuers {
                if let Err(e) = crls.current(&authority, &name, issuer).await {
                    tracing::error!(authority = %name, ?issuer, error = %e, "refreshing the CRL failed");
                }
            }
            publish_if_stale(&authority, &crls, &name).await;
        }
    }
}

/// `https://` and `addr`, 127.0.0.1 (or ::1) for an unspecified address:
/// the server's certificate names the loopback addresses then.
fn default_advertise(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("https://{}", SocketAddr::new(ip, addr.port()))
}

/// How often maintenance looks for a keyring change (an authority added
/// elsewhere): a comparison of two numbers.
const KEYRING_POLL: Duration = Duration::from_secs(1);

/// How often the maintenance tick sweeps orphaned chunks.
const CHUNK_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Re-sign `name`'s CRL if a revocation was recorded after it was signed
/// (by another process sharing the store, say, that died before publishing).
async fn publish_if_stale(authority: &Authority, crls: &crl::CrlPublisher, name: &str) {
    match authority.crl_is_stale(name).await {
        Ok(true) => {
            if let Err(e) = crls.changed(authority, name).await {
                tracing::error!(authority = %name, error = %e, "re-signing a stale CRL failed");
            }
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(authority = %name, error = %e, "checking the CRL failed"),
    }
}

/// How long a revocation seen in the store is left to the process that
/// recorded it to publish, before this server re-signs the CRL itself.
const PUBLISH_GRACE: Duration = Duration::from_secs(1);

/// Watch every revocation recorded in the store, by any process: the CRL
/// that should list it is re-signed within moments, not at the next
/// maintenance tick or when the stored one half expires.
async fn watch_revocations(authority: Authority, crls: Arc<crl::CrlPublisher>) {
    use futures::{FutureExt, StreamExt};
    loop {
        let mut events = match authority.store().watch("revoked/").await {
            // Fused: the drain below may see the end before the loop does.
            Ok(s) => s.fuse(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch revocations (the maintenance tick covers them); retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        while let Some(first) = events.next().await {
            // The process that recorded a revocation publishes it itself,
            // within moments: give it that second, then sign only what is
            // still missing (a process that died first), once per burst.
            tokio::time::sleep(PUBLISH_GRACE).await;
            let mut batch = vec![first];
            while let Some(Some(ev)) = events.next().now_or_never() {
                batch.push(ev);
            }
            let mut touched: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
            // A lagged watch (an error) is left to the maintenance tick.
            for ev in batch.into_iter().flatten() {
                if let Some(name) = ev.key().split('/').nth(1) {
                    touched.insert(name.to_string());
                }
            }
            for name in touched {
                publish_if_stale(&authority, &crls, &name).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Decode a `POST /v1/join` body exactly as the handler does (JSON shape,
/// token syntax, profile names); `Err` carries the answer's status and code.
/// Public for the fuzz target, not a stable API.
#[doc(hidden)]
pub fn decode_join_request(body: &[u8]) -> Result<DecodedJoinRequest, (u16, &'static str)> {
    api::decode_join(body)
        .map(|d| (d.token, d.node, d.csrs))
        .map_err(|e| (e.code.http_status(), e.code.as_str()))
}

/// A decoded join body: token, node name asked for, (profile, CSR) pairs.
#[doc(hidden)]
pub type DecodedJoinRequest = (
    kith_api::JoinToken,
    Option<String>,
    Vec<(kith_pki::Profile, Vec<u8>)>,
);

/// Every `/v1/admin` route as `(method, path)`, paths with their `{name}`
/// parameters: the table the admin router is built from, so that a test
/// can prove each one refuses whoever is not an operator. Public for the
/// tests, not a stable API.
#[doc(hidden)]
pub fn admin_routes() -> Vec<(axum::http::Method, String)> {
    api::admin_routes()
}
