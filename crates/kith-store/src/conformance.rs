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
    delete_if_revision(&*store).await;
    list_by_prefix(&*store).await;
    binary_and_large_values(&*store).await;
    invalid_keys_refused(&*store).await;
    watch_sees_changes(&*store).await;
    concurrent_create_one_winner(store.clone()).await;
    concurrent_cas_counter_exact(store.clone()).await;
    update_racing_delete_if(store.clone()).await;
    create_racing_create_rounds(store.clone()).await;
    create_racing_delete_if(store.clone()).await;
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

async fn delete_if_revision(s: &dyn Store) {
    let r1 = s.create("conf-delif/a", vec![1]).await.expect("create");
    let r2 = s.update("conf-delif/a", vec![2], r1).await.expect("update");
    match s.delete_if("conf-delif/a", r1).await {
        Err(Error::RevisionMismatch {
            expected, current, ..
        }) => assert_eq!(
            (expected, current),
            (r1, Some(r2)),
            "delete_if_revision: a stale revision"
        ),
        other => panic!("delete_if_revision: expected RevisionMismatch, got {other:?}"),
    }
    assert_eq!(
        s.get("conf-delif/a")
            .await
            .expect("get")
            .expect("a failed delete_if leaves the key")
            .value,
        [2]
    );
    s.delete_if("conf-delif/a", r2)
        .await
        .expect("delete_if at the current revision");
    assert_eq!(
        s.get("conf-delif/a").await.expect("get"),
        None,
        "delete_if_revision: deleted"
    );
    match s.delete_if("conf-delif/a", r2).await {
        Err(Error::RevisionMismatch { current: None, .. }) => {}
        other => panic!("delete_if_revision: an absent key must mismatch, got {other:?}"),
    }
    let r3 = s.create("conf-delif/a", vec![3]).await.expect("re-create");
    assert!(r3 > r2, "delete_if_revision: revisions keep growing");
    match s.delete_if("conf-delif/a", r2).await {
        Err(Error::RevisionMismatch { .. }) => {}
        other => {
            panic!("delete_if_revision: a re-created key is not the deleted one, got {other:?}")
        }
    }
    assert!(s.get("conf-delif/a").await.expect("get").is_some());
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

/// An update and a delete, both conditional on the same revision, race:
/// exactly one wins, and the store shows the winner's outcome.
async fn update_racing_delete_if(s: Arc<dyn Store>) {
    for round in 0..50u32 {
        let key = format!("conf-upd-del/{round}");
        let r = s.create(&key, vec![0]).await.expect("create");
        let update = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.update(&key, vec![1], r).await })
        };
        let delete = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.delete_if(&key, r).await })
        };
        let update = update.await.expect("task");
        let delete = delete.await.expect("task");
        let now = s.get(&key).await.expect("get");
        match (&update, &delete) {
            (Ok(rev), Err(Error::RevisionMismatch { .. })) => {
                let e = now.expect("update_racing_delete_if: the update won, the key stays");
                assert_eq!((e.value.as_slice(), e.revision), (&[1u8][..], *rev));
            }
            (Err(Error::RevisionMismatch { .. }), Ok(())) => {
                assert_eq!(now, None, "update_racing_delete_if: the delete won");
            }
            other => panic!("update_racing_delete_if: exactly one must win, got {other:?}"),
        }
    }
}

/// Two creates of one key, many times over: exactly one wins each time and
/// its value is the one stored.
async fn create_racing_create_rounds(s: Arc<dyn Store>) {
    for round in 0..50u32 {
        let key = format!("conf-create-race/{round}");
        let tasks: Vec<_> = (0..2u8)
            .map(|i| {
                let (s, key) = (s.clone(), key.clone());
                tokio::spawn(async move { (i, s.create(&key, vec![i]).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                (i, Ok(rev)) => winners.push((i, rev)),
                (_, Err(Error::AlreadyExists { .. })) => {}
                (_, Err(e)) => panic!("create_racing_create_rounds: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "create_racing_create_rounds: one winner");
        let e = s.get(&key).await.expect("get").expect("present");
        assert_eq!(
            (e.value, e.revision),
            (vec![winners[0].0], winners[0].1),
            "create_racing_create_rounds: the winner's value is stored"
        );
    }
}

/// A create racing a conditional delete of the key's current value: the
/// create either finds the key (and changes nothing) or lands after the
/// delete; a delete never removes the value of a create it did not see.
async fn create_racing_delete_if(s: Arc<dyn Store>) {
    for round in 0..50u32 {
        let key = format!("conf-create-del/{round}");
        let r = s.create(&key, vec![0]).await.expect("create");
        let create = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.create(&key, vec![1]).await })
        };
        let delete = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.delete_if(&key, r).await })
        };
        let create = create.await.expect("task");
        delete
            .await
            .expect("task")
            .expect("create_racing_delete_if: the delete is at the current revision");
        let now = s.get(&key).await.expect("get");
        match create {
            Ok(rev) => {
                let e = now.expect("create_racing_delete_if: a successful create stays");
                assert_eq!((e.value.as_slice(), e.revision), (&[1u8][..], rev));
            }
            Err(Error::AlreadyExists { .. }) => {
                assert_eq!(now, None, "create_racing_delete_if: nothing left");
            }
            Err(e) => panic!("create_racing_delete_if: {e}"),
        }
    }
}
