//! `Authority::close` releases the store even while the keyring task is
//! reloading: a process that reopens the same redb file right after (a
//! restart) must not find it still locked by a read of the closed one.

use std::sync::Arc;

use kith_authority::{Authority, InitOptions, KdfParams, ManualClock, Settings};
use kith_pki::KeyType;
use kith_store::Store;
use kith_store_redb::RedbStore;
use time::OffsetDateTime;

const PASS: &[u8] = b"a passphrase for tests";

#[tokio::test]
async fn close_during_a_keyring_reload_releases_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kith.redb");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open"));
        let authority = Authority::init(
            store,
            clock.clone(),
            InitOptions {
                cluster: "test.example".into(),
                key_type: KeyType::P256,
                kdf: KdfParams::MINIMUM,
            },
            PASS,
            Settings::default(),
        )
        .await
        .expect("init");
        authority.close().await;
    }
    // Each round rewrites the cluster record (the keyring task wakes and
    // reads the store), lets the task get a varying way into its reload,
    // closes, and reopens the file at once.
    for round in 0..24 {
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&path).unwrap_or_else(|e| {
                panic!("round {round}: the closed authority kept the store: {e}")
            }));
        let authority = Authority::open(store.clone(), clock.clone(), PASS, Settings::default())
            .await
            .expect("open");
        let record = store
            .get("cluster/meta")
            .await
            .expect("get")
            .expect("the cluster record");
        store
            .put("cluster/meta", record.value)
            .await
            .expect("rewrite it");
        for _ in 0..round % 8 {
            tokio::task::yield_now().await;
        }
        authority.close().await;
        drop(store);
    }
}
