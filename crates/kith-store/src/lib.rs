//! The storage contract of kith, an in-memory backend, and the suite every
//! backend must pass.
//!
//! Everything the authority keeps is a record under one key. The contract is
//! deliberately the intersection of what redb and NATS JetStream key-value
//! offer: single-key operations with a revision, compare-and-swap on that
//! revision, listing by prefix, and watching for changes. There is no
//! transaction across keys, and nothing above this crate may rely on one.
//!
//! Keys are `/`-separated segments of `[A-Za-z0-9_=-]` (no `.`, so a NATS
//! backend can map `/` to its `.` token separator losslessly). Values are
//! bounded by the backend ([`Store::limits`]); a caller with more to keep
//! splits it over several keys with [`chunked`], which works on any backend.
//!
//! Backends: [`MemStore`] here (tests, throwaway runs), the embedded redb
//! file in `kith-store-redb`, a NATS JetStream bucket shared by several
//! replicas in `kith-store-nats`. Only the binary that wires kith together names
//! a concrete backend; everything above this crate sees `dyn Store`.

use async_trait::async_trait;
use futures::stream::BoxStream;

pub mod chunked;
mod mem;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use mem::MemStore;

/// A store revision. Revisions increase with every write across the whole
/// store (like a NATS stream sequence), so a newer write always has a larger one.
pub type Revision = u64;

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its key.
    pub key: String,
    /// Its value (opaque bytes; the authority stores JSON).
    pub value: Vec<u8>,
    /// The revision of the write that produced this value.
    pub revision: Revision,
}

/// A change seen by [`Store::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchEvent {
    /// A key was written.
    Put(Entry),
    /// A key was deleted.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            Self::Put(e) => &e.key,
            Self::Delete { key, .. } => key,
        }
    }
}

/// Store errors, grouped by what a caller can do about them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `create` found the key present.
    #[error("{key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// `update` found another revision than the caller expected (someone else wrote first).
    #[error("{key} changed concurrently (expected revision {expected}, found {current:?})")]
    RevisionMismatch {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The revision found, `None` if the key is gone.
        current: Option<Revision>,
    },
    /// The key is not valid for the contract.
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: &'static str,
    },
    /// The value exceeds the backend's limit.
    #[error("value for {key} is {size} bytes, more than the limit of {max}")]
    ValueTooLarge {
        /// The key.
        key: String,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The store is held exclusively by another owner, so this one cannot
    /// use it at all (see [`Store`]): the embedded database is one file that
    /// one process opens at a time. Nothing was read or written; the text
    /// names what is held.
    #[error("the data directory is in use by another kith process ({0})")]
    Locked(String),
    /// A value split over chunks ([`chunked`]) cannot be read whole: its
    /// head is damaged, or names a chunk that is missing or data that does
    /// not match its digest, and the head did not change meanwhile.
    #[error("{key} cannot be read whole: {detail}")]
    Inconsistent {
        /// The value's key.
        key: String,
        /// What was found.
        detail: String,
    },
    /// A value split over chunks kept being replaced while it was read;
    /// nothing half-read was returned. Retry.
    #[error("{key} kept changing while it was read; retry")]
    Contended {
        /// The value's key.
        key: String,
    },
    /// A watcher fell behind and missed events; re-list and watch again.
    #[error("watch fell behind by {0} events; re-list and watch again")]
    Lagged(u64),
    /// The backend failed (I/O, corruption, connection).
    #[error("store backend failed: {0}")]
    Backend(String),
    /// The store cannot write for now (the disk is full, or its I/O fails,
    /// or a replicated backend's cluster did not answer in time). The
    /// embedded store wrote nothing; a replicated one may have stored a
    /// write whose answer was lost, so read before assuming it did not.
    /// The backend recovers by itself once the cause is gone: retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database file is damaged: it failed its integrity check, or the
    /// database failed while reading it. Nothing was changed by the call.
    #[error(
        "{path} is damaged ({detail}); stop kith and restore it from a backup of the data directory"
    )]
    Corrupt {
        /// The database file.
        path: String,
        /// What was found.
        detail: String,
    },
}

/// A convenience alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a backend accepts, from [`Store::limits`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest value, in bytes, a write accepts; a larger one is
    /// [`Error::ValueTooLarge`] and writes nothing.
    pub max_value: usize,
}

impl Limits {
    /// Limits with values of at most `max_value` bytes.
    pub const fn new(max_value: usize) -> Self {
        Self { max_value }
    }

    /// [`Error::ValueTooLarge`] if a value of `size` bytes for `key` is above
    /// these limits: a backend checks each write with this before anything else.
    pub fn check_value(&self, key: &str, size: usize) -> Result<()> {
        if size > self.max_value {
            return Err(Error::ValueTooLarge {
                key: key.to_string(),
                size,
                max: self.max_value,
            });
        }
        Ok(())
    }
}

/// The single-key, revisioned key-value store every backend implements.
///
/// Every write is durable when its future resolves `Ok`. Revisions are
/// global to the store and grow with every change (a write, or a delete
/// that removed something).
///
/// Ownership: a backend either allows many users at once (several handles,
/// several processes; compare-and-swap keeps them correct), or grants one
/// owner exclusive use, as the embedded file does. In the second case
/// opening it while another owner holds it fails with [`Error::Locked`] and
/// leaves the holder undisturbed; no operation of this trait returns
/// `Locked` on a store that was opened. Callers map it to "another kith
/// process is using this data", whatever the backend.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Entry>>;
    /// Write `key` unconditionally.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision>;
    /// Write `key` only if it is absent; [`Error::AlreadyExists`] otherwise.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision>;
    /// Write `key` only if its revision is still `revision`;
    /// [`Error::RevisionMismatch`] otherwise (also when the key is gone).
    async fn update(&self, key: &str, value: Vec<u8>, revision: Revision) -> Result<Revision>;
    /// Delete `key`; deleting an absent key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;
    /// Delete `key` only if its revision is still `revision`;
    /// [`Error::RevisionMismatch`] otherwise (also when the key is gone).
    /// A delete that races a write must use this, or it may remove what the
    /// other writer just stored.
    async fn delete_if(&self, key: &str, revision: Revision) -> Result<()>;
    /// Every entry whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>>;
    /// Changes under `prefix` committed after this call returns. Subscribe
    /// before listing to miss nothing. A watcher that falls behind gets
    /// [`Error::Lagged`] and should re-list.
    async fn watch(&self, prefix: &str) -> Result<BoxStream<'static, Result<WatchEvent>>>;
    /// The backend's limits. Constant for the life of the store; the
    /// authority reads them to decide when a record must be split.
    fn limits(&self) -> Limits;
    /// Whether writes succeed now, without doing I/O: [`Error::Unavailable`]
    /// from a write that failed for lack of space or an I/O error until the
    /// backend has recovered. Readiness checks ask this.
    fn writable(&self) -> Result<()> {
        Ok(())
    }
}

/// Check a key against the contract: 1–512 bytes, `/`-separated non-empty
/// segments of ASCII letters, digits, `-`, `_` and `=`.
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() || key.len() > 512 {
        return bad("must be 1 to 512 bytes");
    }
    if key.split('/').any(str::is_empty) {
        return bad("segments between '/' must not be empty");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'/'))
    {
        return bad("only ASCII letters, digits, '-', '_', '=' and '/' are allowed");
    }
    Ok(())
}

/// Check a listing prefix: empty, or a valid key optionally ending in `/`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix))
}
