//! Root rotation, in three phases as SwarmKit does it, with the progress of
//! every node tracked so that each phase starts only when nobody would be
//! cut off by it.
//!
//! - **Prepare**: a new root R2 with a new key (reusing the key breaks Go's
//!   chain building), a new intermediate I2 under it, R2 cross-signed by the
//!   old root R1 and R1 cross-signed by R2. The bundle becomes {R1, R2}; a
//!   node takes R2 into `ca.pem` because R1, which it trusts, vouches for it
//!   ([`kith_pki::accept_bundle`]). Agents report the roots they trust.
//! - **Activate** (every live node trusts both, or forced): I2 issues, and
//!   its leaves carry [I2, R2-signed-by-R1], so a peer that trusts only R1
//!   still accepts them. Nodes are asked to renew ([`Authority::renew_now`]),
//!   spread over [`crate::Settings::root_renew_spread`].
//! - **Finish** (every live node holds a leaf under I2, or forced): new
//!   tokens pin R2, the cross-signed certificate leaves the chains, and R1
//!   stays in the bundle until the last leaf under it, and the last token
//!   minted before (which pins it), expire; then the rotation record goes
//!   (the maintenance tick).
//!
//! Tokens minted before keep working: a redeemed token's pin may be any
//! root of the bundle, and the server shows a joining node a chain to the
//! root it pinned. Abort before finish returns to R1 alone (after
//! activation: R1 issues again and R2 leaves once the leaves under I2 have
//! expired). Every step is one compare-and-swap of the authority record.

use kith_pki::{CaKind, CaSpec, KeyType, PrivateKey, Serial};
use time::Duration;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keyring::ca_key_aad;
use crate::keys;
use crate::records::{AuthorityRecord, OtherIntermediate, OtherRoot, RootPhase, RootRotation};
use crate::root_progress::RootRotationStatus;

/// How a root rotation starts.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RootRotationOptions {
    /// Key type of the new root and intermediate (default: the current one's).
    pub key_type: Option<KeyType>,
    /// The old keys are compromised: at activation the old root revokes
    /// the old intermediate, nodes renew at once (no spread), and the
    /// rotation moves on as soon as it can.
    pub compromised: bool,
    /// How long the old root stays trusted once the rotation finishes
    /// (default: until the last leaf under it expires).
    pub overlap: Option<Duration>,
}

impl RootRotationOptions {
    /// Options with the given key type and compromise flag.
    pub fn new(key_type: Option<KeyType>, compromised: bool) -> Self {
        Self {
            key_type,
            compromised,
            overlap: None,
        }
    }

    /// Keep the old root trusted for `overlap` after the rotation finishes,
    /// instead of until the last leaf under it expires (for an emergency:
    /// the nodes were told to renew at once).
    pub fn with_overlap(mut self, overlap: Duration) -> Self {
        self.overlap = Some(overlap);
        self
    }
}

/// What [`Authority::maintain_root_rotations`] did to an authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootStep {
    /// Activated: every live node trusts both roots.
    Activated,
    /// Finished: every live node holds a leaf under the new intermediate.
    Finished,
    /// The other root left the bundle; the rotation is over.
    Completed,
    /// Nothing was due.
    Nothing,
}

