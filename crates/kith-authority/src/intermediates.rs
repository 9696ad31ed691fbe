//! Intermediates renewed by themselves: when the active intermediate of an
//! authority has less than a third of its life left (configurable), a new
//! one is prepared (new key, next generation, signed by the same root),
//! published for a while, then made active; the one it replaces stays in
//! the record, signing CRLs, until it expires.
//!
//! Why a published phase: a peer checks a leaf against the CRL of the
//! leaf's issuer and refuses the leaf when it holds none (kith's TLS
//! configurations deny unknown revocation status). The prepared
//! intermediate's CRL is served with the others from the moment it is
//! prepared, so by the time it issues, every agent that refreshed has it.
//! Generations differ by name (`G2`, `G3` in the CN) because CRLs are
//! matched to their issuer by name.
//!
//! Several replicas: each step is one compare-and-swap of the authority
//! record, decided again on a conflict, so one replica prepares and every
//! replica issues from the active slot its keyring holds (a replica that
//! has not seen an activation yet still issues from the previous
//! intermediate, which is valid for months).

use kith_pki::{CaKind, CaSpec, PrivateKey, Serial};
use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keyring::ca_key_aad;
use crate::keys;
use crate::records::{AuthorityRecord, OtherIntermediate};

/// How long a prepared intermediate is published before it issues, unless
/// [`crate::Settings::intermediate_publish`] says otherwise: several of the
/// agents' default refresh intervals (5 minutes).
pub const DEFAULT_INTERMEDIATE_PUBLISH: Duration = Duration::hours(1);

/// The share of its life left, in percent, at which an intermediate is
/// renewed, unless [`crate::Settings::intermediate_renew_percent`] says
/// otherwise.
pub const DEFAULT_INTERMEDIATE_RENEW_PERCENT: u8 = 33;

/// One intermediate of an authority, as `kith ca rotate status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntermediateView {
    /// Its generation (1 for the first).
    pub generation: u32,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// The certificate, DER.
    pub cert: Vec<u8>,
}

/// Where an authority's intermediates stand.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntermediateStatus {
    /// The authority.
    pub authority: String,
    /// The one that issues.
    pub active: IntermediateView,
    /// When a renewal is prepared by itself; never once the active one
    /// ends with the root (a successor would end there too: the root's
    /// rotation renews both).
    pub renew_at: OffsetDateTime,
    /// The next one, and when it starts issuing.
    pub prepared: Option<(IntermediateView, OffsetDateTime)>,
    /// Replaced ones that may still have live leaves (their CRLs are
    /// still signed), oldest first.
    pub previous: Vec<IntermediateView>,
}

/// What one call of [`Authority::maintain_intermediates`] or a rotation
/// command did to an authority.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntermediateStep {
    /// A new intermediate of this generation was prepared (or one already was).
    Prepared(u32),
    /// The intermediate of this generation started issuing.
    Activated(u32),
    /// Nothing was due.
    Nothing,
}

fn view(generation: u32, cert: &[u8]) -> Result<IntermediateView, Error> {
    let (not_before, not_after) = kith_pki::certificate_validity(cert)?;
    Ok(IntermediateView {
        generation,
        not_before,
        not_after,
        cert: cert.to_vec(),
    })
}

impl Authority {
    fn intermediate_publish(&self) -> Duration {
        self.settings()
            .intermediate_publish
            .unwrap_or(DEFAULT_INTERMEDIATE_PUBLISH)
    }

    /// When the active intermediate of `record` is due for renewal.
    fn renew_at(&self, active: &IntermediateView) -> OffsetDateTime {
        let percent = self
            .settings()
            .intermediate_renew_percent
            .unwrap_or(DEFAULT_INTERMEDIATE_RENEW_PERCENT)
            .clamp(1, 90);
        let life = active.not_after - active.not_before;
        active.not_after - life * (f64::from(percent) / 100.0)
    }

    /// Whether the active intermediate of `record` is due for a renewal
    /// by itself: past its renewal point, and ending before the root.
    fn renewal_due(&self, record: &AuthorityRecord) -> Result<bool, Error> {
        let active = view(record.intermediate_generation, &record.intermediate_cert)?;
        let (_, root_end) = kith_pki::certificate_validity(&record.root_cert)?;
        Ok(self.now() >= self.renew_at(&active) && active.not_after < root_end)
    }

