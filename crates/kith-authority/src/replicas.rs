//! The replica registry: every `kith serve` process sharing a store says
//! where it is and that it is alive, so that nodes learn every replica and
//! fail over between them.
//!
//! `replica/<server name>` holds the replica's advertise URL, its kith
//! version, when it started and its last heartbeat (the injected clock's
//! time). A replica registers at start ([`Authority::register_replica`]),
//! heartbeats every [`HEARTBEAT_PERIOD`] ([`Authority::heartbeat_replica`])
//! and, on a clean shutdown, deletes its record at the revision it last
//! wrote ([`Authority::unregister_replica`]), so a successor that already
//! took the name over keeps its record. A replica is live while its last
//! heartbeat is at most [`LIVE_PERIODS`] periods old: one killed without
//! cleanup drops out of [`Authority::live_replicas`] after that window.
//!
//! Two processes with one `--server-name` are an operator error: each write
//! is a compare-and-swap on the revision this process last wrote, so a
//! record written by someone else is noticed, logged as a warning, and
//! taken over (the name can hold one record only), never silently.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::authority::Authority;
use crate::cas::written;
use crate::error::Error;
use crate::keys::{replica_key, REPLICA_PREFIX};
use crate::records::{from_json, to_json};

/// How often a replica writes its heartbeat.
pub const HEARTBEAT_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);
/// A replica is live while its last heartbeat is at most this many periods old.
pub const LIVE_PERIODS: u32 = 3;

/// The liveness window: [`LIVE_PERIODS`] × [`HEARTBEAT_PERIOD`].
fn live_window() -> time::Duration {
    time::Duration::try_from(HEARTBEAT_PERIOD * LIVE_PERIODS)
        .expect("a few seconds fit a time::Duration")
}

/// `replica/<name>`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct ReplicaRecord {
    name: String,
    advertise: String,
    version: String,
    #[serde(with = "time::serde::rfc3339")]
    started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    heartbeat: OffsetDateTime,
}

/// A replica as the registry shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaView {
    /// Its server name (`--server-name`).
    pub name: String,
    /// Where nodes reach it (`https://host:port`).
    pub advertise: String,
    /// The kith version it runs.
    pub version: String,
    /// When it registered.
    pub started_at: OffsetDateTime,
    /// Its last heartbeat.
    pub heartbeat: OffsetDateTime,
    /// Whether that heartbeat is within the liveness window.
    pub live: bool,
}

/// What a registered replica keeps to heartbeat and unregister: its record
/// and the revision it last wrote.
#[derive(Debug)]
pub struct Registration {
    record: ReplicaRecord,
    revision: std::sync::Mutex<kith_store::Revision>,
}

impl Registration {
    /// The server name registered.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    fn revision(&self) -> kith_store::Revision {
        *self.revision.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_revision(&self, r: kith_store::Revision) {
        *self.revision.lock().unwrap_or_else(|p| p.into_inner()) = r;
    }
}

impl Authority {
    /// Register this process as replica `name`, reachable at `advertise`,
    /// running `version`. A live record of another process under the same
    /// name is taken over with a warning (two processes with one server
    /// name are an operator error); a stale one silently.
    pub async fn register_replica(
        &self,
        name: &str,
        advertise: &str,
        version: &str,
    ) -> Result<Registration, Error> {
        kith_pki::validate_server_name(name)?;
        let now = self.now();
        let record = ReplicaRecord {
            name: name.to_string(),
            advertise: advertise.to_string(),
            version: version.to_string(),
            started_at: now,
            heartbeat: now,
        };
        let reg = Registration {
            record,
            revision: std::sync::Mutex::new(0),
        };
        self.write_registration(&reg, reg.record.heartbeat).await?;
        Ok(reg)
    }

    /// Write a new heartbeat for `reg` (at the injected clock's time).
    pub async fn heartbeat_replica(&self, reg: &Registration) -> Result<(), Error> {
        let now = self.now();
        self.write_registration(reg, now).await
    }

    /// Remove `reg`'s record, only if it is still the one this process
    /// wrote (a successor under the same name keeps its own).
    pub async fn unregister_replica(&self, reg: &Registration) -> Result<(), Error> {
        let key = replica_key(reg.name());
        match self.store().delete_if(&key, reg.revision()).await {
            Ok(()) | Err(kith_store::Error::RevisionMismatch { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every registered replica, live or not, by name.
    pub async fn replicas(&self) -> Result<Vec<ReplicaView>, Error> {
        let now = self.now();
        let window = live_window();
        let mut out = Vec::new();
        for e in self.store().list(REPLICA_PREFIX).await? {
            // One unreadable record must not hide the others.
            let r: ReplicaRecord = match from_json(&e.key, &e.value) {
                Ok(r) => r,
                Err(err) => {
                    tracing::warn!(key = %e.key, error = %err, "skipping an unreadable replica record");
                    continue;
                }
            };
            out.push(ReplicaView {
                live: now - r.heartbeat <= window,
                name: r.name,
                advertise: r.advertise,
                version: r.version,
                started_at: r.started_at,
                heartbeat: r.heartbeat,
            });
        }
        Ok(out)
    }

    /// Changes to any replica record from now on (a replica registering,
    /// heartbeating or leaving), for a server that keeps the live list.
    pub async fn replica_changes(
        &self,
    ) -> Result<
        futures::stream::BoxStream<'static, kith_store::Result<kith_store::WatchEvent>>,
        Error,
    > {
        Ok(self.store().watch(REPLICA_PREFIX).await?)
    }

    /// The replicas whose last heartbeat is within the liveness window.
    pub async fn live_replicas(&self) -> Result<Vec<ReplicaView>, Error> {
        let mut all = self.replicas().await?;
        all.retain(|r| r.live);
        Ok(all)
    }

    /// Write `reg`'s record with heartbeat `at`, by compare-and-swap on the
    /// revision this process last wrote (0: not written yet). A record found
    /// that this process did not write is reported and replaced.
    async fn write_registration(
        &self,
        reg: &Registration,
        at: OffsetDateTime,
    ) -> Result<(), Error> {
        let key = replica_key(reg.name());
        let mut record = reg.record.clone();
        record.heartbeat = at;
        let bytes = to_json(&record)?;
        let mine = reg.revision();
        if mine != 0 {
            if let Some(rev) = written(self.store().update(&key, bytes.clone(), mine).await)? {
                reg.set_revision(rev);
                return Ok(());
            }
        }
        // Not written yet, or someone else wrote (or removed) the record.
        for _ in 0..crate::cas::ATTEMPTS {
            let rev = match self.store().get(&key).await? {
                None => written(self.store().create(&key, bytes.clone()).await)?,
                Some(found) => {
                    if let Ok(other) = from_json::<ReplicaRecord>(&found.key, &found.value) {
                        if other.started_at != reg.record.started_at
                            && self.now() - other.heartbeat <= live_window()
                        {
                            tracing::warn!(
                                replica = %reg.name(),
                                other = %other.advertise,
                                "another live kith server registered under this server name: \
                                 each replica needs its own --server-name; taking the record over"
                            );
                        }
                    }
                    written(
                        self.store()
                            .update(&key, bytes.clone(), found.revision)
                            .await,
                    )?
                }
            };
            if let Some(rev) = rev {
                reg.set_revision(rev);
                return Ok(());
            }
        }
        Err(Error::Contended(key))
    }
}
