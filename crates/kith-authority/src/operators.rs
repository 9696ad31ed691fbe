//! Operators: the holders of `admin` certificates, in the operator name
//! space (`spiffe://<cluster>/kith/admin/<name>`, indexed under
//! `opcert/<name>/`). `kith init` makes the first, `admin`; more are added,
//! renewed, listed and revoked here. The CA picks every operator
//! certificate's subject and extensions (the `admin` profile); a CSR only
//! proves the key.
//!
//! Revoking an operator revokes its live certificates, so the admin gate
//! (which looks each client certificate up, revocations included) refuses it
//! at once. The last operator with a live certificate cannot be revoked
//! ([`Error::LastOperator`]): that would leave nobody able to use the admin
//! API. This guards against an accident, not an attacker: two operators
//! revoking each other at the same moment can both succeed, and whoever
//! holds the passphrase on the CA machine can always add an operator with
//! the server stopped (`kith admin add` offline).

use std::collections::BTreeMap;

use kith_pki::{Namespace, Profile, PublicKey, RevocationReason, Serial};
use kith_store::Store;
use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::error::Error;
use crate::info::find_certificate;
use crate::issue::{Identity, Issued};
use crate::keys::{holder_cert_prefix, OPERATOR_CERT_PREFIX};
use crate::records::{from_json, CertRecord, NodeCertIndex};
use crate::revoke::{Publish, RevokeOutcome};
use crate::IssueRequest;

/// The role every operator certificate carries.
pub const OPERATOR_ROLE: &str = "admin";

/// The operator `kith init` makes.
pub const FIRST_OPERATOR: &str = "admin";

/// Where an operator stands, as `kith admin ls` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum OperatorState {
    /// It holds an unexpired, unrevoked certificate.
    Live,
    /// Its certificates have all expired.
    Expired,
    /// Its certificates were revoked.
    Revoked,
}

impl OperatorState {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// One operator as `kith admin ls` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperatorView {
    /// Its name.
    pub name: String,
    /// Where it stands now.
    pub state: OperatorState,
    /// Serial of its latest certificate.
    pub serial: String,
    /// When that certificate was issued.
    pub issued_at: OffsetDateTime,
    /// Its expiry.
    pub not_after: OffsetDateTime,
    /// Its unexpired, unrevoked certificates (a renewal's predecessor
    /// counts until the renewing command revokes it).
    pub live: usize,
}

/// Every operator certificate with whether it is revoked, by operator
/// name, oldest first.
async fn operator_certs(
    store: &dyn Store,
    name: Option<&str>,
) -> Result<BTreeMap<String, Vec<(CertRecord, bool)>>, Error> {
    let prefix = match name {
        Some(n) => holder_cert_prefix(Namespace::Operator, n),
        None => OPERATOR_CERT_PREFIX.to_string(),
    };
    let mut out: BTreeMap<String, Vec<(CertRecord, bool)>> = BTreeMap::new();
    for e in store.list(&prefix).await? {
        let rest = &e.key[OPERATOR_CERT_PREFIX.len()..];
        let Some((_, serial)) = rest.split_once('/') else {
            continue;
        };
        let _: NodeCertIndex = from_json(&e.key, &e.value)?;
        let (cert, revoked) = find_certificate(store, &Serial::parse(serial)?).await?;
        out.entry(cert.node.clone())
            .or_default()
            .push((cert, revoked.is_some()));
    }
    for certs in out.values_mut() {
        certs.sort_by_key(|(c, _)| c.issued_at);
    }
    Ok(out)
}

/// Every operator as of `now`, in name order. Reads the store only (no
/// keys): `kith admin ls` offline needs no passphrase.
pub async fn list_operators(
    store: &dyn Store,
    now: OffsetDateTime,
) -> Result<Vec<OperatorView>, Error> {
    let mut views = Vec::new();
    for (name, certs) in operator_certs(store, None).await? {
        let Some((latest, latest_revoked)) = certs.last() else {
            continue;
        };
        let live = certs
            .iter()
            .filter(|(c, revoked)| !revoked && c.not_after > now)
            .count();
        let state = if live > 0 {
            OperatorState::Live
        } else if *latest_revoked {
            OperatorState::Revoked
        } else {
            OperatorState::Expired
        };
        views.push(OperatorView {
            name,
            state,
            serial: latest.serial.clone(),
            issued_at: latest.issued_at,
            not_after: latest.not_after,
            live,
        });
    }
    Ok(views)
}

impl Authority {
    /// Every operator, in name order.
    pub async fn operator_views(&self) -> Result<Vec<OperatorView>, Error> {
        list_operators(&**self.store(), self.now()).await
    }

