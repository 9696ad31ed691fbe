//! The audit trail's state and cryptography, which know no `Authority`:
//! the MAC key and what each MAC covers, the stored head and key seed, the
//! per-process chain state, and how record keys read. Writing the chains is
//! `audit_chain`, reading them `audit_verify`.

use std::sync::{Arc, RwLock};

use aws_lc_rs::{hkdf, hmac};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::Error;
use crate::keys;
use crate::records::AuditRecord;
use crate::vault::random_fill;
use kith_store::Entry;

/// The HKDF info string of the audit MAC key.
pub(crate) const HKDF_INFO: &[u8] = b"kith audit chain v1";
/// Domain separation of what a record's MAC and a head's MAC cover.
const RECORD_DOMAIN: &[u8] = b"kith-audit-record-v1";
const HEAD_DOMAIN: &[u8] = b"kith-audit-head-v1";
const LEGACY_DOMAIN: &[u8] = b"kith-audit-legacy-v1";

/// Called with every record once it is durable (`kith serve --audit-log`).
pub type AuditSink = Arc<dyn Fn(&AuditRecord) + Send + Sync>;

/// The head of a writer's chain, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct HeadRecord {
    pub(crate) writer: String,
    /// The last record's sequence number.
    pub(crate) seq: u64,
    /// The last record's MAC (hex).
    pub(crate) last_mac: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) at: OffsetDateTime,
    /// HMAC over writer, seq and last MAC (hex).
    pub(crate) mac: String,
}

/// The sealed seed of the MAC key.
#[derive(Serialize, Deserialize)]
pub(crate) struct SeedRecord {
    /// The master key version that sealed it.
    pub(crate) master_version: u32,
    /// nonce ‖ ciphertext ‖ tag, hex.
    pub(crate) sealed: String,
    /// The legacy (unchained) records there were when the chains began.
    #[serde(default)]
    pub(crate) legacy: LegacySet,
}

/// What the first writer vouched for of the legacy records: nothing can
/// be added to, changed in or removed from them afterwards unnoticed.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct LegacySet {
    /// How many.
    pub(crate) count: u64,
    /// The greatest key (they sort by time): a later one is made up.
    pub(crate) last_key: String,
    /// SHA-256 over every (key, value), in key order (hex).
    pub(crate) digest: String,
    /// HMAC over the three above (hex).
    pub(crate) mac: String,
}

/// The audit MAC key. Never stored, never logged.
pub(crate) struct MacKey(hmac::Key);

impl MacKey {
    pub(crate) fn derive(seed: &[u8], cluster: &str) -> Result<Self, Error> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, cluster.as_bytes()).extract(seed);
        let okm = prk
            .expand(&[HKDF_INFO], hmac::HMAC_SHA256)
            .map_err(|_| Error::Internal("HKDF of the audit key".into()))?;
        Ok(Self(hmac::Key::from(okm)))
    }

    fn sign(&self, data: &[u8]) -> String {
        hex::encode(hmac::sign(&self.0, data).as_ref())
    }

    /// Whether `mac_hex` is the MAC of `data` (compared in constant time).
    fn verify(&self, data: &[u8], mac_hex: &str) -> bool {
        hex::decode(mac_hex).is_ok_and(|tag| hmac::verify(&self.0, data, &tag).is_ok())
    }

    pub(crate) fn record_mac(&self, r: &AuditRecord) -> String {
        self.sign(&record_content(r))
    }

    pub(crate) fn record_is_authentic(&self, r: &AuditRecord) -> bool {
        self.verify(&record_content(r), &r.mac)
    }

    pub(crate) fn head_mac(&self, writer: &str, seq: u64, last_mac: &str) -> String {
        self.sign(&head_content(writer, seq, last_mac))
    }

    pub(crate) fn head_is_authentic(&self, h: &HeadRecord) -> bool {
        self.verify(&head_content(&h.writer, h.seq, &h.last_mac), &h.mac)
    }

    pub(crate) fn legacy_mac(&self, l: &LegacySet) -> String {
        self.sign(&legacy_content(l))
    }

    pub(crate) fn legacy_is_authentic(&self, l: &LegacySet) -> bool {
        self.verify(&legacy_content(l), &l.mac)
    }
}

