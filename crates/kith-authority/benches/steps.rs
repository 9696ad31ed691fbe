//! Single-thread cost of each step of an issuance, in microseconds, next to
//! raw aws-lc ECDSA P-256 sign and verify: where the time of
//! `benches/issuance.rs` goes. `cargo bench -p kith-authority --bench steps`.

use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair};
use kith_pki::{CaKind, CaSpec, KeyType, LeafSpec, PrivateKey, Profile, Serial};
use time::OffsetDateTime;

const N: usize = 3000;

fn per_op(label: &str, mut f: impl FnMut(usize)) {
    let start = Instant::now();
    for i in 0..N {
        f(i);
    }
    println!(
        "  {label:<34} {:>7.1} µs",
        start.elapsed().as_secs_f64() * 1e6 / N as f64
    );
}

fn main() {
    let now = OffsetDateTime::now_utc();
    let csrs: Vec<Vec<u8>> = (0..N)
        .map(|_| {
            let key = rcgen::KeyPair::generate().expect("keygen");
            let params = rcgen::CertificateParams::new(vec!["node-1.bench.example".to_string()])
                .expect("params");
            params.serialize_request(&key).expect("csr").der().to_vec()
        })
        .collect();
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
    let parsed: Vec<_> = csrs
        .iter()
        .map(|c| kith_pki::parse_csr(c).expect("csr"))
        .collect();

    println!("single-thread cost per operation (P-256, {N} runs each)");
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("keygen");
    let key = EcdsaKeyPair::from_pkcs8(alg, doc.as_ref()).expect("key");
    let msg = [0x5au8; 400];
    let sig = key.sign(&rng, &msg).expect("sign");
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        key.public_key().as_ref().to_vec(),
    );
    per_op("raw aws-lc sign", |_| {
        key.sign(&rng, &msg).expect("sign");
    });
    per_op("raw aws-lc verify", |_| {
        public.verify(&msg, sig.as_ref()).expect("verify")
    });
    per_op("parse_csr (parse + verify)", |i| {
        kith_pki::parse_csr(&csrs[i]).expect("csr");
    });
    per_op("Csr::approve", |i| {
        parsed[i]
            .approve(&Default::default(), "bench.example", "worker", "node-1")
            .expect("approve");
    });
    let leaf = |i: usize| {
        LeafSpec {
            cluster: "bench.example".into(),
            namespace: kith_pki::Namespace::Node,
            node: "node-1".into(),
            role: "worker".into(),
            profile: Profile::Peer,
            extra_sans: Vec::new(),
            ttl: time::Duration::days(90),
            serial: Serial::random().expect("serial"),
            crl_urls: Vec::new(),
        }
        .sign(&parsed[i].public_key, &ca, now)
        .expect("leaf")
    };
    // The X.509 path of an issuance (parse + verify, build + sign) on every
    // core with plain threads: what the authority and its store could reach.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (csrs, leaf) = (&csrs, &leaf);
            scope.spawn(move || {
                for i in (t..N).step_by(threads) {
                    let csr = kith_pki::parse_csr(&csrs[i]).expect("csr");
                    let _ = csr;
                    leaf(i);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "  parse+verify+build+sign on {threads} threads: {:.0}/s ({:.1} µs of core time each)",
        N as f64 / secs,
        secs * threads as f64 * 1e6 / N as f64
    );
    per_op("LeafSpec::sign (build + sign)", |i| {
        LeafSpec {
            cluster: "bench.example".into(),
            namespace: kith_pki::Namespace::Node,
            node: "node-1".into(),
            role: "worker".into(),
            profile: Profile::Peer,
            extra_sans: Vec::new(),
            ttl: time::Duration::days(90),
            serial: Serial::random().expect("serial"),
            crl_urls: Vec::new(),
        }
        .sign(&parsed[i].public_key, &ca, now)
        .expect("leaf");
    });
}
