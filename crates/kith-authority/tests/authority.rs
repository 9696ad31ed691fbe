//! The authority with an injected clock and a real redb store: expiry,
//! CRL contents and numbering, integrity of sealed keys.

use std::sync::Arc;

use kith_authority::{
    Authority, Error, Identity, IssueRequest, ManualClock, Settings, INTERMEDIATE_TTL,
};
use kith_pki::{Profile, RevocationReason, Serial};
use kith_store::Store;
use time::{Duration, OffsetDateTime};

use common::PASS;

mod common;

async fn setup() -> (
    tempfile::TempDir,
    Arc<dyn Store>,
    Arc<ManualClock>,
    Authority,
) {
    let h = common::Harness::redb().await;
    (h.dir, h.store, h.clock, h.authority)
}

fn request(node: &str) -> IssueRequest {
    common::request(node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaves_never_outlive_the_intermediate() {
    let (_d, _s, clock, authority) = setup().await;
    let issued = authority.issue(request("n1")).await.expect("issue");
    assert!(!issued.truncated);
    assert_eq!(
        issued.record.not_after - issued.record.issued_at.replace_nanosecond(0).expect("ns"),
        Duration::days(90)
    );
    clock.advance(INTERMEDIATE_TTL - Duration::days(10));
    let late = authority.issue(request("n2")).await.expect("issue");
    assert!(
        late.truncated,
        "a 90-day leaf 10 days before the intermediate expires is cut"
    );
    let (_, inter) = x509_not_after(
        &authority
            .intermediate_cert("cluster")
            .expect("intermediate"),
    );
    assert_eq!(late.record.not_after, inter);
    clock.advance(Duration::days(11));
    match authority.issue(request("n3")).await {
        Err(Error::Pki(e)) => assert!(e.to_string().contains("expired"), "{e}"),
        other => panic!("issuing from an expired intermediate must fail, got {other:?}"),
    }
}

fn x509_not_after(der: &[u8]) -> ((), OffsetDateTime) {
    let info = kith_pki::inspect(der).expect("inspect");
    match &info[0] {
        kith_pki::Inspected::Certificate(c) => ((), c.not_after),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_drops_expired_entries_and_numbers_only_grow() {
    let (_d, _s, clock, authority) = setup().await;
    let mut short = request("short");
    short.identity.ttl = Some(Duration::days(1));
    let a = authority.issue(short).await.expect("issue");
    let b = authority.issue(request("long")).await.expect("issue");
    for s in [&a.record.serial, &b.record.serial] {
        authority
            .revoke(
                kith_authority::RevokeTarget::Serial(Serial::parse(s).expect("serial")),
                RevocationReason::Superseded,
                "test",
                kith_authority::Publish::Now,
            )
            .await
            .expect("revoke");
    }
    let crl = authority.crl("cluster").await.expect("crl");
    assert_eq!(crl.entries, 2);
    clock.advance(Duration::days(2));
    let later = authority.regenerate_crl("cluster").await.expect("crl");
    assert_eq!(later.entries, 1, "the expired certificate leaves the CRL");
    assert!(later.number > crl.number);

    // Concurrent signers never reuse a number.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let a = authority.clone();
            tokio::spawn(async move { a.regenerate_crl("cluster").await.expect("crl").number })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.expect("task"));
    }
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(
        numbers.len(),
        8,
        "eight CRLs, eight distinct numbers: {numbers:?}"
    );
    assert!(numbers[0] > later.number);

    // A stale CRL is replaced when asked for; a fresh one is returned as is.
    let fresh = authority.crl("cluster").await.expect("crl");
    assert_eq!(
        authority.crl("cluster").await.expect("crl").number,
        fresh.number
    );
    clock.advance(Duration::days(4));
    assert!(authority.crl("cluster").await.expect("crl").number > fresh.number);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_and_tampered_keys_are_refused() {
    let (_d, store, clock, authority) = setup().await;
    authority.close().await;
    match Authority::open(
        store.clone(),
        clock.clone(),
        b"the wrong passphrase",
        Settings::default(),
    )
    .await
    {
        Err(Error::WrongPassphrase) => {}
        other => panic!("expected WrongPassphrase, got {:?}", other.map(|_| ())),
    }
    // Move the root's sealed key into the intermediate's place: the AAD binds
    // each ciphertext to its name, so it must not open.
    let e = store
        .get("authority/cluster")
        .await
        .expect("get")
        .expect("present");
    let mut v: serde_json::Value = serde_json::from_slice(&e.value).expect("json");
    v["intermediate_key"] = v["root_key"].clone();
    store
        .put("authority/cluster", serde_json::to_vec(&v).expect("json"))
        .await
        .expect("put");
    match Authority::open(store.clone(), clock.clone(), PASS, Settings::default()).await {
        Err(e @ Error::Integrity(_)) => assert_eq!(e.code(), "integrity-error"),
        other => panic!("expected Integrity, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_csrs_and_concurrent_issuance() {
    let (_d, store, _c, authority) = setup().await;
    let before = store.list("cert/").await.expect("list").len();
    let id = Identity {
        node: "n1".into(),
        role: "worker".into(),
        profile: Profile::Peer,
        authority: None,
        ttl: None,
    };
    for garbage in [
        &b""[..],
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        &[0u8; 70_000],
    ] {
        let err = authority
            .sign_csr(garbage, id.clone(), None)
            .await
            .expect_err("refused");
        assert!(matches!(err, Error::Csr(_)), "{err}");
    }
    assert_eq!(store.list("cert/").await.expect("list").len(), before);

    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let a = authority.clone();
            tokio::spawn(async move { a.issue(request(&format!("c{i}"))).await.expect("issue") })
        })
        .collect();
    let mut serials = std::collections::BTreeSet::new();
    for t in tasks {
        serials.insert(t.await.expect("task").record.serial);
    }
    assert_eq!(serials.len(), 200, "distinct serials");
    assert_eq!(
        store.list("cert/").await.expect("list").len(),
        before + 200,
        "all recorded"
    );
}
