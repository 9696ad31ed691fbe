use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::guard::guarded;
use crate::{validate_key, validate_prefix, Entry, Error, Result, Revision, Store, WatchEvent};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// Largest value the embedded backend accepts (the CRL of a big cluster fits easily).
pub const MAX_VALUE: usize = 16 * 1024 * 1024;
/// Most writes committed by one transaction (one fsync).
const MAX_BATCH: usize = 4096;

/// The embedded backend: one redb file in the data directory.
///
/// Writes from concurrent callers are group-committed by one writer thread:
/// it takes every write waiting, applies each (checking its own condition;
/// a failed compare-and-swap fails only that write), commits once (one
/// fsync), and only then answers each caller and publishes watch events.
/// Reads run on tokio's blocking pool.
///
/// The file is checked (every page's checksum) when it is opened, and a
/// failure of the database on a damaged file, even a panic inside it, is
/// [`Error::Corrupt`] naming the file, never a crash.
pub struct RedbStore {
    db: Arc<Database>,
    /// The file, as shown in errors.
    path: Arc<str>,
    writer: Option<mpsc::Sender<Op>>,
    thread: Option<JoinHandle<()>>,
    events: broadcast::Sender<WatchEvent>,
    /// Held by `watch` while subscribing and by the writer from deciding
    /// whether anyone watches until it has published, so no watcher can
    /// subscribe in between and miss a commit.
    publishing: Arc<Mutex<()>>,
}

enum OpKind {
    Put,
    Create,
    Update(Revision),
    Delete,
    DeleteIf(Revision),
}

struct Op {
    kind: OpKind,
    key: String,
    value: Vec<u8>,
    reply: oneshot::Sender<Result<Revision>>,
}

impl RedbStore {
    /// Open (creating if needed) the database file at `path`. Fails with
    /// [`Error::Locked`] if another process has it open, and with
    /// [`Error::Corrupt`] if the file fails its integrity check.
    pub fn open(path: &Path) -> Result<Self> {
        let shown: Arc<str> = path.display().to_string().into();
        let db = guarded(&shown, || open_checked(path))?;
        let db = Arc::new(db);
        let (events, _) = broadcast::channel(4096);
        let publishing = Arc::new(Mutex::new(()));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let db = db.clone();
            let events = events.clone();
            let publishing = publishing.clone();
            let path = shown.clone();
            std::thread::Builder::new()
                .name("kith-store-writer".into())
                .spawn(move || writer_loop(&db, &path, &rx, &events, &publishing))
                .map_err(|e| Error::Backend(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Self {
            db,
            path: shown,
            writer: Some(tx),
            thread: Some(thread),
            events,
            publishing,
        })
    }

    async fn write(&self, kind: OpKind, key: &str, value: Vec<u8>) -> Result<Revision> {
        validate_key(key)?;
        if value.len() > MAX_VALUE {
            return Err(Error::ValueTooLarge {
                key: key.to_string(),
                size: value.len(),
                max: MAX_VALUE,
            });
        }
        let (reply, rx) = oneshot::channel();
        let op = Op {
            kind,
            key: key.to_string(),
            value,
            reply,
        };
        self.writer
            .as_ref()
            .and_then(|w| w.send(op).ok())
            .ok_or_else(|| Error::Backend("the store is closed".into()))?;
        rx.await
            .map_err(|_| Error::Backend("the writer thread stopped".into()))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        // A read is a few microseconds of page-cache work: on a multi-thread
        // runtime run it in place (tokio moves this worker's other tasks
        // away meanwhile) instead of paying two thread hand-offs for it.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                return tokio::task::block_in_place(|| guarded(&self.path, || f(&self.db)));
            }
        }
        let (db, path) = (self.db.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || guarded(&path, || f(&db)))
            .await
            .map_err(|e| Error::Backend(format!("read task failed: {e}")))?
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Close the queue, let the writer finish what it has, and release the file.
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A redb failure as a store error: corruption is [`Error::Corrupt`] (its
/// path is filled in by [`guarded`]), anything else is [`Error::Backend`].
fn backend(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Corrupted(detail) => Error::Corrupt {
            path: String::new(),
            detail,
        },
        // Not a database at all, or lengths in it that point past its end.
        redb::Error::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Error::Corrupt {
                path: String::new(),
                detail: io.to_string(),
            }
        }
        other => Error::Backend(other.to_string()),
    }
}

/// Open the file, recovering it if kith stopped without closing it, then
/// verify every page (redb's checksums): a damaged file is refused here
/// rather than failing, or panicking, on the first read that meets it.
fn open_checked(path: &Path) -> Result<Database> {
    let mut db = Database::builder()
        .set_repair_callback(|session| {
            // Called as the repair progresses: say it once.
            if session.progress() == 0.0 {
                tracing::warn!("the database was not closed cleanly; recovering its last commit");
            }
        })
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked(path.display().to_string()),
            other => match backend(other) {
                Error::Backend(m) => Error::Backend(format!("cannot open {}: {m}", path.display())),
                e => e,
            },
        })?;
    match db.check_integrity().map_err(backend)? {
        true => {}
        // redb found a damaged commit and rolled the file back to the last
        // intact one: acknowledged writes may be gone, so say so once, loudly.
        false => {
            return Err(Error::Corrupt {
                path: String::new(),
                detail: "it failed its integrity check and the database rolled it back to its \
                         last intact commit, so the latest writes (revocations, certificates, \
                         token uses) may be missing; compare it with a backup before using it"
                    .into(),
            })
        }
    }
    // Create the tables so that readers never see them missing.
    let txn = db.begin_write().map_err(backend)?;
    {
        txn.open_table(KV).map_err(backend)?;
        txn.open_table(META).map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    Ok(db)
}

