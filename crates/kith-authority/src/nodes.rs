//! Nodes: the node record, its state, and a node presenting its certificate.
//!
//! A node is a name, a role and the certificates issued to it. Its record,
//! `node/<name>`, holds what renewal needs (role, profiles, allowed extra
//! SANs, current serial per profile) and is written with create-only or
//! compare-and-swap, so two joins racing for one name cannot both win.
//! Joining is in `join`, renewing in `renew`.

use std::collections::BTreeMap;

use kith_pki::{Namespace, Profile};
use kith_store::Store;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::info::find_certificate;
use crate::keys::{self, node_key};
use crate::records::{from_json, to_json, CertRecord};

/// What a node record names as its token when the operator issued it.
pub const OFFLINE_TOKEN: &str = "offline";

/// Default grace window: a certificate that expired less than this long ago
/// still renews (the TLS handshake proves the old key).
pub const DEFAULT_RENEW_GRACE: Duration = Duration::days(7);
/// Most CSRs in one join or renewal (one per joinable profile).
pub const MAX_CSRS: usize = 3;
/// How long a join that claimed a name but has not recorded its
/// certificates yet holds the name.
pub(crate) const PENDING_NAME: Duration = Duration::minutes(1);
/// How long after a renewal the certificate it replaced may retry it (a
/// lost answer), if the new one was not presented meanwhile.
pub const RETRY_WINDOW: Duration = Duration::hours(1);

/// A node as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    /// Name (DNS label).
    pub name: String,
    /// Role.
    pub role: String,
    /// Issuing authority.
    pub authority: String,
    /// Profiles it was granted at join.
    pub profiles: Vec<Profile>,
    /// Extra DNS names its token allowed (renewals keep them).
    pub allow_sans: Vec<String>,
    /// Id of the token it joined with.
    pub token: String,
    /// When it joined.
    #[serde(with = "time::serde::rfc3339")]
    pub joined: OffsetDateTime,
    /// Last join or renewal.
    #[serde(with = "time::serde::rfc3339")]
    pub last_renewal: OffsetDateTime,
    /// Current certificate serial per profile.
    pub serials: BTreeMap<Profile, String>,
    /// Latest expiry among its current certificates.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of its current public key (SPKI), hex.
    pub spki_sha256: String,
    /// Set by `node rm`: it can never renew again (a new token re-admits it).
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub removed_at: Option<OffsetDateTime>,
    /// The serials the current ones replaced, per profile. They may renew
    /// (a renewal whose answer was lost is retried with them) only until a
    /// current certificate has been presented once, and never after.
    #[serde(default)]
    pub previous_serials: BTreeMap<Profile, String>,
    /// Whether a current certificate has been presented since it was issued.
    #[serde(default)]
    pub presented: bool,
    /// Whether the replaced certificates already retried once.
    #[serde(default)]
    pub retried: bool,
    /// Set by `revoke --node`, before its certificates are revoked: a
    /// renewal racing the revocation sees it and revokes what it issued.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
    /// Leaf lifetime in seconds its token set (renewals keep it); `None`
    /// is the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ttl_seconds: Option<i64>,
    /// The roots the node last reported it trusts (SPKI pins, hex), and
    /// when: how a root rotation knows who is ready for its next phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusts: Vec<String>,
    /// When it last reported [`NodeRecord::trusts`].
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub trust_reported: Option<OffsetDateTime>,
}

/// How long a join's claim holds its name before the join must have
/// finished: far longer than signing and recording take.
const PENDING_JOIN: time::Duration = time::Duration::minutes(1);

impl NodeRecord {
    /// A node that joined with a token (not one an operator issued
    /// directly), neither removed nor revoked, whose certificate is live at
    /// `now`: its name is not the operator's to reissue.
    pub(crate) fn is_live_joined(&self, now: OffsetDateTime) -> bool {
        self.removed_at.is_none()
            && self.revoked_at.is_none()
            && self.not_after > now
            && self.token != OFFLINE_TOKEN
    }

    /// A join in flight: the claim a join writes before it signs (no
    /// certificate yet), recent enough that the join may still finish. Its
    /// name is not the operator's to issue either: a direct issuance that
    /// replaced the claim let both the join and the issuance succeed.
    pub(crate) fn is_pending_join(&self, now: OffsetDateTime) -> bool {
        self.removed_at.is_none()
            && self.revoked_at.is_none()
            && self.serials.is_empty()
            && self.token != OFFLINE_TOKEN
            && now < self.joined + PENDING_JOIN
    }

    /// [`NodeRecord::is_live_joined`] or [`NodeRecord::is_pending_join`]:
    /// a name a direct issuance must leave alone.
    pub(crate) fn holds_joined_name(&self, now: OffsetDateTime) -> bool {
        self.is_live_joined(now) || self.is_pending_join(now)
    }

    /// Whether `serial` is one of the node's current certificates.
    pub fn is_current(&self, serial: &str) -> bool {
        self.serials.values().any(|s| s == serial)
    }

