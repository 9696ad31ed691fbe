//! Revocation: one entry point, [`Authority::revoke`], for one certificate
//! or every live certificate of a node, and [`Authority::remove_node`],
//! which also bars the node from renewing. A revocation record is written
//! once (create-only: revoking twice keeps the first reason and reports it).
//!
//! The CRL is decided here once: a revocation re-signs the CRLs it made
//! stale before it returns ([`Publish::Now`]), unless the caller batches
//! that ([`Publish::ByCaller`], the server's debouncer) and then calls
//! [`Authority::publish_crls`]. Nothing is lost if it never does: a stored
//! CRL names the highest revocation revision it covers, so whoever sees a
//! newer one ([`Authority::crl_is_stale`]: the server's revocation watch,
//! its maintenance tick) re-signs.

use std::collections::BTreeSet;

use kith_pki::{Namespace, RevocationReason, Serial};

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::info::find_certificate;
use crate::keys::{self, node_key};
use crate::nodes::NodeRecord;
use crate::records::{from_json, to_json, CrlRecord, NodeCertIndex, RevokedRecord};

/// What to revoke.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeTarget {
    /// One certificate, by serial.
    Serial(Serial),
    /// Every unexpired certificate of a node (the node is marked first, so
    /// that a renewal racing the revocation revokes what it issues).
    Node(String),
    /// A kith server (one replica): its name is retired first, then every
    /// unexpired certificate issued under it is revoked; the name is never
    /// issued again.
    Server(String),
}

/// When the CRLs a revocation made stale are re-signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Publish {
    /// Before the call returns: for callers that exit next (an offline
    /// command) or that act on the new CRL at once.
    Now,
    /// By the caller, which batches re-signing (a server answering many
    /// revocations) and calls [`Authority::publish_crls`] or its own
    /// debounced equivalent. Should it die first, any process sharing the
    /// store that sees [`Authority::crl_is_stale`] re-signs.
    ByCaller,
}

/// Result of a revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Newly revoked.
    Revoked(RevokedRecord),
    /// Was revoked already; the first record (and its reason) stands.
    AlreadyRevoked(RevokedRecord),
}

impl RevokeOutcome {
    /// The revocation record either way.
    pub fn record(&self) -> &RevokedRecord {
        match self {
            Self::Revoked(r) | Self::AlreadyRevoked(r) => r,
        }
    }
}

impl Authority {
    /// Revoke `target` with `reason`, on behalf of `actor`, and re-sign the
    /// CRLs it made stale as `publish` says. Returns one outcome per
    /// certificate: revoking a revoked certificate is a no-op that reports
    /// the first revocation. A node with no unexpired certificate is
    /// [`Error::UnknownNode`].
    pub async fn revoke(
        &self,
        target: RevokeTarget,
        reason: RevocationReason,
        actor: &str,
        publish: Publish,
    ) -> Result<Vec<RevokeOutcome>, Error> {
        let out = match &target {
            RevokeTarget::Serial(serial) => {
                self.keep_an_operator(serial).await?;
                vec![self.record_revocation(serial, reason, actor).await?]
            }
            RevokeTarget::Node(node) => self.revoke_node(node, reason, actor).await?,
            RevokeTarget::Server(name) => self.revoke_server(name, reason, actor).await?,
        };
        if publish == Publish::Now {
            self.publish_crls(&out).await?;
        }
        Ok(out)
    }

