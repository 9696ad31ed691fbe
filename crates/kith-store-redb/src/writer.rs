//! The writer thread: group commit, and the recovery loop of a store whose
//! writes fail.

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kith_store::{Entry, Error, Result, Revision, WatchEvent};
use redb::{Database, ReadableTable};
use tokio::sync::{broadcast, oneshot};

use crate::db::{backend, encode, revision_of, Shared, KV, META, REVISION};
use crate::guard::guarded;

/// Most writes committed by one transaction (one fsync).
const MAX_BATCH: usize = 4096;
/// While writes fail, how often the writer tries again (writes that arrive
/// in between are refused at once rather than each reopening the file).
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// What a write does, with the revision a conditional one expects.
pub(crate) enum OpKind {
    Put,
    Create,
    Update(Revision),
    Delete,
    DeleteIf(Revision),
}

/// A write waiting for the writer thread.
pub(crate) struct Op {
    pub(crate) kind: OpKind,
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<Revision>>,
}

/// The writer thread: drain waiting writes into one batch, commit it, answer
/// and publish; while writes fail, refuse them and probe for recovery. Ends
/// when the store drops its sender.
pub(crate) fn writer_loop(
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
