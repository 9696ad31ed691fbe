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
    /// The active intermediate: the CRL of the leaves (`/v1/crl/{authority}`).
    Intermediate,
    /// The intermediate of that generation, prepared or replaced by a
    /// renewal (`/v1/crl/{authority}/others` serves them): the leaves it
    /// signed are judged by its CRL.
    Generation(u32),
    /// The root: the CRL of the intermediates (`/v1/crl/{authority}/root`).
    Root,
    /// The other root of a root rotation (the new one while prepared, the
    /// old one after): served with the other CRLs (`/v1/crl/{authority}/others`).
    OtherRoot,
}

/// The generations of an authority's CAs, which name their CRLs' keys.
#[derive(Clone, Copy, Debug)]
struct Generations {
    intermediate: u32,
    root: u32,
    /// The other root of a root rotation (0 without one).
    other_root: u32,
}

impl Generations {
    fn of(r: &crate::records::AuthorityRecord) -> Self {
        Self {
            intermediate: r.intermediate_generation,
            root: r.root_generation,
            other_root: r
                .root_rotation
                .as_ref()
                .map_or(0, |x| x.other_root.generation),
        }
    }

    /// Of a stored record, or the first generations when the authority is
    /// unknown (its CRLs are absent anyway).
    fn of_stored(r: Option<&crate::records::AuthorityRecord>) -> Self {
        match r {
            Some(r) => Self::of(r),
            None => Self {
                intermediate: 1,
                root: 1,
                other_root: 0,
            },
        }
    }
}

