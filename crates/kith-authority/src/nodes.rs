//! Nodes: joining with a token and renewing over mutual TLS.
//!
//! A node is a name, a role and the certificates issued to it. Its record,
//! `node/<name>`, holds what renewal needs (role, profiles, allowed extra
//! SANs, current serial per profile) and is written with create-only or
//! compare-and-swap, so two joins racing for one name cannot both win.

use std::collections::BTreeMap;

use kith_api::JoinToken;
use kith_pki::{parse_csr, Namespace, Profile, PublicKey, RevocationReason, San};
use kith_store::{Revision, Store};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::claims::OnHeld;
use crate::records::{from_json, to_json};
use crate::{find_certificate, Authority, CertRecord, Error, Identity, IssueRequest, Issued};

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

pub(crate) fn node_key(name: &str) -> String {
    format!("node/{name}")
}

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
}

impl NodeRecord {
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
        .list("revoked/")
        .await?
        .into_iter()
        .filter_map(|e| e.key.rsplit('/').next().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    for e in store.list("node/").await? {
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

/// A CSR approved for a profile.
struct Approved {
    profile: Profile,
    public_key: PublicKey,
    extra_sans: Vec<San>,
}

impl Authority {
    /// Check a set of (profile, CSR) pairs for `node`: profiles joinable and
    /// distinct, every CSR valid under the policy widened by `allow_sans`,
    /// all over one key.
    fn approve_csrs(
        &self,
        node: &str,
        role: &str,
        allowed_profiles: Option<&[Profile]>,
        allow_sans: &[String],
        csrs: &[(Profile, Vec<u8>)],
    ) -> Result<Vec<Approved>, Error> {
        if csrs.is_empty() {
            return Err(Error::Invalid("send at least one CSR".into()));
        }
        if csrs.len() > MAX_CSRS {
            return Err(Error::Invalid(format!(
                "at most {MAX_CSRS} CSRs per request"
            )));
        }
        let mut policy = self.settings().policy.clone();
        policy.allowed_dns.extend(allow_sans.iter().cloned());
        let mut out: Vec<Approved> = Vec::new();
        for (profile, der) in csrs {
            let ok = match allowed_profiles {
                Some(list) => list.contains(profile),
                None => matches!(profile, Profile::Peer | Profile::Server | Profile::Client),
            };
            if !ok {
                return Err(Error::ProfileNotAllowed(profile.as_str().to_string()));
            }
            if out.iter().any(|a| a.profile == *profile) {
                return Err(Error::Invalid(format!("profile {profile} asked for twice")));
            }
            let csr = parse_csr(der)?;
            let extra_sans = csr.approve(&policy, self.cluster(), role, node)?;
            if let Some(first) = out.first() {
                if first.public_key.spki_der() != csr.public_key.spki_der() {
                    return Err(Error::CsrKeyMismatch);
                }
            }
            out.push(Approved {
                profile: *profile,
                public_key: csr.public_key,
                extra_sans,
            });
        }
        Ok(out)
    }

    /// Join: redeem `token` and issue one certificate per CSR to the node it
    /// names (or, for a token without a fixed name, to `asked_node`).
    /// Nothing is spent or written unless every check passes; a node name
    /// held by a live certificate over another key is refused unless the
    /// token was minted for that name.
    pub async fn join(
        &self,
        token: &JoinToken,
        asked_node: Option<&str>,
        csrs: &[(Profile, Vec<u8>)],
        peer: &str,
    ) -> Result<(NodeRecord, Vec<Issued>), Error> {
        let rec = self.check_token(token).await?;
        let node = match (&rec.node, asked_node) {
            (Some(fixed), Some(asked)) if fixed != asked => {
                return Err(Error::NodeNameMismatch {
                    token: fixed.clone(),
                    asked: asked.to_string(),
                })
            }
            (Some(fixed), _) => fixed.clone(),
            (None, Some(asked)) => asked.to_string(),
            (None, None) => {
                return Err(Error::Invalid(
                    "this token has no fixed node name: say which name to join as".into(),
                ))
            }
        };
        kith_pki::validate_node_name(&node)?;
        let approved = self.approve_csrs(&node, &rec.role, None, &rec.allow_sans, csrs)?;
        let spki = hex::encode(kith_pki::sha256(approved[0].public_key.spki_der()));
        let existing = self.name_claimable(&node, &rec, &spki).await?;
        let sans: Vec<San> = approved.iter().flat_map(|a| a.extra_sans.clone()).collect();
        self.check_node_sans(&node, &sans, &rec.allow_sans, OnHeld::Refuse)
            .await?;
        let (rec, ()) = self.redeem_token_with(token, |_| Ok(())).await?;

        let now = self.now();
        let claim = NodeRecord {
            name: node.clone(),
            role: rec.role.clone(),
            authority: rec.authority.clone(),
            profiles: approved.iter().map(|a| a.profile).collect(),
            allow_sans: rec.allow_sans.clone(),
            token: rec.id.clone(),
            joined: kith_pki::second_precision(now),
            last_renewal: kith_pki::second_precision(now),
            serials: BTreeMap::new(),
            not_after: kith_pki::second_precision(now),
            spki_sha256: spki,
            removed_at: None,
            previous_serials: BTreeMap::new(),
            presented: false,
            retried: false,
            revoked_at: None,
        };
        let key = node_key(&node);
        let claimed = match existing {
            None => self.store().create(&key, to_json(&claim)?).await,
            Some(rev) => self.store().update(&key, to_json(&claim)?, rev).await,
        };
        let revision = match claimed {
            Ok(r) => r,
            Err(kith_store::Error::AlreadyExists { .. })
            | Err(kith_store::Error::RevisionMismatch { .. }) => {
                // A concurrent join took the name between our check and our claim.
                return Err(Error::NodeNameTaken(node));
            }
            Err(e) => return Err(e.into()),
        };
        self.claim_sans(
            Namespace::Node,
            &node,
            &rec.authority,
            &sans,
            &rec.allow_sans,
            false,
        )
        .await?;
        let issued = self.sign_approved(&claim, approved)?;
        let record = self
            .commit_issued(
                claim,
                revision,
                &issued,
                None,
                &format!("token:{}", rec.id),
                "join",
                &format!("role {} from {peer}", rec.role),
            )
            .await?;
        Ok((record, issued))
    }

    /// Renew over mutual TLS. `client_cert` is the certificate the client
    /// presented (its key was proven by the handshake); the identity is its
    /// record's, never the body's. Refused for certificates this cluster did
    /// not issue, revoked ones, removed nodes, and certificates expired more
    /// than `grace` ago.
    pub async fn renew(
        &self,
        client_cert: &[u8],
        asked_node: Option<&str>,
        csrs: &[(Profile, Vec<u8>)],
        grace: Duration,
    ) -> Result<(NodeRecord, Vec<Issued>), Error> {
        let cert = self.recorded_certificate(client_cert).await?;
        // Every renewal writes certificates: a node may not loop on it.
        self.limit_renewals(&cert.node).await?;
        if let Some(asked) = asked_node {
            if asked != cert.node {
                return Err(Error::IdentityMismatch {
                    certificate: cert.node.clone(),
                    asked: asked.to_string(),
                });
            }
        }
        let key = node_key(&cert.node);
        let Some(entry) = self.store().get(&key).await? else {
            return Err(Error::UnknownNode(cert.node.clone()));
        };
        let node: NodeRecord = from_json(&key, &entry.value)?;
        if node.removed_at.is_some() {
            return Err(Error::NodeRemoved(node.name));
        }
        if node.revoked_at.is_some() {
            return Err(Error::CertificateRevoked(cert.serial));
        }
        crate::limits::check("renewal grace window", grace, crate::MAX_RENEW_GRACE, true)?;
        let now = self.now();
        // Only the current certificate renews; the one it replaced only
        // once, shortly after, while the current one was never presented
        // (a lost answer).
        if !node.is_current(&cert.serial) && !node.may_retry_with(&cert.serial, now) {
            return Err(Error::CertificateSuperseded {
                serial: cert.serial,
                node: node.name,
            });
        }
        if now > crate::limits::later(cert.not_after, grace, "renewal grace window")? {
            return Err(Error::RenewalWindowPassed {
                expired: cert.not_after,
                grace_days: grace.whole_days(),
            });
        }
        let mut approved = self.approve_csrs(
            &node.name,
            &node.role,
            Some(&node.profiles),
            &node.allow_sans,
            csrs,
        )?;
        // Names another holder has are left out rather than refused: a
        // node never stops renewing over an address.
        let asked: Vec<San> = approved.iter().flat_map(|a| a.extra_sans.clone()).collect();
        let left_out = self
            .check_node_sans(&node.name, &asked, &node.allow_sans, OnHeld::LeaveOut)
            .await?;
        if !left_out.is_empty() {
            tracing::warn!(node = %node.name, ?left_out, "renewal leaves out names held by others");
            for a in &mut approved {
                a.extra_sans.retain(|s| !left_out.contains(s));
            }
        }
        let sans: Vec<San> = approved.iter().flat_map(|a| a.extra_sans.clone()).collect();
        self.claim_sans(
            Namespace::Node,
            &node.name,
            &node.authority,
            &sans,
            &node.allow_sans,
            false,
        )
        .await?;
        let issued = self.sign_approved(&node, approved)?;
        let actor = format!("node:{}", node.name);
        let record = self
            .commit_issued(
                node,
                entry.revision,
                &issued,
                Some(&cert.serial),
                &actor,
                "renew",
                &format!("with {}", cert.serial),
            )
            .await?;
        Ok((record, issued))
    }

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
        for _attempt in 0..8 {
            let Some(entry) = self.store().get(&key).await? else {
                return Ok((cert, None));
            };
            let mut node: NodeRecord = from_json(&key, &entry.value)?;
            if node.removed_at.is_some() {
                return Err(Error::NodeRemoved(node.name));
            }
            if node.revoked_at.is_some() {
                return Err(Error::CertificateRevoked(cert.serial));
            }
            if !node.is_current(&cert.serial) {
                // The certificate a renewal replaced serves only until the
                // new one is in use (a node mid-renewal).
                if node.may_retry_with(&cert.serial, self.now()) {
                    return Ok((cert, Some(node)));
                }
                return Err(Error::CertificateSuperseded {
                    serial: cert.serial,
                    node: node.name,
                });
            }
            if node.presented {
                return Ok((cert, Some(node)));
            }
            node.presented = true;
            match self
                .store()
                .update(&key, to_json(&node)?, entry.revision)
                .await
            {
                Ok(_) => return Ok((cert, Some(node))),
                Err(kith_store::Error::RevisionMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended(key))
    }

    /// The record of a certificate a client presented: issued here (serial
    /// and fingerprint match) and not revoked.
    pub async fn recorded_certificate(
        &self,
        client_cert: &[u8],
    ) -> Result<crate::CertRecord, Error> {
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

    /// Sign one certificate per approved CSR (CPU only; nothing recorded yet).
    fn sign_approved(
        &self,
        node: &NodeRecord,
        approved: Vec<Approved>,
    ) -> Result<Vec<Issued>, Error> {
        approved
            .into_iter()
            .map(|a| {
                self.sign(&IssueRequest {
                    identity: Identity {
                        node: node.name.clone(),
                        role: node.role.clone(),
                        profile: a.profile,
                        authority: Some(node.authority.clone()),
                        ttl: None,
                    },
                    public_key: a.public_key,
                    extra_sans: a.extra_sans,
                })
            })
            .collect()
    }

    /// Make an issuance durable in one commit wave: the certificates and
    /// their index entries, the node record (compare-and-swap) and the audit
    /// line are written concurrently, so the store's group commit carries
    /// them together. If the node was removed meanwhile, the certificates
    /// just recorded are revoked and the request fails.
    #[allow(clippy::too_many_arguments)]
    async fn commit_issued(
        &self,
        node: NodeRecord,
        revision: Revision,
        issued: &[Issued],
        renewed_with: Option<&str>,
        actor: &str,
        action: &str,
        detail: &str,
    ) -> Result<NodeRecord, Error> {
        let records = futures::future::try_join_all(issued.iter().map(|i| self.record(i)));
        let published = self.publish_node(node, revision, issued, renewed_with);
        let audit = self.audit(actor, action, &issued[0].record.node, detail);
        let (r, p, a) = futures::join!(records, published, audit);
        r?;
        a?;
        let p = match p {
            // Written: but a `node rm` or `revoke --node` that marked the
            // record after our write lists certificates only after its mark,
            // and may have missed ours if our index writes were late; seen
            // here, we revoke them ourselves. (Marked before our read, the
            // revoker's list has them.)
            Ok(written) => match self.node(&written.0.name).await {
                Ok(now) if now.removed_at.is_some() => Err(Error::NodeRemoved(now.name)),
                Ok(now) if now.revoked_at.is_some() => {
                    Err(Error::CertificateRevoked(issued[0].record.serial.clone()))
                }
                Ok(_) => Ok(written),
                Err(e) => Err(e),
            },
            other => other,
        };
        match p {
            Err(
                e @ (Error::NodeRemoved(_)
                | Error::CertificateSuperseded { .. }
                | Error::CertificateRevoked(_)
                | Error::NodeNameTaken(_)),
            ) => {
                // Removed or revoked meanwhile, a concurrent renewal replaced
                // the certificate this one was based on, or a stalled join
                // lost its claim: what was just recorded must not stay live.
                for i in issued {
                    let serial = kith_pki::Serial::parse(&i.record.serial)?;
                    self.revoke(&serial, RevocationReason::CessationOfOperation, actor)
                        .await?;
                }
                Err(e)
            }
            Ok((record, orphans)) => {
                // A retry with the previous certificate replaces current
                // certificates that were never presented: revoke them, so a
                // node holds one live certificate per profile.
                for serial in orphans {
                    let serial = kith_pki::Serial::parse(&serial)?;
                    self.revoke(&serial, RevocationReason::Superseded, actor)
                        .await?;
                }
                self.settle_claims(Namespace::Node, &record.name, issued)
                    .await?;
                Ok(record)
            }
            Err(e) => Err(e),
        }
    }

    /// Record the new serials in the node record (compare-and-swap, retried
    /// on the fields this call owns).
    /// For a renewal, `renewed_with` is the serial presented: when it was
    /// current, the current serials become the previous ones; when it was a
    /// previous one (a retry), the previous ones stay and the unpresented
    /// current ones are returned to be revoked. Returns the record written
    /// and those orphans.
    async fn publish_node(
        &self,
        mut node: NodeRecord,
        mut revision: Revision,
        issued: &[Issued],
        renewed_with: Option<&str>,
    ) -> Result<(NodeRecord, Vec<String>), Error> {
        let key = node_key(&node.name);
        let now = kith_pki::second_precision(self.now());
        // A join publishes over its own claim only: what it wrote, no
        // certificate yet (a stalled join whose claim lapsed and was taken
        // must not overwrite the new holder).
        let (claim_token, claim_spki) = (node.token.clone(), node.spki_sha256.clone());
        for attempt in 0..64 {
            let mut orphans = Vec::new();
            match renewed_with {
                None => {
                    let still_ours = node.serials.is_empty()
                        && node.token == claim_token
                        && node.spki_sha256 == claim_spki;
                    if attempt > 0 && !still_ours {
                        return Err(Error::NodeNameTaken(node.name));
                    }
                    node.previous_serials.clear();
                    node.retried = false;
                }
                Some(s) if node.is_current(s) => {
                    node.previous_serials = node.serials.clone();
                    node.retried = false;
                }
                Some(s) if node.may_retry_with(s, now) => {
                    orphans = issued
                        .iter()
                        .filter_map(|i| node.serials.get(&i.record.profile))
                        .filter(|cur| !node.previous_serials.values().any(|p| p == *cur))
                        .cloned()
                        .collect();
                    node.retried = true;
                }
                Some(s) => {
                    return Err(Error::CertificateSuperseded {
                        serial: s.to_string(),
                        node: node.name,
                    })
                }
            }
            node.presented = false;
            for i in issued {
                node.serials
                    .insert(i.record.profile, i.record.serial.clone());
                node.spki_sha256 = hex::encode(kith_pki::spki_pin(&i.record.der)?);
            }
            node.not_after = issued
                .iter()
                .map(|i| i.record.not_after)
                .max()
                .unwrap_or(node.not_after);
            node.last_renewal = now;
            match self.store().update(&key, to_json(&node)?, revision).await {
                Ok(_) => return Ok((node, orphans)),
                Err(kith_store::Error::RevisionMismatch { .. }) => {
                    let e = self
                        .store()
                        .get(&key)
                        .await?
                        .ok_or_else(|| Error::UnknownNode(node.name.clone()))?;
                    node = from_json(&key, &e.value)?;
                    revision = e.revision;
                    if node.removed_at.is_some() {
                        return Err(Error::NodeRemoved(node.name));
                    }
                    if node.revoked_at.is_some() {
                        return Err(Error::CertificateRevoked(issued[0].record.serial.clone()));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended(key))
    }
}
