//! Root rotation in the authority (issue 13): prepare, activate, finish
//! and abort, each proven on a real redb store with an injected clock,
//! nodes joined through tokens and renewed as the server renews them, and
//! every certificate judged by openssl and pkilint (`KITH_TOOLS_DIR`).

use std::sync::Arc;

use kith_api::JoinToken;
use kith_authority::{
    AuditRecord, Authority, Clock, CrlIssuer, Error, Issued, NodeRecord, RootPhase,
    RootRotationOptions, RootRotationStatus, RootStep, Settings, TokenSpec,
};
use kith_pki::{KeyType, PrivateKey, Profile};
use time::Duration;

use common::{request, Backend, Harness, PASS};
use tools::{openssl, pkilint, s, verify, write_pem};

mod common;
#[path = "root_rotation/tools.rs"]
mod tools;

const NAME: &str = "cluster";

/// Nodes asked to renew by an activation are asked at once.
fn no_spread() -> Settings {
    Settings {
        root_renew_spread: Some(Duration::ZERO),
        ..Settings::default()
    }
}

async fn harness() -> Harness {
    Harness::new(Backend::Redb, no_spread()).await
}

/// A one-hour, `uses`-use `worker` token of the default authority.
async fn token(a: &Authority, uses: u32) -> JoinToken {
    a.create_token(
        TokenSpec {
            role: "worker".into(),
            node: None,
            ttl: Duration::hours(1),
            uses,
            allow_sans: Vec::new(),
            authority: None,
        },
        "test",
    )
    .await
    .expect("a token")
    .1
}

fn peer_csr(name: &str) -> Vec<(Profile, Vec<u8>)> {
    let key = PrivateKey::generate(KeyType::P256).expect("a key");
    vec![(Profile::Peer, common::csr(&key, name))]
}

/// Join node `name` with `token`; its one `peer` certificate.
async fn join_with(a: &Authority, token: &JoinToken, name: &str) -> Issued {
    let (_, mut issued) = a
        .join(token, Some(name), &peer_csr(name), "test")
        .await
        .expect("join");
    issued.pop().expect("one certificate")
}

async fn join(a: &Authority, name: &str) -> Issued {
    join_with(a, &token(a, 1).await, name).await
}

/// Renew over mutual TLS with the certificate `current` presents.
async fn renew(a: &Authority, current: &Issued) -> Issued {
    let (_, mut issued) = a
        .renew(
            &current.record.der,
            None,
            &peer_csr(&current.record.node),
            Duration::days(7),
        )
        .await
        .expect("renew");
    issued.pop().expect("one certificate")
}

fn pin(der: &[u8]) -> [u8; 32] {
    kith_pki::spki_pin(der).expect("a pin")
}

fn issued_by(cert: &[u8], ca: &[u8]) -> bool {
    kith_pki::issued_by(cert, ca).expect("parse")
}

fn common_name(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    let cn = c
        .subject()
        .iter_common_name()
        .next()
        .and_then(|n| n.as_str().ok())
        .expect("a CN")
        .to_string();
    cn
}

async fn status(a: &Authority) -> RootRotationStatus {
    a.root_rotation_status(NAME)
        .await
        .expect("status")
        .expect("a rotation under way")
}

async fn prepare(a: &Authority, opts: RootRotationOptions) -> RootRotationStatus {
    a.prepare_root_rotation(NAME, &opts, "test")
        .await
        .expect("prepare")
}

/// The stored authority record (what every replica reads).
async fn record(a: &Authority) -> kith_authority::AuthorityRecord {
    let e = a
        .store()
        .get(&format!("authority/{NAME}"))
        .await
        .expect("get")
        .expect("the authority record");
    serde_json::from_slice(&e.value).expect("an authority record")
}

/// The prepared rotation's new intermediate, from the stored record.
async fn new_intermediate(a: &Authority) -> Vec<u8> {
    record(a)
        .await
        .root_rotation
        .expect("a rotation")
        .new_intermediate
        .expect("a prepared intermediate")
        .cert
}

async fn audits(a: &Authority, action: &str) -> usize {
    a.store()
        .list("audit/")
        .await
        .expect("list")
        .iter()
        .map(|e| serde_json::from_slice::<AuditRecord>(&e.value).expect("an audit record"))
        .filter(|r| r.action == action)
        .count()
}

