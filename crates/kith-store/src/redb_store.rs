use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::guard::guarded;
use crate::{validate_key, validate_prefix, Entry, Error, Result, Revision, Store, WatchEvent};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
/// Counts the probe commits of a recovering store.
const PROBE: &str = "probe";

/// Largest value the embedded backend accepts (the CRL of a big cluster fits easily).
pub const MAX_VALUE: usize = 16 * 1024 * 1024;
/// Most writes committed by one transaction (one fsync).
const MAX_BATCH: usize = 4096;
/// While writes fail, how often the writer tries again (writes that arrive
/// in between are refused at once rather than each reopening the file).
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Free space the filesystem must have before a failed store tries to
/// write again, so that a commit squeezed into the file's own free pages
/// does not declare a full disk healthy.
const MIN_FREE_BYTES: u64 = 1 << 20;

/// The embedded backend: one redb file in the data directory.
///
/// Writes from concurrent callers are group-committed by one writer thread:
/// it takes every write waiting, applies each (checking its own condition;
/// a failed compare-and-swap fails only that write), commits once (one
/// fsync), and only then answers each caller and publishes watch events.
/// Reads run on tokio's blocking pool.
///
/// A failed commit (a full disk, an I/O error) answers every write of its
/// batch [`Error::Unavailable`] and leaves redb refusing all further work
/// (`PreviousIo`: "close and re-open the database"). So the writer closes
/// the database and opens it again at once (reads go on from the last
/// durable commit), refuses writes meanwhile, and once a second has passed
/// and the filesystem has room again, probes with a small commit; when that
/// succeeds, writes are accepted again. [`Store::writable`] says which state
/// the store is in.
pub struct RedbStore {
    shared: Arc<Shared>,
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

/// What the writer thread and the readers share.
struct Shared {
    path: PathBuf,
    /// The file, as shown in errors.
    shown: Arc<str>,
    /// `None` while the database is closed for recovery.
    db: RwLock<Option<Arc<Database>>>,
    /// Why writes fail, while they do.
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn db(&self) -> Result<Arc<Database>> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        db.ok_or_else(|| Error::Unavailable(self.failure().unwrap_or_else(|| "closed".into())))
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_failure(&self, why: Option<String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// A write failed in a way redb does not survive: close the database
    /// (waiting for readers to let go of it) and open it again from the
    /// file, whose last durable commit is intact.
    fn reopen(&self) {
        let old = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut db) = old {
            // Readers hold a clone for the microseconds of a read; the file
            // cannot be opened again while one does.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match Arc::try_unwrap(db) {
                    Ok(db) => {
                        if let Err(e) = db.close() {
                            tracing::warn!(error = %e, "closing the failed database");
                        }
                        break;
                    }
                    Err(still_shared) if Instant::now() < deadline => {
                        db = still_shared;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => {
                        tracing::warn!("a reader still holds the failed database; reopening later");
                        return;
                    }
                }
            }
        }
        // `open`, not `create`: a file that vanished must not come back empty.
        match Database::open(&self.path) {
            Ok(db) => {
                *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
                tracing::info!(path = %self.path.display(), "store database reopened");
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "reopening the store database failed");
            }
        }
    }

    /// While failing: reopen if needed, check for room, and probe with a
    /// small commit. `Ok` when writes may go ahead again.
    fn recover(&self) -> Result<()> {
        if self.db.read().unwrap_or_else(|p| p.into_inner()).is_none() {
            self.reopen();
        }
        let db = self.db()?;
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(st) = rustix::fs::statvfs(dir) {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            if free < MIN_FREE_BYTES {
                return Err(Error::Unavailable(format!(
                    "the disk is full ({free} bytes free)"
                )));
            }
        }
        let probe = (|| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut meta = txn.open_table(META).map_err(backend)?;
                let n = meta.get(PROBE).map_err(backend)?.map_or(0, |g| g.value());
                meta.insert(PROBE, n.wrapping_add(1)).map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })();
        drop(db);
        match probe {
            Ok(()) => {
                tracing::info!("store writes succeed again");
                self.set_failure(None);
                Ok(())
            }
            Err(e) => {
                if matches!(e, Error::Unavailable(_)) {
                    self.reopen();
                }
                Err(e)
            }
        }
    }
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
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            shown,
            db: RwLock::new(Some(Arc::new(db))),
            failure: Mutex::new(None),
        });
        let (events, _) = broadcast::channel(4096);
        let publishing = Arc::new(Mutex::new(()));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let shared = shared.clone();
            let events = events.clone();
            let publishing = publishing.clone();
            std::thread::Builder::new()
                .name("kith-store-writer".into())
                .spawn(move || writer_loop(&shared, &rx, &events, &publishing))
                .map_err(|e| Error::Backend(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Self {
            shared,
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
        let db = self.shared.db()?;
        let shown = self.shared.shown.clone();
        let result = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| guarded(&shown, || f(&db)))
            }
            _ => tokio::task::spawn_blocking(move || guarded(&shown, || f(&db)))
                .await
                .map_err(|e| Error::Backend(format!("read task failed: {e}")))?,
        };
        if let Err(Error::Unavailable(why)) = &result {
            // An I/O error leaves redb refusing everything: have the writer
            // probe and reopen, as after a failed commit.
            if self.shared.failure().is_none() {
                self.shared.set_failure(Some(why.clone()));
            }
        }
        result
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