    /// Where the intermediates of `authority` stand (from the keyring).
    pub fn intermediate_status(&self, authority: &str) -> Result<IntermediateStatus, Error> {
        let signer = self.signer(authority)?;
        let r = &signer.record;
        let active = view(r.intermediate_generation, &r.intermediate_cert)?;
        let prepared = match &r.prepared_intermediate {
            Some(p) => Some((
                view(p.generation, &p.cert)?,
                p.since + self.intermediate_publish(),
            )),
            None => None,
        };
        Ok(IntermediateStatus {
            authority: authority.to_string(),
            renew_at: self.renew_at(&active),
            active,
            prepared,
            previous: r
                .previous_intermediates
                .iter()
                .map(|p| view(p.generation, &p.cert))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Prepare the next intermediate of `authority` (a new key, signed by
    /// its root, valid as long as a new one is and no longer than the
    /// root): published from now, issuing once
    /// [`Authority::activate_intermediate`] runs after the publish delay.
    /// Returns the prepared generation; one prepared already is kept.
    pub async fn prepare_intermediate(&self, authority: &str, actor: &str) -> Result<u32, Error> {
        self.prepare_step(authority, actor, false)
            .await?
            .ok_or_else(|| Error::Internal("an unconditional prepare made nothing".into()))
    }

    /// [`Authority::prepare_intermediate`]; when `only_if_due` (a
    /// maintenance tick), nothing (`None`) unless the record as stored is
    /// due: the tick decided from its keyring, which may lag behind another
    /// replica that renewed already (it would prepare one more generation).
    async fn prepare_step(
        &self,
        authority: &str,
        actor: &str,
        only_if_due: bool,
    ) -> Result<Option<u32>, Error> {
        let key = keys::authority_key(authority);
        let (generation, fresh) = cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            if let Some(p) = &r.prepared_intermediate {
                return Ok(Attempt::Done((Some(p.generation), false)));
            }
            if only_if_due && !self.renewal_due(&r)? {
                return Ok(Attempt::Done((None, false)));
            }
            // A root rotation brings its own intermediate.
            if let Some(rot) = r.root_rotation.as_ref().filter(|x| x.phase != crate::records::RootPhase::Finished) {
                if only_if_due {
                    return Ok(Attempt::Done((None, false)));
                }
                return Err(Error::RotationNotReady(format!(
                    "a root rotation of {authority:?} is {}: it brings a new intermediate of its own",
                    rot.phase.as_str()
                )));
            }
            let generation = r
                .other_intermediates()
                .map(|o| o.generation)
                .chain([r.intermediate_generation, r.last_intermediate_generation])
                .max()
                .unwrap_or(1)
                + 1;
            let key_version = r.max_key_version() + 1;
            r.last_key_version = key_version;
            let (cert, pkcs8) = self.make_intermediate(&r, generation).await?;
            let master = self.master_for(r.master_version)?;
            let sealed = master.seal(
                &ca_key_aad(self.cluster(), authority, CaKind::Intermediate, key_version),
                &pkcs8,
            )?;
            r.prepared_intermediate = Some(OtherIntermediate {
                generation,
                cert,
                key: sealed,
                key_version,
                key_type: None,
                since: self.now(),
            });
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done((Some(generation), true)),
                false => Attempt::Conflict,
            })
        })
        .await?;
        // Also when nothing was written: the store was ahead of this
        // keyring (another replica prepared, or renewed already).
        self.refresh_keyring().await?;
        if let (true, Some(g)) = (fresh, generation) {
            self.audit(
                actor,
                "intermediate-prepare",
                authority,
                &format!("generation {g}"),
            )
            .await?;
        }
        Ok(generation)
    }

    /// Make the prepared intermediate of `authority` the one that issues.
    /// Refused ([`Error::RotationNotReady`]) when none is prepared, or when
    /// it has been published for less than the publish delay, unless
    /// `force` (peers that have not fetched its CRL yet refuse its leaves
    /// until they do). The replaced intermediate keeps signing CRLs until
    /// it expires. Returns the generation now active.
    pub async fn activate_intermediate(
        &self,
        authority: &str,
        actor: &str,
        force: bool,
    ) -> Result<u32, Error> {
        match self.activate_step(authority, actor, force, false).await? {
            Some(generation) => Ok(generation),
            // Another process activated the one this call saw prepared.
            None => Ok(self.signer(authority)?.record.intermediate_generation),
        }
    }

