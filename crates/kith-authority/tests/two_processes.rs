//! Two authorities on one store, as two `kith serve` replicas would be: what
//! one changes (an authority added, the master key rotated, the passphrase
//! changed, a revocation) is in effect in the other within a second, and
//! concurrent writers never leave a value sealed under a retired key. Each
//! runs on `MemStore` or redb and again on a real 3-node NATS cluster, each
//! authority on its own connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_authority::{Authority, KdfParams, Reader, SecretUpdate, Settings, TokenSpec};
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason, Serial};
use time::OffsetDateTime;

use common::{csr, within_a_second, PASS, PASS2};

mod common;

/// A one-hour `worker` token minted by `who`: for node `node` (or any),
/// `uses` uses, of `authority` (or the default).
async fn worker_token(
    who: &Authority,
    node: Option<&str>,
    uses: u32,
    authority: Option<&str>,
) -> (kith_authority::TokenRecord, kith_api::JoinToken) {
    who.create_token(
        TokenSpec {
            role: "worker".into(),
            node: node.map(String::from),
            ttl: time::Duration::hours(1),
            uses,
            allow_sans: vec![],
            authority: authority.map(String::from),
        },
        "test",
    )
    .await
    .expect("a token")
}

/// Two authorities, each on its own connection to one bucket of a real
/// 3-node nats-server cluster (R3): two `kith serve` replicas as they run.
async fn pair_on_nats() -> (kith_store_nats::testing::NatsCluster, Authority, Authority) {
    let (cluster, mut all) = nats_authorities(2).await;
    let b = all.pop().expect("two");
    let a = all.pop().expect("two");
    (cluster, a, b)
}

/// `n` authorities on their own connections to one bucket of a 3-node cluster.
async fn nats_authorities(n: usize) -> (kith_store_nats::testing::NatsCluster, Vec<Authority>) {
    let cluster = kith_store_nats::testing::NatsCluster::start(3).await;
    let clock = Arc::new(kith_authority::ManualClock::new(OffsetDateTime::now_utc()));
    let connect = || async {
        let s = kith_store_nats::NatsStore::connect(cluster.options("kith"))
            .await
            .expect("connect to the NATS cluster");
        Arc::new(s) as Arc<dyn kith_store::Store>
    };
    let first = Authority::init(
        connect().await,
        clock.clone(),
        common::options(),
        PASS,
        Settings::default(),
    )
    .await
    .expect("init on NATS");
    let mut all = vec![first];
    for _ in 1..n {
        all.push(
            Authority::open(connect().await, clock.clone(), PASS, Settings::default())
                .await
                .expect("open another replica on NATS"),
        );
    }
    (cluster, all)
}

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
    authority_added_in_one_serves_joins_in_the_other(a, b).await;
}

async fn authority_added_in_one_serves_joins_in_the_other(a: Authority, b: Authority) {
    a.add_authority("api", KeyType::P256)
        .await
        .expect("authority add");
    within_a_second("the new authority", || {
        b.authority_names().contains(&"api".to_string())
    })
    .await;
    assert_eq!(a.roots(), b.roots(), "one trust bundle");
    let (_, token) = worker_token(&b, None, 1, Some("api")).await;
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
    revocations_and_crl_numbers(a, b).await;
}