fn encode(revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<Entry> {
    Ok(Entry {
        revision: revision_of(key, raw)?,
        key: key.to_string(),
        value: raw[8..].to_vec(),
    })
}

fn writer_loop(
    db: &Database,
    path: &str,
    rx: &mpsc::Receiver<Op>,
    events: &broadcast::Sender<WatchEvent>,
    publishing: &Mutex<()>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let guard = publishing.lock().unwrap_or_else(|p| p.into_inner());
        let watching = events.receiver_count() > 0;
        match guarded(path, || apply(db, &mut batch, watching)) {
            Ok((outcomes, published)) => {
                for ev in published {
                    // No receivers is fine: the last watcher may have left.
                    let _ = events.send(ev);
                }
                drop(guard);
                for (op, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = op.reply.send(outcome);
                }
            }
            Err(e) => {
                drop(guard);
                tracing::error!(error = %e, "store commit failed");
                for op in batch {
                    let each = match &e {
                        Error::Corrupt { path, detail } => Error::Corrupt {
                            path: path.clone(),
                            detail: detail.clone(),
                        },
                        other => Error::Backend(other.to_string()),
                    };
                    let _ = op.reply.send(Err(each));
                }
            }
        }
    }
}

type Applied = (Vec<Result<Revision>>, Vec<WatchEvent>);

/// The revision stored in the first 8 bytes of a raw value, without copying the rest.
fn revision_of(key: &str, raw: &[u8]) -> Result<Revision> {
    raw.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt {
            path: String::new(),
            detail: format!("record {key} is shorter than its revision"),
        })
}

/// Apply a batch in one transaction and commit it (one fsync). Watch events
/// are built only when someone is watching: they copy every value.
fn apply(db: &Database, batch: &mut [Op], watching: bool) -> Result<Applied> {
    let txn = db.begin_write().map_err(backend)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut published = Vec::new();
    {
        let mut kv = txn.open_table(KV).map_err(backend)?;
        let mut meta = txn.open_table(META).map_err(backend)?;
        let mut revision = meta
            .get(REVISION)
            .map_err(backend)?
            .map(|g| g.value())
            .unwrap_or(0);
        for op in batch.iter_mut() {
            let key = op.key.as_str();
            if let OpKind::Update(expected) | OpKind::DeleteIf(expected) = op.kind {
                let current = kv
                    .get(key)
                    .map_err(backend)?
                    .map(|g| revision_of(key, g.value()))
                    .transpose()?;
                if current != Some(expected) {
                    outcomes.push(Err(Error::RevisionMismatch {
                        key: op.key.clone(),
                        expected,
                        current,
                    }));
                    continue;
                }
            }
            if let OpKind::Delete | OpKind::DeleteIf(_) = op.kind {
                // Deleting an absent key changes nothing: no revision, no event.
                if kv.remove(key).map_err(backend)?.is_some() {
                    revision += 1;
                    if watching {
                        published.push(WatchEvent::Delete {
                            key: op.key.clone(),
                            revision,
                        });
                    }
                }
                outcomes.push(Ok(revision));
                continue;
            }
            let encoded = encode(revision + 1, &op.value);
            // The insert returns what it replaced, so `create` needs no lookup
            // first; a conflicting create (rare) puts the old value back.
            let replaced = kv
                .insert(key, encoded.as_slice())
                .map_err(backend)?
                .map(|old| old.value().to_vec());
            if let (OpKind::Create, Some(old)) = (&op.kind, replaced) {
                kv.insert(key, old.as_slice()).map_err(backend)?;
                outcomes.push(Err(Error::AlreadyExists {
                    key: op.key.clone(),
                }));
                continue;
            }
            revision += 1;
            if watching {
                published.push(WatchEvent::Put(Entry {
                    key: op.key.clone(),
                    value: std::mem::take(&mut op.value),
                    revision,
                }));
            }
            outcomes.push(Ok(revision));
        }
        meta.insert(REVISION, revision).map_err(backend)?;
    }
    txn.commit().map_err(backend)?;
    Ok((outcomes, published))
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        let key = key.to_string();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let kv = txn.open_table(KV).map_err(backend)?;
            let found = kv.get(key.as_str()).map_err(backend)?;
            found.map(|g| decode(&key, g.value())).transpose()
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.write(OpKind::Put, key, value).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.write(OpKind::Create, key, value).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, revision: Revision) -> Result<Revision> {
        self.write(OpKind::Update(revision), key, value).await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.write(OpKind::Delete, key, Vec::new())
            .await
            .map(|_| ())
    }

    async fn delete_if(&self, key: &str, revision: Revision) -> Result<()> {
        self.write(OpKind::DeleteIf(revision), key, Vec::new())
            .await
            .map(|_| ())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_string();
        self.read(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let kv = txn.open_table(KV).map_err(backend)?;
            let mut out = Vec::new();
            for item in kv.range(prefix.as_str()..).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let k = k.value();
                if !k.starts_with(prefix.as_str()) {
                    break;
                }
                out.push(decode(k, v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn watch(&self, prefix: &str) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_string();
        let rx = {
            let _publishing = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
            self.events.subscribe()
        };
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(ev) => Some((Ok(ev), rx)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some((Err(Error::Lagged(n)), rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .filter(move |ev| {
            let keep = match ev {
                Ok(ev) => ev.key().starts_with(prefix.as_str()),
                Err(_) => true,
            };
            futures::future::ready(keep)
        });
        Ok(stream.boxed())
    }
}
