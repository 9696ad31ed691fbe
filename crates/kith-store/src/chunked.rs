//! Values larger than one store value, split over several keys.
//!
//! A backend bounds its values ([`Store::limits`]); a CRL or a secret can be
//! larger. This module stores such a value as chunks under [`CHUNK_PREFIX`]
//! (`chunk/<id>/<n>`, a prefix no record listing covers), written first,
//! then a small head under the value's own key that names them, with the
//! total length and a SHA-256 digest. The head is written by the caller's
//! usual create or compare-and-swap, so a reader sees the old value or the
//! new one, never half of one. A value that fits is stored inline, as the
//! bare bytes: values written before this module existed read unchanged.
//!
//! - A head is `MAGIC` then `len=`, `sha256=`, `id=`, `chunks=` lines. An
//!   inline value never starts with `MAGIC` (one that would is chunked), so
//!   the two cannot be confused.
//! - Chunks are created once under a fresh random id and never rewritten.
//!   Whoever replaces or deletes a head removes its chunks afterwards (best
//!   effort); a writer whose compare-and-swap fails removes the chunks it
//!   just wrote.
//! - A reader that finds a chunk missing (a newer head replaced the one it
//!   read, and its chunks were removed) reads the head again, a bounded
//!   number of times; a head that did not change but whose chunks are
//!   missing or do not match its digest is [`Error::Inconsistent`].
//! - A writer killed between its chunks and its head leaves chunks no head
//!   names. The id starts with the Unix time of the write, so [`sweep`]
//!   removes chunks that no head names and that are older than a grace
//!   period far longer than any write takes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;

use crate::{Entry, Error, Result, Revision, Store};

/// The prefix of every chunk key.
pub const CHUNK_PREFIX: &str = "chunk/";

/// How long chunks that no head names are left alone by [`sweep`]: a
/// writer writes its head within moments of its chunks, never an hour later.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

/// The first bytes of a head. A NUL first byte: no JSON record starts so.
const MAGIC: &[u8] = b"\0kith-chunked-v1\n";

/// Re-reads of a head whose chunks vanished while it was read.
const READ_ATTEMPTS: usize = 16;

/// The most chunks one value is split into (16 GiB at a 256 KiB limit): a
/// damaged head cannot make a reader list billions of keys.
pub const MAX_CHUNKS: usize = 1 << 16;

/// What is stored under a value's key: enough to replace or delete it
/// (and with it the chunks it names) without reading the chunks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The value's key.
    pub key: String,
    /// The revision of the head (or inline value) under `key`.
    pub revision: Revision,
    /// The chunk keys it names; empty for an inline value.
    chunks: Vec<String>,
}

impl Head {
    /// Whether the value is split over chunks (rather than stored inline).
    pub fn is_chunked(&self) -> bool {
        !self.chunks.is_empty()
    }

    /// The head of a stored entry, without reading its chunks: to replace
    /// or delete it. A damaged head names no chunks here; replacing or
    /// deleting it leaves its chunks to [`sweep`].
    pub fn of(entry: &Entry) -> Self {
        let chunks = match HeadRecord::parse(&entry.key, &entry.value) {
            Ok(Some(h)) => h.chunk_keys(),
            Ok(None) | Err(_) => Vec::new(),
        };
        Self {
            key: entry.key.clone(),
            revision: entry.revision,
            chunks,
        }
    }
}

/// A value read whole, with the head it was read through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// What is stored under the key.
    pub head: Head,
    /// The whole value.
    pub value: Vec<u8>,
}

/// A parsed head record.
struct HeadRecord {
    len: usize,
    sha256: String,
    id: String,
    count: usize,
}

impl HeadRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(
            format!(
                "len={}\nsha256={}\nid={}\nchunks={}\n",
                self.len, self.sha256, self.id, self.count
            )
            .as_bytes(),
        );
        out
    }

    /// `None` for an inline value; an error for a damaged head.
    fn parse(key: &str, stored: &[u8]) -> Result<Option<Self>> {
        let Some(body) = stored.strip_prefix(MAGIC) else {
            return Ok(None);
        };
        let bad = |what: &str| Error::Inconsistent {
            key: key.to_string(),
            detail: format!("damaged chunk head ({what})"),
        };
        let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let mut fields = BTreeMap::new();
        for line in text.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("a line without '='"))?;
            if fields.insert(k, v).is_some() {
                return Err(bad("a repeated field"));
            }
        }
        let field = |name: &str| fields.get(name).copied().ok_or_else(|| bad(name));
        let number = |name: &str| -> Result<usize> { field(name)?.parse().map_err(|_| bad(name)) };
        let len = number("len")?;
        let count = number("chunks")?;
        let sha256 = field("sha256")?.to_string();
        let id = field("id")?.to_string();
        if fields.len() != 4
            || sha256.len() != 64
            || !sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            || id_time(&id).is_none()
            || count == 0
            || count > MAX_CHUNKS
            || count > len.max(1)
        {
            return Err(bad("a malformed field"));
        }
        Ok(Some(Self {
            len,
            sha256,
            id,
            count,
        }))
    }

    fn chunk_keys(&self) -> Vec<String> {
        (0..self.count).map(|n| chunk_key(&self.id, n)).collect()
    }
}