/// Sort a redb error: corruption is [`Error::Corrupt`] (its path is filled
/// in by [`guarded`]); I/O failures (a full disk above all) make the store
/// [`Error::Unavailable`] until it recovers; the rest are [`Error::Backend`].
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
        redb::Error::Io(io) => Error::Unavailable(match io.kind() {
            std::io::ErrorKind::StorageFull => format!("the disk is full ({io})"),
            std::io::ErrorKind::QuotaExceeded => format!("the disk quota is exhausted ({io})"),
            _ => format!("I/O error ({io})"),
        }),
        redb::Error::PreviousIo | redb::Error::DatabaseClosed => {
            Error::Unavailable("an earlier write failed; the database is being reopened".into())
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
    shared: &Shared,
    rx: &mpsc::Receiver<Op>,
    events: &broadcast::Sender<WatchEvent>,
    publishing: &Mutex<()>,
) {
    let mut last_try = Instant::now();
    loop {
        // Wake up at least every RETRY_EVERY: a failing store (a read may
        // have found it so) probes, so that it recovers, and says so, with
        // no write arriving.
        let first = match rx.recv_timeout(RETRY_EVERY) {
            Ok(op) => Some(op),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut batch: Vec<Op> = first.into_iter().collect();
        while !batch.is_empty() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Some(why) = shared.failure() {
            let outcome = if last_try.elapsed() < RETRY_EVERY {
                Err(Error::Unavailable(why))
            } else {
                last_try = Instant::now();
                shared.recover()
            };
            if let Err(e) = outcome {
                for op in batch {
                    let _ = op.reply.send(Err(Error::Unavailable(e.to_string())));
                }
                continue;
            }
        }
        if batch.is_empty() {
            continue;
        }
        let guard = publishing.lock().unwrap_or_else(|p| p.into_inner());
        let watching = events.receiver_count() > 0;
        let applied = guarded(&shared.shown, || {
            shared.db().and_then(|db| apply(&db, &mut batch, watching))
        });
        match applied {
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
                let unavailable = matches!(e, Error::Unavailable(_));
                let corrupt = match &e {
                    Error::Corrupt { path, detail } => Some((path.clone(), detail.clone())),
                    _ => None,
                };
                let text = match e {
                    Error::Unavailable(w) | Error::Backend(w) => w,
                    other => other.to_string(),
                };
                if unavailable {
                    // redb refuses everything after a failed I/O: start over
                    // from the file, and refuse writes until a probe succeeds.
                    shared.set_failure(Some(text.clone()));
                    shared.reopen();
                    last_try = Instant::now();
                }
                for op in batch {
                    let each = match &corrupt {
                        Some((path, detail)) => Error::Corrupt {
                            path: path.clone(),
                            detail: detail.clone(),
                        },
                        None if unavailable => Error::Unavailable(text.clone()),
                        None => Error::Backend(text.clone()),
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

    fn writable(&self) -> Result<()> {
        match self.shared.failure() {
            Some(why) => Err(Error::Unavailable(why)),
            None => Ok(()),
        }
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
