//! Secret envelope throughput: seal (fresh data key, AES-256-GCM of the
//! value, data key wrapped by the master key) and open, for 1 KiB and 1 MiB
//! values on one core, next to `openssl speed -evp aes-256-gcm` for the
//! same block sizes in the same run.
//!
//! ```text
//! cargo bench -p kith-authority --bench secrets
//! ```

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_authority::{Authority, InitOptions, KdfParams, ManualClock, Settings};
use kith_pki::KeyType;
use kith_store::Store;
use kith_store_redb::RedbStore;

/// `openssl speed -evp aes-256-gcm -bytes N`: bytes per second on one core.
fn openssl_rate(bytes: usize) -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            "3",
            "-evp",
            "aes-256-gcm",
            "-bytes",
            &bytes.to_string(),
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Last line: "AES-256-GCM   <rate>k" (thousands of bytes per second).
    let line = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-256-gcm"))?;
    let k: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(k * 1000.0)
}

fn measure(mut f: impl FnMut(), min: Duration) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("kith.redb")).expect("open"));
    let a = Authority::init(
        store,
        Arc::new(ManualClock::new(time::OffsetDateTime::now_utc())),
        InitOptions {
            cluster: "bench.example".into(),
            key_type: KeyType::P256,
            kdf: KdfParams::MINIMUM,
        },
        b"bench passphrase, not a secret",
        Settings::default(),
    )
    .await
    .expect("init");
    println!("secret envelope, one core (seal: new data key + AES-256-GCM + key wrap; open: unwrap + AES-256-GCM)");
    println!(
        "{:>8} {:>14} {:>14} {:>16} {:>10} {:>10}",
        "size", "seal MB/s", "open MB/s", "openssl MB/s", "seal/ossl", "open/ossl"
    );
    for size in [1024usize, 1 << 20] {
        let value = vec![0x5au8; size];
        let sealed = a.seal_for_bench("bench", 1, &value).expect("seal");
        let min = Duration::from_secs(3);
        let seals = measure(
            || {
                std::hint::black_box(a.seal_for_bench("bench", 1, &value).expect("seal"));
            },
            min,
        );
        let opens = measure(
            || {
                std::hint::black_box(a.open_for_bench("bench", 1, &sealed).expect("open"));
            },
            min,
        );
        let mb = |ops: f64| ops * size as f64 / 1e6;
        let ossl = openssl_rate(size);
        let ratio = |ops: f64| {
            ossl.map_or("n/a".to_string(), |o| {
                format!("{:.0}%", 100.0 * ops * size as f64 / o)
            })
        };
        println!(
            "{:>8} {:>14.0} {:>14.0} {:>16} {:>10} {:>10}",
            if size == 1024 {
                "1 KiB".to_string()
            } else {
                "1 MiB".to_string()
            },
            mb(seals),
            mb(opens),
            ossl.map_or("n/a".to_string(), |o| format!("{:.0}", o / 1e6)),
            ratio(seals),
            ratio(opens),
        );
    }
}
