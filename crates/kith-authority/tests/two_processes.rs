//! Two authorities on one store, as two `kith serve` replicas would be: what
//! one changes (an authority added, the master key rotated, the passphrase
//! changed, a revocation) is in effect in the other within a second, and
//! concurrent writers never leave a value sealed under a retired key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_authority::{Authority, KdfParams, Reader, SecretUpdate, Settings, TokenSpec};
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason, Serial};
use time::OffsetDateTime;

use common::{csr, within_a_second, PASS, PASS2};

mod common;

/// Two authorities on one store: in memory, or one redb file (redb lets one
/// process open a file once, so both share that handle).
async fn pair() -> (tempfile::TempDir, Authority, Authority) {
    pair_on(None).await
}

async fn pair_on(redb: Option<()>) -> (tempfile::TempDir, Authority, Authority) {
    let backend = match redb {
        Some(()) => common::Backend::Redb,
        None => common::Backend::Mem,
    };
    let h = common::Harness::new(backend, Settings::default()).await;
    let b = h.second().await;
    (h.dir, h.authority, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_authority_added_in_one_serves_joins_in_the_other() {
    let (_dir, a, b) = pair().await;
    a.add_authority("api", KeyType::P256)
        .await
        .expect("authority add");
    within_a_second("the new authority", || {
        b.authority_names().contains(&"api".to_string())
    })
    .await;
    assert_eq!(a.roots(), b.roots(), "one trust bundle");
    let (_, token) = b
        .create_token(
            TokenSpec {
                role: "worker".into(),
                node: None,
                ttl: time::Duration::hours(1),
                uses: 1,
                allow_sans: vec![],
                authority: Some("api".into()),
            },
            "test",
        )
        .await
        .expect("a token of the new authority, minted by the other process");
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let (node, issued) = b
        .join(
            &token,
            Some("api-1"),
            &[(Profile::Peer, csr(&key, "api-1"))],
            "test",
        )
        .await
        .expect("join the new authority through the other process");
    assert_eq!(node.authority, "api");
    let api_root = a.root_cert("api").expect("root");
    kith_pki::verify_chain(
        &issued[0].record.der,
        &issued[0].chain,
        &[api_root],
        &[],
        OffsetDateTime::now_utc(),
        Profile::Peer,
    )
    .expect("issued under the new authority's root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_key_rotation_converges_with_a_concurrent_writer() {
    let (_dir, a, b) = pair().await;
    rotation_with_a_concurrent_writer(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_key_rotation_converges_on_redb_too() {
    let (_dir, a, b) = pair_on(Some(())).await;
    rotation_with_a_concurrent_writer(a, b).await;
}

async fn rotation_with_a_concurrent_writer(a: Authority, b: Authority) {
    for i in 0..20 {
        b.put_secret(&format!("before-{i}"), b"v", SecretUpdate::default(), "t")
            .await
            .expect("put");
    }
    let before = b.keyring_generation();
    // B keeps writing while A rotates.
    let writer = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            for i in 0..200 {
                let name = format!("during-{i}");
                b.put_secret(
                    &name,
                    format!("value {i}").as_bytes(),
                    SecretUpdate::default(),
                    "t",
                )
                .await
                .expect("put during the rotation");
                written.push(name);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            written
        })
    };
    let report = a
        .rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("rotate");
    let written = writer.await.expect("writer");
    within_a_second("the rotated key in the other process", || {
        b.keyring_generation() > before
    })
    .await;
    let names: Vec<String> = (0..20)
        .map(|i| format!("before-{i}"))
        .chain(written)
        .collect();
    for name in &names {
        for who in [&a, &b] {
            who.get_secret(name, None, Reader::Admin("test"))
                .await
                .unwrap_or_else(|e| panic!("{name} unreadable after the rotation: {e}"));
        }
    }
    // Nothing is left sealed under the retired key.
    for e in a.store().list("secretval/").await.expect("list") {
        let v: serde_json::Value = serde_json::from_slice(&e.value).expect("json");
        assert_eq!(
            v["master_version"].as_u64(),
            Some(u64::from(report.master_version)),
            "{} sealed under a retired key",
            e.key
        );
    }
    // B seals under the new key from now on, and A reads it.
    b.put_secret("after", b"x", SecretUpdate::default(), "t")
        .await
        .expect("put after");
    a.get_secret("after", None, Reader::Admin("test"))
        .await
        .expect("read after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passphrase_change_in_one_leaves_the_other_serving() {
    let (_dir, a, b) = pair().await;
    a.change_passphrase(PASS2, KdfParams::MINIMUM)
        .await
        .expect("passphrase change");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    b.sign_csr(
        &csr(&key, "node-9"),
        kith_authority::Identity {
            node: "node-9".into(),
            role: "worker".into(),
            profile: Profile::Peer,
            authority: None,
            ttl: None,
        },
        None,
    )
    .await
    .expect("the other process still issues");
    b.put_secret("s", b"v", SecretUpdate::default(), "t")
        .await
        .expect("and seals");
    a.get_secret("s", None, Reader::Admin("t"))
        .await
        .expect("readable by the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocations_and_crl_numbers_across_processes() {
    let (_dir, a, b) = pair().await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let issued = a
        .sign_csr(
            &csr(&key, "node-1"),
            kith_authority::Identity {
                node: "node-1".into(),
                role: "worker".into(),
                profile: Profile::Peer,
                authority: None,
                ttl: None,
            },
            None,
        )
        .await
        .expect("issue");
    let serial = Serial::parse(&issued.record.serial).expect("serial");
    a.revoke(
        kith_authority::RevokeTarget::Serial(serial),
        RevocationReason::KeyCompromise,
        "test",
        kith_authority::Publish::Now,
    )
    .await
    .expect("revoke");
    let crl = b.crl("cluster").await.expect("the other's CRL");
    let listed = kith_pki::inspect(&crl.der).expect("CRL");
    assert!(
        format!("{listed:?}").contains(&issued.record.serial),
        "the other process's CRL lists the revocation"
    );
    // Two signers racing: numbers strictly increase, none reused.
    let mut tasks = Vec::new();
    for who in [a.clone(), b.clone(), a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..5 {
                got.push(who.regenerate_crl("cluster").await.expect("sign").number);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let got = t.await.expect("signer");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        all.extend(got);
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a CRL number was used twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_that_cannot_follow_a_rotation_refuses_to_seal() {
    let (_dir, a, b) = pair().await;
    // The passphrase changes in A, then A rotates the master key: B holds
    // the old passphrase and cannot unwrap the next key.
    a.change_passphrase(PASS2, KdfParams::MINIMUM)
        .await
        .expect("passphrase change");
    a.rotate_master(PASS2, Arc::new(|_, _| {}))
        .await
        .expect("rotate");
    let start = Instant::now();
    loop {
        // Whatever B would seal under its old key would be unreadable now.
        match b.put_secret("s", b"v", SecretUpdate::default(), "t").await {
            Err(e) => {
                assert!(e.to_string().contains("restart"), "{e}");
                break;
            }
            Ok(_) => {
                a.get_secret("s", None, Reader::Admin("t"))
                    .await
                    .expect("anything B sealed is readable");
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "B kept sealing although it cannot follow the rotation"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
