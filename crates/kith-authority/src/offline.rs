//! A node certificate issued here directly (`kith cert issue`, `kith cert
//! sign`) records its node as a join does, so that the directory it went
//! into can later renew over mutual TLS once it knows a server (`kith node
//! adopt`): the certificate is the node's current one, its extra DNS names
//! are the ones its renewals may keep, and its lifetime the one they get.

use std::collections::BTreeMap;

use kith_pki::{Namespace, Profile, San};
use time::Duration;

use crate::authority::Authority;
use crate::error::Error;
use crate::issue::Issued;
use crate::keys::node_key;
use crate::nodes::{NodeRecord, OFFLINE_TOKEN};
use crate::records::{from_json, to_json};

impl Authority {
    /// Write the node record of `issued`, a node certificate the operator
    /// issued directly with lifetime `ttl`. The operator decides the name:
    /// the record replaces whatever was there (as the certificate's
    /// address claims do), except a live node that joined with a token,
    /// judged on the very record replaced (compare-and-swap): a join on
    /// another replica between the caller's early check and this write is
    /// [`Error::NodeNameTaken`], and the caller withdraws what it issued.
    pub(crate) async fn record_issued_node(
        &self,
        issued: &Issued,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let r = &issued.record;
        if r.holder() != Namespace::Node || r.profile == Profile::Admin {
            return Ok(());
        }
        let own = format!("{}.{}", r.node, self.cluster());
        let allow_sans = r
            .sans
            .iter()
            .filter_map(|s| match s {
                San::Dns(d) if *d != own && d != "localhost" => Some(d.clone()),
                _ => None,
            })
            .collect();
        let now = kith_pki::second_precision(self.now());
        let record = NodeRecord {
            name: r.node.clone(),
            role: r.role.clone(),
            authority: r.authority.clone(),
            profiles: vec![r.profile],
            allow_sans,
            token: OFFLINE_TOKEN.to_string(),
            joined: now,
            last_renewal: now,
            serials: BTreeMap::from([(r.profile, r.serial.clone())]),
            not_after: r.not_after,
            spki_sha256: hex::encode(kith_pki::spki_pin(&r.der)?),
            removed_at: None,
            previous_serials: BTreeMap::new(),
            presented: false,
            retried: false,
            revoked_at: None,
            cert_ttl_seconds: ttl.map(|t| t.whole_seconds()),
            trusts: Vec::new(),
            trust_reported: None,
        };
        let key = node_key(&r.node);
        let (json, now) = (to_json(&record)?, self.now());
        let store = self.store();
        crate::cas::retry!(&key, crate::cas::ATTEMPTS, async |_| {
            let written = match store.get(&key).await? {
                None => store.create(&key, json.clone()).await,
                Some(e) => {
                    let old: NodeRecord = from_json(&key, &e.value)?;
                    if old.holds_joined_name(now) {
                        return Err(Error::NodeNameTaken(r.node.clone()));
                    }
                    store.update(&key, json.clone(), e.revision).await
                }
            };
            crate::cas::written(written).map(|w| match w {
                Some(_) => crate::cas::Attempt::Done(()),
                None => crate::cas::Attempt::Conflict,
            })
        })
        .await
    }

    /// [`Authority::record_issued_node`], and if the name was taken meanwhile
    /// by a node that joined, the certificates just recorded are revoked
    /// before the error is returned: none of them may stay live.
    pub(crate) async fn record_issued_node_or_withdraw(
        &self,
        issued: &Issued,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        match self.record_issued_node(issued, ttl).await {
            Err(Error::NodeNameTaken(name)) => {
                let serial = kith_pki::Serial::parse(&issued.record.serial)?;
                self.revoke(
                    crate::RevokeTarget::Serial(serial),
                    kith_pki::RevocationReason::CessationOfOperation,
                    crate::LOCAL_OPERATOR,
                    crate::Publish::Now,
                )
                .await?;
                Err(Error::NodeNameTaken(name))
            }
            other => other,
        }
    }
}
