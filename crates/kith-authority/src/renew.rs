//! Renewal over mutual TLS: the identity is the presented certificate's
//! record, never the request's; the node's current certificate renews (the
//! one it replaced only once, shortly after, for a lost answer).

use kith_pki::{Namespace, Profile, San};
use time::Duration;

use crate::authority::Authority;
use crate::claims::OnHeld;
use crate::error::Error;
use crate::issue::Issued;
use crate::keys::node_key;
use crate::nodes::NodeRecord;
use crate::records::from_json;

impl Authority {
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
}
