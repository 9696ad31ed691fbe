//! Joining: a node redeems a token and is issued one certificate per CSR;
//! and the commit that a join and a renewal share (certificates, node
//! record by compare-and-swap, audit line, in one commit wave).

use std::collections::BTreeMap;

use kith_api::JoinToken;
use kith_pki::{parse_csr, Namespace, Profile, PublicKey, RevocationReason, San};
use kith_store::Revision;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::claims::OnHeld;
use crate::error::Error;
use crate::issue::{Identity, Issued};
use crate::keys::node_key;
use crate::nodes::{NodeRecord, MAX_CSRS};
use crate::records::{from_json, to_json};
use crate::revoke::{Publish, RevokeTarget};
use crate::IssueRequest;

/// A CSR approved for a profile.
pub(crate) struct Approved {
    pub(crate) profile: Profile,
    pub(crate) public_key: PublicKey,
    pub(crate) extra_sans: Vec<San>,
}

impl Authority {
    /// Check a set of (profile, CSR) pairs for `node`: profiles joinable and
    /// distinct, every CSR valid under the policy widened by `allow_sans`,
    /// all over one key.
    pub(crate) fn approve_csrs(
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
        self.join_leaving_out(token, asked_node, csrs, &[], peer)
            .await
    }

    /// [`Authority::join`] where the addresses of `may_leave_out` (those
    /// the node found on its interfaces, not asked for by name) are left
    /// out of the certificates when another live holder has them, instead
    /// of refusing the join `ip-taken`: several nodes share a host's
    /// addresses. Any other held address is refused, and an address the
    /// token lists is shared as before. Without a name asked for and none
    /// fixed by the token, the node's CSR common name (its host name) is
    /// the name asked for.
    pub async fn join_leaving_out(
        &self,
        token: &JoinToken,
        asked_node: Option<&str>,
        csrs: &[(Profile, Vec<u8>)],
        may_leave_out: &[std::net::IpAddr],
        peer: &str,
    ) -> Result<(NodeRecord, Vec<Issued>), Error> {
        let rec = self.check_token(token).await?;
        // The host name a client without `--name` put in its CSR: only a
        // request, judged like a name asked for.
        let csr_name = csrs
            .first()
            .and_then(|(_, der)| parse_csr(der).ok())
            .and_then(|c| c.common_name)
            .map(|n| n.to_ascii_lowercase());
        let asked_node = asked_node.or(if rec.node.is_none() {
            csr_name.as_deref()
        } else {
            None
        });
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
        let mut approved = self.approve_csrs(&node, &rec.role, None, &rec.allow_sans, csrs)?;
        let spki = hex::encode(kith_pki::sha256(approved[0].public_key.spki_der()));
        let existing = self.name_claimable(&node, &rec, &spki).await?;
        let asked: Vec<San> = approved.iter().flat_map(|a| a.extra_sans.clone()).collect();
        let leaves_out = |s: &San| match s {
            San::Ip(ip) => may_leave_out.iter().any(|m| m.to_canonical() == *ip),
            _ => false,
        };
        // Interface addresses held by others are left out (a renewal
        // treats every held address so); then everything else must be free.
        let optional: Vec<San> = asked.iter().filter(|s| leaves_out(s)).cloned().collect();
        let left_out = self
            .check_node_sans(&node, &optional, &rec.allow_sans, OnHeld::LeaveOut)
            .await?;
        if !left_out.is_empty() {
            for a in &mut approved {
                a.extra_sans.retain(|s| !left_out.contains(s));
            }
        }
        let required: Vec<San> = asked.iter().filter(|s| !leaves_out(s)).cloned().collect();
        self.check_node_sans(&node, &required, &rec.allow_sans, OnHeld::Refuse)
            .await?;
        let sans: Vec<San> = approved.iter().flat_map(|a| a.extra_sans.clone()).collect();
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
            cert_ttl_seconds: rec.cert_ttl_seconds,
            trusts: Vec::new(),
            trust_reported: None,
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

    /// Sign one certificate per approved CSR (CPU only; nothing recorded yet).
    pub(crate) fn sign_approved(
        &self,
        node: &NodeRecord,
        approved: Vec<Approved>,
    ) -> Result<Vec<Issued>, Error> {
        // The token's lifetime, else this server's default, else the
        // profile's; each checked again by `sign`.
        let ttl = node
            .cert_ttl_seconds
            .map(time::Duration::seconds)
            .or(self.settings().leaf_ttl);
        if let Some(t) = ttl {
            crate::limits::check_cert_ttl(t)?;
        }
        approved
            .into_iter()
            .map(|a| {
                self.sign(&IssueRequest {
                    identity: Identity {
                        node: node.name.clone(),
                        role: node.role.clone(),
                        profile: a.profile,
                        authority: Some(node.authority.clone()),
                        ttl,
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
    pub(crate) async fn commit_issued(
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
                // A renewal whose certificate was revoked (by serial) after
                // our first check and before our write: the revoker listed
                // nothing of ours, so the new certificates go here.
                Ok(now) => match renewed_with {
                    Some(s) if self.serial_is_revoked(&now.authority, s).await? => {
                        Err(Error::CertificateRevoked(s.to_string()))
                    }
                    _ => Ok(written),
                },
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
                    self.revoke(
                        RevokeTarget::Serial(serial),
                        RevocationReason::CessationOfOperation,
                        actor,
                        Publish::Now,
                    )
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
                    self.revoke(
                        RevokeTarget::Serial(serial),
                        RevocationReason::Superseded,
                        actor,
                        Publish::Now,
                    )
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
        node: NodeRecord,
        revision: Revision,
        issued: &[Issued],
        renewed_with: Option<&str>,
    ) -> Result<(NodeRecord, Vec<String>), Error> {
        let key = node_key(&node.name);
        let name = node.name.clone();
        let now = kith_pki::second_precision(self.now());
        // A join publishes over its own claim only: what it wrote, no
        // certificate yet (a stalled join whose claim lapsed and was taken
        // must not overwrite the new holder).
        let (claim_token, claim_spki) = (node.token.clone(), node.spki_sha256.clone());
        let mut given = Some((node, revision));
        cas::retry!(&key, cas::ATTEMPTS, async |attempt| {
            // The record as the caller read it first; after a lost write, as it is now.
            let (mut node, revision) = match given.take() {
                Some(first) => first,
                None => {
                    let e = self
                        .store()
                        .get(&key)
                        .await?
                        .ok_or_else(|| Error::UnknownNode(name.clone()))?;
                    let node: NodeRecord = from_json(&key, &e.value)?;
                    if node.removed_at.is_some() {
                        return Err(Error::NodeRemoved(node.name));
                    }
                    if node.revoked_at.is_some() {
                        return Err(Error::CertificateRevoked(issued[0].record.serial.clone()));
                    }
                    (node, e.revision)
                }
            };
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
            let write = self.store().update(&key, to_json(&node)?, revision).await;
            Ok(match cas::written(write)? {
                Some(_) => Attempt::Done((node, orphans)),
                None => Attempt::Conflict,
            })
        })
        .await
    }
}
