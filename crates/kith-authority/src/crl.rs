//! CRLs: signed from the `revoked/` records of an authority, numbered by
//! compare-and-swap, and re-signed when stale (half their validity gone, or
//! a revocation newer than the revision they cover).
//!
//! Each authority has two: the intermediate's (`crl/<authority>`, the
//! leaves it revoked) and the root's (`rootcrl/<authority>`, the
//! intermediates the root revoked). kith never revokes an intermediate
//! (a rotation retires one by letting it expire), so the root's lists
//! nothing; it exists because nginx, Envoy and `openssl verify
//! -crl_check_all` refuse a chain unless every CA in it has a CRL.

use std::time::SystemTime;

use kith_pki::{CaKind, CrlSpec, RevokedEntry, Serial};
use kith_store::{chunked, Store};

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keys;
use crate::limits::{self, MAX_CRL_VALIDITY};
use crate::records::{from_json, to_json, CrlRecord, RevokedRecord};

/// Which CA of an authority signs a CRL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlIssuer {
    /// The online intermediate: the CRL of the leaves (`/v1/crl/{authority}`).
    Intermediate,
    /// The root: the CRL of the intermediates (`/v1/crl/{authority}/root`).
    Root,
}

impl CrlIssuer {
    fn key(self, authority: &str) -> String {
        match self {
            Self::Intermediate => keys::crl_key(authority),
            Self::Root => keys::root_crl_key(authority),
        }
    }
}

/// The stored CRL of `authority`, if one was ever signed (no keys needed).
pub async fn stored_crl(store: &dyn Store, authority: &str) -> Result<Option<CrlRecord>, Error> {
    stored_crl_of(store, authority, CrlIssuer::Intermediate).await
}

/// The stored CRL that `issuer` of `authority` signed, if any (no keys needed).
pub async fn stored_crl_of(
    store: &dyn Store,
    authority: &str,
    issuer: CrlIssuer,
) -> Result<Option<CrlRecord>, Error> {
    let key = issuer.key(authority);
    // It may be split over chunks (a CRL of many revocations).
    match chunked::get(store, &key).await? {
        Some(v) => Ok(Some(from_json(&key, &v.value)?)),
        None => Ok(None),
    }
}

/// After a CA's records were copied verbatim into another store (`kith
/// store copy`): a CRL record names the highest `revoked/` revision it
/// covers, a revision of the store it was signed in. The copy numbers its
/// records anew, so a revocation recorded there later could get a revision
/// at or below that number and look covered when it is not. Each
/// authority's CRL record is rewritten to cover revision 0, which makes it
/// stale wherever a revocation exists (`Authority::crl_is_stale`): the
/// first process to check re-signs it from the copy's own revisions, with
/// the next number. Root CRLs cover no revocation record (0) and are left
/// alone. Returns how many records were rewritten.
pub async fn forget_crl_coverage(store: &dyn Store, now: SystemTime) -> Result<usize, Error> {
    let mut rewritten = 0;
    for info in crate::info::ClusterInfo::load(store).await?.authorities {
        let key = keys::crl_key(&info.name);
        let Some(current) = chunked::get(store, &key).await? else {
            continue;
        };
        let mut record: CrlRecord = from_json(&key, &current.value)?;
        if record.covers == 0 {
            continue;
        }
        record.covers = 0;
        chunked::update(store, &current.head, &to_json(&record)?, now).await?;
        rewritten += 1;
    }
    Ok(rewritten)
}

impl Authority {
    /// The CRL of `authority`: the stored one while it has more than half of
    /// its validity left, otherwise a freshly signed one.
    pub async fn crl(&self, authority: &str) -> Result<CrlRecord, Error> {
        self.crl_of(authority, CrlIssuer::Intermediate).await
    }

    /// [`Authority::crl`] of the CRL `issuer` signs.
    pub async fn crl_of(&self, authority: &str, issuer: CrlIssuer) -> Result<CrlRecord, Error> {
        self.signer(authority)?;
        let stored = stored_crl_of(&*self.inner.store, authority, issuer).await?;
        if let Some(current) = &stored {
            if self.crl_is_fresh(current) {
                return Ok(current.clone());
            }
        }
        match self.regenerate_crl_of(authority, issuer).await {
            // Others kept re-signing it meanwhile: theirs is fresh enough.
            Err(Error::Contended(_)) => match stored {
                Some(c) if self.now() < c.next_update => {
                    Ok(stored_crl_of(&*self.inner.store, authority, issuer)
                        .await?
                        .unwrap_or(c))
                }
                _ => Err(Error::Contended(issuer.key(authority))),
            },
            other => other,
        }
    }

