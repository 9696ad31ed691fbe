//! Aborting a root rotation (`roots.rs` has the other phases): back to
//! the old root alone. Prepared: the new root and its intermediate are
//! dropped. Active: the old root and intermediate issue again, nodes on the
//! new one are asked to renew (`renew_now`), and the new root stays trusted
//! until the last leaf under it expires, as a finished rotation in reverse.

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keys;
use crate::records::{OtherIntermediate, OtherRoot, RootPhase};
use crate::root_progress::RootRotationStatus;
use crate::roots::retype;

impl Authority {
    /// Return to the old root alone. Prepared: the new root and its
    /// intermediate are dropped. Active: the old root and intermediate issue
    /// again, nodes on the new one are asked to renew, and the new root
    /// stays trusted until the last leaf under it expires. Refused once
    /// finished, and for a compromised rotation after activation.
    pub async fn abort_root_rotation(
        &self,
        authority: &str,
        actor: &str,
    ) -> Result<Option<RootRotationStatus>, Error> {
        let status = self.require_root_status(authority).await?;
        if status.phase == RootPhase::Finished {
            return Err(Error::RotationNotReady(format!(
                "the root rotation of {authority:?} is finished: start a new one instead"
            )));
        }
        if status.phase == RootPhase::Active && status.compromised {
            return Err(Error::RotationNotReady(format!(
                "the root rotation of {authority:?} replaces compromised keys: going back to them is refused"
            )));
        }
        let until = match status.phase {
            RootPhase::Active => Some(self.last_leaf_not_under_previous(authority).await?),
            _ => None,
        };
        let key = keys::authority_key(authority);
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (mut r, rev) = self.authority_record(authority).await?;
            let Some(mut rot) = r.root_rotation.take() else {
                return Ok(Attempt::Done(()));
            };
            match rot.phase {
                RootPhase::Prepared => {}
                RootPhase::Active => {
                    let old_gen = r
                        .previous_intermediates
                        .iter()
                        .filter(|o| {
                            kith_pki::issued_by(&o.cert, &rot.other_root.cert).unwrap_or(false)
                        })
                        .map(|o| o.generation)
                        .max();
                    let Some(pos) = r
                        .previous_intermediates
                        .iter()
                        .position(|o| Some(o.generation) == old_gen)
                    else {
                        return Err(Error::Integrity(format!(
                            "{key}: the old root's intermediate is gone; the rotation cannot be aborted"
                        )));
                    };
                    let i1 = r.previous_intermediates.remove(pos);
                    let now = self.now();
                    let old_type = i1.key_type.unwrap_or(r.key_type);
                    let new_root = OtherRoot {
                        generation: r.root_generation,
                        cert: std::mem::replace(&mut r.root_cert, rot.other_root.cert.clone()),
                        key: std::mem::replace(&mut r.root_key, rot.other_root.key.clone()),
                        key_version: r.key_version,
                        key_type: Some(r.key_type),
                    };
                    r.previous_intermediates.push(OtherIntermediate {
                        generation: r.intermediate_generation,
                        cert: std::mem::replace(&mut r.intermediate_cert, i1.cert),
                        key: std::mem::replace(&mut r.intermediate_key, i1.key),
                        key_version: r.key_version,
                        key_type: Some(r.key_type),
                        since: now,
                    });
                    r.root_generation = rot.other_root.generation;
                    r.intermediate_generation = i1.generation;
                    r.key_version = i1.key_version;
                    rot.other_root = new_root;
                    rot.phase = RootPhase::Finished;
                    rot.aborted = true;
                    rot.since = now;
                    rot.other_root_until = until.map(|u| u.max(now));
                    r.root_rotation = Some(rot);
                    retype(&mut r, old_type);
                }
                RootPhase::Finished => return Ok(Attempt::Done(())),
            }
            Ok(match self.write_authority(&key, &r, rev).await? {
                true => Attempt::Done(()),
                false => Attempt::Conflict,
            })
        })
        .await?;
        self.refresh_keyring().await?;
        self.audit(
            actor,
            "root-rotation-abort",
            authority,
            status.phase.as_str(),
        )
        .await?;
        self.root_rotation_status(authority).await
    }
}
