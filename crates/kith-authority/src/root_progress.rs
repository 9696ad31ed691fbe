//! How far a root rotation has come (`roots.rs` has the phases): which
//! live nodes trust both roots, which hold a leaf under the new
//! intermediate, who is asked to renew now, and what the bundle, the
//! chains and new tokens carry in each phase.

use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keys;
use crate::nodes::NodeRecord;
use crate::records::{from_json, to_json, AuthorityRecord, CertRecord, RootPhase, RootRotation};

/// Where a root rotation stands, node by node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RootRotationStatus {
    /// The authority.
    pub authority: String,
    /// The phase.
    pub phase: RootPhase,
    /// When it started, and when this phase began.
    pub started: OffsetDateTime,
    /// When this phase began.
    pub since: OffsetDateTime,
    /// Started as an emergency.
    pub compromised: bool,
    /// Aborted after activation (the new root is the one leaving).
    pub aborted: bool,
    /// SHA-256 pin of the root being replaced, hex.
    pub old_root_pin: String,
    /// SHA-256 pin of the root replacing it, hex.
    pub new_root_pin: String,
    /// Live nodes ready for the next phase (prepared: trust both roots;
    /// active: hold a leaf under the new intermediate).
    pub converged: Vec<String>,
    /// Live nodes that reported since the phase began but are not ready.
    pub pending: Vec<String>,
    /// Live nodes that have not reported since the phase began.
    pub offline: Vec<String>,
    /// Nodes a forced step left behind.
    pub left_behind: Vec<String>,
    /// When the other root leaves the bundle (finished only).
    pub other_root_until: Option<OffsetDateTime>,
    /// Why the rotation is not moving on by itself, if it is waiting.
    pub waiting_for: Option<String>,
}

pub(crate) fn pin_hex(der: &[u8]) -> Result<String, Error> {
    Ok(hex::encode(kith_pki::spki_pin(der)?))
}

/// The old and new roots of a rotation, as (old, new).
pub(crate) fn old_and_new(r: &AuthorityRecord, rot: &RootRotation) -> (Vec<u8>, Vec<u8>) {
    let (active, other) = (r.root_cert.clone(), rot.other_root.cert.clone());
    match (rot.phase, rot.aborted) {
        (RootPhase::Prepared, _) | (_, true) => (active, other),
        _ => (other, active),
    }
}

/// Over how long nodes asked to renew at activation are spread, unless
/// [`crate::Settings::root_renew_spread`] says otherwise (a compromised
/// rotation asks everyone at once).
pub const DEFAULT_ROOT_RENEW_SPREAD: Duration = Duration::minutes(10);

/// Least time between two recorded trust reports of one node.
const REPORT_EVERY: Duration = Duration::seconds(10);

impl Authority {
    fn root_renew_spread(&self) -> Duration {
        self.settings()
            .root_renew_spread
            .unwrap_or(DEFAULT_ROOT_RENEW_SPREAD)
    }

    /// Where the root rotation of `authority` stands; `None` without one.
    pub async fn root_rotation_status(
        &self,
        authority: &str,
    ) -> Result<Option<RootRotationStatus>, Error> {
        let signer = self.signer(authority)?;
        let r = &signer.record;
        let Some(rot) = &r.root_rotation else {
            return Ok(None);
        };
        let (old, new) = old_and_new(r, rot);
        let (old_pin, new_pin) = (pin_hex(&old)?, pin_hex(&new)?);
        let now = self.now();
        let (mut converged, mut pending, mut offline) = (Vec::new(), Vec::new(), Vec::new());
        if rot.phase != RootPhase::Finished {
            for e in self.store().list(keys::NODE_PREFIX).await? {
                let n: NodeRecord = from_json(&e.key, &e.value)?;
                if n.authority != authority || !n.is_live_joined(now) {
                    continue;
                }
                let ready = match rot.phase {
                    RootPhase::Prepared => {
                        n.trusts.contains(&old_pin) && n.trusts.contains(&new_pin)
                    }
                    _ => self.holds_leaf_under(&n, &r.intermediate_cert).await?,
                };
                if ready {
                    converged.push(n.name);
                } else if n.trust_reported.is_some_and(|t| t >= rot.since) {
                    pending.push(n.name);
                } else {
                    offline.push(n.name);
                }
            }
        }
        let waiting_for = match rot.phase {
            RootPhase::Prepared | RootPhase::Active
                if !pending.is_empty() || !offline.is_empty() =>
            {
                Some(format!(
                    "{} node(s) to {} ({} not heard from since the phase began)",
                    pending.len() + offline.len(),
                    if rot.phase == RootPhase::Prepared {
                        "trust the new root"
                    } else {
                        "renew under the new root"
                    },
                    offline.len()
                ))
            }
            RootPhase::Finished => rot.other_root_until.map(|u| {
                format!(
                    "the {} root leaves the bundle at {u}, when the last leaf under it (or token pinning it) expires",
                    if rot.aborted { "new" } else { "old" }
                )
            }),
            _ => None,
        };
        Ok(Some(RootRotationStatus {
            authority: authority.to_string(),
            phase: rot.phase,
            started: rot.started,
            since: rot.since,
            compromised: rot.compromised,
            aborted: rot.aborted,
            old_root_pin: old_pin,
            new_root_pin: new_pin,
            converged,
            pending,
            offline,
            left_behind: rot.left_behind.clone(),
            other_root_until: rot.other_root_until,
            waiting_for,
        }))
    }

