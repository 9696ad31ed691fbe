//! kith's embedded store backend: one redb file in the data directory,
//! implementing [`kith_store::Store`].
//!
//! Only the binary that wires kith together names [`RedbStore`]; everything
//! above the store sees `dyn Store`. redb allows one process per file, so a
//! second open is [`Error::Locked`]. A damaged file is refused at open and
//! any panic of redb is contained as [`Error::Corrupt`] (`guard`); a full
//! disk makes writes [`Error::Unavailable`] until the store recovers by
//! itself (`db::Shared::recover`).

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use kith_store::{
    validate_key, validate_prefix, Entry, Error, Limits, Result, Revision, Store, WatchEvent,
};
use redb::{Database, ReadableDatabase};
use tokio::sync::{broadcast, oneshot};

use crate::db::{backend, decode, open_checked, Shared, KV};
use crate::guard::guarded;
use crate::writer::{writer_loop, Op, OpKind};

mod db;
mod guard;
mod writer;

/// Largest value the embedded backend accepts (the CRL of a big cluster fits easily).
pub const MAX_VALUE: usize = 16 * 1024 * 1024;
const LIMITS: Limits = Limits::new(MAX_VALUE);

/// The embedded backend: one redb file in the data directory.
///
/// Writes from concurrent callers are group-committed by one writer thread:
/// it takes every write waiting, applies each (checking its own condition;
/// a failed compare-and-swap fails only that write), commits once (one
/// fsync), and only then answers each caller and publishes watch events.
/// Reads run in place on a multi-thread runtime, else on tokio's blocking pool.
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
        LIMITS.check_value(key, value.len())?;
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

    fn limits(&self) -> Limits {
        LIMITS
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
