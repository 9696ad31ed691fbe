//! The suite every [`Store`] backend must pass. A backend's tests call
//! [`run_all`] with a fresh store; each check uses its own key prefix.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{Error, Store, WatchEvent};

/// Run every check against `store`, panicking with the check's name on failure.
pub async fn run_all(store: Arc<dyn Store>) {
    get_missing(&*store).await;
    put_get_roundtrip(&*store).await;
    create_only_if_absent(&*store).await;
    update_compare_and_swap(&*store).await;
    revisions_increase(&*store).await;
    delete_semantics(&*store).await;
    list_by_prefix(&*store).await;
    binary_and_large_values(&*store).await;
    invalid_keys_refused(&*store).await;
    watch_sees_changes(&*store).await;
    concurrent_create_one_winner(store.clone()).await;
    concurrent_cas_counter_exact(store.clone()).await;
}

async fn get_missing(s: &dyn Store) {
    assert_eq!(
        s.get("conf-missing/x").await.expect("get"),
        None,
        "get_missing"
    );
}

async fn put_get_roundtrip(s: &dyn Store) {
    let rev = s.put("conf-put/a", b"one".to_vec()).await.expect("put");
    let e = s.get("conf-put/a").await.expect("get").expect("present");
    assert_eq!(
        (e.value.as_slice(), e.revision),
        (&b"one"[..], rev),
        "put_get_roundtrip"
    );
    let rev2 = s.put("conf-put/a", b"two".to_vec()).await.expect("put");
    assert!(rev2 > rev, "put_get_roundtrip: revision must grow");
    assert_eq!(
        s.get("conf-put/a")
            .await
            .expect("get")
            .expect("present")
            .value,
        b"two"
    );
}

async fn create_only_if_absent(s: &dyn Store) {
    s.create("conf-create/a", b"first".to_vec())
        .await
        .expect("create");
    match s.create("conf-create/a", b"second".to_vec()).await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "conf-create/a"),
        other => panic!("create_only_if_absent: expected AlreadyExists, got {other:?}"),
    }
    let e = s.get("conf-create/a").await.expect("get").expect("present");
    assert_eq!(
        e.value, b"first",
        "create_only_if_absent: loser must not overwrite"
    );
}

async fn update_compare_and_swap(s: &dyn Store) {
    let r1 = s.create("conf-cas/a", b"1".to_vec()).await.expect("create");
    let r2 = s
        .update("conf-cas/a", b"2".to_vec(), r1)
        .await
        .expect("update");
    match s.update("conf-cas/a", b"stale".to_vec(), r1).await {
        Err(Error::RevisionMismatch {
            expected, current, ..
        }) => {
            assert_eq!(
                (expected, current),
                (r1, Some(r2)),
                "update_compare_and_swap"
            );
        }
        other => panic!("update_compare_and_swap: expected RevisionMismatch, got {other:?}"),
    }
    assert_eq!(
        s.get("conf-cas/a")
            .await
            .expect("get")
            .expect("present")
            .value,
        b"2"
    );
    match s.update("conf-cas/absent", b"x".to_vec(), 1).await {
        Err(Error::RevisionMismatch { current: None, .. }) => {}
        other => panic!("update of an absent key must fail, got {other:?}"),
    }
    assert_eq!(s.get("conf-cas/absent").await.expect("get"), None);
}

async fn revisions_increase(s: &dyn Store) {
    let a = s.put("conf-rev/a", vec![1]).await.expect("put");
    let b = s.put("conf-rev/b", vec![2]).await.expect("put");
    let c = s.put("conf-rev/a", vec![3]).await.expect("put");
    assert!(a < b && b < c, "revisions_increase: {a} {b} {c}");
}

async fn delete_semantics(s: &dyn Store) {
    s.put("conf-del/a", vec![1]).await.expect("put");
    s.delete("conf-del/a").await.expect("delete");
    assert_eq!(
        s.get("conf-del/a").await.expect("get"),
        None,
        "delete_semantics"
    );
    s.delete("conf-del/a")
        .await
        .expect("deleting an absent key is fine");
    s.create("conf-del/a", vec![2])
        .await
        .expect("create after delete");
}

