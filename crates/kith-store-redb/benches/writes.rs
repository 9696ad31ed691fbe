//! Group-commit throughput of the embedded store: concurrent creates of
//! certificate-sized values, each durable when answered, with keys in order
//! and with random keys (what certificate serials are), and the CPU the
//! writer thread spends per write.
//! `cargo bench -p kith-store-redb --bench writes` (KITH_BENCH_N, default 60000).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kith_store::Store;
use kith_store_redb::RedbStore;

/// CPU seconds used so far by this process's threads named `name`, from /proc.
fn thread_cpu(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut total = 0.0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let rest = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        total += (field(11) + field(12)) / 100.0;
    }
    total
}

/// A bijective mix of `i` (splitmix64 finaliser): distinct, random-looking keys.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn run(rt: &tokio::runtime::Runtime, n: usize, random: bool) -> (f64, f64) {
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
                        let key = if random {
                            let i = i as u64;
                            format!("cert/{:016x}{:016x}", mix(i), mix(i ^ 0x5555))
                        } else {
                            format!("cert/{i:032x}")
                        };
                        store.create(&key, value.clone()).await.expect("create");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
    });
    let secs = start.elapsed().as_secs_f64();
    // The writer thread lives as long as the store: read it before dropping.
    let writer = thread_cpu("kith-store-writ");
    drop(store);
    (n as f64 / secs, writer * 1e6 / n as f64)
}

fn main() {
    let n: usize = std::env::var("KITH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("redb group commit: {n} durable creates of 1.1 KB from 64 tasks");
    for (label, random) in [("keys in order", false), ("random keys  ", true)] {
        let (rate, writer_us) = run(&rt, n, random);
        println!("  {label}: {rate:.0}/s, writer thread CPU {writer_us:.1} µs per write");
    }
}
