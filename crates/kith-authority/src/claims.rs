//! Names and addresses held by live certificates, so that one holder cannot
//! be issued another's.
//!
//! - An IP address (other than loopback, which names every host's own self)
//!   in a node's certificate is held by that node while the certificate is
//!   its current one and unrevoked: another node gets it only if its token
//!   allows that address (a shared virtual IP). A join that asks for a held
//!   address is refused (`ip-taken`); a renewal leaves it out of the new
//!   certificate instead, so that a node never stops renewing over an
//!   address.
//! - A kith server's own addresses and DNS names are its own: a server takes
//!   them over from anyone, and no node is issued them (nor a node name
//!   whose `<node>.<cluster>` is one of them).
//!
//! Each held name is one record, `ipclaim/<hex>` or `dnsclaim/<hex>`,
//! written create-only or compare-and-swap, so two joins racing for one
//! address cannot both win. A claim is taken before signing (with no serial:
//! such a claim holds for a minute, so an abandoned join frees it), and tied
//! to the certificate after the issuance is durable. Every name is checked
//! before any claim is written, and a holder's own settled claim is never
//! downgraded, so a refused request frees nothing it held.

use std::net::IpAddr;

use kith_pki::{Namespace, San};
use kith_store::Revision;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::issue::Issued;
use crate::keys;
use crate::nodes::NodeRecord;
use crate::records::{from_json, to_json, NodeCertIndex};

/// How long a claim without a certificate yet holds its name.
const PENDING_CLAIM: Duration = Duration::minutes(1);
/// Compare-and-swap attempts per name before giving up as contended.
const ATTEMPTS: usize = 8;

/// One held name.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Claim {
    holder: Namespace,
    name: String,
    /// The certificate that holds it, once issued.
    serial: Option<String>,
    authority: String,
    #[serde(with = "time::serde::rfc3339")]
    not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    claimed_at: OffsetDateTime,
}

/// A name that can be held: an address, or (servers only) a DNS name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Held {
    Ip(IpAddr),
    Dns(String),
}

impl Held {
    fn key(&self) -> String {
        match self {
            Held::Ip(ip) => keys::ip_claim_key(*ip),
            Held::Dns(d) => keys::dns_claim_key(d),
        }
    }

    fn error(&self, holder: &Claim) -> Error {
        let who = format!("{} {}", holder.holder, holder.name);
        match self {
            Held::Ip(ip) => Error::IpTaken {
                ip: *ip,
                holder: who,
            },
            Held::Dns(d) => Error::Csr(kith_pki::CsrRejection {
                kind: kith_pki::CsrRejectionKind::SanNotAllowed,
                detail: format!("{d} is a name of {who}"),
            }),
        }
    }
}

