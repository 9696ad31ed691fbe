//! Prepare, activate and finish, and what nodes, tokens and chains see in
//! each phase.

use kith_authority::{
    Authority, Clock, CrlIssuer, RootPhase, RootRotationOptions, RootStep, Settings, TokenSpec,
};
use kith_pki::Profile;
use time::Duration;

use crate::common::{request, Backend, Harness};
use crate::helpers::*;
use crate::tools::{pkilint, verify, write_pem};

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
    // rustls-webpki (what TlsWatch and the agents use) agrees, with the
    // CRLs a node holds.
    let crls = [
        a.crl(NAME).await.expect("I2's CRL").der,
        a.crl_of(NAME, CrlIssuer::Generation(1))
            .await
            .expect("I1's CRL")
            .der,
    ];
    let webpki = |leaf: &[u8], chain: &[Vec<u8>], roots: &[Vec<u8>]| {
        kith_pki::verify_chain(leaf, chain, roots, &crls, h.clock.now(), Profile::Peer)
    };
    let r1_only = std::slice::from_ref(&r1);
    let r2_only = std::slice::from_ref(&r2);
    let both = [r1.clone(), r2.clone()];
    webpki(&leaf.record.der, &leaf.chain, r1_only).expect("new leaf, R1 only");
    webpki(&leaf.record.der, &leaf.chain, r2_only).expect("new leaf, R2 only");
    webpki(&leaf.record.der, &leaf.chain, &both).expect("new leaf, both");
    webpki(&old.record.der, &old.chain, r1_only).expect("old leaf, R1 only");
    webpki(&old.record.der, &old.chain, &both).expect("old leaf, both");
    webpki(&leaf.record.der, std::slice::from_ref(&i2), r1_only)
        .expect_err("R1 alone needs the cross-signed certificate");

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
        std::slice::from_ref(&i2),
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
    assert_eq!(
        a.authority_roots(NAME).expect("roots"),
        std::slice::from_ref(&r2)
    );
    assert!(a.cross_signed(NAME).expect("cross").is_empty());
    assert!(a
        .root_rotation_status(NAME)
        .await
        .expect("status")
        .is_none());
    assert_eq!(a.roots(), std::slice::from_ref(&r2));
    let leaf = a.issue(request("leaf-4")).await.expect("issue");
    assert_eq!(leaf.chain, [i2]);
    assert_eq!(token(a, 1).await.pin, pin(&r2));
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
