//! Revocation: one certificate, or every live certificate of a node. The
//! record is written once (create-only: revoking twice keeps the first
//! reason); the CRL is re-signed by the caller or, for `_deferred`, by
//! whoever publishes (the server debounces).

use kith_pki::{Namespace, RevocationReason, Serial};

use crate::records::{self, from_json, to_json, NodeCertIndex};
use crate::{find_certificate, Authority, Error, RevokeOutcome, RevokedRecord};

impl Authority {
    /// Revoke one certificate and refresh its authority's CRL. Revoking a
    /// revoked certificate is a no-op that reports the first revocation.
    pub async fn revoke(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<RevokeOutcome, Error> {
        let outcome = self.record_revocation(serial, reason, actor).await?;
        if let RevokeOutcome::Revoked(r) = &outcome {
            self.regenerate_crl(&r.authority).await?;
        }
        Ok(outcome)
    }

    /// Revoke one certificate without re-signing its CRL: for a caller that
    /// batches CRL updates (the server debounces them). Call
    /// [`Authority::regenerate_crl`] for the record's authority afterwards.
    pub async fn revoke_deferred(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<RevokeOutcome, Error> {
        self.record_revocation(serial, reason, actor).await
    }

    /// Write the revocation record and its audit line; the caller re-signs the CRL.
    async fn record_revocation(
        &self,
        serial: &Serial,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<RevokeOutcome, Error> {
        let (cert, existing) = find_certificate(&*self.inner.store, serial).await?;
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
        let key = records::revoked_key(&cert.authority, &cert.serial);
        let outcome = match self.inner.store.create(&key, to_json(&record)?).await {
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

    /// Revoke every unexpired certificate of `node`, then re-sign each
    /// affected authority's CRL once.
    pub async fn revoke_node(
        &self,
        node: &str,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<Vec<RevokeOutcome>, Error> {
        let out = self.revoke_node_deferred(node, reason, actor).await?;
        let mut changed = std::collections::BTreeSet::new();
        for o in &out {
            if let RevokeOutcome::Revoked(r) = o {
                changed.insert(r.authority.clone());
            }
        }
        for authority in changed {
            self.regenerate_crl(&authority).await?;
        }
        Ok(out)
    }

    /// [`Authority::revoke_node`] without re-signing the CRLs (see
    /// [`Authority::revoke_deferred`]).
    pub async fn revoke_node_deferred(
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
        let prefix = records::holder_cert_prefix(Namespace::Node, node);
        let mut out = Vec::new();
        for e in self.inner.store.list(&prefix).await? {
            let idx: NodeCertIndex = from_json(&e.key, &e.value)?;
            if idx.not_after <= now {
                continue;
            }
            let serial = Serial::parse(&e.key[prefix.len()..])?;
            // Indexes written before name spaces existed share one prefix:
            // an operator's or a server's certificate found here is skipped.
            let (cert, _) = find_certificate(&*self.inner.store, &serial).await?;
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
}
