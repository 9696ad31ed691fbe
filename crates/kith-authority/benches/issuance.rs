//! P-256 CSR issuance through the authority, with every record durable in
//! the embedded store, next to the raw ECDSA P-256 sign+verify rate of this
//! machine measured in the same run (aws-lc, and `openssl speed` when present).
//!
//! Each issuance verifies one CSR signature and makes one certificate
//! signature, so one sign+verify pair is its crypto floor.
//!
//! `cargo bench -p kith-authority --bench issuance` (KITH_BENCH_N=20000 by default).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use kith_authority::{Authority, Identity, InitOptions, KdfParams, Settings, SystemClock};
use kith_pki::{KeyType, Profile};

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" that ends the command name; utime and stime are 14 and 15.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // rest[0] is field 3 (state), so utime (14) is rest[11] and stime (15) rest[12].
    (field(11) + field(12)) / 100.0
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

fn main() {
    let n: usize = std::env::var("KITH_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let concurrency: usize = std::env::var("KITH_BENCH_C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads())
        .enable_all()
        .build()
        .expect("runtime");

    eprintln!("preparing {n} P-256 CSRs...");
    let csrs: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let key = rcgen::KeyPair::generate().expect("keygen");
            let params = rcgen::CertificateParams::new(vec![format!("node-{i}.bench.example")])
                .expect("params");
            params.serialize_request(&key).expect("csr").der().to_vec()
        })
        .collect();

    let csrs_for_ceiling = csrs.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let (elapsed, recorded, cpu) = runtime.block_on(async {
        let store: Arc<dyn kith_store::Store> =
            Arc::new(kith_store::RedbStore::open(&dir.path().join("kith.redb")).expect("store"));
        let authority = Authority::init(
            store.clone(),
            Arc::new(SystemClock),
            InitOptions {
                cluster: "bench.example".into(),
                key_type: KeyType::P256,
                kdf: KdfParams {
                    m_kib: 19 * 1024,
                    t: 1,
                    p: 1,
                },
            },
            b"benchmark passphrase",
            Settings::default(),
        )
        .await
        .expect("init");
        let csrs = Arc::new(csrs.clone());
        let next = Arc::new(AtomicU64::new(0));
        let cpu0 = cpu_seconds();
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
        let elapsed = start.elapsed();
        let cpu = cpu_seconds() - cpu0;
        let recorded = store.list("cert/").await.expect("list").len();
        (elapsed, recorded, cpu)
    });
    assert_eq!(recorded, n, "every issuance is recorded");
    let issued_per_sec = n as f64 / elapsed.as_secs_f64();
    let raw = raw_pairs_per_sec(3.0);
    let x509 = x509_path_per_sec(&csrs_for_ceiling);

    println!("P-256 CSR issuance through kith-authority (durable redb records, c={concurrency}, {} cores)", threads());
    println!(
        "  issued:                 {n} in {:.2} s = {issued_per_sec:.0}/s",
        elapsed.as_secs_f64()
    );
    println!(
        "  cores busy:             {:.2} of {} (CPU time / wall time while issuing)",
        cpu / elapsed.as_secs_f64(),
        threads()
    );
    println!("  raw aws-lc sign+verify: {raw:.0} pairs/s");
    println!(
        "  ratio (issuance/raw):   {:.0}%",
        100.0 * issued_per_sec / raw
    );
    println!(
        "  X.509 path alone:       {x509:.0}/s on plain threads, no authority or store \
         ({:.0}% of raw; issuance reaches {:.0}% of it)",
        100.0 * x509 / raw,
        100.0 * issued_per_sec / x509
    );
    match openssl_pairs_per_sec() {
        Some((s, v, pairs)) => {
            println!(
                "  openssl speed ecdsap256: {s:.0} sign/s, {v:.0} verify/s = {pairs:.0} pairs/s"
            );
            println!(
                "  ratio (issuance/openssl pairs): {:.0}%",
                100.0 * issued_per_sec / pairs
            );
        }
        None => println!("  openssl speed: not available"),
    }
}
