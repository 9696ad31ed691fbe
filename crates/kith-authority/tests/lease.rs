//! The maintenance lease: several authorities on one store (replicas) race
//! for `lease/maintenance` by compare-and-swap; exactly one holds it, the
//! work it guards runs once per round across them all, and when the holder
//! stops renewing another takes over once the lease has expired (the
//! injected clock moves, nothing sleeps).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use kith_authority::{Authority, MAINTENANCE_LEASE};
use time::Duration;

mod common;

const TTL: Duration = Duration::seconds(180);

/// One round of maintenance on every replica at once: each tries the
/// lease, and whoever holds it does the work (counted).
async fn round(replicas: &[(String, Authority)], work: &Arc<AtomicUsize>) -> Vec<String> {
    let tries = replicas.iter().map(|(name, a)| {
        let (name, a, work) = (name.clone(), a.clone(), work.clone());
        tokio::spawn(async move {
            let held = a
                .try_lease(MAINTENANCE_LEASE, &name, TTL)
                .await
                .expect("the lease record reads and writes");
            if held {
                work.fetch_add(1, Ordering::SeqCst);
            }
            held.then_some(name)
        })
    });
    let mut holders = Vec::new();
    for t in tries.collect::<Vec<_>>() {
        if let Some(n) = t.await.expect("a lease attempt does not panic") {
            holders.push(n);
        }
    }
    holders
}

async fn three() -> (common::Harness, Vec<(String, Authority)>) {
    let h = common::Harness::mem().await;
    let replicas = vec![
        ("kith-server-a".to_string(), h.authority.clone()),
        ("kith-server-b".to_string(), h.second().await),
        ("kith-server-c".to_string(), h.second().await),
    ];
    (h, replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_three_holds_the_lease_and_the_work_runs_once_per_round() {
    let (_h, replicas) = three().await;
    let work = Arc::new(AtomicUsize::new(0));
    let first = round(&replicas, &work).await;
    assert_eq!(first.len(), 1, "one winner of the race: {first:?}");
    for n in 2..=20 {
        let holders = round(&replicas, &work).await;
        assert_eq!(holders, first, "the holder renews and keeps it");
        assert_eq!(
            work.load(Ordering::SeqCst),
            n,
            "once per round, not three times"
        );
    }
    let view = replicas[0]
        .1
        .lease_holder(MAINTENANCE_LEASE)
        .await
        .expect("read")
        .expect("held");
    assert_eq!(view.holder, first[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_takes_over_after_the_holder_stops_renewing() {
    let (h, replicas) = three().await;
    let work = Arc::new(AtomicUsize::new(0));
    let holder = round(&replicas, &work).await;
    assert_eq!(holder.len(), 1);
    // The holder dies: the others keep trying, and do nothing while its
    // lease runs.
    let rest: Vec<_> = replicas
        .iter()
        .filter(|(n, _)| *n != holder[0])
        .cloned()
        .collect();
    h.clock.advance(TTL - Duration::seconds(1));
    assert!(round(&rest, &work).await.is_empty(), "not before expiry");
    assert_eq!(work.load(Ordering::SeqCst), 1);
    h.clock.advance(Duration::seconds(2));
    let next = round(&rest, &work).await;
    assert_eq!(next.len(), 1, "one of the two survivors takes it: {next:?}");
    assert_ne!(next[0], holder[0]);
    assert_eq!(work.load(Ordering::SeqCst), 2);
    // The old holder coming back finds it taken.
    let back = replicas.iter().find(|(n, _)| *n == holder[0]).expect("old");
    assert!(!back
        .1
        .try_lease(MAINTENANCE_LEASE, &back.0, TTL)
        .await
        .expect("read"));
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let (_h, replicas) = three().await;
    let (a, b) = (&replicas[0], &replicas[1]);
    assert!(a
        .1
        .try_lease(MAINTENANCE_LEASE, &a.0, TTL)
        .await
        .expect("take"));
    assert!(!b
        .1
        .try_lease(MAINTENANCE_LEASE, &b.0, TTL)
        .await
        .expect("try"));
    // Releasing someone else's lease does nothing.
    b.1.release_lease(MAINTENANCE_LEASE, &b.0)
        .await
        .expect("no-op");
    assert!(!b
        .1
        .try_lease(MAINTENANCE_LEASE, &b.0, TTL)
        .await
        .expect("try"));
    a.1.release_lease(MAINTENANCE_LEASE, &a.0)
        .await
        .expect("release");
    assert!(b
        .1
        .try_lease(MAINTENANCE_LEASE, &b.0, TTL)
        .await
        .expect("take"));
}
