//! Settings: what each process chooses for itself ([`Settings`]: the CSR
//! policy and the audit limits), and what every process sharing the store
//! must agree on ([`ClusterSettings`]: CRL validity, largest secret,
//! versions kept), which lives in the cluster record.
//!
//! The shared ones are never copied into a process: every use reads the
//! keyring snapshot of the moment, which follows the cluster record (a
//! store watch, and a periodic re-read), so a change made by one process is
//! in effect in the others within moments. [`Authority::update_settings`]
//! changes them by compare-and-swap on the cluster record, which a master
//! key rotation or a passphrase change also rewrite: a conflict is retried
//! on the record of the moment, so neither side is lost.

use kith_pki::CsrPolicy;
use kith_store::Store;
use time::Duration;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::cluster_settings::ClusterSettings;
use crate::error::Error;
use crate::info::load_cluster;
use crate::keys;
use crate::records::{from_json, to_json, ClusterRecord};
use crate::refusals::AuditLimits;

/// Tunables of this process alone: not shared state, so each process may
/// choose its own (see [`ClusterSettings`] for those that must agree).
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Default CSR policy.
    pub policy: CsrPolicy,
    /// What one identity can make the CA record: refusals and reads
    /// summarised per window, refusals and renewals limited.
    pub audit_limits: AuditLimits,
    /// Lifetime of the leaves this process issues to nodes whose token set
    /// none (`kith serve --leaf-ttl`); `None` is the profile's default.
    /// Checked with [`crate::check_cert_ttl`] when used.
    pub leaf_ttl: Option<Duration>,
    /// How long a prepared intermediate is published (its CRL served to
    /// every node) before it issues; `None` is
    /// [`crate::DEFAULT_INTERMEDIATE_PUBLISH`]. Nodes' agents must refresh
    /// within it, or their peers' new leaves meet them without a CRL.
    pub intermediate_publish: Option<Duration>,
    /// The share of its lifetime left at which an intermediate is renewed,
    /// in percent (1 to 90); `None` is
    /// [`crate::DEFAULT_INTERMEDIATE_RENEW_PERCENT`] (a third).
    pub intermediate_renew_percent: Option<u8>,
    /// Over how long the nodes asked to renew by a root rotation's
    /// activation are spread; `None` is [`crate::DEFAULT_ROOT_RENEW_SPREAD`].
    pub root_renew_spread: Option<Duration>,
    /// The audit chain this process writes: the server's name (`kith
    /// serve`); `None` is `local-<random>`, a chain of its own. Two
    /// processes may share one (they take turns by compare-and-swap), but
    /// a chain per process keeps them from contending.
    pub audit_writer: Option<String>,
}

/// A change to [`ClusterSettings`]: `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// New CRL validity (1 hour to [`crate::MAX_CRL_VALIDITY`], whole seconds).
    pub crl_validity: Option<Duration>,
    /// New secret size limit (1 byte to [`crate::MAX_SECRET_MAX_BYTES`]).
    pub secret_max_bytes: Option<usize>,
    /// New number of versions kept (1 to [`crate::MAX_KEEP_VERSIONS`]).
    pub keep_versions: Option<usize>,
}

impl SettingsChange {
    fn apply(&self, to: &ClusterSettings) -> ClusterSettings {
        ClusterSettings {
            crl_validity: self.crl_validity.unwrap_or(to.crl_validity),
            secret_max_bytes: self.secret_max_bytes.unwrap_or(to.secret_max_bytes),
            keep_versions: self.keep_versions.unwrap_or(to.keep_versions),
        }
    }
}

impl From<&ClusterSettings> for kith_api::wire::SettingsView {
    fn from(c: &ClusterSettings) -> Self {
        Self {
            crl_validity_seconds: u64::try_from(c.crl_validity.whole_seconds()).unwrap_or(0),
            secret_max_bytes: c.secret_max_bytes as u64,
            keep_versions: u32::try_from(c.keep_versions).unwrap_or(u32::MAX),
        }
    }
}

impl From<&kith_api::wire::SettingsUpdate> for SettingsChange {
    /// Values too large for this machine's types become the largest ones,
    /// which [`Authority::update_settings`] then refuses as out of bounds.
    fn from(u: &kith_api::wire::SettingsUpdate) -> Self {
        Self {
            crl_validity: u
                .crl_validity_seconds
                .map(|s| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))),
            secret_max_bytes: u
                .secret_max_bytes
                .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            keep_versions: u
                .keep_versions
                .map(|k| usize::try_from(k).unwrap_or(usize::MAX)),
        }
    }
}

