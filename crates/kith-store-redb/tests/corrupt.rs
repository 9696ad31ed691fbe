//! A damaged database file is [`kith_store::Error::Corrupt`] naming the file,
//! never a panic: the contract the CLI and the server build their
//! `store-corrupt` answer on (`crates/kith/tests/corruption.rs` runs the
//! real binary on the same kind of damage).

use std::sync::Arc;

use kith_store::{Error, Store};
use kith_store_redb::RedbStore;

const PAGE: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_damaged_page_start_is_refused_at_open_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kith.redb");
    {
        let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("open"));
        for i in 0..300 {
            store
                .create(&format!("cert/{i:04}"), vec![i as u8; 300])
                .await
                .expect("create");
        }
    }
    let original = std::fs::read(&path).expect("read");
    let damaged = dir.path().join("damaged.redb");
    let mut refused = 0;
    for page in 0..original.len() / PAGE {
        let mut bytes = original.clone();
        bytes[page * PAGE] ^= 0xff;
        std::fs::write(&damaged, &bytes).expect("write");
        match RedbStore::open(&damaged) {
            Ok(store) => {
                // Not detected at open: a page nothing uses. Reading all must still work.
                assert_eq!(store.list("cert/").await.expect("list").len(), 300);
            }
            Err(Error::Corrupt { path, detail }) => {
                assert!(path.ends_with("damaged.redb"), "{path}");
                assert!(!detail.is_empty());
                refused += 1;
            }
            Err(other) => panic!("page {page}: expected Corrupt, got {other}"),
        }
    }
    assert!(refused > 0, "no damage was detected");
    // The message a user sees names the file and the way back.
    std::fs::write(&damaged, b"not a database").expect("write");
    let e = RedbStore::open(&damaged).err().expect("refused");
    let text = e.to_string();
    assert!(
        text.contains("damaged.redb") && text.contains("backup of the data directory"),
        "{text}"
    );
}
