//! Leases: work that several replicas sharing a store could each do, but
//! that should run on one at a time (the periodic maintenance), is done by
//! whoever holds `lease/<name>`.
//!
//! The record names its holder and when it expires (the injected clock's
//! time). It is taken and renewed by compare-and-swap on the revision read
//! (created when absent), so of several replicas racing for it exactly one
//! wins; the holder renews it on every round of its work, and when the
//! holder dies, another replica takes it once it has expired. Nothing is
//! guarded by the lease for correctness (every record the work touches is
//! itself written by compare-and-swap): it only keeps the work from
//! multiplying with the number of replicas.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::authority::Authority;
use crate::cas::written;
use crate::error::Error;
use crate::keys::lease_key;
use crate::records::{from_json, to_json};

/// The lease of the server's periodic maintenance.
pub const MAINTENANCE_LEASE: &str = "maintenance";

/// `lease/<name>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct LeaseRecord {
    holder: String,
    #[serde(with = "time::serde::rfc3339")]
    expires: OffsetDateTime,
}

/// Who holds a lease, as [`Authority::lease_holder`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseView {
    /// The holder's name.
    pub holder: String,
    /// When the lease ends unless renewed.
    pub expires: OffsetDateTime,
}

impl Authority {
    /// Take or renew lease `name` for `holder` until `ttl` from now. True
    /// when `holder` holds it afterwards; false when another holder's
    /// unexpired lease stands, or another replica won the race for it.
    pub async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: time::Duration,
    ) -> Result<bool, Error> {
        let key = lease_key(name);
        let now = self.now();
        let record = to_json(&LeaseRecord {
            holder: holder.to_string(),
            expires: now + ttl,
        })?;
        let won = match self.store().get(&key).await? {
            None => written(self.store().create(&key, record).await)?,
            Some(found) => {
                let current: LeaseRecord = from_json(&found.key, &found.value)?;
                if current.holder != holder && current.expires > now {
                    return Ok(false);
                }
                written(self.store().update(&key, record, found.revision).await)?
            }
        };
        Ok(won.is_some())
    }

    /// Give lease `name` up if `holder` holds it (a clean shutdown), so
    /// another replica need not wait for it to expire.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), Error> {
        let key = lease_key(name);
        if let Some(found) = self.store().get(&key).await? {
            let current: LeaseRecord = from_json(&found.key, &found.value)?;
            if current.holder == holder {
                match self.store().delete_if(&key, found.revision).await {
                    Ok(()) | Err(kith_store::Error::RevisionMismatch { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// Who holds lease `name`, expired or not; `None` when nobody took it.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<LeaseView>, Error> {
        let key = lease_key(name);
        Ok(match self.store().get(&key).await? {
            None => None,
            Some(found) => {
                let r: LeaseRecord = from_json(&found.key, &found.value)?;
                Some(LeaseView {
                    holder: r.holder,
                    expires: r.expires,
                })
            }
        })
    }
}
