//! Backups of a CA's store: every record, still sealed, in one file with a
//! manifest and checksums; and their restore into an empty store.
//!
//! The file is text, one JSON object per line: the [`Manifest`] first, then
//! one line per record (`key`, the value in base64, the value's SHA-256).
//! The manifest names the SHA-256 of everything after its own line, so a
//! truncated, reordered or edited file is refused before anything is
//! written. Values are copied as stored: CA keys and secrets stay sealed by
//! the master key, which only the passphrase opens.
//!
//! A value split over chunks (`chunk/`, see [`kith_store::chunked`]) goes
//! into the file whole, under its own key, and is split anew for the store
//! it is restored into, whose limit may differ.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use kith_store::{chunked, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::authority::Authority;
use crate::error::Error;
use crate::keys;
use crate::records::{from_json, to_json, ClusterRecord, CrlRecord};

/// What the first line of a backup says.
pub const BACKUP_FORMAT: &str = "kith-backup";

/// The version of the format this code writes and reads.
pub const BACKUP_VERSION: u32 = 1;

/// How far a restore moves the CRL numbers past the backup's highest. The
/// CA that was backed up may have signed CRLs after the backup, with
/// numbers the backup cannot know; a relying party that saw one must never
/// see the same number again on a different list, nor a lower one. At one
/// CRL a second, 2^32 numbers last 136 years, and CRL numbers (up to 20
/// octets) have room for billions of restores.
pub const RESTORE_CRL_NUMBER_GAP: u64 = 1 << 32;

/// The first line of a backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct Manifest {
    /// Always [`BACKUP_FORMAT`].
    pub format: String,
    /// [`BACKUP_VERSION`] when written by this code.
    pub version: u32,
    /// The kith version that wrote it.
    pub kith_version: String,
    /// The cluster's name.
    pub cluster: String,
    /// When the records were read.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// How many record lines follow.
    pub records: u64,
    /// The sum of the records' value lengths.
    pub value_bytes: u64,
    /// The highest CRL number in the backup (or the floor a restore set
    /// before it, if higher).
    pub max_crl_number: u64,
    /// SHA-256 (hex) of every byte after the manifest's line.
    pub sha256: String,
}

/// One record line.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    value: String,
    sha256: String,
}

/// A backup read and checked: its manifest and every record, in key order.
#[derive(Debug)]
pub struct Backup {
    /// The manifest.
    pub manifest: Manifest,
    records: Vec<(String, Vec<u8>)>,
}

impl Backup {
    /// How many records it holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The value stored under `key`, if the backup holds it.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.records
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.records[i].1.as_slice())
    }

    /// Every key, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.records.iter().map(|(k, _)| k.as_str())
    }
}

/// What a restore did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restored {
    /// Records written.
    pub records: usize,
    /// CRL records marked due, to be signed anew past the new floor.
    pub crls_due: usize,
    /// Every CRL signed from now on is numbered above this.
    pub crl_number_floor: u64,
    /// Records of the processes that served the backed-up store (replica
    /// heartbeats, leases), left out.
    pub skipped: usize,
}

/// Read every record of `store` into a backup file (its bytes), reporting
/// each record read to `progress`. The values are read from one listing
/// (one read transaction on the embedded store); a value split over
/// chunks is joined from the chunks of that listing, or read again whole if
/// a writer replaced it meanwhile (on a store without one snapshot).
pub async fn take_backup(
    store: &dyn Store,
    now: OffsetDateTime,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Vec<u8>, Error> {
    let cluster = crate::info::ClusterInfo::load(store).await?.cluster;
    let entries = store.list("").await?;
    let total = entries.len() as u64;
    let (chunks, heads): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|e| e.key.starts_with(chunked::CHUNK_PREFIX));
    let listed: BTreeMap<String, Vec<u8>> = chunks.into_iter().map(|e| (e.key, e.value)).collect();
    let mut body = Vec::new();
    let (mut records, mut value_bytes, mut max_crl_number) = (0u64, 0u64, 0u64);
    let mut done = listed.len() as u64;
    for e in heads {
        done += 1;
        progress(done, total);
        let key = e.key.clone();
        let value = match chunked::resolve_listed(&e, &listed)? {
            Some(v) => v,
            None => match chunked::resolve(store, e).await? {
                Some(v) => v.value,
                // Deleted since the listing: it is not in this backup.
                None => continue,
            },
        };
        if is_crl_key(&key) {
            let crl: CrlRecord = from_json(&key, &value)?;
            max_crl_number = max_crl_number.max(crl.number);
        } else if key == keys::CLUSTER_KEY {
            let c: ClusterRecord = from_json(&key, &value)?;
            max_crl_number = max_crl_number.max(c.crl_number_floor);
        }
        let line = Line {
            key,
            value: base64::engine::general_purpose::STANDARD.encode(&value),
            sha256: sha256_hex(&value),
        };
        body.extend_from_slice(&to_json(&line)?);
        body.push(b'\n');
        records += 1;
        value_bytes += value.len() as u64;
    }
    let manifest = Manifest {
        format: BACKUP_FORMAT.to_string(),
        version: BACKUP_VERSION,
        kith_version: env!("CARGO_PKG_VERSION").to_string(),
        cluster,
        created: now,
        records,
        value_bytes,
        max_crl_number,
        sha256: sha256_hex(&body),
    };
    let mut out = to_json(&manifest)?;
    out.push(b'\n');
    out.extend_from_slice(&body);
    Ok(out)
}

