//! Secrets and CRLs larger than one store value, on a store that takes at
//! most 256 KiB per value: split over `chunk/` keys, read back whole by a
//! second authority on the same store, replaced and removed without a chunk
//! left behind, and (the CRL) judged by openssl and x509-parser.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use kith_authority::{
    Authority, Clock, ManualClock, Reader, RevokedRecord, SecretUpdate, Settings, SettingsChange,
};
use kith_pki::RevocationReason;
use kith_store::chunked::{self, CHUNK_PREFIX, ORPHAN_GRACE};
use kith_store::Store;

use common::{noise, PASS};

mod common;
const MAX_VALUE: usize = 256 * 1024;
const ADMIN: Reader<'static> = Reader::Admin("admin:test");

/// Two authorities on one small-valued store; secrets up to 8 MiB, two
/// versions kept.
async fn pair() -> (Arc<dyn Store>, Arc<ManualClock>, Authority, Authority) {
    let change = SettingsChange {
        secret_max_bytes: Some(8 << 20),
        keep_versions: Some(2),
        ..SettingsChange::default()
    };
    let h = common::Harness::new(common::Backend::MemLimited(MAX_VALUE), Settings::default())
        .await
        .with_settings(change)
        .await;
    let b = h.second().await;
    (h.store, h.clock, h.authority, b)
}

/// The id a head names (`id=` line), if the value is a head.
fn head_id(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value.strip_prefix(b"\0kith-chunked-v1\n")?).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("id="))
        .map(str::to_string)
}

