//! Who may hold a node name: the claim rules of a join (live certificates
//! hold their names, retired names need a token minted for them, a token
//! for a name reserves it). Taking a name away (`node rm`, `revoke --node`)
//! is in `revoke`.

use kith_pki::{Namespace, Serial};
use kith_store::Revision;

use crate::authority::Authority;
use crate::error::Error;
use crate::info::find_certificate;
use crate::keys::{holder_cert_prefix, node_key};
use crate::nodes::{NodeRecord, PENDING_NAME};
use crate::records::{from_json, NodeCertIndex};
use crate::tokens::TokenRecord;

impl Authority {
    /// Whether `node` may be (re)claimed by a join with `token` over the key
    /// whose SPKI hash is `spki`. Returns the revision of the node record to
    /// compare-and-swap against, if one exists.
    ///
    /// - A live certificate (unexpired, unrevoked) holds its name, whoever
    ///   issued it (a join, a renewal, `cert issue`): a join over another key
    ///   is `node-name-taken`, whatever its token.
    /// - A token minted for the name reserves it while it can be used: other
    ///   tokens get `node-name-reserved`.
    /// - A name never issued is free.
    /// - A name with a past (revoked, removed, expired, issued offline) comes
    ///   back only through a token minted for exactly that name
    ///   (`node-name-retired` otherwise), so nobody inherits what a policy
    ///   grants that name by joining with a token for any name.
    /// - The key of the node's current, live certificate may join again.
    /// - A join that claimed the name and never recorded a certificate
    ///   holds it for a minute, then it is free.
    pub(crate) async fn name_claimable(
        &self,
        node: &str,
        token: &TokenRecord,
        spki: &str,
    ) -> Result<Option<Revision>, Error> {
        let now = self.now();
        let store = &**self.store();
        let prefix = holder_cert_prefix(Namespace::Node, node);
        let index = store.list(&prefix).await?;
        let mut live_same_key = Vec::new();
        for e in &index {
            let idx: NodeCertIndex = from_json(&e.key, &e.value)?;
            if idx.not_after <= now {
                continue;
            }
            let serial = Serial::parse(&e.key[prefix.len()..])?;
            let (cert, revoked) = find_certificate(store, &serial).await?;
            if revoked.is_some() || cert.holder() != Namespace::Node {
                continue;
            }
            if hex::encode(kith_pki::spki_pin(&cert.der)?) != spki {
                return Err(Error::NodeNameTaken(node.to_string()));
            }
            live_same_key.push(cert.serial);
        }
        if token.node.as_deref() != Some(node) {
            if let Some(other) = self.reserving_token(node, &token.id).await? {
                return Err(Error::NodeNameReserved {
                    name: node.to_string(),
                    token: other,
                });
            }
        }
        let key = node_key(node);
        let entry = store.get(&key).await?;
        let record: Option<NodeRecord> = match &entry {
            Some(e) => Some(from_json(&key, &e.value)?),
            None => None,
        };
        let revision = entry.as_ref().map(|e| e.revision);
        if record.is_none() && index.is_empty() {
            return Ok(None);
        }
        if let Some(r) = &record {
            if r.serials.is_empty() && index.is_empty() && r.removed_at.is_none() {
                // A claim whose join never recorded a certificate.
                if now - r.last_renewal < PENDING_NAME && r.spki_sha256 != spki {
                    return Err(Error::NodeNameTaken(node.to_string()));
                }
                return Ok(revision);
            }
        }
        if token.node.as_deref() == Some(node) {
            return Ok(revision);
        }
        // The same key may come back only while its certificate is the
        // node's current one: not a key a renewal replaced, not a revoked
        // or removed node's.
        let current_same_key = record.as_ref().is_some_and(|r| {
            r.removed_at.is_none()
                && r.revoked_at.is_none()
                && live_same_key.iter().any(|s| r.is_current(s))
        });
        if current_same_key {
            return Ok(revision);
        }
        Err(Error::NodeNameRetired(node.to_string()))
    }
}