async fn revocations_and_crl_numbers(a: Authority, b: Authority) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_nats_an_authority_added_in_one_serves_joins_in_the_other() {
    let (_nats, a, b) = pair_on_nats().await;
    authority_added_in_one_serves_joins_in_the_other(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_nats_a_master_key_rotation_converges_with_a_concurrent_writer() {
    let (_nats, a, b) = pair_on_nats().await;
    rotation_with_a_concurrent_writer(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_nats_revocations_and_crl_numbers_across_processes() {
    let (_nats, a, b) = pair_on_nats().await;
    revocations_and_crl_numbers(a, b).await;
}

/// 50 joins at once spread over three replicas on NATS with a 1-use token:
/// exactly one succeeds; with a 3-use token exactly three; no serial twice;
/// the token shows its uses spent exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_nats_concurrent_joins_spend_token_uses_exactly() {
    let (_nats, all) = nats_authorities(3).await;
    let mut serials = std::collections::BTreeSet::new();
    for uses in [1u32, 3] {
        let (record, token) = worker_token(&all[0], None, uses, None).await;
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let (a, token) = (all[i % 3].clone(), token.clone());
                tokio::spawn(async move {
                    let key = PrivateKey::generate(KeyType::P256).expect("key");
                    let name = format!("n{uses}-{i}");
                    a.join(
                        &token,
                        Some(&name),
                        &[(Profile::Peer, csr(&key, &name))],
                        "test",
                    )
                    .await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("join task") {
                Ok((_, issued)) => {
                    ok += 1;
                    assert!(
                        serials.insert(issued[0].record.serial.clone()),
                        "serial issued twice"
                    );
                }
                Err(kith_authority::Error::TokenUsedUp) => {}
                Err(e) => panic!("a join failed otherwise than on the token: {e}"),
            }
        }
        assert_eq!(ok, uses, "{uses}-use token");
        let left = all[1]
            .tokens()
            .await
            .expect("tokens")
            .into_iter()
            .find(|t| t.id == record.id)
            .map(|t| t.uses_left);
        assert_eq!(left, Some(0), "every use spent, none twice");
    }
}

/// Two replicas each revoke a certificate at the same moment, many times:
/// the newest CRL always lists both, whatever order their CRL signings
/// interleave in (a signer that listed the revocations before reading the
/// CRL it replaces could publish a higher number without the other's).
async fn concurrent_revocations_both_reach_the_newest_crl(a: Authority, b: Authority) {
    let issue = |who: Authority, name: String| async move {
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let issued = who
            .sign_csr(
                &csr(&key, &name),
                kith_authority::Identity {
                    node: name.clone(),
                    role: "worker".into(),
                    profile: Profile::Peer,
                    authority: None,
                    ttl: None,
                },
                None,
            )
            .await
            .expect("issue");
        Serial::parse(&issued.record.serial).expect("serial")
    };
    for round in 0..30 {
        let x = issue(a.clone(), format!("x-{round}")).await;
        let y = issue(b.clone(), format!("y-{round}")).await;
        let revoke = |who: Authority, s: Serial| {
            tokio::spawn(async move {
                who.revoke(
                    kith_authority::RevokeTarget::Serial(s),
                    RevocationReason::KeyCompromise,
                    "test",
                    kith_authority::Publish::Now,
                )
                .await
                .expect("revoke")
            })
        };
        // A re-signs (as its maintenance or a CRL request might) while
        // each replica revokes one certificate.
        let signer = {
            let a = a.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    a.regenerate_crl("cluster").await.expect("sign");
                }
            })
        };
        let (ra, rb) = (revoke(a.clone(), x), revoke(b.clone(), y));
        ra.await.expect("task");
        rb.await.expect("task");
        signer.await.expect("signer");
        let crl = a.crl("cluster").await.expect("the CRL");
        let listed = format!("{:?}", kith_pki::inspect(&crl.der).expect("CRL"));
        for s in [&x, &y] {
            assert!(
                listed.contains(&s.to_hex()),
                "round {round}: CRL {} lacks {}",
                crl.number,
                s.to_hex()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_revocations_both_reach_the_newest_crl_in_memory() {
    let (_dir, a, b) = pair().await;
    concurrent_revocations_both_reach_the_newest_crl(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_nats_concurrent_revocations_both_reach_the_newest_crl() {
    let (_nats, a, b) = pair_on_nats().await;
    concurrent_revocations_both_reach_the_newest_crl(a, b).await;
}

/// An operator issuing a name directly on one replica while a node joins
/// with a token for that name on the other: never two live certificates
/// for the name. (The issue checks the name early and wrote the node
/// record unconditionally late, so a join in between lost its record while
/// its certificate stayed live.)
async fn direct_issue_racing_a_join_leaves_one_live_certificate(a: Authority, b: Authority) {
    for round in 0..40 {
        let name = format!("race-{round}");
        let (_, token) = worker_token(&b, Some(name.as_str()), 1, None).await;
        let issue = {
            let (a, name) = (a.clone(), name.clone());
            tokio::spawn(async move { a.issue(common::request(&name)).await })
        };
        let join = {
            let (b, name) = (b.clone(), name.clone());
            tokio::spawn(async move {
                let key = PrivateKey::generate(KeyType::P256).expect("key");
                b.join(
                    &token,
                    Some(&name),
                    &[(Profile::Peer, csr(&key, &name))],
                    "test",
                )
                .await
            })
        };
        let (issued, joined) = (issue.await.expect("task"), join.await.expect("task"));
        assert!(
            issued.is_err() || joined.is_err(),
            "round {round}: both the direct issue and the join of {name} succeeded"
        );
        let live: Vec<_> = a
            .certificates()
            .await
            .expect("certificates")
            .into_iter()
            .filter(|(c, revoked)| c.node == name && revoked.is_none())
            .collect();
        assert!(
            live.len() <= 1,
            "round {round}: {} live certificates for {name}",
            live.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_issue_racing_a_join_in_memory() {
    let (_dir, a, b) = pair().await;
    direct_issue_racing_a_join_leaves_one_live_certificate(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_nats_direct_issue_racing_a_join() {
    let (_nats, a, b) = pair_on_nats().await;
    direct_issue_racing_a_join_leaves_one_live_certificate(a, b).await;
}

/// A node renews on one replica while its certificate is revoked by serial
/// on the other, many times: a renewal that succeeds published its node
/// record before the revocation was stored (store revisions order them);
/// one the revocation came first for is refused and its new certificate
/// revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_by_serial_racing_a_renewal() {
    let h = common::Harness::new(common::Backend::Mem, Settings::default()).await;
    let (a, b) = (h.authority.clone(), h.second().await);
    let mut refused = 0;
    for round in 0..40 {
        let name = format!("rr-{round}");
        let (_, token) = worker_token(&a, Some(name.as_str()), 1, None).await;
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let (_, issued) = a
            .join(
                &token,
                Some(&name),
                &[(Profile::Peer, csr(&key, &name))],
                "test",
            )
            .await
            .expect("join");
        let (der, serial) = (
            issued[0].record.der.clone(),
            issued[0].record.serial.clone(),
        );
        let renew = {
            let (a, name) = (a.clone(), name.clone());
            tokio::spawn(async move {
                let next = PrivateKey::generate(KeyType::P256).expect("key");
                a.renew(
                    &der,
                    None,
                    &[(Profile::Peer, csr(&next, &name))],
                    time::Duration::days(7),
                )
                .await
            })
        };
        let revoke = {
            let (b, s) = (b.clone(), Serial::parse(&serial).expect("serial"));
            tokio::spawn(async move {
                b.revoke(
                    kith_authority::RevokeTarget::Serial(s),
                    RevocationReason::KeyCompromise,
                    "test",
                    kith_authority::Publish::Now,
                )
                .await
            })
        };
        let renewed = renew.await.expect("task");
        revoke.await.expect("task").expect("revoke");
        let revoked_at = h
            .store
            .get(&format!("revoked/cluster/{serial}"))
            .await
            .expect("get")
            .expect("revoked")
            .revision;
        match renewed {
            Ok((_, new)) => {
                let node = h
                    .store
                    .get(&format!("node/{name}"))
                    .await
                    .expect("get")
                    .expect("node");
                assert!(
                    node.revision < revoked_at,
                    "round {round}: renewal published at {} after the revocation at {revoked_at}",
                    node.revision
                );
                let _ = new;
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("{refused} of 40 renewals refused");
}

/// A store that holds back every create under one prefix until released,
/// as a write retried through a NATS leader election lands late.
struct Held {
    inner: Arc<dyn kith_store::Store>,
    prefix: &'static str,
    gate: tokio::sync::watch::Receiver<bool>,
    waiting: tokio::sync::mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl kith_store::Store for Held {
    async fn get(&self, key: &str) -> kith_store::Result<Option<kith_store::Entry>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> kith_store::Result<u64> {
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> kith_store::Result<u64> {
        if key.starts_with(self.prefix) {
            let _ = self.waiting.send(());
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
        }
        self.inner.create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, rev: u64) -> kith_store::Result<u64> {
        self.inner.update(key, value, rev).await
    }
    async fn delete(&self, key: &str) -> kith_store::Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_if(&self, key: &str, rev: u64) -> kith_store::Result<()> {
        self.inner.delete_if(key, rev).await
    }
    async fn list(&self, prefix: &str) -> kith_store::Result<Vec<kith_store::Entry>> {
        self.inner.list(prefix).await
    }
    async fn watch(
        &self,
        prefix: &str,
    ) -> kith_store::Result<
        futures::stream::BoxStream<'static, kith_store::Result<kith_store::WatchEvent>>,
    > {
        self.inner.watch(prefix).await
    }
    fn limits(&self) -> kith_store::Limits {
        self.inner.limits()
    }
}

/// A value sealed under the master key, whose write lands only after
/// another replica finished a rotation and dropped that key: the writer
/// sees the rotation moved on, withdraws it and seals it again, so the
/// acknowledged write stays readable (before: sealed by a key the cluster
/// no longer holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_that_lands_after_a_rotation_is_sealed_again() {
    let h = common::Harness::new(common::Backend::Mem, Settings::default()).await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let (waiting, mut waited) = tokio::sync::mpsc::unbounded_channel();
    let held: Arc<dyn kith_store::Store> = Arc::new(Held {
        inner: h.store.clone(),
        prefix: "secretval/",
        gate,
        waiting,
    });
    let slow = Authority::open(held, h.clock.clone(), PASS, Settings::default())
        .await
        .expect("the slow replica");
    let write = {
        let slow = slow.clone();
        tokio::spawn(async move {
            slow.put_secret("late", b"kept value", SecretUpdate::default(), "t")
                .await
        })
    };
    waited
        .recv()
        .await
        .expect("the write is sealed and on its way");
    h.authority
        .rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("the other replica rotates");
    open.send(true).expect("release the write");
    write.await.expect("task").expect("the late write succeeds");
    for who in [&h.authority, &slow] {
        let (_, got) = who
            .get_secret("late", None, Reader::Admin("t"))
            .await
            .expect("readable after the rotation");
        assert_eq!(got.as_slice(), b"kept value");
    }
}

/// The same for an authority added on a replica whose record lands after
/// another replica's rotation: its CA keys are sealed again, and it signs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_authority_that_lands_after_a_rotation_is_sealed_again() {
    let h = common::Harness::new(common::Backend::Mem, Settings::default()).await;
    let (open, gate) = tokio::sync::watch::channel(false);
    let (waiting, mut waited) = tokio::sync::mpsc::unbounded_channel();
    let held: Arc<dyn kith_store::Store> = Arc::new(Held {
        inner: h.store.clone(),
        prefix: "authority/late",
        gate,
        waiting,
    });
    let slow = Authority::open(held, h.clock.clone(), PASS, Settings::default())
        .await
        .expect("the slow replica");
    let add = {
        let slow = slow.clone();
        tokio::spawn(async move { slow.add_authority("late", KeyType::P256).await })
    };
    waited
        .recv()
        .await
        .expect("the authority is sealed and on its way");
    h.authority
        .rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("the other replica rotates");
    open.send(true).expect("release the write");
    add.await
        .expect("task")
        .expect("the late authority is added");
    let fresh = h.second().await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    fresh
        .sign_csr(
            &csr(&key, "late-1"),
            kith_authority::Identity {
                node: "late-1".into(),
                role: "worker".into(),
                profile: Profile::Peer,
                authority: Some("late".into()),
                ttl: None,
            },
            None,
        )
        .await
        .expect("the late authority signs after the rotation");
}