    /// [`Authority::activate_intermediate`]: `None` when another process
    /// activated the prepared intermediate between this one's read and its
    /// write (replicas' ticks racing), and when `tick` (a maintenance tick,
    /// which decided from a keyring that may lag) finds, in the record as
    /// stored, nothing prepared or nothing ready: not an error then.
    async fn activate_step(
        &self,
        authority: &str,
        actor: &str,
        force: bool,
        tick: bool,
    ) -> Result<Option<u32>, Error> {
        let key = keys::authority_key(authority);
        let publish = self.intermediate_publish();
        // The generation found prepared by an earlier attempt, if any.
        let mut seen = None;
        let generation = cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            let Some(p) = r.prepared_intermediate.take() else {
                if tick || seen.is_some_and(|g| r.intermediate_generation >= g) {
                    return Ok(Attempt::Done(None));
                }
                return Err(Error::RotationNotReady(format!(
                    "authority {authority:?} has no prepared intermediate: `kith ca rotate --authority {authority} --intermediate` prepares one"
                )));
            };
            seen = Some(p.generation);
            let ready = p.since + publish;
            if !force && self.now() < ready {
                if tick {
                    return Ok(Attempt::Done(None));
                }
                return Err(Error::RotationNotReady(format!(
                    "the prepared intermediate of {authority:?} (generation {}) is published until {ready}, so that every agent fetches its CRL first",
                    p.generation
                )));
            }
            // The root's key is sealed under the record's key version: seal
            // it again under the new one, which the active slot takes.
            let master = self.master_for(r.master_version)?;
            let root_key = master
                .open(
                    &ca_key_aad(self.cluster(), authority, CaKind::Root, r.key_version),
                    &r.root_key,
                )
                .ok_or_else(|| {
                    Error::Integrity(format!("the root key of {authority:?} does not decrypt"))
                })?;
            let root_key = master.seal(
                &ca_key_aad(self.cluster(), authority, CaKind::Root, p.key_version),
                &root_key,
            )?;
            r.previous_intermediates.push(OtherIntermediate {
                generation: r.intermediate_generation,
                cert: std::mem::take(&mut r.intermediate_cert),
                key: std::mem::take(&mut r.intermediate_key),
                key_version: r.key_version,
                key_type: None,
                since: self.now(),
            });
            r.root_key = root_key;
            r.intermediate_cert = p.cert;
            r.intermediate_key = p.key;
            r.key_version = p.key_version;
            r.intermediate_generation = p.generation;
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done(Some(p.generation)),
                false => Attempt::Conflict,
            })
        })
        .await?;
        self.refresh_keyring().await?;
        let Some(generation) = generation else {
            return Ok(None);
        };
        self.audit(
            actor,
            "intermediate-activate",
            authority,
            &format!(
                "generation {generation}{}",
                if force { ", forced" } else { "" }
            ),
        )
        .await?;
        // Its CRL exists from the prepare on; a CRL of the one replaced
        // may never have been asked for: sign what is missing now.
        self.regenerate_intermediate_crls(authority).await?;
        Ok(Some(generation))
    }

    /// What a server's maintenance tick does for every authority: drop
    /// replaced intermediates that have expired, activate a prepared one
    /// once published long enough, prepare one when the active one is due.
    /// One step per authority per call.
    pub async fn maintain_intermediates(
        &self,
        actor: &str,
    ) -> Result<Vec<(String, IntermediateStep)>, Error> {
        let mut out = Vec::new();
        for name in self.authority_names() {
            self.prune_intermediates(&name).await?;
            let status = self.intermediate_status(&name)?;
            // Decided from the keyring, and again by each step from the
            // record as stored (another replica may have moved on).
            let step = match &status.prepared {
                Some((_, ready)) if self.now() >= *ready => {
                    match self.activate_step(&name, actor, false, true).await? {
                        Some(g) => IntermediateStep::Activated(g),
                        None => IntermediateStep::Nothing,
                    }
                }
                Some(_) => IntermediateStep::Nothing,
                None if self.renewal_due(&self.signer(&name)?.record)? => {
                    match self.prepare_step(&name, actor, true).await? {
                        Some(g) => IntermediateStep::Prepared(g),
                        None => IntermediateStep::Nothing,
                    }
                }
                None => IntermediateStep::Nothing,
            };
            if step != IntermediateStep::Nothing {
                tracing::info!(authority = %name, ?step, "intermediate renewal");
            }
            out.push((name, step));
        }
        Ok(out)
    }

    /// Drop the replaced intermediates of `authority` that have expired:
    /// no leaf they signed can be alive.
    async fn prune_intermediates(&self, authority: &str) -> Result<(), Error> {
        let now = self.now();
        let expired = |o: &OtherIntermediate| {
            kith_pki::certificate_validity(&o.cert).is_ok_and(|(_, not_after)| not_after <= now)
        };
        let signer = self.signer(authority)?;
        if !signer.record.previous_intermediates.iter().any(expired) {
            return Ok(());
        }
        let key = keys::authority_key(authority);
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            let before = r.previous_intermediates.len();
            r.previous_intermediates.retain(|o| !expired(o));
            if r.previous_intermediates.len() == before {
                return Ok(Attempt::Done(()));
            }
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done(()),
                false => Attempt::Conflict,
            })
        })
        .await?;
        self.refresh_keyring().await?;
        Ok(())
    }

    /// A new intermediate of `generation` for `record`'s root: its
    /// certificate and PKCS#8 key. Key generation and signing run off the
    /// async workers (RSA takes seconds).
    async fn make_intermediate(
        &self,
        record: &AuthorityRecord,
        generation: u32,
    ) -> Result<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>), Error> {
        let root_key = self.open_ca_key(record, CaKind::Root)?;
        let root_cert = record.root_cert.clone();
        let (_, root_not_after) = kith_pki::certificate_validity(&root_cert)?;
        let now = self.now();
        let spec = CaSpec {
            cluster: self.cluster().to_string(),
            authority: record.name.clone(),
            generation,
            kind: CaKind::Intermediate,
            not_before: now - kith_pki::DEFAULT_BACKDATE,
            not_after: (now + crate::INTERMEDIATE_TTL).min(root_not_after),
            serial: Serial::random()?,
        };
        let key_type = record.key_type;
        tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let root = kith_pki::SigningCa::new(root_cert, root_key)?;
            let inter = spec.signed_by(PrivateKey::generate(key_type)?, &root)?;
            Ok((
                inter.cert_der.clone(),
                zeroize::Zeroizing::new(inter.key.pkcs8_der().to_vec()),
            ))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }
}
