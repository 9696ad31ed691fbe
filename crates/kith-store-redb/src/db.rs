//! The database file: opening and checking it, sorting redb's errors, the
//! record encoding, and the state shared by the writer thread and readers
//! (including closing and reopening the file after a failed write).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kith_store::{Entry, Error, Result, Revision};
use redb::{Database, ReadableTable, TableDefinition};

pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const REVISION: &str = "revision";
/// Counts the probe commits of a recovering store.
const PROBE: &str = "probe";

/// Free space the filesystem must have before a failed store tries to
/// write again, so that a commit squeezed into the file's own free pages
/// does not declare a full disk healthy.
const MIN_FREE_BYTES: u64 = 1 << 20;

/// What the writer thread and the readers share.
pub(crate) struct Shared {
    pub(crate) path: PathBuf,
    /// The file, as shown in errors.
    pub(crate) shown: Arc<str>,
    /// `None` while the database is closed for recovery.
    pub(crate) db: RwLock<Option<Arc<Database>>>,
    /// Why writes fail, while they do.
    pub(crate) failure: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn db(&self) -> Result<Arc<Database>> {
        let db = self.db.read().unwrap_or_else(|p| p.into_inner()).clone();
        db.ok_or_else(|| Error::Unavailable(self.failure().unwrap_or_else(|| "closed".into())))
    }

    pub(crate) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_failure(&self, why: Option<String>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// A write failed in a way redb does not survive: close the database
    /// (waiting for readers to let go of it) and open it again from the
    /// file, whose last durable commit is intact.
    pub(crate) fn reopen(&self) {
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
    pub(crate) fn recover(&self) -> Result<()> {
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

/// Sort a redb error: corruption is [`Error::Corrupt`] (its path is filled
/// in by [`crate::guard::guarded`]); I/O failures (a full disk above all) make the store
/// [`Error::Unavailable`] until it recovers; the rest are [`Error::Backend`].
pub(crate) fn backend(e: impl Into<redb::Error>) -> Error {
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
pub(crate) fn open_checked(path: &Path) -> Result<Database> {
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

pub(crate) fn encode(revision: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&revision.to_be_bytes());
    out.extend_from_slice(value);
    out
}

pub(crate) fn decode(key: &str, raw: &[u8]) -> Result<Entry> {
    Ok(Entry {
        revision: revision_of(key, raw)?,
        key: key.to_string(),
        value: raw[8..].to_vec(),
    })
}

/// The revision stored in the first 8 bytes of a raw value, without copying the rest.
pub(crate) fn revision_of(key: &str, raw: &[u8]) -> Result<Revision> {
    raw.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt {
            path: String::new(),
            detail: format!("record {key} is shorter than its revision"),
        })
}