fn chunk_key(id: &str, n: usize) -> String {
    format!("{CHUNK_PREFIX}{id}/{n:06}")
}

/// An id is `<unix seconds>-<32 hex digits>`; its time, if it is one.
fn id_time(id: &str) -> Option<u64> {
    let (secs, random) = id.split_once('-')?;
    if random.len() != 32 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    secs.parse().ok()
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_id(now: SystemTime) -> Result<String> {
    let mut random = [0u8; 16];
    aws_lc_rs::rand::fill(&mut random)
        .map_err(|_| Error::Backend("the system random generator failed".into()))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{hex}", unix_secs(now)))
}

/// What goes under the value's key, with the chunks already written for it.
struct Staged {
    stored: Vec<u8>,
    chunks: Vec<String>,
}

/// Write `value`'s chunks if it does not fit one store value, and return
/// what to store under its key. On failure nothing is left behind.
async fn stage(store: &dyn Store, key: &str, value: &[u8], now: SystemTime) -> Result<Staged> {
    let max = store.limits().max_value;
    if value.len() <= max && !value.starts_with(MAGIC) {
        return Ok(Staged {
            stored: value.to_vec(),
            chunks: Vec::new(),
        });
    }
    let head = HeadRecord {
        len: value.len(),
        sha256: sha256_hex(value),
        id: new_id(now)?,
        count: value.len().div_ceil(max.max(1)).max(1),
    };
    let stored = head.encode();
    // A limit too small for even the head, or a value too large for
    // MAX_CHUNKS: refuse before writing anything.
    store.limits().check_value(key, stored.len())?;
    if head.count > MAX_CHUNKS {
        return Err(Error::ValueTooLarge {
            key: key.to_string(),
            size: value.len(),
            max: MAX_CHUNKS.saturating_mul(max),
        });
    }
    let mut written = Vec::with_capacity(head.count);
    for (n, part) in value.chunks(max.max(1)).enumerate() {
        let ck = chunk_key(&head.id, n);
        // Create-only: a fresh id never collides, and a key planted by
        // someone else is refused rather than overwritten.
        if let Err(e) = store.create(&ck, part.to_vec()).await {
            release(store, &written).await;
            return Err(e);
        }
        written.push(ck);
    }
    Ok(Staged {
        stored,
        chunks: written,
    })
}

/// Delete chunks nobody names any more. Best effort: what fails here is an
/// orphan for [`sweep`], and the caller's own write has already succeeded.
async fn release(store: &dyn Store, chunks: &[String]) {
    for ck in chunks {
        let _ = store.delete(ck).await;
    }
}

/// Store `value` under `key` only if the key is absent (chunks first).
/// On any failure, [`Error::AlreadyExists`] included, no chunk is left.
pub async fn create(store: &dyn Store, key: &str, value: &[u8], now: SystemTime) -> Result<Head> {
    let staged = stage(store, key, value, now).await?;
    match store.create(key, staged.stored).await {
        Ok(revision) => Ok(Head {
            key: key.to_string(),
            revision,
            chunks: staged.chunks,
        }),
        Err(e) => {
            release(store, &staged.chunks).await;
            Err(e)
        }
    }
}

/// Replace the value whose head is `old` only if its revision is still
/// `old.revision` (chunks first); after the switch the old chunks are
/// removed. On any failure, [`Error::RevisionMismatch`] included, the
/// chunks written for it are removed and the old value is untouched.
pub async fn update(store: &dyn Store, old: &Head, value: &[u8], now: SystemTime) -> Result<Head> {
    let staged = stage(store, &old.key, value, now).await?;
    match store.update(&old.key, staged.stored, old.revision).await {
        Ok(revision) => {
            release(store, &old.chunks).await;
            Ok(Head {
                key: old.key.clone(),
                revision,
                chunks: staged.chunks,
            })
        }
        Err(e) => {
            release(store, &staged.chunks).await;
            Err(e)
        }
    }
}

/// Delete the value whose head is `head` only if its revision is still
/// `head.revision`; then its chunks.
pub async fn delete_if(store: &dyn Store, head: &Head) -> Result<()> {
    store.delete_if(&head.key, head.revision).await?;
    release(store, &head.chunks).await;
    Ok(())
}

/// The whole value under `key`, if any.
pub async fn get(store: &dyn Store, key: &str) -> Result<Option<Value>> {
    match store.get(key).await? {
        Some(entry) => resolve(store, entry).await,
        None => Ok(None),
    }
}

/// The whole value of a stored entry (one from [`Store::list`], say):
/// the entry itself if inline, else its chunks joined and checked. `None`
/// if the key was deleted while its chunks were read.
pub async fn resolve(store: &dyn Store, entry: Entry) -> Result<Option<Value>> {
    let mut entry = entry;
    for _attempt in 0..READ_ATTEMPTS {
        let Some(head) = HeadRecord::parse(&entry.key, &entry.value)? else {
            let head = Head {
                key: entry.key,
                revision: entry.revision,
                chunks: Vec::new(),
            };
            return Ok(Some(Value {
                head,
                value: entry.value,
            }));
        };
        let problem = match read_chunks(store, &entry.key, &head).await? {
            Ok(value) => {
                return Ok(Some(Value {
                    head: Head {
                        key: entry.key,
                        revision: entry.revision,
                        chunks: head.chunk_keys(),
                    },
                    value,
                }))
            }
            Err(problem) => problem,
        };
        // Replaced (or deleted) while we read it: read the new head.
        match store.get(&entry.key).await? {
            None => return Ok(None),
            Some(again) if again.revision == entry.revision => {
                return Err(Error::Inconsistent {
                    key: entry.key,
                    detail: problem,
                })
            }
            Some(again) => entry = again,
        }
    }
    Err(Error::Contended { key: entry.key })
}

/// The whole value of `entry` from the chunks listed beside it (the same
/// [`Store::list`], so one snapshot where the backend lists in one read
/// transaction): the entry itself if inline, its chunks joined if every
/// one is in `listed` and they match the head's length and digest; `None`
/// when they are not all there or do not match (read it with [`resolve`]
/// instead). A damaged head is an error.
pub fn resolve_listed(
    entry: &Entry,
    listed: &BTreeMap<String, Vec<u8>>,
) -> Result<Option<Vec<u8>>> {
    let Some(head) = HeadRecord::parse(&entry.key, &entry.value)? else {
        return Ok(Some(entry.value.clone()));
    };
    let mut value = Vec::with_capacity(head.len.min(1 << 24));
    for ck in head.chunk_keys() {
        let Some(part) = listed.get(&ck) else {
            return Ok(None);
        };
        if value.len() + part.len() > head.len {
            return Ok(None);
        }
        value.extend_from_slice(part);
    }
    if value.len() != head.len || sha256_hex(&value) != head.sha256 {
        return Ok(None);
    }
    Ok(Some(value))
}

/// The value a head names, or why not (a missing or wrong chunk).
async fn read_chunks(
    store: &dyn Store,
    key: &str,
    head: &HeadRecord,
) -> Result<std::result::Result<Vec<u8>, String>> {
    let max = store.limits().max_value;
    // The head's length is not trusted for an allocation: a damaged head
    // could name a terabyte (an abort, not an error). Reserve one chunk and
    // grow with what the chunks hold; `len` bounds the total below.
    let mut value = Vec::with_capacity(head.len.min(max));
    for ck in head.chunk_keys() {
        let Some(part) = store.get(&ck).await? else {
            return Ok(Err(format!("chunk {ck} is missing")));
        };
        if value.len() + part.value.len() > head.len {
            return Ok(Err(format!(
                "chunks are longer than the {} bytes named",
                head.len
            )));
        }
        value.extend_from_slice(&part.value);
    }
    if value.len() != head.len || sha256_hex(&value) != head.sha256 {
        return Ok(Err(format!(
            "the chunks of {key} do not match the length and digest its head names"
        )));
    }
    Ok(Ok(value))
}

/// Remove chunks that no head under `head_prefixes` names and that were
/// written more than `grace` before `now` (a writer killed between its
/// chunks and its head, or a release that failed). Returns how many chunk
/// keys were removed. Keys under [`CHUNK_PREFIX`] that are not chunks of
/// this module are left alone.
pub async fn sweep(
    store: &dyn Store,
    head_prefixes: &[&str],
    now: SystemTime,
    grace: Duration,
) -> Result<usize> {
    // Heads first: a head written after this listing names chunks written
    // just before it, which the grace keeps.
    let mut named = BTreeSet::new();
    for prefix in head_prefixes {
        for e in store.list(prefix).await? {
            // A damaged head is the reader's error to report, not ours.
            if let Ok(Some(h)) = HeadRecord::parse(&e.key, &e.value) {
                named.insert(h.id);
            }
        }
    }
    let cutoff = unix_secs(now).saturating_sub(grace.as_secs());
    let mut removed = 0;
    for e in store.list(CHUNK_PREFIX).await? {
        let Some(id) = e
            .key
            .strip_prefix(CHUNK_PREFIX)
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        let Some(written) = id_time(id) else {
            continue;
        };
        if written < cutoff && !named.contains(id) {
            match store.delete_if(&e.key, e.revision).await {
                Ok(()) => removed += 1,
                Err(Error::RevisionMismatch { .. }) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(removed)
}
