//! IP addresses held by live certificates. A node may put an address in its
//! certificate only if no other live certificate holds it, unless its token
//! allows that address (a shared virtual IP, say); so one node cannot be
//! issued another node's or a server's address. Loopback addresses name every
//! host's own self and are never claimed.
//!
//! Each held address is one record, `ipclaim/<hex of the address>`, written
//! create-only or compare-and-swap: two joins racing for one address cannot
//! both win. A claim is taken before signing (with no serial yet: such a claim
//! holds for a minute, so an abandoned join frees it) and settled with the
//! certificate's serial and expiry after the issuance is durable; from then on
//! it holds while that certificate is unexpired and unrevoked.

use std::net::IpAddr;

use kith_pki::{Namespace, San};
use kith_store::Revision;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::records::{from_json, revoked_key, to_json};
use crate::{Authority, Error, Issued};

/// How long a claim without a certificate yet holds its address.
const PENDING_CLAIM: Duration = Duration::minutes(1);
/// Compare-and-swap attempts per address before giving up as contended.
const ATTEMPTS: usize = 8;

/// One held address.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct IpClaim {
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

fn claim_key(ip: IpAddr) -> String {
    let octets = match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    format!("ipclaim/{}", hex::encode(octets))
}

/// The addresses of `sans` that are claimed: every IP but loopback.
fn claimable(sans: &[San]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = sans
        .iter()
        .filter_map(|s| match s {
            San::Ip(ip) if !ip.to_canonical().is_loopback() => Some(ip.to_canonical()),
            _ => None,
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// Whether the token's allowed SANs list `ip` (then it may be shared).
fn allowed(ip: IpAddr, allow: &[String]) -> bool {
    allow
        .iter()
        .any(|a| a.parse::<IpAddr>().is_ok_and(|x| x.to_canonical() == ip))
}

impl Authority {
    /// Whether `claim` still holds its address as of now.
    async fn claim_live(&self, claim: &IpClaim) -> Result<bool, Error> {
        let now = self.now();
        let Some(serial) = &claim.serial else {
            return Ok(now - claim.claimed_at < PENDING_CLAIM);
        };
        if claim.not_after <= now {
            return Ok(false);
        }
        let revoked = self
            .store()
            .get(&revoked_key(&claim.authority, serial))
            .await?;
        Ok(revoked.is_none())
    }

    /// The existing claim on `ip` by someone other than (`ns`, `name`) that
    /// is live, if any, and the revision to write against.
    async fn held_by_other(
        &self,
        ip: IpAddr,
        ns: Namespace,
        name: &str,
    ) -> Result<(Option<IpClaim>, Option<Revision>), Error> {
        let key = claim_key(ip);
        let Some(e) = self.store().get(&key).await? else {
            return Ok((None, None));
        };
        let claim: IpClaim = from_json(&key, &e.value)?;
        let mine = claim.holder == ns && claim.name == name;
        if !mine && self.claim_live(&claim).await? {
            return Ok((Some(claim), Some(e.revision)));
        }
        Ok((None, Some(e.revision)))
    }

    /// Refuse (`ip-taken`) if an address of `sans` is held by another live
    /// certificate and `allow` does not list it. Reads only.
    pub(crate) async fn check_ips(
        &self,
        ns: Namespace,
        name: &str,
        sans: &[San],
        allow: &[String],
    ) -> Result<(), Error> {
        for ip in claimable(sans) {
            if allowed(ip, allow) {
                continue;
            }
            if let (Some(other), _) = self.held_by_other(ip, ns, name).await? {
                return Err(Error::IpTaken {
                    ip,
                    holder: format!("{} {}", other.holder, other.name),
                });
            }
        }
        Ok(())
    }

    /// Claim every address of `sans` for (`ns`, `name`) that `allow` does not
    /// list as shared; with `force` (a server's own configured addresses),
    /// take it from whoever holds it.
    pub(crate) async fn claim_ips(
        &self,
        ns: Namespace,
        name: &str,
        authority: &str,
        sans: &[San],
        allow: &[String],
        force: bool,
    ) -> Result<(), Error> {
        let now = self.now();
        for ip in claimable(sans) {
            if allowed(ip, allow) {
                continue;
            }
            let key = claim_key(ip);
            let claim = IpClaim {
                holder: ns,
                name: name.to_string(),
                serial: None,
                authority: authority.to_string(),
                not_after: now,
                claimed_at: kith_pki::second_precision(now),
            };
            let mut done = false;
            for _ in 0..ATTEMPTS {
                let (other, revision) = self.held_by_other(ip, ns, name).await?;
                if let (Some(other), false) = (other, force) {
                    return Err(Error::IpTaken {
                        ip,
                        holder: format!("{} {}", other.holder, other.name),
                    });
                }
                let written = match revision {
                    None => self.store().create(&key, to_json(&claim)?).await,
                    Some(rev) => self.store().update(&key, to_json(&claim)?, rev).await,
                };
                match written {
                    Ok(_) => {
                        done = true;
                        break;
                    }
                    Err(kith_store::Error::AlreadyExists { .. })
                    | Err(kith_store::Error::RevisionMismatch { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !done {
                return Err(Error::Contended(key));
            }
        }
        Ok(())
    }

    /// After an issuance is durable: tie each claimed address to the
    /// certificate that carries it, so the claim lasts as long as it does.
    /// A claim someone else took meanwhile (ours had lapsed) is left alone.
    pub(crate) async fn settle_ip_claims(
        &self,
        ns: Namespace,
        name: &str,
        issued: &[Issued],
    ) -> Result<(), Error> {
        for i in issued {
            for ip in claimable(&i.record.sans) {
                let key = claim_key(ip);
                for _ in 0..ATTEMPTS {
                    let Some(e) = self.store().get(&key).await? else {
                        break;
                    };
                    let mut claim: IpClaim = from_json(&key, &e.value)?;
                    if claim.holder != ns || claim.name != name {
                        break;
                    }
                    if claim.serial.is_some() && claim.not_after >= i.record.not_after {
                        break;
                    }
                    claim.serial = Some(i.record.serial.clone());
                    claim.authority = i.record.authority.clone();
                    claim.not_after = i.record.not_after;
                    match self
                        .store()
                        .update(&key, to_json(&claim)?, e.revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(kith_store::Error::RevisionMismatch { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_filters() {
        let v4: IpAddr = "10.0.0.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("ip");
        assert_eq!(claim_key(v4), "ipclaim/0a000007");
        assert_eq!(claim_key(mapped), claim_key(v4));
        let sans = vec![
            San::Ip("127.0.0.1".parse().expect("ip")),
            San::Ip("::1".parse().expect("ip")),
            San::Ip(v4),
            San::Ip(mapped),
            San::Dns("node-1.prod.example".into()),
        ];
        assert_eq!(claimable(&sans), vec![v4]);
        assert!(allowed(v4, &["10.0.0.7".into()]));
        assert!(!allowed(v4, &["10.0.0.8".into(), "db.example".into()]));
    }
}