    /// Whether a stored CRL may still be served as it is: more than half of
    /// its validity left, and signed with the validity now in force (so a
    /// changed setting applies from the next CRL asked of any process).
    pub fn crl_is_fresh(&self, crl: &CrlRecord) -> bool {
        let validity = crl.next_update - crl.this_update;
        self.now() < crl.this_update + validity / 2
            && validity == self.cluster_settings().crl_validity
    }

    /// Whether a revocation of `authority` was recorded after its stored CRL
    /// was signed (by any process sharing the store: one that died between
    /// recording a revocation and publishing it, say). Whoever sees it
    /// re-signs, so a revocation never waits for the CRL to half expire.
    pub async fn crl_is_stale(&self, authority: &str) -> Result<bool, Error> {
        let newest = self
            .inner
            .store
            .list(&keys::revoked_prefix(authority))
            .await?
            .iter()
            .map(|e| e.revision)
            .max();
        let Some(newest) = newest else {
            return Ok(false);
        };
        Ok(match stored_crl(&*self.inner.store, authority).await? {
            Some(c) => c.covers < newest,
            None => true,
        })
    }

    /// Sign a new CRL for `authority` now: unexpired revocations only, the
    /// number one above the stored one, written with compare-and-swap so
    /// concurrent signers never reuse a number.
    pub async fn regenerate_crl(&self, authority: &str) -> Result<CrlRecord, Error> {
        self.regenerate_crl_of(authority, CrlIssuer::Intermediate)
            .await
    }

    /// [`Authority::regenerate_crl`] of the CRL `issuer` signs. The root's
    /// key is unsealed for the signature only and wiped after it.
    pub async fn regenerate_crl_of(
        &self,
        authority: &str,
        issuer: CrlIssuer,
    ) -> Result<CrlRecord, Error> {
        let signer = self.signer(authority)?;
        let root;
        let signing = match issuer {
            CrlIssuer::Intermediate => &signer.intermediate,
            CrlIssuer::Root => {
                let key = self.open_ca_key(&signer.record, CaKind::Root)?;
                root = kith_pki::SigningCa::new(signer.record.root_cert.clone(), key)?;
                &root
            }
        };
        let store = &self.inner.store;
        let key = issuer.key(authority);
        cas::retry!(&key, 16, async |_| {
            let now = self.now();
            // The stored CRL first, then the revocations: a CRL another
            // process writes after this read fails our compare-and-swap, so
            // the one we replace was built from a listing older than ours.
            // (Listing first let a slower signer replace a newer CRL with
            // one that missed the newer CRL's latest revocation.) Split over
            // chunks when larger than one store value.
            let current = chunked::get(&**store, &key).await?;
            let mut entries = Vec::new();
            let mut covers = 0;
            // The root signs only intermediates, and kith revokes none.
            let revoked = match issuer {
                CrlIssuer::Intermediate => store.list(&keys::revoked_prefix(authority)).await?,
                CrlIssuer::Root => Vec::new(),
            };
            for e in revoked {
                covers = covers.max(e.revision);
                let r: RevokedRecord = from_json(&e.key, &e.value)?;
                if r.not_after > now {
                    entries.push(RevokedEntry {
                        serial: Serial::parse(&r.serial)?,
                        revoked_at: r.revoked_at,
                        reason: r.reason,
                    });
                }
            }
            let number = match &current {
                Some(c) => from_json::<CrlRecord>(&key, &c.value)?.number + 1,
                None => 1,
            };
            let validity = self.cluster_settings().crl_validity;
            limits::check("CRL validity", validity, MAX_CRL_VALIDITY, false)?;
            let spec = CrlSpec {
                number,
                this_update: now,
                next_update: limits::later(now, validity, "CRL validity")?,
                entries,
            };
            let der = spec.sign(signing)?;
            let record = CrlRecord {
                authority: authority.to_string(),
                number,
                this_update: kith_pki::second_precision(now),
                next_update: kith_pki::second_precision(spec.next_update),
                entries: spec.entries.len(),
                covers,
                der,
            };
            let (json, at) = (to_json(&record)?, self.chunk_time());
            let written = match &current {
                Some(c) => chunked::update(&**store, &c.head, &json, at).await,
                None => chunked::create(&**store, &key, &json, at).await,
            };
            Ok(match cas::written(written)? {
                Some(_) => Attempt::Done(record),
                None => Attempt::Conflict,
            })
        })
        .await
    }
}