/// The names of `sans` a holder in `ns` holds: every IP but loopback, and
/// for servers their DNS names too. Addresses are canonical (an
/// IPv4-mapped IPv6 address is its IPv4 address).
fn held_names(ns: Namespace, sans: &[San]) -> Vec<Held> {
    let mut out: Vec<Held> = sans
        .iter()
        .filter_map(|s| match s {
            San::Ip(ip) if !ip.to_canonical().is_loopback() => Some(Held::Ip(ip.to_canonical())),
            San::Dns(d) if ns == Namespace::Server && d != "localhost" => {
                Some(Held::Dns(d.to_ascii_lowercase()))
            }
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the token's allowed SANs list `held` (then it may be shared).
fn allowed(held: &Held, allow: &[String]) -> bool {
    match held {
        Held::Ip(ip) => allow
            .iter()
            .any(|a| a.parse::<IpAddr>().is_ok_and(|x| x.to_canonical() == *ip)),
        Held::Dns(_) => false,
    }
}

/// How a node's request treats names held by others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnHeld {
    /// A join: refuse.
    Refuse,
    /// A renewal: leave them out of the new certificate.
    LeaveOut,
}

impl Authority {
    /// Whether `claim` still holds its name as of now: unexpired, unrevoked,
    /// and for a node, still its current certificate (or the one a renewal
    /// whose answer was lost may retry with).
    async fn claim_live(&self, claim: &Claim) -> Result<bool, Error> {
        let now = self.now();
        let Some(serial) = &claim.serial else {
            return Ok(now - claim.claimed_at < PENDING_CLAIM);
        };
        if claim.not_after <= now {
            return Ok(false);
        }
        let revoked = self
            .store()
            .get(&keys::revoked_key(&claim.authority, serial))
            .await?;
        if revoked.is_some() {
            return Ok(false);
        }
        if claim.holder != Namespace::Node {
            return Ok(true);
        }
        let key = keys::node_key(&claim.name);
        let Some(e) = self.store().get(&key).await? else {
            return Ok(true); // issued offline: held until it expires
        };
        let node: NodeRecord = from_json(&key, &e.value)?;
        Ok(node.removed_at.is_none()
            && node.revoked_at.is_none()
            && (node.is_current(serial) || node.may_retry_with(serial, now)))
    }

    /// The claim on `held` and its revision, if any.
    async fn claim_of(&self, held: &Held) -> Result<Option<(Claim, Revision)>, Error> {
        let key = held.key();
        match self.store().get(&key).await? {
            Some(e) => Ok(Some((from_json(&key, &e.value)?, e.revision))),
            None => Ok(None),
        }
    }

    /// The live claim of someone other than (`ns`, `name`) on `held`.
    async fn held_by_other(
        &self,
        held: &Held,
        ns: Namespace,
        name: &str,
    ) -> Result<Option<Claim>, Error> {
        match self.claim_of(held).await? {
            Some((c, _)) if !(c.holder == ns && c.name == name) => {
                if self.claim_live(&c).await? {
                    Ok(Some(c))
                } else if c.holder == Namespace::Server {
                    // Replicas share names (a load balancer's): the claim
                    // names the last server that took it, which may be
                    // revoked or gone while another still carries the name.
                    self.live_server_holding(held, ns, name).await
                } else {
                    Ok(None)
                }
            }
            _ => Ok(None),
        }
    }

    /// A live server certificate, of a holder other than (`ns`, `name`),
    /// that carries `held`. Servers are few and renew monthly, so their
    /// index is short; this runs only when a server's claim has lapsed.
    async fn live_server_holding(
        &self,
        held: &Held,
        ns: Namespace,
        name: &str,
    ) -> Result<Option<Claim>, Error> {
        let now = self.now();
        for e in self.store().list(keys::SERVER_CERT_PREFIX).await? {
            let Some((server, serial)) = e.key[keys::SERVER_CERT_PREFIX.len()..].split_once('/')
            else {
                continue;
            };
            let idx: NodeCertIndex = from_json(&e.key, &e.value)?;
            if idx.not_after <= now || (ns == Namespace::Server && server == name) {
                continue;
            }
            if self
                .store()
                .get(&keys::revoked_key(&idx.authority, serial))
                .await?
                .is_some()
            {
                continue;
            }
            let (cert, _) =
                crate::find_certificate(&**self.store(), &kith_pki::Serial::parse(serial)?).await?;
            if held_names(Namespace::Server, &cert.sans).contains(held) {
                return Ok(Some(Claim {
                    holder: Namespace::Server,
                    name: server.to_string(),
                    serial: Some(cert.serial),
                    authority: cert.authority,
                    not_after: cert.not_after,
                    claimed_at: cert.issued_at,
                }));
            }
        }
        Ok(None)
    }

    /// Check what node `name` asks for: its own `<name>.<cluster>` and its
    /// DNS SANs must not be a server's names, its addresses not held by
    /// another live certificate unless `allow` lists them. Reads only.
    /// Returns the SANs to leave out (with [`OnHeld::LeaveOut`]).
    pub(crate) async fn check_node_sans(
        &self,
        name: &str,
        sans: &[San],
        allow: &[String],
        on_held: OnHeld,
    ) -> Result<Vec<San>, Error> {
        let fqdn = format!("{name}.{}", self.cluster());
        let mut dns: Vec<Held> = sans
            .iter()
            .filter_map(|s| match s {
                San::Dns(d) => Some(Held::Dns(d.to_ascii_lowercase())),
                _ => None,
            })
            .collect();
        if on_held == OnHeld::Refuse {
            dns.push(Held::Dns(fqdn));
        }
        let mut leave_out = Vec::new();
        for held in dns
            .into_iter()
            .chain(held_names(Namespace::Node, sans))
            .filter(|h| !allowed(h, allow))
        {
            if let Some(other) = self.held_by_other(&held, Namespace::Node, name).await? {
                match on_held {
                    OnHeld::Refuse => return Err(held.error(&other)),
                    OnHeld::LeaveOut => leave_out.push(match held {
                        Held::Ip(ip) => San::Ip(ip),
                        Held::Dns(d) => San::Dns(d),
                    }),
                }
            }
        }
        Ok(leave_out)
    }

    /// Claim the names of `sans` for (`ns`, `name`): those `allow` does not
    /// list as shared. Every name is checked before one is written, and a
    /// settled claim of the holder's own is left as it is. With `force` (a
    /// server's own configured names), take them from whoever holds them.
    pub(crate) async fn claim_sans(
        &self,
        ns: Namespace,
        name: &str,
        authority: &str,
        sans: &[San],
        allow: &[String],
        force: bool,
    ) -> Result<(), Error> {
        let names: Vec<Held> = held_names(ns, sans)
            .into_iter()
            .filter(|h| !allowed(h, allow))
            .collect();
        if !force {
            for held in &names {
                if let Some(other) = self.held_by_other(held, ns, name).await? {
                    return Err(held.error(&other));
                }
            }
        }
        let now = self.now();
        let pending = Claim {
            holder: ns,
            name: name.to_string(),
            serial: None,
            authority: authority.to_string(),
            not_after: now,
            claimed_at: kith_pki::second_precision(now),
        };
        for held in &names {
            let key = held.key();
            cas::retry!(&key, ATTEMPTS, async |_| {
                let existing = self.claim_of(held).await?;
                let written = match existing {
                    None => self.store().create(&key, to_json(&pending)?).await,
                    Some((c, rev)) => {
                        let mine = c.holder == ns && c.name == name;
                        if mine && c.serial.is_some() && self.claim_live(&c).await? {
                            return Ok(Attempt::Done(()));
                        }
                        if !mine && !force && self.claim_live(&c).await? {
                            return Err(held.error(&c));
                        }
                        self.store().update(&key, to_json(&pending)?, rev).await
                    }
                };
                Ok(match cas::written(written)? {
                    Some(_) => Attempt::Done(()),
                    None => Attempt::Conflict,
                })
            })
            .await?;
        }
        Ok(())
    }

    /// After an issuance is durable: tie each claimed name to the
    /// certificate that carries it, so the claim lasts as long as it does.
    /// A claim someone else took meanwhile (ours had lapsed) is left alone.
    pub(crate) async fn settle_claims(
        &self,
        ns: Namespace,
        name: &str,
        issued: &[Issued],
    ) -> Result<(), Error> {
        for i in issued {
            for held in held_names(ns, &i.record.sans) {
                let key = held.key();
                let settled = cas::retry!(&key, ATTEMPTS, async |_| {
                    let Some((mut claim, rev)) = self.claim_of(&held).await? else {
                        return Ok(Attempt::Done(()));
                    };
                    if claim.holder != ns
                        || claim.name != name
                        || claim.serial.as_deref() == Some(i.record.serial.as_str())
                    {
                        return Ok(Attempt::Done(()));
                    }
                    claim.serial = Some(i.record.serial.clone());
                    claim.authority = i.record.authority.clone();
                    claim.not_after = i.record.not_after;
                    let write = self.store().update(&key, to_json(&claim)?, rev).await;
                    Ok(match cas::written(write)? {
                        Some(_) => Attempt::Done(()),
                        None => Attempt::Conflict,
                    })
                })
                .await;
                match settled {
                    // Still contended: the claim stays pending and lapses in a
                    // minute, as a claim whose issuance never settled would.
                    Ok(()) | Err(Error::Contended(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Claim the addresses of a node certificate issued here directly (`cert
    /// issue`, `cert sign`), so that no join takes them. The operator decides
    /// these: the claim is taken from whoever held it, as for a server.
    pub(crate) async fn claim_issued_ips(&self, issued: &Issued) -> Result<(), Error> {
        let r = &issued.record;
        if r.holder() != Namespace::Node {
            return Ok(());
        }
        self.claim_sans(Namespace::Node, &r.node, &r.authority, &r.sans, &[], true)
            .await
    }

    /// [`Authority::settle_claims`] for one certificate issued directly.
    pub(crate) async fn settle_issued_ips(&self, issued: &Issued) -> Result<(), Error> {
        let r = &issued.record;
        if r.holder() != Namespace::Node {
            return Ok(());
        }
        self.settle_claims(Namespace::Node, &r.node, std::slice::from_ref(issued))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_filters() {
        let v4: IpAddr = "10.0.0.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        assert_eq!(Held::Ip(v4).key(), "ipclaim/0a000007");
        let sans = vec![
            San::Ip("127.0.0.1".parse().expect("ip")),
            San::Ip("::1".parse().expect("ip")),
            San::Ip(v4),
            San::Ip(mapped),
            San::Dns("node-1.prod.example".into()),
            San::Dns("localhost".into()),
        ];
        assert_eq!(held_names(Namespace::Node, &sans), vec![Held::Ip(v4)]);
        assert_eq!(
            held_names(Namespace::Server, &sans),
            vec![Held::Ip(v4), Held::Dns("node-1.prod.example".into())]
        );
        assert!(allowed(&Held::Ip(v4), &["10.0.0.7".into()]));
        assert!(!allowed(
            &Held::Ip(v4),
            &["10.0.0.8".into(), "db.example".into()]
        ));
    }
}
