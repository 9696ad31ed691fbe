//! The embedded backend against the store contract, plus durability.

use std::sync::Arc;

use kith_store::Store;
use kith_store_redb::RedbStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redb_passes_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(&dir.path().join("kith.redb")).expect("open");
    assert_eq!(store.limits().max_value, kith_store_redb::MAX_VALUE);
    kith_store::conformance::run_all(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_reopen_and_revisions_keep_growing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kith.redb");
    let rev = {
        let store = RedbStore::open(&path).expect("open");
        store.put("cert/a", b"x".to_vec()).await.expect("put")
    };
    let store = RedbStore::open(&path).expect("reopen");
    let e = store
        .get("cert/a")
        .await
        .expect("get")
        .expect("present after reopen");
    assert_eq!((e.value.as_slice(), e.revision), (&b"x"[..], rev));
    let next = store.put("cert/b", b"y".to_vec()).await.expect("put");
    assert!(next > rev, "revision counter must persist: {next} <= {rev}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_open_is_a_clear_lock_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kith.redb");
    let _first = RedbStore::open(&path).expect("open");
    match RedbStore::open(&path) {
        Err(kith_store::Error::Locked(_)) => {}
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("expected Locked, got a second handle"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_are_all_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kith.redb");
    {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open"));
        let tasks: Vec<_> = (0..2000)
            .map(|i| {
                let s = store.clone();
                tokio::spawn(async move { s.create(&format!("cert/{i:05}"), vec![1]).await })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("create");
        }
    }
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.list("cert/").await.expect("list").len(), 2000);
}
