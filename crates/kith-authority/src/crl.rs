//! CRLs: signed from the `revoked/` records of an authority, numbered by
//! compare-and-swap, and re-signed when stale (half their validity gone, or
//! a revocation newer than the revision they cover).

use kith_pki::{CrlSpec, RevokedEntry, Serial};
use kith_store::chunked;

use crate::records::{self, from_json, to_json};
use crate::{limits, stored_crl, Authority, CrlRecord, Error, RevokedRecord, MAX_CRL_VALIDITY};

impl Authority {
    /// The CRL of `authority`: the stored one while it has more than half of
    /// its validity left, otherwise a freshly signed one.
    pub async fn crl(&self, authority: &str) -> Result<CrlRecord, Error> {
        self.signer(authority)?;
        let stored = stored_crl(&*self.inner.store, authority).await?;
        if let Some(current) = &stored {
            let half = (current.next_update - current.this_update) / 2;
            if self.now() < current.this_update + half {
                return Ok(current.clone());
            }
        }
        match self.regenerate_crl(authority).await {
            // Others kept re-signing it meanwhile: theirs is fresh enough.
            Err(Error::Contended(_)) => match stored {
                Some(c) if self.now() < c.next_update => {
                    Ok(stored_crl(&*self.inner.store, authority)
                        .await?
                        .unwrap_or(c))
                }
                _ => Err(Error::Contended(records::crl_key(authority))),
            },
            other => other,
        }
    }

    /// Whether a revocation of `authority` was recorded after its stored CRL
    /// was signed (by any process sharing the store: one that died between
    /// recording a revocation and publishing it, say). Whoever sees it
    /// re-signs, so a revocation never waits for the CRL to half expire.
    pub async fn crl_is_stale(&self, authority: &str) -> Result<bool, Error> {
        let newest = self
            .inner
            .store
            .list(&records::revoked_prefix(authority))
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
        let signer = self.signer(authority)?;
        let store = &self.inner.store;
        let key = records::crl_key(authority);
        for _attempt in 0..16 {
            let now = self.now();
            let mut entries = Vec::new();
            let mut covers = 0;
            for e in store.list(&records::revoked_prefix(authority)).await? {
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
            // Split over chunks when larger than one store value.
            let current = chunked::get(&**store, &key).await?;
            let number = match &current {
                Some(c) => from_json::<CrlRecord>(&key, &c.value)?.number + 1,
                None => 1,
            };
            let validity = self.inner.settings.crl_validity;
            limits::check("CRL validity", validity, MAX_CRL_VALIDITY, false)?;
            let spec = CrlSpec {
                number,
                this_update: now,
                next_update: limits::later(now, validity, "CRL validity")?,
                entries,
            };
            let der = spec.sign(&signer.intermediate)?;
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
            match written {
                Ok(_) => return Ok(record),
                Err(kith_store::Error::RevisionMismatch { .. })
                | Err(kith_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended(key))
    }
}