fn code(e: Error) -> String {
    e.code().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepare_publishes_both_roots_vouched_for_each_other_and_changes_nothing_issued() {
    let h = harness().await;
    let a = &h.authority;
    let r1 = a.root_cert(NAME).expect("root");
    let i1 = a.intermediate_cert(NAME).expect("intermediate");

    let st = prepare(a, RootRotationOptions::default()).await;
    assert_eq!(st.phase, RootPhase::Prepared);
    assert_eq!(st.old_root_pin, hex::encode(pin(&r1)));

    let roots = a.authority_roots(NAME).expect("roots");
    assert_eq!(roots.len(), 2, "the bundle is [R1, R2]");
    assert_eq!(roots[0], r1, "the active root first");
    let r2 = roots[1].clone();
    assert_ne!(pin(&r2), pin(&r1), "a new key");
    assert_eq!(st.new_root_pin, hex::encode(pin(&r2)));
    assert_eq!(a.roots(), roots, "the cluster's trust bundle too");

    let cross = a.cross_signed(NAME).expect("cross-signed");
    assert_eq!(cross.len(), 2, "[R2 by R1, R1 by R2]");
    assert!(issued_by(&cross[0], &r1) && pin(&cross[0]) == pin(&r2));
    assert_eq!(common_name(&cross[0]), common_name(&r2));
    assert!(issued_by(&cross[1], &r2) && pin(&cross[1]) == pin(&r1));
    assert_eq!(common_name(&cross[1]), common_name(&r1));

    // A node trusting either root takes the other in; without the
    // cross-signed certificates it would not.
    let both = [r1.clone(), r2.clone()];
    let back = [r2.clone(), r1.clone()];
    kith_pki::accept_bundle(std::slice::from_ref(&r1), &both, &cross).expect("R1 accepts R2");
    kith_pki::accept_bundle(std::slice::from_ref(&r2), &back, &cross).expect("R2 accepts R1");
    kith_pki::accept_bundle(std::slice::from_ref(&r1), &both, &[])
        .expect_err("not vouched for, not accepted");

    // Nothing issued changes yet: I1 signs, new tokens pin R1.
    let leaf = a.issue(request("leaf-1")).await.expect("issue");
    assert!(issued_by(&leaf.record.der, &i1));
    assert_eq!(leaf.chain, vec![i1.clone()]);
    assert_eq!(token(a, 1).await.pin, pin(&r1));

    // The new CAs are generation 2, by name; pkilint finds nothing.
    let i2 = new_intermediate(a).await;
    assert!(issued_by(&i2, &r2));
    assert!(common_name(&r2).ends_with(" G2"), "{}", common_name(&r2));
    assert!(common_name(&i2).ends_with(" G2"), "{}", common_name(&i2));
    let dir = h.dir.path();
    for (what, der) in [
        ("R2", &r2),
        ("I2", &i2),
        ("R2 by R1", &cross[0]),
        ("R1 by R2", &cross[1]),
    ] {
        let file = write_pem(dir, "lint.pem", "CERTIFICATE", &[der]);
        let f = pkilint(&file);
        assert!(f.is_empty(), "{what}: pkilint findings {f:#?}");
    }

    // A second rotation is refused while this one runs.
    let e = a
        .prepare_root_rotation(NAME, &RootRotationOptions::default(), "test")
        .await
        .expect_err("one rotation at a time");
    assert_eq!(code(e), "rotation-not-ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_the_trust_nodes_report_and_activation_waits_for_it() {
    let h = harness().await;
    let a = &h.authority;
    let r1 = a.root_cert(NAME).expect("root");
    for n in ["n1", "n2", "n3"] {
        join(a, n).await;
    }
    // n2 reported R1 before the rotation: that says nothing about it.
    a.record_node_trust("n2", &[pin(&r1)]).await.expect("trust");
    h.clock.advance(Duration::seconds(10));
    let st = prepare(a, RootRotationOptions::default()).await;
    assert_eq!(st.offline, ["n1", "n2", "n3"], "{st:?}");
    assert!(st.converged.is_empty() && st.pending.is_empty());
    assert!(st.waiting_for.is_some());
    let r2 = a.authority_roots(NAME).expect("roots")[1].clone();

    h.clock.advance(Duration::seconds(10));
    a.record_node_trust("n1", &[pin(&r1), pin(&r2)])
        .await
        .expect("trust");
    // n2 reports R1 alone again, within a minute of its last report: it
    // is alive and behind, not offline.
    a.record_node_trust("n2", &[pin(&r1)]).await.expect("trust");
    let st = status(a).await;
    assert_eq!(st.converged, ["n1"], "{st:?}");
    assert_eq!(st.pending, ["n2"], "{st:?}");
    assert_eq!(st.offline, ["n3"], "{st:?}");

    // Not ready: refused, and nothing moved.
    let e = a
        .activate_root_rotation(NAME, false, "test")
        .await
        .expect_err("n2 and n3 are not ready");
    assert_eq!(code(e), "rotation-not-ready");
    assert_eq!(status(a).await.phase, RootPhase::Prepared);
    assert_eq!(a.root_cert(NAME).expect("root"), r1);
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Nothing)]
    );

    // Pins of roots the cluster does not have are kept out of the record.
    let (stranger, other) = ([7u8; 32], [9u8; 32]);
    a.record_node_trust("n2", &[pin(&r1), pin(&r2), stranger])
        .await
        .expect("trust");
    a.record_node_trust("n3", &[stranger, other])
        .await
        .expect("trust");
    let n2 = node(a, "n2").await;
    let mut want = vec![hex::encode(pin(&r1)), hex::encode(pin(&r2))];
    want.sort();
    assert_eq!(n2.trusts, want);
    assert!(node(a, "n3").await.trusts.is_empty());
    let st = status(a).await;
    assert_eq!(st.converged, ["n1", "n2"], "{st:?}");
    assert_eq!(st.pending, ["n3"], "reported, but nothing it trusts is new");

    // Forced: n3 is recorded as left behind.
    let st = a
        .activate_root_rotation(NAME, true, "test")
        .await
        .expect("forced activation");
    assert_eq!(st.phase, RootPhase::Active);
    assert_eq!(st.left_behind, ["n3"]);
}