/// Read a backup file and check all of it: the manifest's format and
/// version, the digest of the whole, every line's digest, the record count,
/// and that keys are valid, sorted and unique. An error names what is wrong
/// (and the line); nothing about a damaged file is trusted.
pub fn read_backup(bytes: &[u8]) -> Result<Backup, Error> {
    let bad = |what: String| Error::Integrity(format!("backup: {what}"));
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| bad("no manifest line (is this a kith backup?)".into()))?;
    let (head, body) = (&bytes[..newline], &bytes[newline + 1..]);
    let manifest: Manifest = serde_json::from_slice(head)
        .map_err(|e| bad(format!("the first line is not a kith backup manifest: {e}")))?;
    if manifest.format != BACKUP_FORMAT {
        return Err(bad(format!(
            "format {:?} is not {BACKUP_FORMAT:?}",
            manifest.format
        )));
    }
    if manifest.version != BACKUP_VERSION {
        return Err(Error::Invalid(format!(
            "backup format version {} is not one this kith reads ({BACKUP_VERSION})",
            manifest.version
        )));
    }
    if sha256_hex(body) != manifest.sha256 {
        return Err(bad(
            "the records do not match the manifest's checksum (damaged, truncated or edited)"
                .into(),
        ));
    }
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for (n, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line_no = n + 2;
        if raw.is_empty() {
            continue;
        }
        let line: Line =
            serde_json::from_slice(raw).map_err(|e| bad(format!("line {line_no}: {e}")))?;
        kith_store::validate_key(&line.key).map_err(|e| bad(format!("line {line_no}: {e}")))?;
        let value = base64::engine::general_purpose::STANDARD
            .decode(&line.value)
            .map_err(|e| bad(format!("line {line_no} ({}): {e}", line.key)))?;
        if sha256_hex(&value) != line.sha256 {
            return Err(bad(format!(
                "line {line_no} ({}): the value does not match its checksum",
                line.key
            )));
        }
        if let Some((last, _)) = records.last() {
            if *last >= line.key {
                return Err(bad(format!(
                    "line {line_no} ({}): keys out of order or repeated",
                    line.key
                )));
            }
        }
        records.push((line.key, value));
    }
    if records.len() as u64 != manifest.records {
        return Err(bad(format!(
            "{} records where the manifest names {}",
            records.len(),
            manifest.records
        )));
    }
    // What the restore will rewrite is read now, so that a record it could
    // not rewrite is refused before anything is written.
    let mut max_crl_number = 0;
    let mut cluster = None;
    for (key, value) in &records {
        if is_crl_key(key) {
            let crl: CrlRecord = from_json(key, value).map_err(|e| bad(e.to_string()))?;
            max_crl_number = max_crl_number.max(crl.number);
        } else if key == keys::CLUSTER_KEY {
            let c: ClusterRecord = from_json(key, value).map_err(|e| bad(e.to_string()))?;
            max_crl_number = max_crl_number.max(c.crl_number_floor);
            cluster = Some(c.cluster);
        }
    }
    let Some(cluster) = cluster else {
        return Err(bad("no cluster record: not a backup of a kith CA".into()));
    };
    if cluster != manifest.cluster || max_crl_number != manifest.max_crl_number {
        return Err(bad(format!(
            "the manifest (cluster {:?}, highest CRL number {}) does not match the records (cluster {cluster:?}, {max_crl_number})",
            manifest.cluster, manifest.max_crl_number
        )));
    }
    if max_crl_number.checked_add(RESTORE_CRL_NUMBER_GAP).is_none() {
        return Err(bad(format!(
            "CRL number {max_crl_number} leaves no room for a restore"
        )));
    }
    Ok(Backup { manifest, records })
}