async fn list_by_prefix(s: &dyn Store) {
    for k in [
        "conf-list/a/1",
        "conf-list/a/2",
        "conf-list/ab/1",
        "conf-list/b/1",
    ] {
        s.put(k, k.as_bytes().to_vec()).await.expect("put");
    }
    let keys: Vec<String> = s
        .list("conf-list/a/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["conf-list/a/1", "conf-list/a/2"], "list_by_prefix");
    assert!(s.list("conf-list/zzz/").await.expect("list").is_empty());
    let all = s.list("conf-list/").await.expect("list");
    assert_eq!(all.len(), 4, "list_by_prefix: whole prefix");
    assert!(
        all.windows(2).all(|w| w[0].key < w[1].key),
        "list must be in key order"
    );
}

async fn binary_and_large_values(s: &dyn Store) {
    let bin: Vec<u8> = (0..=255u8).collect();
    s.put("conf-bin/a", bin.clone()).await.expect("put");
    assert_eq!(
        s.get("conf-bin/a")
            .await
            .expect("get")
            .expect("present")
            .value,
        bin
    );
    let big = vec![0xa5u8; 512 * 1024];
    s.put("conf-bin/big", big.clone())
        .await
        .expect("512 KiB value");
    assert_eq!(
        s.get("conf-bin/big")
            .await
            .expect("get")
            .expect("present")
            .value,
        big
    );
    s.put("conf-bin/empty", Vec::new())
        .await
        .expect("empty value");
    assert_eq!(
        s.get("conf-bin/empty")
            .await
            .expect("get")
            .expect("present")
            .value,
        b""
    );
}

async fn invalid_keys_refused(s: &dyn Store) {
    for bad in ["", "a//b", "/a", "a/", "a.b", "a b", "ä"] {
        match s.put(bad, vec![1]).await {
            Err(Error::InvalidKey { .. }) => {}
            other => panic!("invalid_keys_refused: {bad:?} gave {other:?}"),
        }
    }
}

async fn watch_sees_changes(s: &dyn Store) {
    let mut w = s.watch("conf-watch/").await.expect("watch");
    s.put("conf-other/x", vec![0]).await.expect("put");
    let r = s.put("conf-watch/a", vec![1]).await.expect("put");
    s.delete("conf-watch/a").await.expect("delete");
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch_sees_changes: put event in time")
        .expect("stream open")
        .expect("event");
    match first {
        WatchEvent::Put(e) => assert_eq!((e.key.as_str(), e.revision), ("conf-watch/a", r)),
        other => panic!("watch_sees_changes: expected put, got {other:?}"),
    }
    let second = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch_sees_changes: delete event in time")
        .expect("stream open")
        .expect("event");
    assert!(
        matches!(&second, WatchEvent::Delete { key, .. } if key == "conf-watch/a"),
        "watch_sees_changes: expected delete, got {second:?}"
    );
}

async fn concurrent_create_one_winner(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create("conf-race/a", vec![i]).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => wins += 1,
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("concurrent_create_one_winner: {e}"),
        }
    }
    assert_eq!(wins, 1, "concurrent_create_one_winner");
}

async fn concurrent_cas_counter_exact(s: Arc<dyn Store>) {
    s.put("conf-counter/n", 0u64.to_be_bytes().to_vec())
        .await
        .expect("put");
    let workers = 8;
    let per_worker = 25;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while done < per_worker {
                    let e = s
                        .get("conf-counter/n")
                        .await
                        .expect("get")
                        .expect("present");
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&e.value);
                    let next = (u64::from_be_bytes(b) + 1).to_be_bytes().to_vec();
                    match s.update("conf-counter/n", next, e.revision).await {
                        Ok(_) => done += 1,
                        Err(Error::RevisionMismatch { .. }) => {}
                        Err(e) => panic!("concurrent_cas_counter_exact: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let e = s
        .get("conf-counter/n")
        .await
        .expect("get")
        .expect("present");
    let mut b = [0u8; 8];
    b.copy_from_slice(&e.value);
    assert_eq!(
        u64::from_be_bytes(b),
        (workers * per_worker) as u64,
        "concurrent_cas_counter_exact: no increment lost or doubled"
    );
}