/// The shared settings recorded in `store` (no keys needed).
pub async fn cluster_settings(store: &dyn Store) -> Result<ClusterSettings, Error> {
    Ok(load_cluster(store).await?.settings)
}

/// Attempts of a compare-and-swap on the cluster record before giving up.
const CLUSTER_CAS_ATTEMPTS: usize = 16;

impl Authority {
    /// The shared settings in force: those of the keyring snapshot of the
    /// moment, which follows the cluster record.
    pub fn cluster_settings(&self) -> ClusterSettings {
        self.keyring().cluster.settings.clone()
    }

    /// Change the shared settings for every process of the cluster: checked
    /// (nothing changes if one value is out of bounds), written by
    /// compare-and-swap on the cluster record (retried on the record of the
    /// moment, so a concurrent key rotation is never undone), audited.
    /// Returns the settings now in force.
    ///
    /// A new CRL validity applies from the next CRL signing; a stored CRL
    /// whose validity differs counts as stale, so the next CRL asked of any
    /// process is signed with it. A smaller secret limit leaves stored
    /// secrets alone: it refuses new values only.
    pub async fn update_settings(
        &self,
        change: SettingsChange,
        actor: &str,
    ) -> Result<ClusterSettings, Error> {
        if change == SettingsChange::default() {
            return Err(Error::Invalid("no setting to change was given".into()));
        }
        // Checked before anything is read, so a bad value is refused alike
        // whatever the store holds.
        change.apply(&ClusterSettings::default()).check()?;
        let store = self.store();
        let key = keys::CLUSTER_KEY;
        let (cluster, new, detail) = cas::retry!(key, CLUSTER_CAS_ATTEMPTS, async |_| {
            let e = store.get(key).await?.ok_or(Error::NotInitialized)?;
            let mut cluster: ClusterRecord = from_json(key, &e.value)?;
            let new = change.apply(&cluster.settings);
            new.check()?;
            if new == cluster.settings {
                return Ok(Attempt::Done((cluster, new, None)));
            }
            let detail = describe(&cluster.settings, &new);
            cluster.settings = new.clone();
            let write = store.update(key, to_json(&cluster)?, e.revision).await;
            Ok(match cas::written(write)? {
                Some(_) => Attempt::Done((cluster, new, Some(detail))),
                None => Attempt::Conflict,
            })
        })
        .await?;
        let Some(detail) = detail else {
            return Ok(new); // nothing changed
        };
        // In effect here now; the watch would bring it anyway, so a failed
        // reload does not make the written change an error.
        if let Err(e) = self.refresh_keyring().await {
            tracing::warn!(error = %e, "reloading the keyring after a settings change failed");
        }
        self.audit(actor, "settings-update", &cluster.cluster, &detail)
            .await?;
        Ok(new)
    }
}

/// `crl-validity 604800s -> 86400s, keep-versions 10 -> 5`, for the audit trail.
fn describe(old: &ClusterSettings, new: &ClusterSettings) -> String {
    let mut parts = Vec::new();
    if old.crl_validity != new.crl_validity {
        parts.push(format!(
            "crl-validity {}s -> {}s",
            old.crl_validity.whole_seconds(),
            new.crl_validity.whole_seconds()
        ));
    }
    if old.secret_max_bytes != new.secret_max_bytes {
        parts.push(format!(
            "secret-max-bytes {} -> {}",
            old.secret_max_bytes, new.secret_max_bytes
        ));
    }
    if old.keep_versions != new.keep_versions {
        parts.push(format!(
            "keep-versions {} -> {}",
            old.keep_versions, new.keep_versions
        ));
    }
    parts.join(", ")
}

/// Whether two cluster records differ in nothing but their shared
/// settings: a key rotation or passphrase change that lost its
/// compare-and-swap to a settings change may then write again.
pub(crate) fn same_but_settings(a: &ClusterRecord, b: &ClusterRecord) -> bool {
    let strip = |c: &ClusterRecord| ClusterRecord {
        settings: ClusterSettings::default(),
        ..c.clone()
    };
    matches!((to_json(&strip(a)), to_json(&strip(b))), (Ok(x), Ok(y)) if x == y)
}