impl CrlIssuer {
    /// The store key of the CRL.
    fn key(self, authority: &str, g: Generations) -> String {
        match self {
            Self::Intermediate => keys::intermediate_crl_key(authority, g.intermediate),
            Self::Generation(n) => keys::intermediate_crl_key(authority, n),
            Self::Root => keys::root_crl_key_of(authority, g.root),
            Self::OtherRoot => keys::root_crl_key_of(authority, g.other_root),
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
    let record_key = keys::authority_key(authority);
    let record: Option<crate::records::AuthorityRecord> = match store.get(&record_key).await? {
        Some(e) => Some(from_json(&record_key, &e.value)?),
        None => None,
    };
    let generations = Generations::of_stored(record.as_ref());
    // Without a root rotation there is no other root (generation 0 would
    // name the root's own CRL).
    if issuer == CrlIssuer::OtherRoot && generations.other_root == 0 {
        return Ok(None);
    }
    let key = issuer.key(authority, generations);
    // It may be split over chunks (a CRL of many revocations).
    let crl: CrlRecord = match chunked::get(store, &key).await? {
        Some(v) => from_json(&key, &v.value)?,
        None => return Ok(None),
    };
    // The old root's CRL shares its key with the one it signed as the
    // active root: one signed without the intermediates a compromised
    // rotation revokes (by a replica that had not seen the activation) is
    // not its CRL now.
    if let (CrlIssuer::OtherRoot, Some(r)) = (issuer, &record) {
        if crl.entries < compromised_intermediates(r)?.len() {
            return Ok(None);
        }
    }
    Ok(Some(crl))
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
    let mut crl_keys = Vec::new();
    for e in store.list(keys::AUTHORITY_PREFIX).await? {
        let r: crate::records::AuthorityRecord = from_json(&e.key, &e.value)?;
        for g in r
            .other_intermediates()
            .map(|o| o.generation)
            .chain([r.intermediate_generation])
        {
            crl_keys.push(keys::intermediate_crl_key(&r.name, g));
        }
    }
    for key in crl_keys {
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
        let signer = self.signer(authority)?;
        if let CrlIssuer::Generation(g) = issuer {
            if signer.intermediate_of(g).is_none() {
                return Err(Error::Invalid(format!(
                    "authority {authority:?} has no intermediate of generation {g}"
                )));
            }
        }
        if issuer == CrlIssuer::OtherRoot && signer.record.root_rotation.is_none() {
            return Err(Error::Invalid(format!(
                "authority {authority:?} has no root rotation, so no other root"
            )));
        }
        let generation = Generations::of(&signer.record);
        let stored = self.stored_crl_at(authority, issuer, generation).await?;
        // The old root's CRL signed before a compromised rotation activated
        // (it shares its key) lacks the intermediates it must now revoke.
        let must_list = match issuer {
            CrlIssuer::OtherRoot => compromised_intermediates(&signer.record)?.len(),
            _ => 0,
        };
        if let Some(current) = &stored {
            if self.crl_is_fresh(current) && current.entries >= must_list {
                return Ok(current.clone());
            }
        }
        match self.regenerate_crl_of(authority, issuer).await {
            // Others kept re-signing it meanwhile: theirs is fresh enough.
            Err(Error::Contended(_)) => match stored {
                Some(c) if self.now() < c.next_update => Ok(self
                    .stored_crl_at(authority, issuer, generation)
                    .await?
                    .unwrap_or(c)),
                _ => Err(Error::Contended(issuer.key(authority, generation))),
            },
            other => other,
        }
    }

    async fn stored_crl_at(
        &self,
        authority: &str,
        issuer: CrlIssuer,
        generations: Generations,
    ) -> Result<Option<CrlRecord>, Error> {
        let key = issuer.key(authority, generations);
        match chunked::get(&*self.inner.store, &key).await? {
            Some(v) => Ok(Some(from_json(&key, &v.value)?)),
            None => Ok(None),
        }
    }

    /// The CRL of every intermediate of `authority` other than the active
    /// one (prepared, or replaced and not yet expired), by generation, then
    /// the other root's during a root rotation: a relying party needs them
    /// beside the active intermediate's and root's, for the leaves and
    /// chains through those CAs.
    pub async fn other_crls(&self, authority: &str) -> Result<Vec<CrlRecord>, Error> {
        let mut out = Vec::new();
        for issuer in self.other_crl_issuers(authority)? {
            out.push(self.crl_of(authority, issuer).await?);
        }
        Ok(out)
    }

    /// Who signs the CRLs of [`Authority::other_crls`]: every intermediate
    /// but the active one, by generation, then the other root of a root
    /// rotation (a chain through the cross-signed root is checked against
    /// its CRL by relying parties that want one for every CA, and after a
    /// compromise it revokes the old intermediate).
    pub fn other_crl_issuers(&self, authority: &str) -> Result<Vec<CrlIssuer>, Error> {
        let signer = self.signer(authority)?;
        let mut out: Vec<CrlIssuer> = signer
            .others
            .keys()
            .map(|g| CrlIssuer::Generation(*g))
            .collect();
        if signer.record.root_rotation.is_some() {
            out.push(CrlIssuer::OtherRoot);
        }
        Ok(out)
    }

    /// Sign again the CRL of every intermediate of `authority` (after a
    /// revocation, or when one is stale): the active one's first, which is
    /// returned.
    pub async fn regenerate_intermediate_crls(&self, authority: &str) -> Result<CrlRecord, Error> {
        let active = self.regenerate_crl(authority).await?;
        let others: Vec<u32> = self.signer(authority)?.others.keys().copied().collect();
        for g in others {
            self.regenerate_crl_of(authority, CrlIssuer::Generation(g))
                .await?;
        }
        Ok(active)
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
        // Every intermediate's CRL must list it, the replaced ones' too.
        let signer = self.signer(authority)?;
        let generation = Generations::of(&signer.record);
        let mut issuers = vec![CrlIssuer::Intermediate];
        issuers.extend(signer.others.keys().map(|g| CrlIssuer::Generation(*g)));
        for issuer in issuers {
            match self.stored_crl_at(authority, issuer, generation).await? {
                Some(c) if c.covers >= newest => {}
                _ => return Ok(true),
            }
        }
        Ok(false)
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
            CrlIssuer::Generation(g) => signer.intermediate_of(g).ok_or_else(|| {
                Error::Invalid(format!(
                    "authority {authority:?} has no intermediate of generation {g}"
                ))
            })?,
            CrlIssuer::Root => {
                let key = self.open_ca_key(&signer.record, CaKind::Root)?;
                root = kith_pki::SigningCa::new(signer.record.root_cert.clone(), key)?;
                &root
            }
            CrlIssuer::OtherRoot => {
                let other = signer
                    .record
                    .root_rotation
                    .as_ref()
                    .map(|r| &r.other_root)
                    .ok_or_else(|| {
                        Error::Invalid(format!("authority {authority:?} has no root rotation"))
                    })?;
                let key = self.open_other_root_key(&signer.record, other)?;
                root = kith_pki::SigningCa::new(other.cert.clone(), key)?;
                &root
            }
        };
        // What a root revokes: the intermediates it signed, when a root
        // rotation replaced them as compromised (the old root's CRL).
        let revoked_intermediates = match issuer {
            CrlIssuer::OtherRoot => compromised_intermediates(&signer.record)?,
            _ => Vec::new(),
        };
        let store = &self.inner.store;
        let key = issuer.key(authority, Generations::of(&signer.record));
        cas::retry!(&key, 16, async |_| {
            let now = self.now();
            // The stored CRL first, then the revocations: a CRL another
            // process writes after this read fails our compare-and-swap, so
            // the one we replace was built from a listing older than ours.
            // (Listing first let a slower signer replace a newer CRL with
            // one that missed the newer CRL's latest revocation.) Split over
            // chunks when larger than one store value.
            let current = chunked::get(&**store, &key).await?;
            let mut entries = revoked_intermediates.clone();
            let mut covers = 0;
            // A root signs only intermediates: they are revoked only by a
            // compromised root rotation (above). An intermediate's CRL lists every revocation of the
            // authority, whichever intermediate signed the leaf: serials
            // are random, so another issuer's do no harm, and the CRL of a
            // just-activated intermediate is complete from the start.
            let revoked = match issuer {
                CrlIssuer::Intermediate | CrlIssuer::Generation(_) => {
                    store.list(&keys::revoked_prefix(authority)).await?
                }
                CrlIssuer::Root | CrlIssuer::OtherRoot => Vec::new(),
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
            // Above the stored number, and above the floor a restore set
            // (an issuer with no CRL in the backup starts past it too).
            let floor = self.keyring().cluster.crl_number_floor;
            let number = match &current {
                Some(c) => from_json::<CrlRecord>(&key, &c.value)?.number.max(floor),
                None => floor,
            }
            .saturating_add(1);
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

/// The intermediates the other root of a compromised root rotation
/// revokes once the rotation has activated: those it signed (the old
/// intermediate and any older one still alive), revoked when the rotation
/// started, for a compromised CA key.
fn compromised_intermediates(
    r: &crate::records::AuthorityRecord,
) -> Result<Vec<RevokedEntry>, Error> {
    let Some(rot) = &r.root_rotation else {
        return Ok(Vec::new());
    };
    if !rot.compromised || rot.aborted || rot.phase == crate::records::RootPhase::Prepared {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for o in &r.previous_intermediates {
        if kith_pki::issued_by(&o.cert, &rot.other_root.cert)? {
            out.push(RevokedEntry {
                serial: kith_pki::certificate_serial(&o.cert)?,
                revoked_at: rot.started,
                reason: kith_pki::RevocationReason::CaCompromise,
            });
        }
    }
    Ok(out)
}
