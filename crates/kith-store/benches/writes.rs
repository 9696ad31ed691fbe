//! Group-commit throughput of the embedded store: concurrent creates of
//! certificate-sized values, each durable when answered.
//! `cargo bench -p kith-store --bench writes` (KITH_BENCH_N, default 60000).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kith_store::{RedbStore, Store};

fn main() {
    let n: usize = std::env::var("KITH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("b.redb")).expect("open"));
    let value = vec![b'x'; 1100];
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (store, next, value) = (store.clone(), next.clone(), value.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        store
                            .create(&format!("cert/{i:032x}"), value.clone())
                            .await
                            .expect("create");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "redb group commit: {n} durable creates of 1.1 KB in {secs:.2} s = {:.0}/s",
        n as f64 / secs
    );
}
