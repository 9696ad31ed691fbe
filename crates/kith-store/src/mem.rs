//! The in-memory backend.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use tokio::sync::broadcast;

use crate::{
    validate_key, validate_prefix, Entry, Error, Limits, Result, Revision, Store, WatchEvent,
};

/// Watch events buffered per watcher before it gets [`Error::Lagged`].
const WATCH_BUFFER: usize = 4096;

/// A [`Store`] kept in memory: for tests (several authorities sharing one
/// store behave as replicas sharing a NATS bucket) and throwaway runs.
/// Nothing survives the last handle; "durable" means "visible to every
/// later call".
///
/// Clones are handles to the same store. Every operation takes one lock
/// for its check and its change, so conditions are exact, revisions are
/// global and increasing, and watch events are published under the same
/// lock, hence in revision order, with no change missed by a watcher that
/// subscribed before it. The lock is never held across an `await`.
#[derive(Clone)]
pub struct MemStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    limits: Limits,
}

#[derive(Default)]
struct State {
    /// Key → (value, revision of the write that stored it).
    entries: BTreeMap<String, (Vec<u8>, Revision)>,
    /// The revision of the last change; 0 before the first.
    revision: Revision,
    /// Created lazily, so a store nobody watches copies no values.
    events: Option<broadcast::Sender<WatchEvent>>,
}

impl State {
    fn publish(&mut self, event: impl FnOnce() -> WatchEvent) {
        if let Some(tx) = &self.events {
            if tx.receiver_count() > 0 {
                // Every receiver may have left since the check: that is fine.
                let _ = tx.send(event());
            }
        }
    }

    fn current(&self, key: &str) -> Option<Revision> {
        self.entries.get(key).map(|(_, r)| *r)
    }

    fn mismatch(&self, key: &str, expected: Revision) -> Error {
        Error::RevisionMismatch {
            key: key.to_string(),
            expected,
            current: self.current(key),
        }
    }

    fn store(&mut self, key: &str, value: Vec<u8>) -> Revision {
        self.revision += 1;
        let revision = self.revision;
        self.publish(|| {
            WatchEvent::Put(Entry {
                key: key.to_string(),
                value: value.clone(),
                revision,
            })
        });
        self.entries.insert(key.to_string(), (value, revision));
        revision
    }

    fn remove(&mut self, key: &str) {
        // Deleting an absent key changes nothing: no revision, no event.
        if self.entries.remove(key).is_some() {
            self.revision += 1;
            let revision = self.revision;
            self.publish(|| WatchEvent::Delete {
                key: key.to_string(),
                revision,
            });
        }
    }
}

impl MemStore {
    /// Largest value a [`MemStore`] accepts unless told otherwise: NATS
    /// JetStream's default maximum message size, the tightest limit of
    /// kith's backends, so that code tested here fits there.
    pub const DEFAULT_MAX_VALUE: usize = 1024 * 1024;

    /// An empty store whose values may be up to [`Self::DEFAULT_MAX_VALUE`] bytes.
    pub fn new() -> Self {
        Self::with_max_value(Self::DEFAULT_MAX_VALUE)
    }

    /// An empty store whose values may be up to `max_value` bytes: a test
    /// that proves large records are split picks a small one.
    pub fn with_max_value(max_value: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                limits: Limits::new(max_value),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-made change:
        // every change is one map operation plus the counter, so go on.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Validate a write before taking the lock.
    fn check_write(&self, key: &str, value: &[u8]) -> Result<()> {
        validate_key(key)?;
        self.shared.limits.check_value(key, value.len())
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("MemStore")
            .field("entries", &state.entries.len())
            .field("revision", &state.revision)
            .field("limits", &self.shared.limits)
            .finish()
    }
}

#[async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        Ok(self
            .state()
            .entries
            .get(key)
            .map(|(value, revision)| Entry {
                key: key.to_string(),
                value: value.clone(),
                revision: *revision,
            }))
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.check_write(key, &value)?;
        Ok(self.state().store(key, value))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.check_write(key, &value)?;
        let mut state = self.state();
        if state.entries.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        Ok(state.store(key, value))
    }

    async fn update(&self, key: &str, value: Vec<u8>, revision: Revision) -> Result<Revision> {
        self.check_write(key, &value)?;
        let mut state = self.state();
        if state.current(key) != Some(revision) {
            return Err(state.mismatch(key, revision));
        }
        Ok(state.store(key, value))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.state().remove(key);
        Ok(())
    }

    async fn delete_if(&self, key: &str, revision: Revision) -> Result<()> {
        validate_key(key)?;
        let mut state = self.state();
        if state.current(key) != Some(revision) {
            return Err(state.mismatch(key, revision));
        }
        state.remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        validate_prefix(prefix)?;
        let state = self.state();
        Ok(state
            .entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (value, revision))| Entry {
                key: k.clone(),
                value: value.clone(),
                revision: *revision,
            })
            .collect())
    }

    async fn watch(&self, prefix: &str) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        validate_prefix(prefix)?;
        let rx = {
            let mut state = self.state();
            state
                .events
                .get_or_insert_with(|| broadcast::channel(WATCH_BUFFER).0)
                .subscribe()
        };
        let prefix = prefix.to_string();
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

    fn limits(&self) -> Limits {
        self.shared.limits
    }
}
