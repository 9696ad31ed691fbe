//! The agent's Prometheus metrics, and its word to systemd.
//!
//! Metrics: what an operator alerts on for one node (its certificate about
//! to expire, renewals failing, the CRL or bundle not refreshed). Label
//! values are bounded: a failure's code is a known [`ErrorCode`] spelling or
//! `other` (a server could send any string). No secret, no secret name.
//!
//! systemd (`Type=notify`): `READY=1` once the node holds a valid
//! certificate and its first refresh succeeded, `WATCHDOG=1` at half of
//! `WATCHDOG_USEC` while the agent runs ([`notify_ready`], [`watchdog`]).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kith_api::ErrorCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`AgentMetrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

type Instant = Gauge<f64, AtomicU64>;

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Every metric of one `kith agent` process. Share it with an `Arc`.
pub struct AgentMetrics {
    registry: Registry,
    not_after: Gauge,
    not_before: Gauge,
    last_renewal: Instant,
    renewals: Counter,
    renewal_failures: Family<CodeLabels, Counter>,
    crl_refresh: Instant,
    bundle_refresh: Instant,
    secrets_delivered: Counter,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// A registry with every agent metric, at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let not_after = Gauge::default();
        registry.register_with_unit(
            "kith_agent_certificate_not_after_timestamp",
            "Expiry (Unix time) of the node's current certificate",
            Unit::Seconds,
            not_after.clone(),
        );
        let not_before = Gauge::default();
        registry.register_with_unit(
            "kith_agent_certificate_not_before_timestamp",
            "Start of validity (Unix time) of the node's current certificate",
            Unit::Seconds,
            not_before.clone(),
        );
        let last_renewal = Instant::default();
        registry.register_with_unit(
            "kith_agent_last_renewal_timestamp",
            "When (Unix time) this agent last renewed the certificate (0: not since it started)",
            Unit::Seconds,
            last_renewal.clone(),
        );
        let renewals = Counter::default();
        registry.register(
            "kith_agent_renewals",
            "Successful renewals",
            renewals.clone(),
        );
        let renewal_failures = Family::<CodeLabels, Counter>::default();
        registry.register(
            "kith_agent_renewal_failures",
            "Failed renewals, by error code",
            renewal_failures.clone(),
        );
        let crl_refresh = Instant::default();
        registry.register_with_unit(
            "kith_agent_crl_refresh_timestamp",
            "When (Unix time) the CRL was last fetched successfully (0: never)",
            Unit::Seconds,
            crl_refresh.clone(),
        );
        let bundle_refresh = Instant::default();
        registry.register_with_unit(
            "kith_agent_bundle_refresh_timestamp",
            "When (Unix time) the CA bundle was last fetched successfully (0: never)",
            Unit::Seconds,
            bundle_refresh.clone(),
        );
        let secrets_delivered = Counter::default();
        registry.register(
            "kith_agent_secrets_delivered",
            "Secret files written with a new value",
            secrets_delivered.clone(),
        );
        Self {
            registry,
            not_after,
            not_before,
            last_renewal,
            renewals,
            renewal_failures,
            crl_refresh,
            bundle_refresh,
            secrets_delivered,
        }
    }

    /// The OpenMetrics text of every metric ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub(crate) fn certificate(&self, identity: &kith_nodedir::NodeIdentity) {
        self.not_after.set(identity.not_after.unix_timestamp());
        self.not_before.set(identity.not_before.unix_timestamp());
    }

    pub(crate) fn renewed(&self) {
        self.renewals.inc();
        self.last_renewal.set(unix_now());
    }

    pub(crate) fn renewal_failed(&self, code: Option<ErrorCode>) {
        let code = code.map_or("other", ErrorCode::as_str);
        self.renewal_failures
            .get_or_create(&CodeLabels { code })
            .inc();
    }

    /// The bundle and the CRL were both fetched and checked.
    pub(crate) fn refreshed(&self) {
        let now = unix_now();
        self.crl_refresh.set(now);
        self.bundle_refresh.set(now);
    }

    pub(crate) fn secrets_delivered(&self, n: u64) {
        self.secrets_delivered.inc_by(n);
    }
}

/// Tell systemd the agent is ready (`READY=1`), if it runs under one that
/// listens (`NOTIFY_SOCKET`); without it, nothing happens.
pub(crate) fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd the agent is ready");
    }
}

/// Pet systemd's watchdog at half of `WATCHDOG_USEC` for as long as the
/// runtime runs this task; returns at once when no watchdog is set.
pub(crate) async fn watchdog() {
    let Some(every) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (every / 2).max(Duration::from_millis(10));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            tracing::warn!(error = %e, "could not pet systemd's watchdog");
        }
    }
}
