//! Values larger than one store value ([`kith_store::chunked`]) on the
//! in-memory backend, at the limit NATS would impose on a small bucket and
//! at its default, and refused cleanly when even the head cannot fit.

use std::sync::Arc;
use std::time::SystemTime;

use kith_store::{chunked, Error, MemStore, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_values_on_a_256_kib_store() {
    kith_store::conformance::run_chunked(Arc::new(MemStore::with_max_value(256 * 1024))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_values_on_a_default_store() {
    kith_store::conformance::run_chunked(Arc::new(MemStore::new())).await;
}

#[tokio::test]
async fn a_limit_too_small_for_a_head_writes_nothing() {
    let s = MemStore::with_max_value(32);
    let e = chunked::create(&s, "secretval/a/1", &[7; 100], SystemTime::now())
        .await
        .expect_err("no head fits 32 bytes");
    assert!(matches!(e, Error::ValueTooLarge { .. }), "{e}");
    assert!(
        s.list("").await.expect("list").is_empty(),
        "nothing written"
    );
    // What fits is still stored inline.
    chunked::create(&s, "secretval/a/1", &[7; 32], SystemTime::now())
        .await
        .expect("inline");
}
