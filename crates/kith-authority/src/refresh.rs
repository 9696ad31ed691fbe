//! Keeping the keyring current: rebuilt from the store when `cluster/` or
//! `authority/` change (a watch), and re-read periodically as a safety net,
//! so that a rotation or an authority added by another process sharing the
//! store is in effect here within moments.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use kith_store::Store;

use crate::authority::{Authority, Inner};
use crate::error::Error;
use crate::keyring::{key_from, load_signer, master_aad, same_authority, Keyring};
use crate::keys;
use crate::records::{from_json, AuthorityRecord, ClusterRecord};
use crate::vault::SealKey;

/// How often the keyring is re-read even without a watch event.
pub(crate) const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How long `close` waits for a reload under way to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

impl Authority {
    /// The key to seal new records under (see [`Keyring::sealing`]); an
    /// error while the store holds a master key this process cannot unwrap
    /// (the passphrase was changed elsewhere, then the key rotated): what it
    /// sealed under its old key would be unreadable once that key retires.
    pub(crate) fn sealing(&self) -> Result<(u32, Arc<SealKey>), Error> {
        if self
            .inner
            .keyring_behind
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Error::Invalid(
                "the master key was rotated with a passphrase this process does not hold: \
                 restart it with the current passphrase"
                    .into(),
            ));
        }
        Ok(self.keyring().sealing())
    }

    /// The keyring of the moment.
    pub(crate) fn keyring(&self) -> Arc<Keyring> {
        self.inner
            .keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn swap_keyring(&self, ring: Keyring) {
        *self
            .inner
            .keyring
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
    }

    /// Whether master key `version` is the one new records are sealed under
    /// now, as the store says (not this process's keyring, which may lag):
    /// the pending key while a rotation runs, else the master. A record
    /// sealed under anything else may miss the rotation's reseal passes and
    /// be lost with the retired key, so its writer seals it again.
    pub(crate) async fn sealing_is_current(&self, version: u32) -> Result<bool, Error> {
        let e = self
            .store()
            .get(keys::CLUSTER_KEY)
            .await?
            .ok_or(Error::NotInitialized)?;
        let cluster: ClusterRecord = from_json(keys::CLUSTER_KEY, &e.value)?;
        Ok(match &cluster.pending_master {
            Some(p) => p.version == version,
            None => cluster.master_version == version,
        })
    }

    /// Rebuild the keyring from the store. Returns whether anything changed.
    /// A master key this process cannot unwrap (the passphrase was changed
    /// elsewhere, then the key rotated) is an error and the old keyring
    /// stays: restart with the new passphrase.
    pub async fn refresh_keyring(&self) -> Result<bool, Error> {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        let store = self.store();
        let e = store
            .get(keys::CLUSTER_KEY)
            .await?
            .ok_or(Error::NotInitialized)?;
        let cluster: ClusterRecord = from_json(keys::CLUSTER_KEY, &e.value)?;
        let authorities = store.list(keys::AUTHORITY_PREFIX).await?;
        let old = self.keyring();
        let name = self.cluster().to_string();
        let unwrap = |version: u32, wrapped: &[u8]| -> Result<Arc<SealKey>, Error> {
            if let Ok(k) = old.master_for(version) {
                return Ok(k);
            }
            let kek = self.inner.kek.lock().unwrap_or_else(|p| p.into_inner());
            let raw = kek
                .open(&master_aad(&name, version), wrapped)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                    "master key version {version} does not open with this process's passphrase: \
                     it was changed elsewhere; restart with the new passphrase"
                ))
                })?;
            Ok(Arc::new(key_from(&raw)?))
        };
        let behind = |e: Error| {
            self.inner
                .keyring_behind
                .store(true, std::sync::atomic::Ordering::SeqCst);
            e
        };
        let master = unwrap(cluster.master_version, &cluster.wrapped_master).map_err(behind)?;
        let pending = match &cluster.pending_master {
            Some(p) => Some((p.version, unwrap(p.version, &p.wrapped).map_err(behind)?)),
            None => None,
        };
        self.inner
            .keyring_behind
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let mut ring = Keyring {
            generation: old.generation,
            cluster,
            master,
            pending,
            signers: BTreeMap::new(),
        };
        let mut changed = ring.cluster.master_version != old.cluster.master_version
            || ring.pending.as_ref().map(|p| p.0) != old.pending.as_ref().map(|p| p.0)
            || ring.cluster.wrapped_master != old.cluster.wrapped_master
            || ring.cluster.settings != old.cluster.settings;
        for e in authorities {
            let record: AuthorityRecord = from_json(&e.key, &e.value)?;
            let signer = match old.signers.get(&record.name) {
                Some(s) if same_authority(&s.record, &record) => s.clone(),
                _ => {
                    changed = true;
                    load_signer(&ring, &name, record)?
                }
            };
            ring.signers.insert(signer.record.name.clone(), signer);
        }
        changed |= ring.signers.len() != old.signers.len();
        if changed {
            ring.generation = old.generation + 1;
            self.swap_keyring(ring);
            // The first load at open is not news.
            if old.generation > 0 {
                tracing::info!("keyring reloaded: the cluster or an authority changed");
            }
        }
        Ok(changed)
    }

    /// Keep the keyring current: rebuild it on every change under
    /// `cluster/` and `authority/`, and every [`RESYNC_EVERY`] regardless.
    /// Subscribes before it returns (so no change made after it is missed),
    /// then rebuilds once for what changed before. The task ends when the
    /// last handle to this authority is dropped.
    pub(crate) async fn start_keyring_watch(&self) -> Result<(), Error> {
        let (first, watching) = subscribe(&**self.store()).await;
        self.refresh_keyring().await?;
        // Only a weak handle: the task must not keep the authority (and its
        // store, whose file a restart reopens) alive.
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut events, mut watching) = (first, watching);
            loop {
                // Without a watch, re-read every second: a master key
                // rotation waits 2 s for every process to see its next key.
                let every = if watching {
                    RESYNC_EVERY
                } else {
                    Duration::from_secs(1)
                };
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    let ended = tokio::select! {
                        ev = events.next() => ev.is_none(),
                        _ = tick.tick() => false,
                        () = stopped.notified() => return,
                    };
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    let authority = Authority { inner };
                    if let Err(e) = authority.refresh_keyring().await {
                        tracing::error!(error = %e, "reloading the keyring failed; keeping the last one");
                    }
                    if ended {
                        break;
                    }
                }
                // The watch ended (the store's event channel closed): the
                // timer carries on alone after a pause; resubscribe if we can.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = stopped.notified() => return,
                }
                let Some(store): Option<Arc<dyn Store>> = weak.upgrade().map(|i| i.store.clone())
                else {
                    return;
                };
                (events, watching) = subscribe(&*store).await;
            }
        });
        *self
            .inner
            .keyring_task
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((task, stop));
        Ok(())
    }

    /// Stop this authority's background work and let it go: the keyring
    /// task is shared by every clone of this authority, so call it on the
    /// last one. The keyring task holds the authority only while it
    /// reloads, but then it does: a process that opens the same store again
    /// right after (a restart) closes rather than drops, so the store is
    /// surely released. A reload under way is let finish rather than
    /// aborted: an aborted store read may still hold the store on a blocking
    /// thread after the abort returns. One that hangs is cut after a while.
    pub async fn close(self) {
        let task = self
            .inner
            .keyring_task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((mut task, stop)) = task {
            stop.notify_one();
            if tokio::time::timeout(CLOSE_WAIT, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
    }
}

/// Events under `cluster/` and `authority/`, and whether they come; a store
/// that cannot watch gives a stream that never yields (the timer resyncs).
async fn subscribe(store: &dyn Store) -> (futures::stream::BoxStream<'static, ()>, bool) {
    let cluster = store.watch(keys::CLUSTER_PREFIX).await;
    let authorities = store.watch(keys::AUTHORITY_PREFIX).await;
    match (cluster, authorities) {
        (Ok(a), Ok(b)) => (futures::stream::select(a, b).map(|_| ()).boxed(), true),
        (a, b) => {
            let e = a
                .err()
                .or(b.err())
                .map(|e| e.to_string())
                .unwrap_or_default();
            tracing::warn!(error = %e, "cannot watch the keyring's records; re-reading them every second");
            (futures::stream::pending().boxed(), false)
        }
    }
}