async fn node(a: &Authority, name: &str) -> NodeRecord {
    let e = a
        .store()
        .get(&format!("node/{name}"))
        .await
        .expect("get")
        .expect("the node");
    serde_json::from_slice(&e.value).expect("a node record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_issues_under_the_new_root_with_a_chain_the_old_one_accepts() {
    let h = harness().await;
    let a = &h.authority;
    let dir = h.dir.path();
    let (r1, i1) = (
        a.root_cert(NAME).expect("root"),
        a.intermediate_cert(NAME).expect("i"),
    );
    let old = join(a, "n1").await;
    let before = token(a, 1).await;
    prepare(a, RootRotationOptions::default()).await;
    let r2 = a.authority_roots(NAME).expect("roots")[1].clone();
    let i2 = new_intermediate(a).await;
    let cross = a.cross_signed(NAME).expect("cross-signed");
    assert!(!a.renew_now(&old.record), "prepared: nobody renews yet");

    // Maintenance waits for n1, then activates by itself.
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Nothing)]
    );
    a.record_node_trust("n1", &[pin(&r1), pin(&r2)])
        .await
        .expect("trust");
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Activated)]
    );
    assert_eq!(status(a).await.phase, RootPhase::Active);
    assert_eq!(a.root_cert(NAME).expect("root"), r2);
    assert_eq!(a.intermediate_cert(NAME).expect("i"), i2);
    assert_eq!(
        a.authority_roots(NAME).expect("roots"),
        [r2.clone(), r1.clone()]
    );

    let leaf = a.issue(request("leaf-2")).await.expect("issue");
    assert!(issued_by(&leaf.record.der, &i2));
    assert_eq!(leaf.chain, [i2.clone(), cross[0].clone()], "[I2, R2 by R1]");

    let p = |name: &str, ders: &[&[u8]]| write_pem(dir, name, "CERTIFICATE", ders);
    let (r1_pem, r2_pem, bundle) = (
        p("r1.pem", &[&r1]),
        p("r2.pem", &[&r2]),
        p("ca.pem", &[&r1, &r2]),
    );
    let chain = p("chain.pem", &[&i2, &cross[0]]);
    let (i1_pem, i2_pem) = (p("i1.pem", &[&i1]), p("i2.pem", &[&i2]));
    let (new_pem, old_pem) = (
        p("new.pem", &[&leaf.record.der]),
        p("old.pem", &[&old.record.der]),
    );
    for (what, ca, untrusted, leaf) in [
        ("new leaf, R1 only, its chain", &r1_pem, &chain, &new_pem),
        ("new leaf, R2, I2", &r2_pem, &i2_pem, &new_pem),
        ("new leaf, both roots, its chain", &bundle, &chain, &new_pem),
        ("old leaf, R1, I1", &r1_pem, &i1_pem, &old_pem),
        ("old leaf, both roots, I1", &bundle, &i1_pem, &old_pem),
    ] {
        let (ok, out) = verify(ca, Some(untrusted), &[], leaf);
        assert!(ok, "{what}: {out}");
    }
    // The cross-signed certificate is what carries a new leaf to R1.
    let (ok, out) = verify(&r1_pem, Some(&i2_pem), &[], &new_pem);
    assert!(!ok, "without R2 by R1, R1 alone must not accept: {out}");

    // Tokens: one minted before still redeems; one minted now pins R1.
    let joined = join_with(a, &before, "n2").await;
    assert!(issued_by(&joined.record.der, &i2));
    assert_eq!(token(a, 1).await.pin, pin(&r1));

    // Renew now: the old certificate (no spread here), not the new ones.
    assert!(a.renew_now(&old.record));
    assert!(!a.renew_now(&joined.record));
    assert!(!a.renew_now(&leaf.record));
    let renewed = renew(a, &old).await;
    assert!(issued_by(&renewed.record.der, &i2));
    assert!(!a.renew_now(&renewed.record));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_now_is_spread_but_everyone_is_asked_once_the_spread_is_over() {
    let h = Harness::new(
        Backend::Redb,
        Settings {
            root_renew_spread: Some(Duration::hours(1)),
            ..Settings::default()
        },
    )
    .await;
    let a = &h.authority;
    let mut old = Vec::new();
    for i in 0..8 {
        old.push(join(a, &format!("n{i}")).await);
    }
    prepare(a, RootRotationOptions::default()).await;
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    let asked = |a: &Authority| old.iter().filter(|c| a.renew_now(&c.record)).count();
    let at_once = asked(a);
    h.clock.advance(Duration::hours(1));
    assert_eq!(
        asked(a),
        old.len(),
        "after the spread, every old certificate"
    );
    assert!(at_once < old.len(), "not all {} at once", old.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_follows_the_renewals_and_the_old_root_leaves_with_its_last_leaf() {
    let h = harness().await;
    let a = &h.authority;
    let r1 = a.root_cert(NAME).expect("root");
    let n1 = join(a, "n1").await;
    let n2 = join(a, "n2").await;
    // A leaf issued by hand, not a node's: it keeps R1 trusted too.
    let lasting = a
        .issue(kith_authority::IssueRequest {
            identity: kith_authority::Identity {
                ttl: Some(Duration::days(30)),
                ..request("by-hand").identity
            },
            ..request("by-hand")
        })
        .await
        .expect("issue");
    prepare(a, RootRotationOptions::default()).await;
    let r2 = a.authority_roots(NAME).expect("roots")[1].clone();
    for n in ["n1", "n2"] {
        a.record_node_trust(n, &[pin(&r1), pin(&r2)])
            .await
            .expect("trust");
    }
    // Reports made before activation are not reports of the next phase.
    h.clock.advance(Duration::seconds(1));
    let step = || async { a.maintain_root_rotations("test").await.expect("maintain") };
    let one = |s: RootStep| vec![(NAME.to_string(), s)];
    assert_eq!(step().await, one(RootStep::Activated));
    let i2 = a.intermediate_cert(NAME).expect("i2");
    assert_eq!(step().await, one(RootStep::Nothing), "nobody renewed yet");
    let e = a
        .finish_root_rotation(NAME, false, "test")
        .await
        .expect_err("not ready");
    assert_eq!(code(e), "rotation-not-ready");

    let n1b = renew(a, &n1).await;
    let st = status(a).await;
    assert_eq!(
        (st.converged, st.pending, st.offline),
        (vec!["n1".to_string()], vec![], vec!["n2".to_string()])
    );
    assert_eq!(step().await, one(RootStep::Nothing));
    let n2b = renew(a, &n2).await;
    assert_eq!(step().await, one(RootStep::Finished));

    let st = status(a).await;
    assert_eq!(st.phase, RootPhase::Finished);
    let until = [&n1, &n2, &lasting]
        .iter()
        .map(|c| c.record.not_after)
        .max()
        .expect("three");
    assert_eq!(
        st.other_root_until,
        Some(until),
        "the last leaf not under I2"
    );
    assert_eq!(token(a, 1).await.pin, pin(&r2), "new tokens pin R2");
    let leaf = a.issue(request("leaf-3")).await.expect("issue");
    assert_eq!(
        leaf.chain,
        [i2.clone()],
        "the cross-signed root left the chain"
    );
    assert_eq!(
        a.authority_roots(NAME).expect("roots"),
        [r2.clone(), r1.clone()]
    );
    assert!(!a.renew_now(&n1b.record) && !a.renew_now(&n2b.record));
    let e = a
        .abort_root_rotation(NAME, "test")
        .await
        .expect_err("too late to abort");
    assert_eq!(code(e), "rotation-not-ready");

    // R1 stays until the last leaf under it has expired, then leaves.
    h.clock
        .advance(until - h.clock.now() - Duration::seconds(1));
    assert_eq!(step().await, one(RootStep::Nothing));
    assert_eq!(a.authority_roots(NAME).expect("roots").len(), 2);
    h.clock.advance(Duration::seconds(2));
    assert_eq!(step().await, one(RootStep::Completed));
    assert_eq!(a.authority_roots(NAME).expect("roots"), [r2.clone()]);
    assert!(a.cross_signed(NAME).expect("cross").is_empty());
    assert!(a
        .root_rotation_status(NAME)
        .await
        .expect("status")
        .is_none());
    assert_eq!(a.roots(), [r2.clone()]);
    let leaf = a.issue(request("leaf-4")).await.expect("issue");
    assert_eq!(leaf.chain, [i2]);
    assert_eq!(token(a, 1).await.pin, pin(&r2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_while_prepared_returns_to_the_old_root_alone() {
    let h = harness().await;
    let a = &h.authority;
    let (r1, i1) = (
        a.root_cert(NAME).expect("root"),
        a.intermediate_cert(NAME).expect("i"),
    );
    let before = a
        .store()
        .get(&format!("authority/{NAME}"))
        .await
        .expect("get")
        .expect("record")
        .value;
    prepare(a, RootRotationOptions::default()).await;
    assert!(a
        .abort_root_rotation(NAME, "test")
        .await
        .expect("abort")
        .is_none());
    let after = a
        .store()
        .get(&format!("authority/{NAME}"))
        .await
        .expect("get")
        .expect("record")
        .value;
    // Nothing changed but the generations the aborted CAs took (they were
    // published: no later CA may take their names or CRL keys).
    let mut after: serde_json::Value = serde_json::from_slice(&after).expect("JSON");
    let before: serde_json::Value = serde_json::from_slice(&before).expect("JSON");
    let burnt = after.as_object_mut().expect("an object");
    assert_eq!(burnt.remove("last_root_generation"), Some(2.into()));
    assert_eq!(burnt.remove("last_intermediate_generation"), Some(2.into()));
    assert_eq!(after, before);
    assert_eq!(a.authority_roots(NAME).expect("roots"), [r1.clone()]);
    assert!(a.cross_signed(NAME).expect("cross").is_empty());
    let leaf = a.issue(request("leaf-1")).await.expect("issue");
    assert_eq!(leaf.chain, [i1]);
    assert_eq!(token(a, 1).await.pin, pin(&r1));
    let e = a
        .abort_root_rotation(NAME, "test")
        .await
        .expect_err("nothing to abort");
    assert_eq!(code(e), "rotation-not-ready");
    // A new rotation may start.
    prepare(a, RootRotationOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_after_activation_issues_under_the_old_root_and_keeps_the_new_one_for_its_leaves() {
    let h = harness().await;
    let a = &h.authority;
    let (r1, i1) = (
        a.root_cert(NAME).expect("root"),
        a.intermediate_cert(NAME).expect("i"),
    );
    join(a, "n1").await;
    prepare(a, RootRotationOptions::default()).await;
    let r2 = a.authority_roots(NAME).expect("roots")[1].clone();
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    let i2 = a.intermediate_cert(NAME).expect("i2");
    let on_i2 = join(a, "n2").await;
    assert!(issued_by(&on_i2.record.der, &i2));

    let st = a
        .abort_root_rotation(NAME, "test")
        .await
        .expect("abort")
        .expect("the new root is still leaving");
    assert_eq!((st.phase, st.aborted), (RootPhase::Finished, true));
    assert_eq!(st.other_root_until, Some(on_i2.record.not_after));
    assert_eq!(a.root_cert(NAME).expect("root"), r1);
    assert_eq!(a.intermediate_cert(NAME).expect("i"), i1);
    let leaf = a.issue(request("leaf-1")).await.expect("issue");
    assert!(issued_by(&leaf.record.der, &i1));
    assert_eq!(leaf.chain, [i1.clone()]);
    assert_eq!(token(a, 1).await.pin, pin(&r1));
    assert_eq!(
        a.authority_roots(NAME).expect("roots"),
        [r1.clone(), r2.clone()]
    );
    // Nodes on I2 are asked back; a certificate under I1 is not.
    assert!(a.renew_now(&on_i2.record));
    assert!(!a.renew_now(&leaf.record));
    let back = renew(a, &on_i2).await;
    assert!(issued_by(&back.record.der, &i1));
    assert!(!a.renew_now(&back.record));
    let e = a
        .abort_root_rotation(NAME, "test")
        .await
        .expect_err("aborted already");
    assert_eq!(code(e), "rotation-not-ready");

    h.clock
        .advance(on_i2.record.not_after - h.clock.now() + Duration::seconds(1));
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Completed)]
    );
    assert_eq!(a.authority_roots(NAME).expect("roots"), [r1.clone()]);
    assert!(a.cross_signed(NAME).expect("cross").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_rotation_revokes_the_old_intermediate_and_cannot_go_back() {
    // The default spread: a compromise asks everyone at once anyway.
    let h = Harness::new(Backend::Redb, Settings::default()).await;
    let a = &h.authority;
    let dir = h.dir.path();
    let (r1, i1) = (
        a.root_cert(NAME).expect("root"),
        a.intermediate_cert(NAME).expect("i"),
    );
    let old = join(a, "n1").await;
    // The root's CRL as served before (a server publishes it).
    let first = a.crl_of(NAME, CrlIssuer::Root).await.expect("root CRL");
    assert_eq!(first.entries, 0);

    prepare(a, RootRotationOptions::new(None, true)).await;
    assert!(status(a).await.compromised);
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    assert!(a.renew_now(&old.record), "at once, no spread");

    let crl = a
        .crl_of(NAME, CrlIssuer::OtherRoot)
        .await
        .expect("the old root's CRL");
    let (_, parsed) = x509_parser::parse_x509_crl(&crl.der).expect("a CRL");
    let (_, i1_parsed) = x509_parser::parse_x509_certificate(&i1).expect("I1");
    assert!(
        parsed
            .iter_revoked_certificates()
            .any(|r| r.raw_serial() == i1_parsed.raw_serial()),
        "the old root's CRL lists I1"
    );
    let p = |name: &str, ders: &[&[u8]]| write_pem(dir, name, "CERTIFICATE", ders);
    let r1_pem = p("r1.pem", &[&r1]);
    let root_crl = write_pem(dir, "root-crl.pem", "X509 CRL", &[&crl.der]);
    let (ok, out) = openssl(&["crl", "-in", s(&root_crl), "-CAfile", s(&r1_pem), "-noout"]);
    assert!(ok && out.contains("verify OK"), "signed by R1: {out}");
    let i1_crl = a
        .crl_of(NAME, CrlIssuer::Generation(1))
        .await
        .expect("I1's CRL");
    let crls = write_pem(dir, "crls.pem", "X509 CRL", &[&crl.der, &i1_crl.der]);
    let (i1_pem, old_pem) = (p("i1.pem", &[&i1]), p("old.pem", &[&old.record.der]));
    let (ok, out) = verify(&r1_pem, Some(&i1_pem), &[], &old_pem);
    assert!(ok, "without CRLs the old leaf still chains: {out}");
    let (ok, out) = verify(
        &r1_pem,
        Some(&i1_pem),
        &["-crl_check_all", "-CRLfile", s(&crls)],
        &old_pem,
    );
    assert!(!ok && out.contains("certificate revoked"), "{out}");

    let e = a
        .abort_root_rotation(NAME, "test")
        .await
        .expect_err("no way back to compromised keys");
    assert_eq!(code(e), "rotation-not-ready");
    assert_eq!(status(a).await.phase, RootPhase::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_rotation_can_still_be_aborted_before_activation() {
    let h = harness().await;
    let a = &h.authority;
    let r1 = a.root_cert(NAME).expect("root");
    prepare(a, RootRotationOptions::new(None, true)).await;
    assert!(a
        .abort_root_rotation(NAME, "test")
        .await
        .expect("abort")
        .is_none());
    assert_eq!(a.authority_roots(NAME).expect("roots"), [r1]);
}

/// A second handle opened from the store with the passphrase alone, as a
/// restarted server is: every sealed key must open, and it issues.
async fn reopen_and_issue(h: &Harness, leaf: &str) -> (Authority, Issued) {
    let b = Authority::open(h.store.clone(), h.clock.clone(), PASS, no_spread())
        .await
        .expect("reopen from the store");
    let issued = b.issue(request(leaf)).await.expect("issue after reopening");
    (b, issued)
}

/// Sign every CRL the authority has now (the keys of I1, I2 and both
/// roots), and check each signature with openssl.
async fn every_crl_signs(a: &Authority, dir: &std::path::Path) {
    let r = record(a).await;
    let rot = r.root_rotation.as_ref();
    let mut cas = vec![
        (CrlIssuer::Intermediate, r.intermediate_cert.clone()),
        (CrlIssuer::Root, r.root_cert.clone()),
    ];
    for o in r
        .previous_intermediates
        .iter()
        .chain(rot.and_then(|x| x.new_intermediate.as_ref()))
    {
        cas.push((CrlIssuer::Generation(o.generation), o.cert.clone()));
    }
    if let Some(x) = rot {
        cas.push((CrlIssuer::OtherRoot, x.other_root.cert.clone()));
    }
    for (issuer, cert) in cas {
        let crl = a
            .regenerate_crl_of(NAME, issuer)
            .await
            .unwrap_or_else(|e| panic!("{issuer:?} signs its CRL: {e}"));
        let crl_pem = write_pem(dir, "x.crl", "X509 CRL", &[&crl.der]);
        let ca_pem = write_pem(dir, "x.pem", "CERTIFICATE", &[&cert]);
        let (ok, out) = openssl(&["crl", "-in", s(&crl_pem), "-CAfile", s(&ca_pem), "-noout"]);
        assert!(ok && out.contains("verify OK"), "{issuer:?}: {out}");
    }
}

fn key_type_of(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    c.public_key().algorithm.algorithm.to_id_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_to_another_key_type_survives_reopening_and_a_vault_rotation_at_every_step() {
    let h = harness().await;
    let a = &h.authority;
    let dir = h.dir.path();
    let r1 = a.root_cert(NAME).expect("root");
    let n1 = join(a, "n1").await;
    let p256 = key_type_of(&r1);

    prepare(a, RootRotationOptions::new(Some(KeyType::Ed25519), false)).await;
    let r2 = a.authority_roots(NAME).expect("roots")[1].clone();
    let i2 = new_intermediate(a).await;
    let ed25519 = key_type_of(&r2);
    assert_ne!(ed25519, p256);
    assert_eq!(key_type_of(&i2), ed25519);
    let (b, leaf) = reopen_and_issue(&h, "after-prepare").await;
    assert_eq!(
        b.authority_roots(NAME).expect("roots"),
        [r1.clone(), r2.clone()]
    );
    assert!(!issued_by(&leaf.record.der, &i2), "I1 still issues");
    every_crl_signs(&b, dir).await;

    // The master key replaced mid-rotation: the new root's and
    // intermediate's keys are resealed with the others.
    a.rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("vault rotate while prepared");
    let (b, _) = reopen_and_issue(&h, "after-rotate-1").await;
    every_crl_signs(&b, dir).await;

    a.record_node_trust("n1", &[pin(&r1), pin(&r2)])
        .await
        .expect("trust");
    b.activate_root_rotation(NAME, false, "test")
        .await
        .expect("activate");
    let (b, leaf) = reopen_and_issue(&h, "after-activate").await;
    assert!(issued_by(&leaf.record.der, &i2), "I2 issues: {leaf:?}");
    every_crl_signs(&b, dir).await;
    b.rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("vault rotate while active");
    let (b, leaf) = reopen_and_issue(&h, "after-rotate-2").await;
    assert!(issued_by(&leaf.record.der, &i2));
    every_crl_signs(&b, dir).await;

    let renewed = renew(&b, &n1).await;
    assert!(issued_by(&renewed.record.der, &i2));
    assert_eq!(
        b.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Finished)]
    );
    let (b, leaf) = reopen_and_issue(&h, "after-finish").await;
    assert_eq!(leaf.chain, [i2.clone()]);
    every_crl_signs(&b, dir).await;

    let until = status(&b).await.other_root_until.expect("until");
    h.clock
        .advance(until - h.clock.now() + Duration::seconds(1));
    assert_eq!(
        b.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Completed)]
    );
    let (b, leaf) = reopen_and_issue(&h, "after-complete").await;
    assert_eq!(b.authority_roots(NAME).expect("roots"), [r2.clone()]);
    assert!(issued_by(&leaf.record.der, &i2));
    every_crl_signs(&b, dir).await;
    // Verified by openssl under R2 alone (the clock moved: at its time).
    let at = (h.clock.now().unix_timestamp()).to_string();
    let p = |name: &str, ders: &[&[u8]]| write_pem(dir, name, "CERTIFICATE", ders);
    let (r2_pem, i2_pem, leaf_pem) = (
        p("r2.pem", &[&r2]),
        p("i2.pem", &[&i2]),
        p("l.pem", &[&leaf.record.der]),
    );
    let (ok, out) = verify(&r2_pem, Some(&i2_pem), &["-attime", &at], &leaf_pem);
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_prepared_by_one_replica_is_served_by_the_other_and_activates_once() {
    for round in 0..8 {
        let h = Harness::new(Backend::Mem, no_spread()).await;
        let a = h.authority.clone();
        let b = h.second().await;
        let r1 = a.root_cert(NAME).expect("root");
        join(&a, "n1").await;
        prepare(&a, RootRotationOptions::default()).await;
        let roots = a.authority_roots(NAME).expect("roots");
        common::within_a_second("the other replica's bundle", || {
            b.authority_roots(NAME).is_ok_and(|r| r == roots)
        })
        .await;
        assert_eq!(
            b.cross_signed(NAME).expect("cross"),
            a.cross_signed(NAME).expect("cross")
        );
        assert_eq!(b.roots(), roots);
        a.record_node_trust("n1", &[pin(&r1), pin(&roots[1])])
            .await
            .expect("trust");

        // Both replicas' maintenance at once: one activation.
        let (ta, tb) = (a.clone(), b.clone());
        let (x, y) = tokio::join!(
            tokio::spawn(async move { ta.maintain_root_rotations("a").await }),
            tokio::spawn(async move { tb.maintain_root_rotations("b").await }),
        );
        let steps: Vec<RootStep> = [x, y]
            .into_iter()
            .flat_map(|r| r.expect("no panic").expect("maintain"))
            .map(|(_, s)| s)
            .collect();
        assert_eq!(
            steps.iter().filter(|s| **s == RootStep::Activated).count(),
            1,
            "round {round}: {steps:?}"
        );
        assert_eq!(
            audits(&a, "root-rotation-activate").await,
            1,
            "round {round}"
        );
        let r = record(&a).await;
        assert_eq!(r.previous_intermediates.len(), 1, "round {round}: I1 once");
        assert_eq!(r.root_rotation.expect("rotation").phase, RootPhase::Active);

        // The other replica issues under I2 with the cross-signed chain.
        let i2 = a.intermediate_cert(NAME).expect("i2");
        common::within_a_second("the other replica's intermediate", || {
            b.intermediate_cert(NAME).is_ok_and(|i| i == i2)
        })
        .await;
        let leaf = b.issue(request("leaf-b")).await.expect("issue");
        assert_eq!(
            leaf.chain,
            [i2, a.cross_signed(NAME).expect("cross")[0].clone()]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_minted_before_the_rotation_keeps_the_old_root_until_it_expires() {
    // Leaves of a day, a token of a week: the token outlives every leaf
    // under the old root.
    let h = Harness::new(
        Backend::Redb,
        Settings {
            leaf_ttl: Some(Duration::days(1)),
            ..no_spread()
        },
    )
    .await;
    let a = &h.authority;
    let r1 = a.root_cert(NAME).expect("root");
    let (record, week) = a
        .create_token(
            TokenSpec {
                role: "worker".into(),
                node: None,
                ttl: Duration::days(7),
                uses: 1,
                allow_sans: Vec::new(),
                authority: None,
            },
            "test",
        )
        .await
        .expect("a week's token");
    assert_eq!(week.pin, pin(&r1));
    let n1 = join(a, "n1").await;
    prepare(a, RootRotationOptions::default()).await;
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    renew(a, &n1).await;
    let st = a
        .finish_root_rotation(NAME, false, "test")
        .await
        .expect("finish");
    assert_eq!(st.other_root_until, Some(record.expires), "{st:?}");

    // Past every leaf under R1, the token still joins.
    h.clock.advance(Duration::days(2));
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Nothing)]
    );
    assert!(a.authority_roots(NAME).expect("roots").contains(&r1));
    let joined = join_with(a, &week, "n2").await;
    assert!(issued_by(
        &joined.record.der,
        &a.intermediate_cert(NAME).expect("i2")
    ));

    h.clock
        .advance(record.expires - h.clock.now() + Duration::seconds(1));
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Completed)]
    );
}

/// Whether CRL `der` was signed by the key of certificate `ca`.
fn crl_signed_by(der: &[u8], ca: &[u8]) -> bool {
    let (_, crl) = x509_parser::parse_x509_crl(der).expect("a CRL");
    let (_, ca) = x509_parser::parse_x509_certificate(ca).expect("a certificate");
    crl.issuer() == ca.subject() && crl.verify_signature(ca.public_key()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_after_an_abort_makes_a_root_of_its_own_name_and_crl() {
    let h = harness().await;
    let a = &h.authority;
    // Aborted while prepared, after its CRL was served.
    prepare(a, RootRotationOptions::default()).await;
    let first = a.authority_roots(NAME).expect("roots")[1].clone();
    let crl = a.crl_of(NAME, CrlIssuer::OtherRoot).await.expect("CRL");
    assert!(crl_signed_by(&crl.der, &first));
    let first_i2 = new_intermediate(a).await;
    let crl = a.crl_of(NAME, CrlIssuer::Generation(2)).await.expect("CRL");
    assert!(crl_signed_by(&crl.der, &first_i2));
    a.abort_root_rotation(NAME, "test").await.expect("abort");
    // An intermediate renewal then takes a generation of its own too.
    let g = a.prepare_intermediate(NAME, "test").await.expect("renewal");
    assert_eq!(g, 3, "past the aborted rotation's intermediate");
    let renewal = record(a)
        .await
        .prepared_intermediate
        .expect("prepared")
        .cert;
    let crl = a.crl_of(NAME, CrlIssuer::Generation(g)).await.expect("CRL");
    assert!(crl_signed_by(&crl.der, &renewal), "its own CRL");
    // Aborted after activation, with its CRL served as the active root's.
    prepare(a, RootRotationOptions::default()).await;
    let second = a.authority_roots(NAME).expect("roots")[1].clone();
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    let crl = a.crl_of(NAME, CrlIssuer::Root).await.expect("CRL");
    assert!(crl_signed_by(&crl.der, &second));
    a.abort_root_rotation(NAME, "test").await.expect("abort");
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Completed)],
        "no leaf under the aborted root"
    );

    prepare(a, RootRotationOptions::default()).await;
    let third = a.authority_roots(NAME).expect("roots")[1].clone();
    let names = [&first, &second, &third].map(|r| common_name(r));
    assert!(
        names[0] != names[1] && names[1] != names[2] && names[0] != names[2],
        "three roots, three names: {names:?}"
    );
    let crl = a.crl_of(NAME, CrlIssuer::OtherRoot).await.expect("CRL");
    assert!(crl_signed_by(&crl.der, &third), "the new root's own CRL");
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    let crl = a.crl_of(NAME, CrlIssuer::Root).await.expect("CRL");
    assert!(crl_signed_by(&crl.der, &third), "the new root's own CRL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_rotation_to_another_key_type_reopens_with_every_key() {
    let h = harness().await;
    let a = &h.authority;
    let dir = h.dir.path();
    let i1 = a.intermediate_cert(NAME).expect("i1");
    prepare(a, RootRotationOptions::new(Some(KeyType::P384), false)).await;
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    let on_i2 = join(a, "n1").await;
    a.abort_root_rotation(NAME, "test").await.expect("abort");
    let (b, leaf) = reopen_and_issue(&h, "after-abort").await;
    assert!(issued_by(&leaf.record.der, &i1), "I1 (P-256) issues again");
    every_crl_signs(&b, dir).await;
    b.rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("vault rotate while aborted");
    let (b, leaf) = reopen_and_issue(&h, "after-rotate").await;
    assert!(issued_by(&leaf.record.der, &i1));
    every_crl_signs(&b, dir).await;

    h.clock
        .advance(on_i2.record.not_after - h.clock.now() + Duration::seconds(1));
    assert_eq!(
        b.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Completed)]
    );
    let (b, leaf) = reopen_and_issue(&h, "after-complete").await;
    assert!(issued_by(&leaf.record.der, &i1));
    every_crl_signs(&b, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_offline_for_the_whole_rotation_renews_after_the_finish() {
    let h = harness().await;
    let a = &h.authority;
    let away = join(a, "away").await;
    let here = join(a, "here").await;
    prepare(a, RootRotationOptions::default()).await;
    let st = a
        .activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    assert_eq!(st.left_behind, ["away", "here"]);
    renew(a, &here).await;
    let e = a
        .finish_root_rotation(NAME, false, "test")
        .await
        .expect_err("away holds no leaf under I2");
    assert_eq!(code(e), "rotation-not-ready");
    let st = a
        .finish_root_rotation(NAME, true, "test")
        .await
        .expect("forced finish");
    assert_eq!(st.left_behind, ["away", "here"], "each name once");
    assert_eq!(st.other_root_until, Some(away.record.not_after));

    // Back: asked to renew, and its leaf under R1 still renews.
    assert!(a.renew_now(&away.record));
    let back = renew(a, &away).await;
    let i2 = a.intermediate_cert(NAME).expect("i2");
    assert!(issued_by(&back.record.der, &i2));
    assert_eq!(back.chain, [i2]);
    assert!(!a.renew_now(&back.record));
}