    /// Revoking certificate `serial` (by serial, as `kith revoke SERIAL`
    /// does) must leave a live operator certificate, as
    /// [`Authority::revoke_operator`] must: else nobody could use the
    /// admin API again. [`Error::LastOperator`] if it would not.
    pub(crate) async fn keep_an_operator(&self, serial: &Serial) -> Result<(), Error> {
        let (cert, revoked) = find_certificate(&**self.store(), serial).await?;
        let now = self.now();
        if revoked.is_some() || cert.holder() != Namespace::Operator || cert.not_after <= now {
            return Ok(());
        }
        let hex = serial.to_hex();
        let another = operator_certs(&**self.store(), None)
            .await?
            .into_values()
            .flatten()
            .any(|(c, revoked)| !revoked && c.not_after > now && c.serial != hex);
        if another {
            Ok(())
        } else {
            Err(Error::LastOperator(cert.node))
        }
    }

    /// The serials of `name`'s live (unexpired, unrevoked) certificates.
    async fn live_operator_serials(&self, name: &str) -> Result<Vec<String>, Error> {
        let now = self.now();
        Ok(operator_certs(&**self.store(), Some(name))
            .await?
            .remove(name)
            .unwrap_or_default()
            .into_iter()
            .filter(|(c, revoked)| !revoked && c.not_after > now)
            .map(|(c, _)| c.serial)
            .collect())
    }

    /// Issue an operator certificate for `public_key` (the CA picks subject
    /// and extensions: the `admin` profile). A name that holds a live
    /// certificate already is [`Error::OperatorExists`]: an operator renews
    /// its own ([`Authority::renew_operator`]).
    pub async fn add_operator(
        &self,
        name: &str,
        public_key: PublicKey,
        ttl: Option<Duration>,
        actor: &str,
    ) -> Result<Issued, Error> {
        kith_pki::validate_holder(Namespace::Operator, name, OPERATOR_ROLE)?;
        if !self.live_operator_serials(name).await?.is_empty() {
            return Err(Error::OperatorExists(name.to_string()));
        }
        let issued = self.issue_operator(name, public_key, ttl).await?;
        self.audit(actor, "operator-add", name, &issued.record.serial)
            .await?;
        Ok(issued)
    }

    /// A new certificate for operator `name`, which must hold a live one
    /// (the caller proved it: the admin gate, or the passphrase offline).
    /// The certificate it replaces stays valid until the caller revokes it
    /// (`kith admin renew` does, once the new credential is on disk).
    pub async fn renew_operator(
        &self,
        name: &str,
        public_key: PublicKey,
        ttl: Option<Duration>,
        actor: &str,
    ) -> Result<Issued, Error> {
        kith_pki::validate_holder(Namespace::Operator, name, OPERATOR_ROLE)?;
        if self.live_operator_serials(name).await?.is_empty() {
            return Err(Error::UnknownOperator(name.to_string()));
        }
        let issued = self.issue_operator(name, public_key, ttl).await?;
        self.audit(actor, "operator-renew", name, &issued.record.serial)
            .await?;
        Ok(issued)
    }

    async fn issue_operator(
        &self,
        name: &str,
        public_key: PublicKey,
        ttl: Option<Duration>,
    ) -> Result<Issued, Error> {
        self.issue(IssueRequest {
            identity: Identity {
                node: name.to_string(),
                role: OPERATOR_ROLE.to_string(),
                profile: Profile::Admin,
                authority: None,
                ttl,
            },
            public_key,
            extra_sans: Vec::new(),
        })
        .await
    }

    /// Revoke every live certificate of operator `name`: the admin gate
    /// refuses it from the next request on. Refused with
    /// [`Error::LastOperator`] if no other operator holds a live
    /// certificate, and [`Error::UnknownOperator`] if `name` holds none.
    pub async fn revoke_operator(
        &self,
        name: &str,
        reason: RevocationReason,
        actor: &str,
        publish: Publish,
    ) -> Result<Vec<RevokeOutcome>, Error> {
        kith_pki::validate_label("operator name", name)?;
        let serials = self.live_operator_serials(name).await?;
        if serials.is_empty() {
            return Err(Error::UnknownOperator(name.to_string()));
        }
        let others = self
            .operator_views()
            .await?
            .into_iter()
            .any(|v| v.name != name && v.state == OperatorState::Live);
        if !others {
            return Err(Error::LastOperator(name.to_string()));
        }
        let mut out = Vec::new();
        for s in serials {
            out.push(
                self.record_revocation(&Serial::parse(&s)?, reason, actor)
                    .await?,
            );
        }
        if publish == Publish::Now {
            self.publish_crls(&out).await?;
        }
        Ok(out)
    }
}