    /// Remove a node: mark it so it can never renew again (a new token
    /// minted for its name re-admits it), then revoke its live certificates
    /// as [`Authority::revoke`] does. Removing twice is a no-op.
    pub async fn remove_node(
        &self,
        name: &str,
        reason: RevocationReason,
        actor: &str,
        publish: Publish,
    ) -> Result<Vec<RevokeOutcome>, Error> {
        self.mark_removed(name, actor).await?;
        match self
            .revoke(RevokeTarget::Node(name.to_string()), reason, actor, publish)
            .await
        {
            Ok(v) => Ok(v),
            Err(Error::UnknownNode(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Re-sign, once each, the CRLs of the authorities `outcomes` newly
    /// revoked in (what [`Publish::Now`] does). Returns the CRLs signed.
    pub async fn publish_crls(&self, outcomes: &[RevokeOutcome]) -> Result<Vec<CrlRecord>, Error> {
        let changed: BTreeSet<&str> = outcomes
            .iter()
            .filter_map(|o| match o {
                RevokeOutcome::Revoked(r) => Some(r.authority.as_str()),
                RevokeOutcome::AlreadyRevoked(_) => None,
            })
            .collect();
        let mut signed = Vec::with_capacity(changed.len());
        for authority in changed {
            signed.push(self.regenerate_intermediate_crls(authority).await?);
        }
        Ok(signed)
    }

    /// Write the revocation record and its audit line; the caller re-signs the CRL.
    pub(crate) async fn record_revocation(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<RevokeOutcome, Error> {
        let (cert, existing) = find_certificate(&**self.store(), serial).await?;
        if let Some(r) = existing {
            return Ok(RevokeOutcome::AlreadyRevoked(r));
        }
        let record = RevokedRecord {
            serial: cert.serial.clone(),
            node: cert.node.clone(),
            authority: cert.authority.clone(),
            reason,
            revoked_at: self.now(),
            not_after: cert.not_after,
        };
        let key = keys::revoked_key(&cert.authority, &cert.serial);
        let outcome = match self.store().create(&key, to_json(&record)?).await {
            Ok(_) => RevokeOutcome::Revoked(record),
            Err(kith_store::Error::AlreadyExists { .. }) => {
                // Lost a race with another revoker: theirs is the first record.
                let e = self
                    .inner
                    .store
                    .get(&key)
                    .await?
                    .ok_or_else(|| Error::Integrity(format!("{key} vanished")))?;
                return Ok(RevokeOutcome::AlreadyRevoked(from_json(&key, &e.value)?));
            }
            Err(e) => return Err(e.into()),
        };
        self.audit(
            actor,
            "revoke",
            &cert.serial,
            &format!("node {} reason {}", cert.node, reason),
        )
        .await?;
        Ok(outcome)
    }

    /// Record the revocation of every unexpired certificate of `node`.
    async fn revoke_node(
        &self,
        node: &str,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<Vec<RevokeOutcome>, Error> {
        // Any label: a node named before names were reserved can still be revoked.
        kith_pki::validate_label("node name", node)?;
        // Mark the node first: a renewal racing this sees the mark and
        // revokes what it issued; one that finished before is in the list.
        self.mark_revoked(node).await?;
        let now = self.now();
        let prefix = keys::holder_cert_prefix(Namespace::Node, node);
        let mut out = Vec::new();
        for e in self.store().list(&prefix).await? {
            let idx: NodeCertIndex = from_json(&e.key, &e.value)?;
            if idx.not_after <= now {
                continue;
            }
            let serial = Serial::parse(&e.key[prefix.len()..])?;
            // Indexes written before name spaces existed share one prefix:
            // an operator's or a server's certificate found here is skipped.
            let (cert, _) = find_certificate(&**self.store(), &serial).await?;
            if cert.holder() != Namespace::Node {
                continue;
            }
            out.push(self.record_revocation(&serial, reason, actor).await?);
        }
        if out.is_empty() {
            return Err(Error::UnknownNode(node.to_string()));
        }
        Ok(out)
    }

    /// Mark `name` revoked (`revoke --node`), if it has a record: done
    /// before its certificates are listed and revoked, see
    /// [`RevokeTarget::Node`]. A node revoked already keeps its first mark.
    pub(crate) async fn mark_revoked(&self, name: &str) -> Result<(), Error> {
        let key = node_key(name);
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let Some(entry) = self.store().get(&key).await? else {
                return Ok(Attempt::Done(()));
            };
            let mut node: NodeRecord = from_json(&key, &entry.value)?;
            if node.revoked_at.is_some() {
                return Ok(Attempt::Done(()));
            }
            node.revoked_at = Some(kith_pki::second_precision(self.now()));
            let write = self
                .store()
                .update(&key, to_json(&node)?, entry.revision)
                .await;
            Ok(match cas::written(write)? {
                Some(_) => Attempt::Done(()),
                None => Attempt::Conflict,
            })
        })
        .await
    }

    /// Mark `name` removed (`node rm`) and audit it, once.
    pub(crate) async fn mark_removed(&self, name: &str, actor: &str) -> Result<(), Error> {
        kith_pki::validate_label("node name", name)?;
        let key = node_key(name);
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let Some(entry) = self.store().get(&key).await? else {
                return Err(Error::UnknownNode(name.to_string()));
            };
            let mut node: NodeRecord = from_json(&key, &entry.value)?;
            if node.removed_at.is_some() {
                return Ok(Attempt::Done(()));
            }
            node.removed_at = Some(kith_pki::second_precision(self.now()));
            let write = self
                .store()
                .update(&key, to_json(&node)?, entry.revision)
                .await;
            if cas::written(write)?.is_none() {
                return Ok(Attempt::Conflict);
            }
            self.audit(actor, "node-remove", name, "").await?;
            Ok(Attempt::Done(()))
        })
        .await
    }
}