    pub(crate) async fn require_root_status(
        &self,
        authority: &str,
    ) -> Result<RootRotationStatus, Error> {
        self.root_rotation_status(authority).await?.ok_or_else(|| {
            Error::RotationNotReady(format!(
                "{authority:?} has no root rotation: `kith ca rotate --authority {authority} --root` starts one"
            ))
        })
    }

    /// Whether every current certificate of node `n` was signed by `ca`.
    async fn holds_leaf_under(&self, n: &NodeRecord, ca: &[u8]) -> Result<bool, Error> {
        for serial in n.serials.values() {
            let key = keys::cert_key(serial);
            let Some(e) = self.store().get(&key).await? else {
                return Ok(false);
            };
            let c: CertRecord = from_json(&key, &e.value)?;
            if !kith_pki::issued_by(&c.der, ca)? {
                return Ok(false);
            }
        }
        Ok(!n.serials.is_empty())
    }

    /// The latest expiry of a certificate of `authority` not signed by its
    /// active intermediate: until then the old root must stay trusted.
    pub(crate) async fn last_leaf_not_under_active(
        &self,
        authority: &str,
    ) -> Result<OffsetDateTime, Error> {
        let active = self.signer(authority)?.record.intermediate_cert.clone();
        self.last_leaf(authority, |der| {
            !kith_pki::issued_by(der, &active).unwrap_or(false)
        })
        .await
    }

    /// The latest expiry of a live join token of `authority` (now if none):
    /// every token minted before a root rotation finishes pins the old
    /// root, and must keep working until it expires.
    pub(crate) async fn last_live_token(&self, authority: &str) -> Result<OffsetDateTime, Error> {
        let now = self.now();
        Ok(crate::tokens::list_tokens(&**self.store())
            .await?
            .iter()
            .filter(|t| t.authority == authority && t.state(now) == "active")
            .map(|t| t.expires)
            .fold(now, OffsetDateTime::max))
    }

    /// The latest expiry of a certificate of `authority` signed by its
    /// active intermediate (what an abort after activation leaves behind).
    pub(crate) async fn last_leaf_not_under_previous(
        &self,
        authority: &str,
    ) -> Result<OffsetDateTime, Error> {
        let active = self.signer(authority)?.record.intermediate_cert.clone();
        self.last_leaf(authority, |der| {
            kith_pki::issued_by(der, &active).unwrap_or(false)
        })
        .await
    }

    async fn last_leaf(
        &self,
        authority: &str,
        counts: impl Fn(&[u8]) -> bool,
    ) -> Result<OffsetDateTime, Error> {
        let now = self.now();
        let mut last = now;
        for e in self.store().list(keys::CERT_PREFIX).await? {
            let c: CertRecord = from_json(&e.key, &e.value)?;
            if c.authority == authority && c.not_after > last && counts(&c.der) {
                last = c.not_after;
            }
        }
        Ok(last)
    }