    /// Whether `serial` is a certificate a renewal replaced that may renew
    /// once more: within [`RETRY_WINDOW`] of that renewal, no current
    /// certificate presented since, no retry made yet.
    pub fn may_retry_with(&self, serial: &str, now: OffsetDateTime) -> bool {
        !self.presented
            && !self.retried
            && now - self.last_renewal < RETRY_WINDOW
            && self.previous_serials.values().any(|s| s == serial)
    }
}

/// Where a node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NodeState {
    /// Holds a valid certificate.
    Active,
    /// Its certificates expired.
    Expired,
    /// Its current certificates were revoked.
    Revoked,
    /// Removed by an operator.
    Removed,
}

impl NodeState {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Removed => "removed",
        }
    }
}

/// Every node with its state, in name order.
pub async fn list_nodes(
    store: &dyn Store,
    now: OffsetDateTime,
) -> Result<Vec<(NodeRecord, NodeState)>, Error> {
    let revoked: std::collections::BTreeSet<String> = store
        .list(keys::REVOKED_PREFIX)
        .await?
        .into_iter()
        .filter_map(|e| e.key.rsplit('/').next().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for e in store.list(keys::NODE_PREFIX).await? {
        let n: NodeRecord = from_json(&e.key, &e.value)?;
        let state = if n.removed_at.is_some() {
            NodeState::Removed
        } else if n.revoked_at.is_some()
            || (!n.serials.is_empty() && n.serials.values().all(|s| revoked.contains(s)))
        {
            NodeState::Revoked
        } else if n.not_after <= now {
            NodeState::Expired
        } else {
            NodeState::Active
        };
        out.push((n, state));
    }
    Ok(out)
}

impl Authority {
    /// The holder of a client certificate on a node route: issued here, not
    /// revoked, and for a node, its record (none for certificates issued
    /// offline) unless it was removed. The first time a node presents a
    /// current certificate, that is recorded: from then on the certificate
    /// it replaced can no longer renew.
    pub async fn present_certificate(
        &self,
        client_cert: &[u8],
    ) -> Result<(CertRecord, Option<NodeRecord>), Error> {
        let cert = self.recorded_certificate(client_cert).await?;
        if cert.holder() != Namespace::Node {
            return Ok((cert, None));
        }
        let key = node_key(&cert.node);
        let node = cas::retry!(&key, 8, async |_| {
            let Some(entry) = self.store().get(&key).await? else {
                return Ok(Attempt::Done(None));
            };
            let mut node: NodeRecord = from_json(&key, &entry.value)?;
            if node.removed_at.is_some() {
                return Err(Error::NodeRemoved(node.name));
            }
            if node.revoked_at.is_some() {
                return Err(Error::CertificateRevoked(cert.serial.clone()));
            }
            if !node.is_current(&cert.serial) {
                // The certificate a renewal replaced serves only until the
                // new one is in use (a node mid-renewal).
                if node.may_retry_with(&cert.serial, self.now()) {
                    return Ok(Attempt::Done(Some(node)));
                }
                return Err(Error::CertificateSuperseded {
                    serial: cert.serial.clone(),
                    node: node.name,
                });
            }
            if node.presented {
                return Ok(Attempt::Done(Some(node)));
            }
            node.presented = true;
            let write = self
                .store()
                .update(&key, to_json(&node)?, entry.revision)
                .await;
            Ok(match cas::written(write)? {
                Some(_) => Attempt::Done(Some(node)),
                None => Attempt::Conflict,
            })
        })
        .await?;
        Ok((cert, node))
    }

    /// The record of a certificate a client presented: issued here (serial
    /// and fingerprint match) and not revoked.
    pub async fn recorded_certificate(&self, client_cert: &[u8]) -> Result<CertRecord, Error> {
        let serial = kith_pki::certificate_serial(client_cert)
            .map_err(|_| Error::UnknownCertificate("(unparsable)".into()))?;
        let (cert, revoked) = find_certificate(&**self.store(), &serial).await?;
        if cert.fingerprint != kith_pki::fingerprint(client_cert) {
            return Err(Error::UnknownCertificate(serial.to_hex()));
        }
        if revoked.is_some() {
            return Err(Error::CertificateRevoked(cert.serial));
        }
        Ok(cert)
    }

    /// Whether certificate `serial_hex` of `authority` is revoked now.
    pub(crate) async fn serial_is_revoked(
        &self,
        authority: &str,
        serial_hex: &str,
    ) -> Result<bool, Error> {
        let key = keys::revoked_key(authority, serial_hex);
        Ok(self.store().get(&key).await?.is_some())
    }

    /// The stored record of node `name`.
    pub async fn node(&self, name: &str) -> Result<NodeRecord, Error> {
        let key = node_key(name);
        let e = self
            .store()
            .get(&key)
            .await?
            .ok_or_else(|| Error::UnknownNode(name.to_string()))?;
        from_json(&key, &e.value)
    }
}
