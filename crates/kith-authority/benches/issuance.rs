//! P-256 CSR issuance through the authority, with every record durable in
//! the embedded store, next to the raw ECDSA P-256 sign+verify rate of this
//! machine measured in the same run (aws-lc, and `openssl speed` when present).
//!
//! Each issuance verifies one CSR signature and makes one certificate
//! signature, so one sign+verify pair is its crypto floor.
//!
//! `cargo bench -p kith-authority --bench issuance`. KITH_BENCH_N CSRs per
//! round (20000), KITH_BENCH_C concurrent callers (256), KITH_BENCH_ROUNDS (3).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use kith_authority::{Authority, Identity, InitOptions, KdfParams, Settings, SystemClock};
use kith_pki::{KeyType, Profile};

/// CPU seconds (user + system) in a /proc `stat` file of a process or thread.
fn stat_cpu_seconds(path: &std::path::Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // rest[0] is field 3 (state), so utime (14) is rest[11] and stime (15) rest[12].
    (field(11) + field(12)) / 100.0
}

/// CPU seconds this process has used.
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat".as_ref())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sign+verify pairs per second on every core for `secs`.
fn raw_pairs_per_sec(secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads())
        .map(|_| {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                let rng = SystemRandom::new();
                let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
                let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("keygen");
                let key = EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).expect("load key");
                let public = signature::UnparsedPublicKey::new(
                    &signature::ECDSA_P256_SHA256_ASN1,
                    key.public_key().as_ref().to_vec(),
                );
                let msg = [0x5au8; 400]; // about a TBSCertificate
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let sig = key.sign(&rng, &msg).expect("sign");
                    public.verify(&msg, sig.as_ref()).expect("verify");
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("worker");
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The X.509 work of an issuance (parse and verify the CSR, build and sign
/// the leaf) on every core with plain threads: the ceiling for the authority.
fn x509_path_per_sec(csrs: &[Vec<u8>]) -> f64 {
    use kith_pki::{CaKind, CaSpec, LeafSpec, PrivateKey, Serial};
    let now = time::OffsetDateTime::now_utc();
    let spec = |kind| CaSpec {
        cluster: "bench.example".into(),
        authority: "cluster".into(),
        generation: 1,
        kind,
        not_before: now,
        not_after: now + time::Duration::days(3650),
        serial: Serial::random().expect("serial"),
    };
    let root = spec(CaKind::Root)
        .self_signed(PrivateKey::generate(KeyType::P256).expect("key"))
        .expect("root")
        .into_signer()
        .expect("signer");
    let ca = spec(CaKind::Intermediate)
        .signed_by(PrivateKey::generate(KeyType::P256).expect("key"), &root)
        .expect("intermediate")
        .into_signer()
        .expect("signer");
    let n = threads();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..n {
            let ca = &ca;
            scope.spawn(move || {
                for (i, der) in csrs.iter().enumerate().skip(t).step_by(n) {
                    let node = format!("node-{i}");
                    let csr = kith_pki::parse_csr(der).expect("csr");
                    let extra = csr
                        .approve(&Default::default(), "bench.example", "worker", &node)
                        .expect("approve");
                    LeafSpec {
                        cluster: "bench.example".into(),
                        namespace: kith_pki::Namespace::Node,
                        node,
                        role: "worker".into(),
                        profile: Profile::Peer,
                        extra_sans: extra,
                        ttl: time::Duration::days(90),
                        serial: Serial::random().expect("serial"),
                        crl_urls: Vec::new(),
                    }
                    .sign(&csr.public_key, ca, now)
                    .expect("leaf");
                }
            });
        }
    });
    csrs.len() as f64 / start.elapsed().as_secs_f64()
}

/// `openssl speed -multi N ecdsap256` as sign+verify pairs per second.
fn openssl_pairs_per_sec() -> Option<(f64, f64, f64)> {
    let n = threads().to_string();
    let out = std::process::Command::new("openssl")
        .args(["speed", "-seconds", "3", "-multi", &n, "ecdsap256"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "+F4:...:256:nistp256:sign_time:verify_time" or the table line "256 bits ecdsa (nistp256)   t   t   sign/s verify/s"
    let line = text.lines().find(|l| l.contains("ecdsa (nistp256)"))?;
    let nums: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.trim_end_matches('s').parse::<f64>().ok())
        .collect();
    let (sign, verify) = (nums[nums.len() - 2], nums[nums.len() - 1]);
    Some((sign, verify, 1.0 / (1.0 / sign + 1.0 / verify)))
}

/// CPU seconds used so far by this process's threads, summed by thread name
/// (tokio workers, the store's writer, ...), from /proc.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        *out.entry(name.trim().to_string()).or_insert(0.0) += stat_cpu_seconds(&path.join("stat"));
    }
    out
}

