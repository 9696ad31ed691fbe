//! kith servers as certificate holders. Each replica has a name of its own
//! in the server name space (`kith-server`, `kith-server-*`; see
//! [`kith_pki::validate_server_name`]), its certificates indexed under
//! `servercert/<name>/`, so that one replica can be revoked without the
//! others.
//!
//! Revoking a server retires its name: `server/<name>` is marked first, then
//! its live certificates are revoked, and no certificate is issued under
//! that name again ([`Error::ServerNameRetired`]). A revoked replica that is
//! still running cannot renew itself past its revocation, and an issuance
//! that races the revocation sees the mark after recording and revokes what
//! it just issued. Any revoked certificate of a server name retires it too
//! (`kith revoke SERIAL` on a server's certificate).
//!
//! Stores written before servers had names of their own hold certificates of
//! the one server `kith-server`, indexed under `nodecert/kith-server/` with
//! the reserved role: they are found here too, and nothing is migrated.

use std::collections::BTreeMap;

use kith_pki::{Namespace, RevocationReason, San, Serial, DEFAULT_SERVER_NAME};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::info::find_certificate;
use crate::keys::{holder_cert_prefix, revoked_key, server_key, SERVER_CERT_PREFIX};
use crate::records::{from_json, to_json, CertRecord, NodeCertIndex};
use crate::revoke::RevokeOutcome;

/// `server/<name>`: what is known of a server name beyond its certificates.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct ServerRecord {
    name: String,
    /// When an operator revoked the server (the name is retired from then on).
    #[serde(default, with = "time::serde::rfc3339::option")]
    retired_at: Option<OffsetDateTime>,
    /// Why, as the revocation said.
    #[serde(default)]
    reason: Option<RevocationReason>,
}

/// Where a kith server stands, as an operator lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ServerState {
    /// It holds an unexpired, unrevoked certificate (it may be running).
    Live,
    /// Its certificates have all expired (a replica stopped or renamed).
    Expired,
    /// It was revoked: its name is retired.
    Revoked,
}

impl ServerState {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// One kith server as an operator lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerView {
    /// Its name (`kith-server-<host>`, `--server-name`).
    pub name: String,
    /// Where it stands now.
    pub state: ServerState,
    /// Serial of its latest certificate.
    pub serial: String,
    /// When its latest certificate was issued (its last start or renewal).
    pub issued_at: OffsetDateTime,
    /// Expiry of its latest certificate.
    pub not_after: OffsetDateTime,
    /// The names and addresses its latest certificate carries.
    pub sans: Vec<San>,
    /// Its unexpired, unrevoked certificates (one per running process,
    /// plus those of restarts not yet expired).
    pub live: usize,
}

/// One entry of a server's certificate index.
struct Indexed {
    name: String,
    serial: Serial,
    index: NodeCertIndex,
}