/// Every value in the store fits its limit, and the chunks in it are
/// exactly those the heads name: nothing orphaned, nothing missing.
/// Returns the number of chunk keys.
async fn assert_store_tidy(store: &dyn Store, what: &str) -> usize {
    let all = store.list("").await.expect("list everything");
    let mut named = BTreeSet::new();
    let mut present = BTreeSet::new();
    let mut chunks = 0;
    for e in &all {
        assert!(
            e.value.len() <= MAX_VALUE,
            "{what}: {} holds {} bytes, above {MAX_VALUE}",
            e.key,
            e.value.len()
        );
        if let Some(rest) = e.key.strip_prefix(CHUNK_PREFIX) {
            chunks += 1;
            present.insert(rest.split('/').next().expect("an id").to_string());
        } else if let Some(id) = head_id(&e.value) {
            named.insert(id);
        }
    }
    assert_eq!(
        named, present,
        "{what}: chunk ids in the store vs ids heads name"
    );
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_several_mib_is_split_read_replaced_and_removed() {
    let (store, _clock, a, b) = pair().await;
    let v1 = noise(5 << 20, 1);
    a.put_secret("big", &v1, SecretUpdate::default(), "test")
        .await
        .expect("put 5 MiB");
    let (version, back) = b.get_secret("big", None, ADMIN).await.expect("B reads it");
    assert_eq!(version, 1);
    assert!(
        back.as_slice() == v1,
        "byte-identical through the other authority"
    );
    assert!(
        assert_store_tidy(&*store, "one version").await >= (5 << 20) / MAX_VALUE,
        "the value is split"
    );
    // Only the head is listed with the secret's values.
    assert_eq!(store.list("secretval/big/").await.expect("list").len(), 1);

    // Replaced: both versions readable, each whole.
    let v2 = noise(6 << 20, 2);
    b.put_secret("big", &v2, SecretUpdate::default(), "test")
        .await
        .expect("put 6 MiB");
    assert!(
        a.get_secret("big", None, ADMIN)
            .await
            .expect("read v2")
            .1
            .as_slice()
            == v2
    );
    assert!(
        a.get_secret("big", Some(1), ADMIN)
            .await
            .expect("read v1")
            .1
            .as_slice()
            == v1
    );
    assert_store_tidy(&*store, "two versions").await;

    // A master key rotation reseals split values too, readable by both.
    a.rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("rotate");
    b.refresh_keyring().await.expect("refresh");
    assert!(
        b.get_secret("big", Some(1), ADMIN)
            .await
            .expect("v1")
            .1
            .as_slice()
            == v1
    );
    assert!(
        b.get_secret("big", Some(2), ADMIN)
            .await
            .expect("v2")
            .1
            .as_slice()
            == v2
    );
    assert_store_tidy(&*store, "after a rotation").await;

    // A third version drops the first (two kept), with its chunks; a small
    // one is stored inline.
    a.put_secret("big", b"small now", SecretUpdate::default(), "test")
        .await
        .expect("put small");
    assert!(
        b.get_secret("big", None, ADMIN)
            .await
            .expect("v3")
            .1
            .as_slice()
            == b"small now"
    );
    let e = b
        .get_secret("big", Some(1), ADMIN)
        .await
        .expect_err("v1 dropped");
    assert_eq!(e.code(), "unknown-secret-version", "{e}");
    assert_store_tidy(&*store, "v1 dropped").await;

    // Removing one version, then the secret, leaves no chunk.
    a.delete_secret("big", Some(2), "test")
        .await
        .expect("rm v2");
    assert_eq!(assert_store_tidy(&*store, "v2 removed").await, 0);
    let v4 = noise(3 << 20, 4);
    a.put_secret("big", &v4, SecretUpdate::default(), "test")
        .await
        .expect("put 3 MiB");
    assert!(assert_store_tidy(&*store, "v4").await > 0);
    b.delete_secret("big", None, "test")
        .await
        .expect("secret rm");
    assert_eq!(assert_store_tidy(&*store, "secret removed").await, 0);
    assert!(store.list("secretval/").await.expect("list").is_empty());
    assert!(store.list(CHUNK_PREFIX).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_writers_chunks_are_swept_and_live_ones_kept() {
    let (store, clock, a, _b) = pair().await;
    let live = noise(1 << 20, 5);
    a.put_secret("live", &live, SecretUpdate::default(), "test")
        .await
        .expect("put");
    a.regenerate_crl("cluster").await.expect("a CRL");
    // A writer killed after its chunks, before its head.
    let then = std::time::SystemTime::from(clock.now());
    chunked::create(
        &*store,
        "secretval/ghost/00000000000000000001",
        &noise(MAX_VALUE * 2 + 1, 6),
        then,
    )
    .await
    .expect("chunks and a head");
    store
        .delete("secretval/ghost/00000000000000000001")
        .await
        .expect("only the head goes");
    let before = store.list(CHUNK_PREFIX).await.expect("list").len();
    assert_eq!(
        a.sweep_orphan_chunks().await.expect("sweep"),
        0,
        "too young"
    );
    clock.advance(time::Duration::seconds(ORPHAN_GRACE.as_secs() as i64 + 60));
    assert_eq!(
        a.sweep_orphan_chunks().await.expect("sweep"),
        3,
        "the orphans"
    );
    assert_eq!(
        store.list(CHUNK_PREFIX).await.expect("list").len(),
        before - 3
    );
    assert_store_tidy(&*store, "after the sweep").await;
    assert!(
        a.get_secret("live", None, ADMIN)
            .await
            .expect("read")
            .1
            .as_slice()
            == live
    );
}

fn pem(tag: &str, der: &[u8]) -> String {
    kith_pki::pem_encode(tag, der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_of_several_mib_is_split_stored_and_verifies() {
    let (store, clock, a, b) = pair().await;
    let n = 120_000usize;
    let now = clock.now();
    let started = Instant::now();
    // Issuing this many certificates takes minutes; their revocation
    // records, as `revoke` writes them, take moments.
    for i in 0..n {
        let serial = format!("7f{i:030x}");
        let rec = RevokedRecord {
            serial: serial.clone(),
            node: format!("n{i}"),
            authority: "cluster".into(),
            reason: RevocationReason::KeyCompromise,
            revoked_at: kith_pki::second_precision(now),
            not_after: kith_pki::second_precision(now + time::Duration::days(30)),
        };
        store
            .create(
                &format!("revoked/cluster/{serial}"),
                serde_json::to_vec(&rec).expect("json"),
            )
            .await
            .expect("seed");
    }
    let seeded = started.elapsed();
    let crl = a.regenerate_crl("cluster").await.expect("sign");
    let signed = started.elapsed();
    assert_eq!(crl.entries, n);
    assert!(crl.der.len() > 4 << 20, "several MiB: {}", crl.der.len());
    assert!(
        store
            .get("crl/cluster")
            .await
            .expect("get")
            .expect("head")
            .value
            .len()
            < 1024
    );
    let chunks = assert_store_tidy(&*store, "a large CRL").await;
    assert!(chunks > 16, "split: {chunks} chunks");

    // Read back by the other authority, byte-identical.
    let back = kith_authority::stored_crl(&**b.store(), "cluster")
        .await
        .expect("read")
        .expect("stored");
    assert!(back.der == crl.der && back.number == crl.number);
    assert_eq!(b.crl("cluster").await.expect("served").der, crl.der);

    // openssl checks its signature against the issuing CA.
    let dir = tempfile::tempdir().expect("tempdir");
    let crl_path = dir.path().join("crl.der");
    std::fs::write(&crl_path, &back.der).expect("write");
    let ca_path = dir.path().join("ca.pem");
    let ca = pem(
        "CERTIFICATE",
        &a.intermediate_cert("cluster").expect("inter"),
    ) + &pem("CERTIFICATE", &a.root_cert("cluster").expect("root"));
    std::fs::write(&ca_path, ca).expect("write");
    let out = std::process::Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-in"])
        .arg(&crl_path)
        .arg("-CAfile")
        .arg(&ca_path)
        .output()
        .expect("run openssl");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.contains("verify OK"),
        "openssl: {said}"
    );

    // x509-parser: every entry, and the signature under the intermediate's key.
    let (rest, parsed) = x509_parser::parse_x509_crl(&back.der).expect("x509-parser parses it");
    assert!(rest.is_empty());
    assert_eq!(parsed.iter_revoked_certificates().count(), n);
    let inter_der = a.intermediate_cert("cluster").expect("inter");
    let (_, inter) = x509_parser::parse_x509_certificate(&inter_der).expect("intermediate");
    parsed
        .verify_signature(inter.public_key())
        .expect("signed by the intermediate");

    // Re-signed: the old CRL's chunks go with it.
    let next = b.regenerate_crl("cluster").await.expect("re-sign");
    assert_eq!(next.number, crl.number + 1);
    assert_store_tidy(&*store, "re-signed").await;
    eprintln!(
        "{n} revocations: seeded in {seeded:?}, signed in {:?}, all in {:?}",
        signed - seeded,
        started.elapsed()
    );
}

/// A secret's metadata is one store value and is never split: a policy too
/// long for it is refused with a clear error, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_too_long_for_one_value_is_refused_and_changes_nothing() {
    let (store, _clock, a, _b) = pair().await;
    a.put_secret("p", &noise(1 << 20, 7), SecretUpdate::default(), "test")
        .await
        .expect("put");
    let contents = |entries: Vec<kith_store::Entry>| -> Vec<(String, Vec<u8>)> {
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    };
    let before = contents(store.list("").await.expect("list"));
    let long = SecretUpdate {
        allow_nodes: Some((0..5000).map(|i| format!("node-{i:0>50}")).collect()),
        ..SecretUpdate::default()
    };
    let e = a
        .put_secret("p", &noise(1 << 20, 8), long, "test")
        .await
        .expect_err("a policy of 280 KB");
    assert_eq!(e.code(), "invalid-argument", "{e}");
    assert!(e.to_string().contains("shorten"), "{e}");
    assert_eq!(
        contents(store.list("").await.expect("list")),
        before,
        "unchanged"
    );
    assert!(
        a.get_secret("p", None, ADMIN)
            .await
            .expect("read")
            .1
            .as_slice()
            == noise(1 << 20, 7)
    );
}

/// A split value whose chunk was altered in the store is an integrity
/// error, like an altered inline value; a missing chunk too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_is_an_integrity_error() {
    let (store, _clock, a, _b) = pair().await;
    a.put_secret("d", &noise(1 << 20, 9), SecretUpdate::default(), "test")
        .await
        .expect("put");
    let chunks = store.list(CHUNK_PREFIX).await.expect("list");
    let mut altered = chunks[2].value.clone();
    altered[100] ^= 1;
    store.put(&chunks[2].key, altered).await.expect("alter");
    let e = a.get_secret("d", None, ADMIN).await.expect_err("altered");
    assert_eq!(e.code(), "integrity-error", "{e}");
    store.delete(&chunks[2].key).await.expect("remove");
    let e = a.get_secret("d", None, ADMIN).await.expect_err("missing");
    assert_eq!(e.code(), "integrity-error", "{e}");
}
