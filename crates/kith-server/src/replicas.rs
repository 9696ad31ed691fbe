//! This replica among the others sharing the store: its registration and
//! heartbeat (`kith_authority`'s registry), the list of live replicas that
//! `/v1/ca` and the join and renew answers carry, and the maintenance lease
//! that makes the shared background work run on one replica at a time.

use std::sync::Arc;
use std::time::Duration;

use kith_authority::{Authority, Registration, MAINTENANCE_LEASE};

use crate::api::AppState;

/// Aborts its task when dropped: a `Server::run` future that is dropped
/// (a crash, as far as the store can tell) stops heartbeating at once.
pub(crate) struct AbortOnDrop<T>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Read the live replicas into the state the handlers answer from.
pub(crate) async fn refresh_list(state: &AppState) {
    match state.authority.live_replicas().await {
        Ok(live) => {
            let urls = live.into_iter().map(|r| r.advertise).collect();
            *state.replicas.write().unwrap_or_else(|p| p.into_inner()) = urls;
        }
        Err(e) => tracing::warn!(error = %e, "listing the replicas failed"),
    }
}

/// Heartbeat every `every`, and read the live list after each and
/// whenever a replica record changes (a replica that starts or stops is in
/// the answers at once, not a heartbeat later).
pub(crate) async fn heartbeat(state: Arc<AppState>, reg: Arc<Registration>, every: Duration) {
    use futures::StreamExt;
    // A zero period would make `interval` panic.
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first is now: registration just wrote
    let mut changes = state.authority.replica_changes().await.ok();
    loop {
        let changed = match changes.as_mut() {
            Some(w) => tokio::select! {
                _ = tick.tick() => false,
                ev = w.next() => {
                    if !matches!(ev, Some(Ok(_))) {
                        // Ended or lagged: fall back to the heartbeat alone.
                        changes = None;
                    }
                    true
                }
            },
            None => {
                tick.tick().await;
                false
            }
        };
        if !changed {
            if let Err(e) = state.authority.heartbeat_replica(&reg).await {
                tracing::warn!(replica = %reg.name(), error = %e, "writing the heartbeat failed");
            }
        }
        refresh_list(&state).await;
    }
}

/// A clean stop: the registration goes, and the lease with it, so the
/// others neither list this replica nor wait for its lease to expire.
/// The heartbeat task is stopped first (and waited for), so that no
/// heartbeat lands after the record is gone.
pub(crate) async fn leave(
    authority: &Authority,
    reg: &Registration,
    heartbeat: &mut AbortOnDrop<()>,
) {
    heartbeat.0.abort();
    let _ = (&mut heartbeat.0).await;
    if let Err(e) = authority.unregister_replica(reg).await {
        tracing::warn!(replica = %reg.name(), error = %e, "removing this replica's record failed");
    }
    if let Err(e) = authority.release_lease(MAINTENANCE_LEASE, reg.name()).await {
        tracing::warn!(error = %e, "releasing the maintenance lease failed");
    }
}

/// Whether this replica (`name`) holds the maintenance lease for the next
/// three ticks of `every`, taking or renewing it. A store error is logged
/// and counts as not holding it: the work waits for the next tick.
pub(crate) async fn hold_maintenance(authority: &Authority, name: &str, every: Duration) -> bool {
    let ttl = every
        .checked_mul(3)
        .and_then(|d| time::Duration::try_from(d).ok())
        .unwrap_or(time::Duration::minutes(3));
    match authority.try_lease(MAINTENANCE_LEASE, name, ttl).await {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(error = %e, "taking the maintenance lease failed");
            false
        }
    }
}
