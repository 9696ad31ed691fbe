//! `kith ca rotate --intermediate` and `kith ca rotate status`: one step of
//! an intermediate rotation on the operator's word, and the status the
//! server and the CLI show, built once here over
//! [`crate::intermediates`] so that the online and offline paths agree.

use kith_api::wire::{
    PreparedIntermediate, PreviousIntermediate, RootRotationView, RotationStatus,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::authority::Authority;
use crate::error::Error;
use crate::intermediates::{IntermediateStatus, IntermediateStep};
use crate::root_progress::RootRotationStatus;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

impl IntermediateStatus {
    /// The wire view of this status at `now`: its phase, and in words why
    /// it waits or what comes next.
    pub fn to_wire(&self, now: OffsetDateTime) -> RotationStatus {
        let a = &self.authority;
        let (phase, detail) = match &self.prepared {
            None => (
                "steady",
                format!(
                    "generation {} issues; the next one is prepared by itself at {} (`kith ca rotate --authority {a} --intermediate` prepares it now)",
                    self.active.generation,
                    rfc3339(self.renew_at)
                ),
            ),
            Some((p, ready)) if now < *ready => (
                "publishing",
                format!(
                    "generation {} is prepared and its CRL published; it waits until {} ({}s) so that every agent fetches that CRL before a peer presents a leaf it signed, then the server's maintenance (or `kith ca rotate --authority {a} --intermediate`) activates it",
                    p.generation,
                    rfc3339(*ready),
                    (*ready - now).whole_seconds().max(1)
                ),
            ),
            Some((p, _)) => (
                "ready",
                format!(
                    "generation {} was published long enough: the server's next maintenance tick (or `kith ca rotate --authority {a} --intermediate`) activates it",
                    p.generation
                ),
            ),
        };
        RotationStatus {
            authority: a.clone(),
            phase: phase.to_string(),
            detail,
            generation: self.active.generation,
            not_after: rfc3339(self.active.not_after),
            renew_at: rfc3339(self.renew_at),
            prepared: self
                .prepared
                .as_ref()
                .map(|(p, ready)| PreparedIntermediate {
                    generation: p.generation,
                    not_after: rfc3339(p.not_after),
                    activate_at: rfc3339(*ready),
                }),
            previous: self
                .previous
                .iter()
                .map(|p| PreviousIntermediate {
                    generation: p.generation,
                    not_after: rfc3339(p.not_after),
                })
                .collect(),
            root: None,
        }
    }
}

impl RootRotationStatus {
    /// The wire view of this root rotation.
    pub fn to_wire(&self) -> RootRotationView {
        RootRotationView {
            phase: self.phase.as_str().to_string(),
            started: rfc3339(self.started),
            since: rfc3339(self.since),
            old_root_pin: self.old_root_pin.clone(),
            new_root_pin: self.new_root_pin.clone(),
            converged: self.converged.clone(),
            pending: self.pending.clone(),
            offline: self.offline.clone(),
            left_behind: self.left_behind.clone(),
            waiting_for: self.waiting_for.clone(),
            other_root_until: self.other_root_until.map(rfc3339),
            compromised: self.compromised,
            aborted: self.aborted,
        }
    }
}

impl Authority {
    /// One step of an intermediate rotation of `authority` on the
    /// operator's word: prepare the next intermediate when none is, else
    /// activate the prepared one. Before its publish delay has passed the
    /// activation is refused ([`Error::RotationNotReady`], saying until
    /// when) unless `force`.
    pub async fn rotate_intermediate(
        &self,
        authority: &str,
        actor: &str,
        force: bool,
    ) -> Result<IntermediateStep, Error> {
        let status = self.intermediate_status(authority)?;
        match status.prepared {
            None => Ok(IntermediateStep::Prepared(
                self.prepare_intermediate(authority, actor).await?,
            )),
            Some((p, ready)) => {
                let now = self.now();
                if !force && now < ready {
                    return Err(Error::RotationNotReady(format!(
                        "the prepared intermediate of {authority:?} (generation {}) may issue from {} (in {}s): until then agents fetch its CRL, without which their peers would refuse its leaves",
                        p.generation,
                        rfc3339(ready),
                        (ready - now).whole_seconds().max(1)
                    )));
                }
                Ok(IntermediateStep::Activated(
                    self.activate_intermediate(authority, actor, force).await?,
                ))
            }
        }
    }

    /// Where the intermediates and the root rotation (if any) of
    /// `authority` stand, as `kith ca rotate status` shows them online and
    /// offline alike.
    pub async fn rotation_view(&self, authority: &str) -> Result<RotationStatus, Error> {
        let mut status = self.intermediate_status(authority)?.to_wire(self.now());
        status.root = self
            .root_rotation_status(authority)
            .await?
            .map(|r| r.to_wire());
        Ok(status)
    }
}