fn legacy_content(l: &LegacySet) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    for b in [
        LEGACY_DOMAIN,
        &l.count.to_be_bytes(),
        l.last_key.as_bytes(),
        l.digest.as_bytes(),
    ] {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// What a record's MAC covers: every field but the MAC, each length-prefixed
/// (so that no two records encode alike), independent of the JSON encoding.
fn record_content(r: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut field = |b: &[u8]| {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    };
    field(RECORD_DOMAIN);
    field(r.writer.as_bytes());
    field(&r.seq.to_be_bytes());
    field(&r.at.unix_timestamp_nanos().to_be_bytes());
    field(r.actor.as_bytes());
    field(r.action.as_bytes());
    field(r.subject.as_bytes());
    field(r.detail.as_bytes());
    field(r.outcome.as_bytes());
    match &r.request_id {
        Some(id) => {
            field(b"1");
            field(id.as_bytes());
        }
        None => field(b"0"),
    }
    field(r.prev.as_bytes());
    out
}

fn head_content(writer: &str, seq: u64, last_mac: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for b in [
        HEAD_DOMAIN,
        writer.as_bytes(),
        &seq.to_be_bytes(),
        last_mac.as_bytes(),
    ] {
        out.extend_from_slice(&(b.len() as u64).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

pub(crate) fn seed_aad(cluster: &str, master_version: u32) -> String {
    format!("kith/{cluster}/audit-key/v{master_version}")
}

/// A writer id: a DNS-label-like name (a server name qualifies).
pub(crate) fn valid_writer(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 63
        && w.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Where this process's chain stands, as far as it knows.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub(crate) seq: u64,
    pub(crate) mac: String,
    /// The stored head's revision; `None` when there is none yet.
    pub(crate) revision: Option<u64>,
}

/// What an `Authority` keeps for its chain.
pub(crate) struct AuditState {
    pub(crate) writer: String,
    pub(crate) key: tokio::sync::OnceCell<Arc<MacKey>>,
    /// One wave of appends at a time per process; the head as last
    /// written or read.
    pub(crate) head: tokio::sync::Mutex<Option<Head>>,
    /// Records waiting for the next wave, each with who waits for it.
    pub(crate) queue: std::sync::Mutex<Vec<(AuditRecord, tokio::sync::oneshot::Sender<bool>)>>,
    /// The highest (seq, MAC) this process wrote or saw: its anchor
    /// against a head rolled back in the store.
    anchor: std::sync::Mutex<Option<(u64, String)>>,
    pub(crate) sink: RwLock<Option<AuditSink>>,
}

impl AuditState {
    /// The state of a process writing as `writer` (else `local-<random>`).
    pub(crate) fn new(writer: Option<&str>) -> Self {
        let writer = match writer {
            Some(w) => w.to_string(),
            None => {
                let mut b = [0u8; 6];
                // An RNG failure leaves zeros: the chain is still safe
                // (create-if-absent), only shared with another such process.
                let _ = random_fill(&mut b);
                format!("local-{}", hex::encode(b))
            }
        };
        Self {
            writer,
            key: tokio::sync::OnceCell::new(),
            head: tokio::sync::Mutex::new(None),
            queue: std::sync::Mutex::new(Vec::new()),
            anchor: std::sync::Mutex::new(None),
            sink: RwLock::new(None),
        }
    }

    pub(crate) fn raise_anchor(&self, seq: u64, mac: &str) {
        let mut a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        if a.as_ref().is_none_or(|(s, _)| *s < seq) {
            *a = Some((seq, mac.to_string()));
        }
    }

    /// This process's anchor: its writer, and the highest (seq, MAC) it knows.
    pub(crate) fn anchor(&self) -> Option<(String, u64, String)> {
        let a = self.anchor.lock().unwrap_or_else(|p| p.into_inner());
        a.as_ref()
            .map(|(s, m)| (self.writer.clone(), *s, m.clone()))
    }
}

/// A poisoned lock still guards plain data: take it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A record key split: `Some((writer, seq))` for a chained record, `None`
/// for a legacy one (`audit/<nanos>-<random>`). `Err` for neither.
pub(crate) fn parse_record_key(key: &str) -> Result<Option<(&str, u64)>, ()> {
    let rest = key.strip_prefix(keys::AUDIT_PREFIX).ok_or(())?;
    match rest.split_once('/') {
        Some((writer, seq)) if seq.len() == 20 => {
            let seq = seq.parse::<u64>().map_err(|_| ())?;
            Ok(Some((writer, seq)))
        }
        Some(_) => Err(()),
        None => {
            let (nanos, random) = rest.split_once('-').ok_or(())?;
            if nanos.len() == 20 && nanos.bytes().all(|b| b.is_ascii_digit()) && !random.is_empty()
            {
                Ok(None)
            } else {
                Err(())
            }
        }
    }
}

/// The legacy records among `entries` (an `audit/` listing), summarised
/// for the seed record to vouch for (`mac` left empty).
pub(crate) fn legacy_set(entries: &[Entry]) -> LegacySet {
    let mut legacy: Vec<&Entry> = entries
        .iter()
        .filter(|e| matches!(parse_record_key(&e.key), Ok(None)))
        .collect();
    legacy.sort_by(|a, b| a.key.cmp(&b.key));
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for e in &legacy {
        for b in [e.key.as_bytes(), e.value.as_slice()] {
            digest.update(&(b.len() as u64).to_be_bytes());
            digest.update(b);
        }
    }
    LegacySet {
        count: legacy.len() as u64,
        last_key: legacy.last().map(|e| e.key.clone()).unwrap_or_default(),
        digest: hex::encode(digest.finish().as_ref()),
        mac: String::new(),
    }
}
