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
use serde::{Deserialize, Serialize};
use time::Duration;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::info::load_cluster;
use crate::keys;
use crate::limits::{self, MAX_CRL_VALIDITY};
use crate::records::{from_json, to_json, ClusterRecord};
use crate::refusals::AuditLimits;

/// Default CRL validity (nextUpdate − thisUpdate).
pub const DEFAULT_CRL_VALIDITY: Duration = Duration::days(7);
/// Shortest CRL validity: a CRL is re-signed at half its life and nodes
/// fetch it every few minutes; below an hour a server that is down for a
/// short while leaves every peer with an expired CRL.
pub const MIN_CRL_VALIDITY: Duration = Duration::hours(1);
/// Largest secret size limit an operator may set: 16 MiB. A secret is held
/// whole in memory several times while it is written or read (the JSON
/// body, its base64 decoding, the ciphertext, the plaintext), per request,
/// by the server and by every node that reads it; a secret store is not a
/// file store (Kubernetes stops at 1 MiB, Vault's default request limit is
/// 32 MiB for everything).
pub const MAX_SECRET_MAX_BYTES: usize = 16 << 20;
/// Most versions kept per secret: each is a value record and a line of the
/// secret's record, which every read and write loads.
pub const MAX_KEEP_VERSIONS: usize = 100;

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
}

/// Settings every process sharing the store must agree on, kept in the
/// cluster record. A record written before they existed reads with the
/// defaults, and they are written only once one differs from its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ClusterSettings {
    /// Validity (nextUpdate − thisUpdate) of the CRLs signed from now on.
    #[serde(
        rename = "crl_validity_seconds",
        with = "seconds",
        default = "default_crl_validity"
    )]
    pub crl_validity: Duration,
    /// Largest secret value accepted, in bytes.
    #[serde(default = "default_secret_max_bytes")]
    pub secret_max_bytes: usize,
    /// Versions kept per secret; older ones are deleted by the next write.
    #[serde(default = "default_keep_versions")]
    pub keep_versions: usize,
}

fn default_crl_validity() -> Duration {
    DEFAULT_CRL_VALIDITY
}
fn default_secret_max_bytes() -> usize {
    crate::secrets::DEFAULT_SECRET_MAX_BYTES
}
fn default_keep_versions() -> usize {
    crate::secrets::DEFAULT_KEEP_VERSIONS
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            crl_validity: DEFAULT_CRL_VALIDITY,
            secret_max_bytes: crate::secrets::DEFAULT_SECRET_MAX_BYTES,
            keep_versions: crate::secrets::DEFAULT_KEEP_VERSIONS,
        }
    }
}

impl ClusterSettings {
    /// Whether every setting has its default (then the record omits them).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Refuse values outside the documented bounds.
    fn check(&self) -> Result<(), Error> {
        let v = self.crl_validity;
        limits::check("CRL validity", v, MAX_CRL_VALIDITY, false)?;
        if v < MIN_CRL_VALIDITY || v.subsec_nanoseconds() != 0 {
            return Err(Error::Invalid(format!(
                "the CRL validity must be whole seconds, at least {} hour and at most {} days",
                MIN_CRL_VALIDITY.whole_hours(),
                MAX_CRL_VALIDITY.whole_days()
            )));
        }
        if !(1..=MAX_SECRET_MAX_BYTES).contains(&self.secret_max_bytes) {
            return Err(Error::Invalid(format!(
                "the secret size limit must be 1 byte to {} MiB",
                MAX_SECRET_MAX_BYTES >> 20
            )));
        }
        if !(1..=MAX_KEEP_VERSIONS).contains(&self.keep_versions) {
            return Err(Error::Invalid(format!(
                "the versions kept per secret must be 1 to {MAX_KEEP_VERSIONS}"
            )));
        }
        Ok(())
    }
}

/// A change to [`ClusterSettings`]: `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// New CRL validity (1 hour to [`MAX_CRL_VALIDITY`], whole seconds).
    pub crl_validity: Option<Duration>,
    /// New secret size limit (1 byte to [`MAX_SECRET_MAX_BYTES`]).
    pub secret_max_bytes: Option<usize>,
    /// New number of versions kept (1 to [`MAX_KEEP_VERSIONS`]).
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

/// A duration as whole seconds.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::seconds(i64::deserialize(d)?))
    }
}
