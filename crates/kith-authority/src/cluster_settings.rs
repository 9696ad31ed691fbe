//! The settings every process sharing the store must agree on
//! ([`ClusterSettings`]: CRL validity, largest secret, versions kept), as
//! the cluster record stores them, with their defaults and bounds. A stored
//! type, below every operation: `settings` changes them, the keyring reads
//! them from the cluster record.

use serde::{Deserialize, Serialize};
use time::Duration;

use crate::error::Error;
use crate::limits::{self, MAX_CRL_VALIDITY};

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

/// Default largest value: 1 MiB.
pub const DEFAULT_SECRET_MAX_BYTES: usize = 1 << 20;
/// Default number of versions kept per secret.
pub const DEFAULT_KEEP_VERSIONS: usize = 10;

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
    DEFAULT_SECRET_MAX_BYTES
}
fn default_keep_versions() -> usize {
    DEFAULT_KEEP_VERSIONS
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            crl_validity: DEFAULT_CRL_VALIDITY,
            secret_max_bytes: DEFAULT_SECRET_MAX_BYTES,
            keep_versions: DEFAULT_KEEP_VERSIONS,
        }
    }
}

impl ClusterSettings {
    /// Whether every setting has its default (then the record omits them).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Refuse values outside the documented bounds.
    pub(crate) fn check(&self) -> Result<(), Error> {
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
