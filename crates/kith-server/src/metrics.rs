//! The server's Prometheus metrics: one registry, the collectors the
//! handlers and the store wrapper feed, and the gauges a periodic task
//! refreshes from [`Authority::health_view`].
//!
//! Label values are bounded by construction: routes are axum's matched
//! route templates (never the raw path a client sent), codes are
//! [`kith_api::ErrorCode`] spellings, authorities and profiles are the CA's own.
//! Nothing here names a token, a key, a secret or a node.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::BoxStream;
use kith_authority::{Authority, HealthView};
use kith_store::{Entry, Limits, Revision, Store, WatchEvent};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssueLabels {
    authority: String,
    profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevokeLabels {
    authority: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct CaLabels {
    authority: String,
    role: String,
    state: String,
    serial: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct AuthorityLabels {
    authority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn latency() -> Histogram {
    // 1 ms to about 33 s: a join on a loaded machine with NATS is seconds.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The label sets a refreshed family held last time, so that a CA or
/// authority that went away leaves the output.
#[derive(Default)]
struct Seen {
    cas: BTreeSet<CaLabels>,
    authorities: BTreeSet<AuthorityLabels>,
    states: BTreeSet<StateLabels>,
}

/// Every metric of one `kith serve` process. Cheap to share (`Arc`).
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    issued: Family<IssueLabels, Counter>,
    renewed: Family<IssueLabels, Counter>,
    revoked: Family<RevokeLabels, Counter>,
    join_seconds: Histogram,
    renew_seconds: Histogram,
    store_seconds: Family<OpLabels, Histogram, fn() -> Histogram>,
    ca_not_after: Family<CaLabels, Gauge>,
    crl_number: Family<AuthorityLabels, Gauge>,
    crl_next_update: Family<AuthorityLabels, Gauge>,
    tokens_outstanding: Gauge,
    nodes: Family<StateLabels, Gauge>,
    earliest_node_expiry: Gauge,
    replicas_alive: Gauge,
    secrets: Gauge,
    refreshed_at: FloatGauge,
    seen: Mutex<Seen>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry holding every server metric, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "kith_http_requests",
            "API requests answered, by matched route and outcome (an error code, or ok)",
            requests.clone(),
        );
        let issued = Family::<IssueLabels, Counter>::default();
        registry.register(
            "kith_certificates_issued",
            "Certificates issued by joins and operator issuance, by authority and profile",
            issued.clone(),
        );
        let renewed = Family::<IssueLabels, Counter>::default();
        registry.register(
            "kith_certificates_renewed",
            "Certificates issued by renewals, by authority and profile",
            renewed.clone(),
        );
        let revoked = Family::<RevokeLabels, Counter>::default();
        registry.register(
            "kith_certificates_revoked",
            "Certificates newly revoked through this server, by authority and reason",
            revoked.clone(),
        );
        let join_seconds = latency();
        registry.register_with_unit(
            "kith_join_duration",
            "Time to answer a join, success or not",
            Unit::Seconds,
            join_seconds.clone(),
        );
        let renew_seconds = latency();
        registry.register_with_unit(
            "kith_renew_duration",
            "Time to answer a renewal, success or not",
            Unit::Seconds,
            renew_seconds.clone(),
        );
        let store_seconds: Family<OpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency);
        registry.register_with_unit(
            "kith_store_operation_duration",
            "Time of each store operation, by operation",
            Unit::Seconds,
            store_seconds.clone(),
        );
        let ca_not_after = Family::<CaLabels, Gauge>::default();
        registry.register_with_unit(
            "kith_ca_not_after_timestamp",
            "Expiry (Unix time) of every root and intermediate, by authority, role, state and serial",
            Unit::Seconds,
            ca_not_after.clone(),
        );
        let crl_number = Family::<AuthorityLabels, Gauge>::default();
        registry.register(
            "kith_crl_number",
            "The number of each authority's stored CRL",
            crl_number.clone(),
        );
        let crl_next_update = Family::<AuthorityLabels, Gauge>::default();
        registry.register_with_unit(
            "kith_crl_next_update_timestamp",
            "nextUpdate (Unix time) of each authority's stored CRL",
            Unit::Seconds,
            crl_next_update.clone(),
        );
        let tokens_outstanding = Gauge::default();
        registry.register(
            "kith_tokens_outstanding",
            "Join tokens that may still be redeemed",
            tokens_outstanding.clone(),
        );
        let nodes = Family::<StateLabels, Gauge>::default();
        registry.register("kith_nodes", "Nodes by state", nodes.clone());
        let earliest_node_expiry = Gauge::default();
        registry.register_with_unit(
            "kith_node_certificate_earliest_expiry_timestamp",
            "The earliest expiry (Unix time) among live nodes' certificates (0: no node)",
            Unit::Seconds,
            earliest_node_expiry.clone(),
        );
        let replicas_alive = Gauge::default();
        registry.register(
            "kith_replicas_alive",
            "Server replicas with a recent heartbeat",
            replicas_alive.clone(),
        );
        let secrets = Gauge::default();
        registry.register("kith_secrets", "Secrets stored", secrets.clone());
        let refreshed_at = FloatGauge::default();
        registry.register_with_unit(
            "kith_state_refresh_timestamp",
            "When (Unix time) the gauges read from the store were last refreshed",
            Unit::Seconds,
            refreshed_at.clone(),
        );
        Self {
            registry,
            requests,
            issued,
            renewed,
            revoked,
            join_seconds,
            renew_seconds,
            store_seconds,
            ca_not_after,
            crl_number,
            crl_next_update,
            tokens_outstanding,
            nodes,
            earliest_node_expiry,
            replicas_alive,
            secrets,
            refreshed_at,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The OpenMetrics text of every metric ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// `store` with every operation timed into this registry; install it
    /// before the authority opens, so the authority still sees a `Store`.
    pub fn timed_store(self: &Arc<Self>, store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(TimedStore {
            inner: store,
            metrics: self.clone(),
        })
    }

    /// `outcome`: an [`ErrorCode`]'s spelling, `ok`, or `status-NNN`.
    pub(crate) fn request(&self, route: &str, outcome: &str) {
        self.requests
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                code: outcome.to_string(),
            })
            .inc();
    }

    pub(crate) fn issued(&self, authority: &str, profile: &str, renewal: bool) {
        let labels = IssueLabels {
            authority: authority.to_string(),
            profile: profile.to_string(),
        };
        if renewal {
            self.renewed.get_or_create(&labels).inc();
        } else {
            self.issued.get_or_create(&labels).inc();
        }
    }

    pub(crate) fn revoked(&self, authority: &str, reason: &str) {
        self.revoked
            .get_or_create(&RevokeLabels {
                authority: authority.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn join_took(&self, d: Duration) {
        self.join_seconds.observe(d.as_secs_f64());
    }

    pub(crate) fn renew_took(&self, d: Duration) {
        self.renew_seconds.observe(d.as_secs_f64());
    }

    fn store_took(&self, op: &'static str, since: Instant) {
        self.store_seconds
            .get_or_create(&OpLabels { op })
            .observe(since.elapsed().as_secs_f64());
    }

    /// Set the store-read gauges from `v`, dropping label sets that went away.
    pub(crate) fn set_health(&self, v: &HealthView) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut cas = BTreeSet::new();
        for c in &v.cas {
            let l = CaLabels {
                authority: c.authority.clone(),
                role: c.role.to_string(),
                state: c.state.to_string(),
                serial: c.serial.clone(),
            };
            self.ca_not_after
                .get_or_create(&l)
                .set(c.not_after.unix_timestamp());
            cas.insert(l);
        }
        for gone in seen.cas.difference(&cas) {
            self.ca_not_after.remove(gone);
        }
        seen.cas = cas;
        let mut authorities = BTreeSet::new();
        for c in &v.crls {
            let l = AuthorityLabels {
                authority: c.authority.clone(),
            };
            self.crl_number
                .get_or_create(&l)
                .set(i64::try_from(c.number).unwrap_or(i64::MAX));
            self.crl_next_update
                .get_or_create(&l)
                .set(c.next_update.map_or(0, |t| t.unix_timestamp()));
            authorities.insert(l);
        }
        for gone in seen.authorities.difference(&authorities) {
            self.crl_number.remove(gone);
            self.crl_next_update.remove(gone);
        }
        seen.authorities = authorities;
        // Every state, zero included, so an alert on `expired > 0` has a series.
        let mut states = BTreeSet::new();
        for state in ["active", "expired", "revoked", "removed"]
            .into_iter()
            .chain(v.nodes.keys().copied())
        {
            let l = StateLabels {
                state: state.to_string(),
            };
            let n = v.nodes.get(state).copied().unwrap_or(0);
            self.nodes
                .get_or_create(&l)
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            states.insert(l);
        }
        for gone in seen.states.difference(&states) {
            self.nodes.remove(gone);
        }
        seen.states = states;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.tokens_outstanding.set(count(v.tokens_outstanding));
        self.earliest_node_expiry
            .set(v.earliest_node_expiry.map_or(0, |t| t.unix_timestamp()));
        self.replicas_alive.set(count(v.replicas_alive));
        self.secrets.set(count(v.secrets));
        self.refreshed_at
            .set(v.now.unix_timestamp_nanos() as f64 / 1e9);
    }
}

/// Refresh the store-read gauges every `every`: the cost of a health view
/// (a few listings) is paid on this timer, never by a scrape.
pub(crate) async fn refresh(authority: Authority, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match authority.health_view().await {
            Ok(v) => metrics.set_health(&v),
            Err(e) => tracing::warn!(error = %e, "refreshing the metrics from the store failed"),
        }
    }
}

/// A [`Store`] that times every call into [`Metrics`]: installed by the
/// binary around the real backend, so the authority knows only the trait.
struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

#[async_trait]
impl Store for TimedStore {
    async fn get(&self, key: &str) -> kith_store::Result<Option<Entry>> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        self.metrics.store_took("get", t);
        r
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> kith_store::Result<Revision> {
        let t = Instant::now();
        let r = self.inner.put(key, value).await;
        self.metrics.store_took("put", t);
        r
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> kith_store::Result<Revision> {
        let t = Instant::now();
        let r = self.inner.create(key, value).await;
        self.metrics.store_took("create", t);
        r
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: Revision,
    ) -> kith_store::Result<Revision> {
        let t = Instant::now();
        let r = self.inner.update(key, value, revision).await;
        self.metrics.store_took("update", t);
        r
    }

    async fn delete(&self, key: &str) -> kith_store::Result<()> {
        let t = Instant::now();
        let r = self.inner.delete(key).await;
        self.metrics.store_took("delete", t);
        r
    }

    async fn delete_if(&self, key: &str, revision: Revision) -> kith_store::Result<()> {
        let t = Instant::now();
        let r = self.inner.delete_if(key, revision).await;
        self.metrics.store_took("delete", t);
        r
    }

    async fn list(&self, prefix: &str) -> kith_store::Result<Vec<Entry>> {
        let t = Instant::now();
        let r = self.inner.list(prefix).await;
        self.metrics.store_took("list", t);
        r
    }

    async fn watch(
        &self,
        prefix: &str,
    ) -> kith_store::Result<BoxStream<'static, kith_store::Result<WatchEvent>>> {
        self.inner.watch(prefix).await
    }

    fn limits(&self) -> Limits {
        self.inner.limits()
    }

    fn writable(&self) -> kith_store::Result<()> {
        self.inner.writable()
    }
}