/// One timed run: a fresh store and authority, every CSR issued by
/// `concurrency` tasks. Returns issuances/s, cores busy, and CPU µs per
/// issuance by thread name.
fn issuance_round(
    runtime: &tokio::runtime::Runtime,
    csrs: &Arc<Vec<Vec<u8>>>,
    concurrency: usize,
) -> (f64, f64, Vec<(String, f64)>) {
    let n = csrs.len();
    let dir = tempfile::tempdir().expect("tempdir");
    runtime.block_on(async {
        let store: Arc<dyn kith_store::Store> = Arc::new(
            kith_store_redb::RedbStore::open(&dir.path().join("kith.redb")).expect("store"),
        );
        let authority = Authority::init(
            store.clone(),
            Arc::new(SystemClock),
            InitOptions {
                cluster: "bench.example".into(),
                key_type: KeyType::P256,
                kdf: KdfParams::MINIMUM,
            },
            b"benchmark passphrase",
            Settings::default(),
        )
        .await
        .expect("init");
        let next = Arc::new(AtomicU64::new(0));
        let (cpu0, by0) = (cpu_seconds(), cpu_by_thread());
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (authority, csrs, next) = (authority.clone(), csrs.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if i >= csrs.len() {
                            break;
                        }
                        authority
                            .sign_csr(
                                &csrs[i],
                                Identity {
                                    node: format!("node-{i}"),
                                    role: "worker".into(),
                                    profile: Profile::Peer,
                                    authority: None,
                                    ttl: None,
                                },
                                None,
                            )
                            .await
                            .expect("issue");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        let by1 = cpu_by_thread();
        let recorded = store.list("cert/").await.expect("list").len();
        assert_eq!(recorded, n, "every issuance is recorded");
        let per_thread = by1
            .iter()
            .filter_map(|(name, t)| {
                let used = t - by0.get(name).copied().unwrap_or(0.0);
                (used > 0.0).then(|| (name.clone(), used * 1e6 / n as f64))
            })
            .collect();
        (n as f64 / elapsed, cpu / elapsed, per_thread)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("KITH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let concurrency: usize = std::env::var("KITH_BENCH_C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rounds: usize = std::env::var("KITH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads())
        .enable_all()
        .build()
        .expect("runtime");

    eprintln!("preparing {n} P-256 CSRs...");
    let csrs: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n)
            .map(|i| {
                let key = rcgen::KeyPair::generate().expect("keygen");
                let params = rcgen::CertificateParams::new(vec![format!("node-{i}.bench.example")])
                    .expect("params");
                params.serialize_request(&key).expect("csr").der().to_vec()
            })
            .collect(),
    );

    println!(
        "P-256 CSR issuance through kith-authority (durable redb records, c={concurrency}, \
         {} cores, {n} CSRs per round)",
        threads()
    );
    // Raw crypto and issuance alternate, so each ratio compares two
    // measurements a few seconds apart on this shared, noisy machine.
    let mut ratios = Vec::new();
    let mut rates = Vec::new();
    for round in 1..=rounds {
        let raw = raw_pairs_per_sec(2.0);
        let (rate, busy, per_thread) = issuance_round(&runtime, &csrs, concurrency);
        let breakdown: Vec<String> = per_thread
            .iter()
            .map(|(name, us)| format!("{name} {us:.0}"))
            .collect();
        println!(
            "  round {round}: raw aws-lc {raw:.0} pairs/s, issued {rate:.0}/s = {:.0}%, \
             {busy:.2} cores busy, CPU µs per issuance: {}",
            100.0 * rate / raw,
            breakdown.join(", ")
        );
        ratios.push(rate / raw);
        rates.push(rate);
    }
    let rate = median(rates);
    println!("  median issuance:        {rate:.0}/s");
    println!(
        "  ratio (issuance/raw):   {:.0}% (median of the rounds' ratios)",
        100.0 * median(ratios)
    );
    let x509 = x509_path_per_sec(&csrs);
    let raw = raw_pairs_per_sec(2.0);
    println!(
        "  X.509 path alone:       {x509:.0}/s on plain threads, no authority or store \
         ({:.0}% of raw {raw:.0} measured right after)",
        100.0 * x509 / raw,
    );
    match openssl_pairs_per_sec() {
        Some((s, v, pairs)) => {
            println!(
                "  openssl speed ecdsap256: {s:.0} sign/s, {v:.0} verify/s = {pairs:.0} pairs/s"
            );
            println!(
                "  ratio (median issuance/openssl pairs): {:.0}%",
                100.0 * rate / pairs
            );
        }
        None => println!("  openssl speed: not available"),
    }
}