    /// Record the roots node `node` reports it trusts (SPKI pins), when
    /// they changed or a root rotation waits on it. Pins of roots this
    /// cluster never had are kept out (a node cannot fill its record).
    pub async fn record_node_trust(&self, node: &str, pins: &[[u8; 32]]) -> Result<(), Error> {
        let known: Vec<String> = self
            .keyring()
            .signers
            .values()
            .flat_map(|s| s.record.bundle_roots())
            .filter_map(|r| pin_hex(&r).ok())
            .collect();
        let mut reported: Vec<String> = pins
            .iter()
            .map(hex::encode)
            .filter(|p| known.contains(p))
            .collect();
        reported.sort();
        reported.dedup();
        let key = keys::node_key(node);
        let now = self.now();
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let Some(e) = self.store().get(&key).await? else {
                return Ok(Attempt::Done(()));
            };
            let mut n: NodeRecord = from_json(&key, &e.value)?;
            let phase_since = self
                .signer(&n.authority)
                .ok()
                .and_then(|s| s.record.root_rotation.as_ref().map(|r| r.since));
            let rotating = phase_since.is_some();
            // Outside a rotation only a change is worth a write; during one
            // the report's time says the node is alive, so a report older
            // than the phase is renewed even when it is recent.
            let fresh = n.trust_reported.is_some_and(|t| {
                now - t < Duration::minutes(1) && phase_since.is_none_or(|since| t >= since)
            });
            if n.trusts == reported && (!rotating || fresh) {
                return Ok(Attempt::Done(()));
            }
            // A node that flips its report on every request writes at most
            // once per REPORT_EVERY: its reports cannot become a write load.
            // A report that only adds roots (the way a rotation converges)
            // is recorded at once.
            let grows = n.trusts.iter().all(|p| reported.contains(p)) && reported != n.trusts;
            let recent = n
                .trust_reported
                .is_some_and(|t| t <= now && now - t < REPORT_EVERY);
            if recent && !grows {
                return Ok(Attempt::Done(()));
            }
            n.trusts = reported.clone();
            n.trust_reported = Some(now);
            Ok(
                match cas::written(self.store().update(&key, to_json(&n)?, e.revision).await)? {
                    Some(_) => Attempt::Done(()),
                    None => Attempt::Conflict,
                },
            )
        })
        .await
    }

    /// Whether the CA asks the holder of `cert` to renew now: a root
    /// rotation has activated (or was aborted after activation) and `cert`
    /// does not chain to the active root. Spread over
    /// [`crate::Settings::root_renew_spread`] by node name, so that a
    /// cluster does not renew all at once; at once when compromised.
    pub fn renew_now(&self, cert: &CertRecord) -> bool {
        let Ok(signer) = self.signer(&cert.authority) else {
            return false;
        };
        let Some(rot) = &signer.record.root_rotation else {
            return false;
        };
        let moving = rot.phase == RootPhase::Active || rot.phase == RootPhase::Finished;
        if !moving {
            return false;
        }
        // Under the active root already (through the active intermediate or
        // another one it signed: an intermediate renewal during a finished
        // rotation must not send every node to renew at once).
        let r = &signer.record;
        let under_active_root = std::iter::once(&r.intermediate_cert)
            .chain(r.other_intermediates().map(|o| &o.cert))
            .any(|i| {
                kith_pki::issued_by(&cert.der, i).unwrap_or(false)
                    && kith_pki::issued_by(i, &r.root_cert).unwrap_or(false)
            });
        if under_active_root {
            return false;
        }
        let spread = if rot.compromised {
            Duration::ZERO
        } else {
            self.root_renew_spread()
        };
        let secs = spread.whole_seconds().max(0) as u64;
        let offset = if secs == 0 {
            0
        } else {
            // SHA-256 of the name: the same node gets the same slot on every
            // replica, whatever it was built with, and at every refresh.
            let d = kith_pki::sha256(cert.node.as_bytes());
            let mut first = [0u8; 8];
            first.copy_from_slice(&d[..8]);
            u64::from_be_bytes(first) % secs
        };
        self.now() >= rot.since + Duration::seconds(offset as i64)
    }

    /// The root new tokens of `authority` pin: the old root until a root
    /// rotation finishes (a node that joins trusting it accepts the new
    /// one through the cross-signed certificate; the reverse holds too, but
    /// the old root is what every node already trusts).
    pub fn token_root(&self, authority: &str) -> Result<Vec<u8>, Error> {
        let signer = self.signer(authority)?;
        let r = &signer.record;
        Ok(match &r.root_rotation {
            Some(rot) if rot.phase == RootPhase::Active && !rot.aborted => {
                rot.other_root.cert.clone()
            }
            _ => r.root_cert.clone(),
        })
    }

    /// Every root the nodes of `authority` trust now, the active one first.
    pub fn authority_roots(&self, authority: &str) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.signer(authority)?.record.bundle_roots())
    }

    /// The cross-signed roots of `authority` (DER; empty outside a root
    /// rotation): published with the bundle.
    pub fn cross_signed(&self, authority: &str) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.signer(authority)?.record.cross_signed().to_vec())
    }

    /// The chain a leaf of `authority` is shipped with, its issuer first:
    /// while a root rotation is active, the new root cross-signed by the
    /// old one follows, so a peer that trusts only the old root accepts it.
    pub(crate) fn leaf_chain(record: &AuthorityRecord) -> Vec<Vec<u8>> {
        let mut chain = vec![record.intermediate_cert.clone()];
        if let Some(rot) = &record.root_rotation {
            if rot.phase == RootPhase::Active && !rot.aborted {
                if let Some(x) = rot.cross_signed.first() {
                    chain.push(x.clone());
                }
            }
        }
        chain
    }
}
