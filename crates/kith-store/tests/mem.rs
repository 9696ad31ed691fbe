//! The in-memory backend against the store contract, and what sets it
//! apart: its configurable limit, handles that share one store, and
//! watchers that lag.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kith_store::{Error, MemStore, Store, WatchEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memstore_passes_conformance() {
    let store = MemStore::new();
    assert_eq!(store.limits().max_value, MemStore::DEFAULT_MAX_VALUE);
    kith_store::conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memstore_with_a_small_limit_passes_conformance() {
    let store = MemStore::with_max_value(256 * 1024);
    assert_eq!(store.limits().max_value, 256 * 1024);
    kith_store::conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn memstore_passes_conformance_on_one_thread() {
    kith_store::conformance::run_all(Arc::new(MemStore::new())).await;
}

#[tokio::test]
async fn clones_share_one_store() {
    let a = MemStore::new();
    let b = a.clone();
    let mut watch = b.watch("node/").await.expect("watch");
    let r = a.create("node/n1", b"x".to_vec()).await.expect("create");
    let seen = b.get("node/n1").await.expect("get").expect("present");
    assert_eq!(seen.revision, r);
    assert!(matches!(
        b.create("node/n1", b"y".to_vec()).await,
        Err(Error::AlreadyExists { .. })
    ));
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(WatchEvent::Put(e)))) => {
            assert_eq!((e.key.as_str(), e.revision), ("node/n1", r))
        }
        other => panic!("expected the put through the other handle, got {other:?}"),
    }
    // A separate store is separate.
    assert_eq!(MemStore::new().get("node/n1").await.expect("get"), None);
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_to_relist() {
    let s = MemStore::new();
    let mut watch = s.watch("").await.expect("watch");
    for i in 0..5000u32 {
        s.put(&format!("audit/{i:05}"), vec![1]).await.expect("put");
    }
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("in time")
        .expect("stream open");
    match first {
        Err(Error::Lagged(n)) => assert!(n > 0),
        other => panic!("expected Lagged, got {other:?}"),
    }
    // After the gap it goes on with what it still has, in order.
    let mut last = 0;
    for _ in 0..10 {
        match watch.next().await {
            Some(Ok(WatchEvent::Put(e))) => {
                assert!(e.revision > last);
                last = e.revision;
            }
            other => panic!("expected puts after the lag, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_dropped_watcher_costs_nothing_and_a_new_one_sees_only_new_changes() {
    let s = MemStore::new();
    let w = s.watch("secret/").await.expect("watch");
    drop(w);
    s.put("secret/a", vec![1]).await.expect("put");
    let mut w = s.watch("secret/").await.expect("watch");
    let r = s.put("secret/b", vec![2]).await.expect("put");
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Some(Ok(WatchEvent::Put(e)))) => {
            assert_eq!((e.key.as_str(), e.revision), ("secret/b", r))
        }
        other => panic!("expected secret/b, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_any_change() {
    let s = MemStore::with_max_value(64 * 1024);
    assert!(matches!(
        s.list("a//b").await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        s.watch("a.b/").await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(s.delete("").await, Err(Error::InvalidKey { .. })));
    assert!(matches!(
        s.delete_if("a b", 1).await,
        Err(Error::InvalidKey { .. })
    ));
    assert!(matches!(
        s.put("cert/x", vec![0; 64 * 1024 + 1]).await,
        Err(Error::ValueTooLarge { .. })
    ));
    // Nothing above took a revision.
    assert_eq!(s.put("cert/y", vec![]).await.expect("put"), 1);
}