impl Authority {
    /// Start a root rotation of `authority`: prepare the new root, its
    /// intermediate and the cross-signed certificates, and publish both
    /// roots. Refused while another rotation of its root is under way.
    /// A prepared intermediate renewal is dropped (the new root's
    /// intermediate supersedes it).
    pub async fn prepare_root_rotation(
        &self,
        authority: &str,
        opts: &RootRotationOptions,
        actor: &str,
    ) -> Result<RootRotationStatus, Error> {
        if let Some(o) = opts.overlap {
            if o < Duration::ZERO || o > crate::ROOT_TTL {
                return Err(Error::Invalid(format!(
                    "an overlap of {} s: it must be between 0 and the root's lifetime",
                    o.whole_seconds()
                )));
            }
        }
        let key = keys::authority_key(authority);
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            if let Some(rot) = &r.root_rotation {
                return Err(Error::RotationNotReady(format!(
                    "a root rotation of {authority:?} is {} already: `kith ca rotate status` shows it{}",
                    rot.phase.as_str(),
                    if rot.phase == RootPhase::Finished {
                        "; a new one may start once the old root has left the bundle"
                    } else {
                        "; finish or abort it first"
                    }
                )));
            }
            let kv = r.max_key_version() + 1;
            r.last_key_version = kv;
            // Past every generation made before, an aborted rotation's too:
            // its CAs were published, and their CRLs' keys are taken.
            let root_generation = r.root_generation.max(r.last_root_generation) + 1;
            let inter_generation = r
                .other_intermediates()
                .map(|o| o.generation)
                .chain([r.intermediate_generation, r.last_intermediate_generation])
                .max()
                .unwrap_or(1)
                + 1;
            let new_type = opts.key_type.unwrap_or(r.key_type);
            let made = self
                .make_root_pair(&r, new_type, root_generation, inter_generation)
                .await?;
            let master = self.master_for(r.master_version)?;
            let seal = |kind, der: &[u8]| {
                master.seal(&ca_key_aad(self.cluster(), authority, kind, kv), der)
            };
            let now = self.now();
            r.prepared_intermediate = None;
            r.last_root_generation = root_generation;
            r.last_intermediate_generation = inter_generation;
            r.root_rotation = Some(RootRotation {
                phase: RootPhase::Prepared,
                started: now,
                since: now,
                other_root: OtherRoot {
                    generation: root_generation,
                    cert: made.root_cert,
                    key: seal(CaKind::Root, &made.root_key)?,
                    key_version: kv,
                    key_type: Some(new_type).filter(|t| *t != r.key_type),
                },
                new_intermediate: Some(OtherIntermediate {
                    generation: inter_generation,
                    cert: made.intermediate_cert,
                    key: seal(CaKind::Intermediate, &made.intermediate_key)?,
                    key_version: kv,
                    key_type: Some(new_type).filter(|t| *t != r.key_type),
                    since: now,
                }),
                cross_signed: made.cross_signed,
                compromised: opts.compromised,
                other_root_until: None,
                overlap_seconds: opts.overlap.map(|d| d.whole_seconds()),
                aborted: false,
                left_behind: Vec::new(),
            });
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done(()),
                false => Attempt::Conflict,
            })
        })
        .await?;
        self.refresh_keyring().await?;
        self.audit(
            actor,
            "root-rotation-prepare",
            authority,
            if opts.compromised {
                "compromised"
            } else {
                "planned"
            },
        )
        .await?;
        self.require_root_status(authority).await
    }

    /// The status of the rotation of `authority` if it is in `phase`, and
    /// the live nodes not ready for the next one; refused while there are
    /// some, unless `force` (then they are the ones left behind).
    async fn ready_for(
        &self,
        authority: &str,
        phase: RootPhase,
        force: bool,
        not_ready: &str,
        meanwhile: &str,
    ) -> Result<(RootRotationStatus, Vec<String>), Error> {
        let status = self.require_root_status(authority).await?;
        if status.phase != phase {
            return Err(Error::RotationNotReady(format!(
                "the root rotation of {authority:?} is {}, not {}",
                status.phase.as_str(),
                phase.as_str()
            )));
        }
        let behind: Vec<String> = status
            .pending
            .iter()
            .chain(&status.offline)
            .cloned()
            .collect();
        if !force && !behind.is_empty() {
            return Err(Error::RotationNotReady(format!(
                "{} live node(s) {not_ready}: {}; {meanwhile} (or pass --force)",
                behind.len(),
                behind.join(", ")
            )));
        }
        Ok((status, behind))
    }

    /// Issue from the new root's intermediate. Unless `force`, refused
    /// while a live node has not reported trusting both roots (`force`
    /// records them as left behind).
    pub async fn activate_root_rotation(
        &self,
        authority: &str,
        force: bool,
        actor: &str,
    ) -> Result<RootRotationStatus, Error> {
        Ok(self.activate_root_step(authority, force, actor).await?.0)
    }

    /// [`Authority::activate_root_rotation`], and whether this call made
    /// the step (not another replica before it).
    async fn activate_root_step(
        &self,
        authority: &str,
        force: bool,
        actor: &str,
    ) -> Result<(RootRotationStatus, bool), Error> {
        let (status, behind) = self
            .ready_for(
                authority,
                RootPhase::Prepared,
                force,
                "do not trust the new root yet",
                "their agents pick it up at their next refresh",
            )
            .await?;
        let key = keys::authority_key(authority);
        let did = cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            let Some(mut rot) = r.root_rotation.take() else {
                return Err(Error::RotationNotReady(format!(
                    "{authority:?} has no root rotation"
                )));
            };
            // Another replica activated it, or this is another rotation
            // than the one whose nodes were judged ready (an abort and a
            // new prepare since this replica's keyring was read).
            if rot.phase != RootPhase::Prepared || rot.started != status.started {
                return Ok(Attempt::Done(false));
            }
            let Some(i2) = rot.new_intermediate.take() else {
                return Err(Error::Integrity(format!(
                    "{key}: a prepared root rotation without its intermediate"
                )));
            };
            let now = self.now();
            let new_type = rot.other_root.key_type.unwrap_or(r.key_type);
            let old_root = OtherRoot {
                generation: r.root_generation,
                cert: std::mem::replace(&mut r.root_cert, rot.other_root.cert.clone()),
                key: std::mem::replace(&mut r.root_key, rot.other_root.key.clone()),
                key_version: r.key_version,
                key_type: Some(r.key_type),
            };
            r.root_generation = rot.other_root.generation;
            r.previous_intermediates.push(OtherIntermediate {
                generation: r.intermediate_generation,
                cert: std::mem::replace(&mut r.intermediate_cert, i2.cert),
                key: std::mem::replace(&mut r.intermediate_key, i2.key),
                key_version: r.key_version,
                key_type: Some(r.key_type),
                since: now,
            });
            r.intermediate_generation = i2.generation;
            r.key_version = i2.key_version;
            r.prepared_intermediate = None;
            rot.other_root = old_root;
            r.root_rotation = Some(rot);
            retype(&mut r, new_type);
            let Some(mut rot) = r.root_rotation.take() else {
                return Err(Error::Internal("the rotation went missing".into()));
            };
            rot.phase = RootPhase::Active;
            rot.since = now;
            if force {
                left_behind(&mut rot.left_behind, &behind);
            }
            r.root_rotation = Some(rot);
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done(true),
                false => Attempt::Conflict,
            })
        })
        .await?;
        self.refresh_keyring().await?;
        if !did {
            return Ok((self.require_root_status(authority).await?, false));
        }
        self.audit(
            actor,
            "root-rotation-activate",
            authority,
            &if force && !behind.is_empty() {
                format!("forced; left behind: {}", behind.join(", "))
            } else {
                String::new()
            },
        )
        .await?;
        self.regenerate_intermediate_crls(authority).await?;
        if status.compromised {
            // Published at once: the old root revokes its intermediate.
            self.regenerate_crl_of(authority, crate::CrlIssuer::OtherRoot)
                .await?;
        }
        Ok((self.require_root_status(authority).await?, true))
    }

    /// New tokens pin the new root; the cross-signed certificate leaves the
    /// chains; the old root stays trusted until the last leaf under it and
    /// the last token pinning it expire. Unless `force`, refused while a live node holds no leaf
    /// under the new intermediate.
    pub async fn finish_root_rotation(
        &self,
        authority: &str,
        force: bool,
        actor: &str,
    ) -> Result<RootRotationStatus, Error> {
        Ok(self.finish_root_step(authority, force, actor).await?.0)
    }

    /// [`Authority::finish_root_rotation`], and whether this call made the
    /// step.
    async fn finish_root_step(
        &self,
        authority: &str,
        force: bool,
        actor: &str,
    ) -> Result<(RootRotationStatus, bool), Error> {
        let (status, behind) = self
            .ready_for(
                authority,
                RootPhase::Active,
                force,
                "hold no certificate under the new root yet",
                "they were asked to renew",
            )
            .await?;
        // The old root stays for its leaves, and for the tokens pinning it.
        let until = self
            .last_leaf_not_under_active(authority)
            .await?
            .max(self.last_live_token(authority).await?);
        let key = keys::authority_key(authority);
        let did = cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            let Some(rot) = r.root_rotation.as_mut() else {
                return Err(Error::RotationNotReady(format!(
                    "{authority:?} has no root rotation"
                )));
            };
            if rot.phase != RootPhase::Active || rot.started != status.started {
                return Ok(Attempt::Done(false));
            }
            let now = self.now();
            rot.phase = RootPhase::Finished;
            rot.since = now;
            rot.other_root_until = Some(match rot.overlap_seconds {
                Some(secs) => now + Duration::seconds(secs),
                None => until.max(now),
            });
            if force {
                left_behind(&mut rot.left_behind, &behind);
            }
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done(true),
                false => Attempt::Conflict,
            })
        })
        .await?;
        self.refresh_keyring().await?;
        if did {
            self.audit(
                actor,
                "root-rotation-finish",
                authority,
                if force { "forced" } else { "" },
            )
            .await?;
        }
        Ok((self.require_root_status(authority).await?, did))
    }

    /// What the maintenance tick does for every authority's root rotation:
    /// activate once every live node trusts both roots, finish once every
    /// live node holds a leaf under the new intermediate, and end the
    /// rotation once the other root's last leaf has expired.
    pub async fn maintain_root_rotations(
        &self,
        actor: &str,
    ) -> Result<Vec<(String, RootStep)>, Error> {
        let mut out = Vec::new();
        for name in self.authority_names() {
            let Some(status) = self.root_rotation_status(&name).await? else {
                continue;
            };
            let ready = status.pending.is_empty() && status.offline.is_empty();
            // Another replica may take the step first: only the one that
            // wrote it reports (and audits) it. One that saw the phase move
            // on since this status was read is refused not-ready: nothing
            // is due from this one then.
            let did = match status.phase {
                RootPhase::Prepared if ready => self
                    .activate_root_step(&name, false, actor)
                    .await
                    .map(|(_, did)| did.then_some(RootStep::Activated)),
                RootPhase::Active if ready => self
                    .finish_root_step(&name, false, actor)
                    .await
                    .map(|(_, did)| did.then_some(RootStep::Finished)),
                RootPhase::Finished if status.other_root_until.is_some_and(|u| self.now() >= u) => {
                    self.complete_root_rotation(&name, actor)
                        .await
                        .map(|did| did.then_some(RootStep::Completed))
                }
                _ => Ok(None),
            };
            let step = match did {
                Ok(step) => step.unwrap_or(RootStep::Nothing),
                Err(Error::RotationNotReady(_)) => RootStep::Nothing,
                Err(e) => return Err(e),
            };
            if step != RootStep::Nothing {
                tracing::info!(authority = %name, ?step, "root rotation");
            }
            out.push((name, step));
        }
        Ok(out)
    }

    /// Drop the other root from the bundle: the end of a finished rotation.
    async fn complete_root_rotation(&self, authority: &str, actor: &str) -> Result<bool, Error> {
        let key = keys::authority_key(authority);
        let did = cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            match &r.root_rotation {
                Some(rot)
                    if rot.phase == RootPhase::Finished
                        && rot.other_root_until.is_some_and(|u| self.now() >= u) => {}
                _ => return Ok(Attempt::Done(false)),
            }
            r.root_rotation = None;
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done(true),
                false => Attempt::Conflict,
            })
        })
        .await?;
        self.refresh_keyring().await?;
        if did {
            self.audit(actor, "root-rotation-complete", authority, "")
                .await?;
        }
        Ok(did)
    }

    /// A new root of `generation`, an intermediate of `inter_generation`
    /// under it, and the two cross-signed roots, off the async workers.
    async fn make_root_pair(
        &self,
        record: &AuthorityRecord,
        key_type: KeyType,
        generation: u32,
        inter_generation: u32,
    ) -> Result<MadeRoot, Error> {
        let old_key = self.open_ca_key(record, CaKind::Root)?;
        // Once more: one signs, the other is the subject of its cross-signing.
        let old_subject_key = self.open_ca_key(record, CaKind::Root)?;
        let old_cert = record.root_cert.clone();
        let (old_not_before, old_not_after) = kith_pki::certificate_validity(&old_cert)?;
        let now = self.now();
        let (cluster, name) = (self.cluster().to_string(), record.name.clone());
        let old_generation = record.root_generation;
        tokio::task::spawn_blocking(move || -> Result<MadeRoot, Error> {
            let spec = |kind, generation, not_before, not_after| -> Result<CaSpec, Error> {
                Ok(CaSpec {
                    cluster: cluster.clone(),
                    authority: name.clone(),
                    generation,
                    kind,
                    not_before,
                    not_after,
                    serial: Serial::random()?,
                })
            };
            let backdate = now - kith_pki::DEFAULT_BACKDATE;
            let new_key = PrivateKey::generate(key_type)?;
            let new_spec = spec(CaKind::Root, generation, backdate, now + crate::ROOT_TTL)?;
            let new_pkcs8 = new_key.pkcs8_der();
            let old = kith_pki::SigningCa::new(old_cert, old_key)?;
            // The new root vouched for by the old (valid no longer than the
            // old root), and the old by the new.
            let mut vouched = spec(CaKind::Root, generation, backdate, old_not_after)?;
            vouched.not_after = vouched.not_after.min(now + crate::ROOT_TTL);
            let new_by_old = vouched.cross_signed_by(&new_key, &old)?;
            let new_root = new_spec.self_signed(new_key)?;
            let root_cert = new_root.cert_der.clone();
            let new_signer = new_root.into_signer()?;
            let old_by_new = spec(CaKind::Root, old_generation, old_not_before, old_not_after)?
                .cross_signed_by(&old_subject_key, &new_signer)?;
            let inter_key = PrivateKey::generate(key_type)?;
            let inter = spec(
                CaKind::Intermediate,
                inter_generation,
                backdate,
                now + crate::INTERMEDIATE_TTL,
            )?
            .signed_by(inter_key, &new_signer)?;
            Ok(MadeRoot {
                root_cert,
                root_key: new_pkcs8,
                intermediate_cert: inter.cert_der.clone(),
                intermediate_key: inter.key.pkcs8_der(),
                cross_signed: vec![new_by_old, old_by_new],
            })
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }
}

/// Make `new_type` the record's key type (the active keys': a root
/// rotation may change it), keeping every other key's own type explicit
/// where it differs.
pub(crate) fn retype(r: &mut AuthorityRecord, new_type: KeyType) {
    let old_type = r.key_type;
    let fix = |t: &mut Option<KeyType>| {
        let effective = t.unwrap_or(old_type);
        *t = Some(effective).filter(|e| *e != new_type);
    };
    if let Some(p) = r.prepared_intermediate.as_mut() {
        fix(&mut p.key_type);
    }
    for p in r.previous_intermediates.iter_mut() {
        fix(&mut p.key_type);
    }
    if let Some(rot) = r.root_rotation.as_mut() {
        fix(&mut rot.other_root.key_type);
        if let Some(n) = rot.new_intermediate.as_mut() {
            fix(&mut n.key_type);
        }
    }
    r.key_type = new_type;
}

/// Add the nodes a forced step leaves behind, each name once (a node
/// forced past both steps is listed once).
fn left_behind(list: &mut Vec<String>, behind: &[String]) {
    for name in behind {
        if !list.contains(name) {
            list.push(name.clone());
        }
    }
}

/// What a root rotation makes before anything is written.
struct MadeRoot {
    root_cert: Vec<u8>,
    root_key: zeroize::Zeroizing<Vec<u8>>,
    intermediate_cert: Vec<u8>,
    intermediate_key: zeroize::Zeroizing<Vec<u8>>,
    cross_signed: Vec<Vec<u8>>,
}