/// Write every record of `backup` into `store`, which must hold no record.
///
/// - Every value is prepared (and checked against the store's limit)
///   before the first write, so a record that cannot be restored writes
///   nothing.
/// - The cluster record goes last: until it is there, the store holds no
///   CA that a server would open, so an interrupted restore cannot be
///   served (it fails `not-initialized`, and a new restore asks for an
///   empty store).
/// - The cluster record's CRL number floor moves [`RESTORE_CRL_NUMBER_GAP`]
///   past the backup's highest number: every CRL signed from then on, by
///   any issuer, with or without a record in the backup, is numbered past
///   anything the backed-up CA may have published since. Each CRL record is
///   marked due (its next CRL is signed by the first process that serves
///   it) and covers revision 0, as the restored store numbers its
///   revisions anew (see [`crate::forget_crl_coverage`]).
/// - Replica heartbeats and leases of the processes that served the
///   backed-up store are left out: they belong to those processes.
pub async fn restore_backup(
    store: &dyn Store,
    backup: &Backup,
    now: SystemTime,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Restored, Error> {
    let present = store.list("").await?.len();
    if present > 0 {
        // "a cluster (N records in the target store) is already initialised here"
        return Err(Error::AlreadyInitialized(format!(
            "{present} records in the target store"
        )));
    }
    let floor = backup
        .manifest
        .max_crl_number
        .checked_add(RESTORE_CRL_NUMBER_GAP)
        .ok_or_else(|| Error::Invalid("the CRL numbers leave no room for a restore".into()))?;
    let limits = store.limits();
    let mut out = Restored {
        crl_number_floor: floor,
        ..Restored::default()
    };
    let mut prepared: Vec<(&str, Vec<u8>, bool)> = Vec::with_capacity(backup.records.len());
    let mut cluster = None;
    for (key, value) in &backup.records {
        if key.starts_with(keys::REPLICA_PREFIX) || key.starts_with(keys::LEASE_PREFIX) {
            out.skipped += 1;
            continue;
        }
        let value = if is_crl_key(key) {
            let mut crl: CrlRecord = from_json(key, value)?;
            crl.covers = 0;
            // Due now: crl_is_fresh sees a validity other than the one in
            // force, so the first process asked signs the next number.
            crl.next_update = crl.this_update;
            out.crls_due += 1;
            to_json(&crl)?
        } else if key == keys::CLUSTER_KEY {
            let mut c: ClusterRecord = from_json(key, value)?;
            c.crl_number_floor = floor;
            cluster = Some(to_json(&c)?);
            continue;
        } else {
            value.clone()
        };
        // Only the values the authority reads through `chunked` may be
        // split; any other must fit the store as it is.
        let split = keys::SPLIT_PREFIXES.iter().any(|p| key.starts_with(p));
        if !split {
            limits.check_value(key, value.len())?;
        }
        prepared.push((key.as_str(), value, split));
    }
    let cluster = cluster.ok_or_else(|| Error::Integrity("backup: no cluster record".into()))?;
    limits.check_value(keys::CLUSTER_KEY, cluster.len())?;
    let total = prepared.len() as u64 + 1;
    for (n, (key, value, split)) in prepared.into_iter().enumerate() {
        progress(n as u64 + 1, total);
        if split {
            chunked::create(store, key, &value, now).await?;
        } else {
            store.create(key, value).await?;
        }
        out.records += 1;
    }
    store.create(keys::CLUSTER_KEY, cluster).await?;
    out.records += 1;
    progress(total, total);
    Ok(out)
}

impl Authority {
    /// A backup of this CA's whole store ([`take_backup`]), for `actor`.
    /// The audit record of the backup is written first, so that the backup
    /// holds it (a restored trail shows which backup it came from); a
    /// backup that then fails is recorded too.
    pub async fn backup(&self, actor: &str) -> Result<Vec<u8>, Error> {
        self.audit(actor, "backup", "store", "").await?;
        let result = take_backup(&**self.store(), self.now(), &|_, _| {}).await;
        if let Err(e) = &result {
            self.audit(actor, "backup-failed", "store", &e.to_string())
                .await?;
        }
        result
    }
}

fn is_crl_key(key: &str) -> bool {
    key.starts_with(keys::CRL_PREFIX) || key.starts_with(keys::ROOT_CRL_PREFIX)
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(kith_pki::sha256(data))
}