impl Authority {
    /// Every indexed certificate of server `name`, or of every server with
    /// `None`: `servercert/`, and the `nodecert/kith-server/` of stores
    /// older than named servers (whose records say they are a server's).
    async fn server_index(&self, name: Option<&str>) -> Result<Vec<Indexed>, Error> {
        let store = &**self.store();
        let mut out = Vec::new();
        let prefix = match name {
            Some(n) => holder_cert_prefix(Namespace::Server, n),
            None => SERVER_CERT_PREFIX.to_string(),
        };
        for e in store.list(&prefix).await? {
            let rest = &e.key[SERVER_CERT_PREFIX.len()..];
            let Some((n, serial)) = rest.split_once('/') else {
                continue;
            };
            out.push(Indexed {
                name: n.to_string(),
                serial: Serial::parse(serial)?,
                index: from_json(&e.key, &e.value)?,
            });
        }
        if name.is_none_or(|n| n == DEFAULT_SERVER_NAME) {
            let legacy = holder_cert_prefix(Namespace::Node, DEFAULT_SERVER_NAME);
            for e in store.list(&legacy).await? {
                let serial = Serial::parse(&e.key[legacy.len()..])?;
                let (cert, _) = find_certificate(store, &serial).await?;
                if cert.holder() == Namespace::Server {
                    out.push(Indexed {
                        name: DEFAULT_SERVER_NAME.to_string(),
                        serial,
                        index: from_json(&e.key, &e.value)?,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn server_record(&self, name: &str) -> Result<Option<ServerRecord>, Error> {
        let key = server_key(name);
        match self.store().get(&key).await? {
            Some(e) => Ok(Some(from_json(&key, &e.value)?)),
            None => Ok(None),
        }
    }

    async fn is_revoked(&self, i: &Indexed) -> Result<bool, Error> {
        let key = revoked_key(&i.index.authority, &i.serial.to_hex());
        Ok(self.store().get(&key).await?.is_some())
    }

    /// Whether server name `name` is retired: an operator revoked the
    /// server, or any certificate ever issued under the name is revoked.
    /// A retired name is never issued a certificate again.
    pub async fn server_retired(&self, name: &str) -> Result<bool, Error> {
        if self
            .server_record(name)
            .await?
            .is_some_and(|r| r.retired_at.is_some())
        {
            return Ok(true);
        }
        for i in self.server_index(Some(name)).await? {
            if self.is_revoked(&i).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether `server/<name>` carries the retirement mark (read after an
    /// issuance is recorded: a revocation racing it marks before it lists).
    pub(crate) async fn server_marked_retired(
        &self,
        name: &str,
    ) -> Result<Option<RevocationReason>, Error> {
        Ok(self
            .server_record(name)
            .await?
            .filter(|r| r.retired_at.is_some())
            .map(|r| r.reason.unwrap_or(RevocationReason::Unspecified)))
    }

    /// Revoke kith server `name` ([`crate::RevokeTarget::Server`]): retire
    /// the name, then revoke every unexpired certificate issued under it (a
    /// replica's, whichever process holds it). A name never issued a
    /// certificate is [`Error::UnknownServer`] and changes nothing; a name
    /// whose certificates have all expired is retired with nothing to revoke.
    pub(crate) async fn revoke_server(
        &self,
        name: &str,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<Vec<RevokeOutcome>, Error> {
        // Any label: the name space is checked where names are issued.
        kith_pki::validate_label("server name", name)?;
        if self.server_index(Some(name)).await?.is_empty() {
            return Err(Error::UnknownServer(name.to_string()));
        }
        // Mark first: an issuance racing this sees the mark after it records
        // its certificate and revokes it; one recorded before is listed here.
        self.mark_server_retired(name, reason, actor).await?;
        let now = self.now();
        let mut out = Vec::new();
        for i in self.server_index(Some(name)).await? {
            if i.index.not_after <= now {
                continue;
            }
            out.push(self.record_revocation(&i.serial, reason, actor).await?);
        }
        Ok(out)
    }

    async fn mark_server_retired(
        &self,
        name: &str,
        reason: RevocationReason,
        actor: &str,
    ) -> Result<(), Error> {
        let key = server_key(name);
        let mark = |mut r: ServerRecord| -> ServerRecord {
            r.retired_at = Some(kith_pki::second_precision(self.now()));
            r.reason = Some(reason);
            r
        };
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let write = match self.store().get(&key).await? {
                Some(e) => {
                    let r: ServerRecord = from_json(&key, &e.value)?;
                    if r.retired_at.is_some() {
                        return Ok(Attempt::Done(())); // the first retirement stands
                    }
                    self.store()
                        .update(&key, to_json(&mark(r))?, e.revision)
                        .await
                }
                None => {
                    let fresh = ServerRecord {
                        name: name.to_string(),
                        retired_at: None,
                        reason: None,
                    };
                    self.store().create(&key, to_json(&mark(fresh))?).await
                }
            };
            if cas::written(write)?.is_none() {
                return Ok(Attempt::Conflict);
            }
            self.audit(actor, "server-retire", name, &format!("reason {reason}"))
                .await?;
            Ok(Attempt::Done(()))
        })
        .await
    }

    /// Every kith server that holds or held a certificate here, in name
    /// order, as of now.
    pub async fn server_views(&self) -> Result<Vec<ServerView>, Error> {
        let now = self.now();
        let mut by_name: BTreeMap<String, Vec<Indexed>> = BTreeMap::new();
        for i in self.server_index(None).await? {
            by_name.entry(i.name.clone()).or_default().push(i);
        }
        let mut out = Vec::new();
        for (name, entries) in by_name {
            let mut live = 0;
            let mut revoked = self
                .server_record(&name)
                .await?
                .is_some_and(|r| r.retired_at.is_some());
            let mut latest: Option<CertRecord> = None;
            for i in &entries {
                let is_revoked = self.is_revoked(i).await?;
                revoked |= is_revoked;
                if !is_revoked && i.index.not_after > now {
                    live += 1;
                }
                let (cert, _) = find_certificate(&**self.store(), &i.serial).await?;
                if latest.as_ref().is_none_or(|l| cert.issued_at > l.issued_at) {
                    latest = Some(cert);
                }
            }
            let Some(latest) = latest else { continue };
            let state = if revoked {
                ServerState::Revoked
            } else if live > 0 {
                ServerState::Live
            } else {
                ServerState::Expired
            };
            out.push(ServerView {
                name,
                state,
                serial: latest.serial,
                issued_at: latest.issued_at,
                not_after: latest.not_after,
                sans: latest.sans,
                live,
            });
        }
        Ok(out)
    }
}
