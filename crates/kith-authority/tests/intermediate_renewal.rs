//! Intermediates renewed by themselves (issue 13), at the authority's level
//! with an injected clock, on real stores: a third of life left prepares
//! generation 2, which is published (its CRL served) for the publish delay
//! and then issues; leaves before and after pass `openssl verify`, the new
//! intermediate is pkilint-clean, every live intermediate's CRL is signed
//! and covers each revocation, the keys survive a restart and a master-key
//! rotation, two replicas on one store make one generation 2, and a
//! replaced intermediate leaves once expired. The judges (openssl,
//! pkilint, x509-parser) and the repeated steps are in `renewal/`.

use std::path::Path;
use std::sync::Arc;

use kith_authority::{
    Authority, CrlIssuer, Error, IntermediateStep, Publish, RevokeTarget, Settings,
    DEFAULT_INTERMEDIATE_PUBLISH, INTERMEDIATE_TTL,
};
use kith_pki::{Profile, RevocationReason, Serial};
use time::Duration;

use common::{request, within_a_second, Backend, Harness, PASS};
use renewal::{
    all_crls, audited, both_tick, deaf_replica, issuer_cn, kith_verifies, leaf, lists, maintain,
    one_or_both, openssl, openssl_verify, openssl_verify_all, past_renewal, path, pem,
    pkilint_cert, renew, signed_by, status,
};

mod common;
mod renewal;

// ---- 1. the steps, with an injected clock ----------------------------------

#[tokio::test]
async fn a_third_of_life_left_prepares_then_publishes_then_activates() {
    let h = Harness::redb().await;
    let a = &h.authority;
    let s = status(a);
    assert_eq!(s.active.generation, 1);
    assert!(s.prepared.is_none() && s.previous.is_empty());
    let life = s.active.not_after - s.active.not_before;
    let left: Duration = s.active.not_after - s.renew_at;
    assert!(
        (left - life * 0.33_f64).abs() < Duration::seconds(1),
        "renewed with a third of its life left: {left} of {life}"
    );
    let gen1 = s.active.cert.clone();
    let gen1_cn = issuer_cn(&leaf(a, "before-1").await.record.der);
    assert!(
        !gen1_cn.contains(" G"),
        "generation 1 is unnamed: {gen1_cn}"
    );

    // Not yet due: nothing, however often it is asked.
    h.clock.set(s.renew_at - Duration::hours(1));
    for _ in 0..2 {
        assert_eq!(maintain(a).await, IntermediateStep::Nothing);
    }
    assert!(status(a).prepared.is_none());

    // Due: generation 2 prepared, published until prepare time + delay.
    let prepared_at = past_renewal(&h, &s);
    assert_eq!(maintain(a).await, IntermediateStep::Prepared(2));
    let s2 = status(a);
    let (p, ready) = s2.prepared.clone().expect("generation 2 prepared");
    assert_eq!(p.generation, 2);
    assert_eq!(ready, prepared_at + DEFAULT_INTERMEDIATE_PUBLISH);
    assert_eq!(s2.active.cert, gen1, "generation 1 still issues");
    assert!(p.not_before <= prepared_at && p.not_after > s.active.not_after);
    assert_eq!(p.not_after, prepared_at + INTERMEDIATE_TTL);
    assert_ne!(p.cert, gen1);
    let during = leaf(a, "during-1").await;
    assert_eq!(during.chain, vec![gen1.clone()]);
    assert_eq!(issuer_cn(&during.record.der), gen1_cn);

    // Published for less than the delay: neither a second tick nor an
    // unforced activation starts it.
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH - Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Nothing);
    let refused = a
        .activate_intermediate("cluster", "test", false)
        .await
        .expect_err("not published long enough");
    assert_eq!(refused.code().as_str(), "rotation-not-ready", "{refused}");
    assert_eq!(status(a), s2, "a refusal changes nothing");

    // Published long enough: it issues.
    h.clock.advance(Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Activated(2));
    let s3 = status(a);
    assert_eq!(s3.active.generation, 2);
    assert_eq!(s3.active.cert, p.cert);
    assert!(s3.prepared.is_none());
    assert_eq!(s3.previous.len(), 1);
    assert_eq!(
        (s3.previous[0].generation, &s3.previous[0].cert),
        (1, &gen1)
    );
    assert!(
        s3.renew_at > s.active.not_after,
        "the next renewal is later"
    );
    let after = leaf(a, "after-1").await;
    assert_eq!(after.chain, vec![p.cert.clone()]);
    let cn2 = issuer_cn(&after.record.der);
    assert!(cn2.ends_with(" G2"), "issued by generation 2: {cn2}");
    assert_eq!(cn2, format!("{gen1_cn} G2"));
    // Nothing more is due for years.
    assert_eq!(maintain(a).await, IntermediateStep::Nothing);
    assert_eq!(status(a), s3);

    // A leaf never outlives its issuer, even asked for the longest life
    // just before that issuer expires.
    for (issued, issuer) in [(&during, &gen1), (&after, &p.cert)] {
        let (_, issuer_end) = kith_pki::certificate_validity(issuer).expect("validity");
        assert!(issued.record.not_after <= issuer_end);
    }
    h.clock.set(s3.active.not_after - Duration::hours(1));
    let mut late = request("late-1");
    late.identity.ttl = Some(kith_authority::MAX_CERT_TTL);
    // The active intermediate is due by now: renewal would replace it, but
    // what it issues meanwhile is cut to its end.
    let late = a.issue(late).await.expect("issue near the end");
    assert!(late.truncated);
    assert!(late.record.not_after <= s3.active.not_after);
}

// ---- 2. openssl and pkilint --------------------------------------------------

#[tokio::test]
async fn leaves_before_and_after_pass_openssl_and_generation_2_is_pkilint_clean() {
    let h = Harness::redb().await;
    let a = &h.authority;
    let dir = h.dir.path();
    let root = a.root_cert("cluster").expect("root");
    let gen1 = status(a).active.cert;
    // Issued in the publish window, by generation 1: alive after the switch.
    past_renewal(&h, &status(a));
    assert_eq!(maintain(a).await, IntermediateStep::Prepared(2));
    let before = leaf(a, "before-2").await;
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Activated(2));
    let gen2 = status(a).active.cert;
    let after = leaf(a, "after-2").await;
    assert_eq!((&before.chain[0], &after.chain[0]), (&gen1, &gen2));

    // With every CRL the authority serves (the active one's, the others',
    // the root's), as a strict relying party checks each CA of the chain.
    let mut crls = all_crls(a).await;
    crls.push(
        a.crl_of("cluster", CrlIssuer::Root)
            .await
            .expect("root CRL")
            .der,
    );
    for (what, issued, inter) in [("before", &before, &gen1), ("after", &after, &gen2)] {
        let (ok, out) = openssl_verify(dir, a.now(), &root, inter, &issued.record.der, None);
        assert!(ok && out.contains(": OK"), "{what}: {out}");
        let (ok, out) = openssl_verify_all(dir, a.now(), &root, inter, &issued.record.der, &crls);
        assert!(
            ok && out.contains(": OK"),
            "{what}, every CRL checked: {out}"
        );
        kith_verifies(a, issued).await;
    }
    // Without the replaced one's CRL, the leaf it signed is refused.
    assert_eq!(crls.len(), 3, "generation 2's, generation 1's, the root's");
    let without = [crls[0].clone(), crls[2].clone()];
    let (ok, out) = openssl_verify_all(dir, a.now(), &root, &gen1, &before.record.der, &without);
    assert!(
        !ok && out.contains("unable to get certificate CRL"),
        "no CRL for generation 1: {out}"
    );
    // openssl judges the issuer, not just any chain: the new leaf does not
    // verify through the old intermediate.
    let (ok, out) = openssl_verify(dir, a.now(), &root, &gen1, &after.record.der, None);
    assert!(!ok, "a generation 2 leaf through generation 1: {out}");

    // The new intermediate itself, under the root, strictly.
    let root_pem = pem(dir, "root.pem", "CERTIFICATE", &root);
    let gen2_pem = pem(dir, "gen2.pem", "CERTIFICATE", &gen2);
    let at = a.now().unix_timestamp().to_string();
    let (ok, out) = openssl(&[
        "verify",
        "-x509_strict",
        "-attime",
        &at,
        "-CAfile",
        path(&root_pem),
        path(&gen2_pem),
    ]);
    assert!(ok, "generation 2 under the root: {out}");
    let findings = pkilint_cert(&gen2_pem);
    assert!(findings.is_empty(), "pkilint on generation 2: {findings}");
}

// ---- 3. CRLs ---------------------------------------------------------------

#[tokio::test]
async fn every_live_intermediate_signs_a_crl_that_covers_each_revocation() {
    let h = Harness::redb().await;
    let a = &h.authority;
    let dir = h.dir.path();
    let root = a.root_cert("cluster").expect("root");
    let gen1 = status(a).active.cert;
    assert!(a.other_crls("cluster").await.expect("others").is_empty());

    // From the prepare on, the prepared one's CRL is served with the active one's.
    past_renewal(&h, &status(a));
    assert_eq!(maintain(a).await, IntermediateStep::Prepared(2));
    let old = leaf(a, "old-3").await;
    assert_eq!(old.chain, vec![gen1.clone()]);
    let gen2 = status(a).prepared.expect("prepared").0.cert;
    let others = a.other_crls("cluster").await.expect("others");
    assert_eq!(others.len(), 1);
    assert!(signed_by(&others[0].der, &gen2), "the prepared one's CRL");
    assert!(signed_by(&a.crl("cluster").await.expect("crl").der, &gen1));

    // After activation: the active CRL is generation 2's, the replaced one's is among the others.
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Activated(2));
    assert!(signed_by(&a.crl("cluster").await.expect("crl").der, &gen2));
    let others = a.other_crls("cluster").await.expect("others");
    assert_eq!(others.len(), 1);
    assert!(signed_by(&others[0].der, &gen1), "the replaced one's CRL");
    let new = leaf(a, "new-3").await;
    assert!(!a.crl_is_stale("cluster").await.expect("stale?"));

    // A generation 1 leaf revoked after the activation: stale until every
    // intermediate's CRL covers it, the replaced one's included.
    a.revoke(
        RevokeTarget::Serial(Serial::parse(&old.record.serial).expect("serial")),
        RevocationReason::KeyCompromise,
        "test",
        Publish::ByCaller,
    )
    .await
    .expect("revoke");
    assert!(a.crl_is_stale("cluster").await.expect("stale?"));
    let active = a.regenerate_crl("cluster").await.expect("active CRL");
    assert!(lists(&active.der, &old.record.serial));
    assert!(
        a.crl_is_stale("cluster").await.expect("stale?"),
        "generation 1's CRL does not list it yet"
    );
    let gen1_crl = a
        .regenerate_crl_of("cluster", CrlIssuer::Generation(1))
        .await
        .expect("generation 1's CRL");
    assert!(!a.crl_is_stale("cluster").await.expect("stale?"));
    assert_eq!(
        a.other_crls("cluster").await.expect("others")[0].der,
        gen1_crl.der
    );
    assert!(lists(&gen1_crl.der, &old.record.serial));

    // openssl: generation 1's key signed it, not generation 2's…
    let crl_pem = pem(dir, "gen1-crl.pem", "X509 CRL", &gen1_crl.der);
    let gen1_pem = pem(dir, "gen1.pem", "CERTIFICATE", &gen1);
    let gen2_pem = pem(dir, "gen2.pem", "CERTIFICATE", &gen2);
    let crl_check =
        |ca: &Path| openssl(&["crl", "-in", path(&crl_pem), "-CAfile", path(ca), "-noout"]);
    let (ok, out) = crl_check(&gen1_pem);
    assert!(ok && out.contains("verify OK"), "gen 1's CRL: {out}");
    let (_, out) = crl_check(&gen2_pem);
    assert!(!out.contains("verify OK"), "not generation 2's: {out}");
    // …and with it the old leaf is revoked, while the new one, judged by
    // generation 2's CRL, is not.
    let at = a.now();
    let (ok, out) = openssl_verify(dir, at, &root, &gen1, &old.record.der, Some(&gen1_crl.der));
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = openssl_verify(dir, at, &root, &gen2, &new.record.der, Some(&active.der));
    assert!(ok, "the new leaf is not revoked: {out}");
    let err = kith_pki::verify_chain(
        &old.record.der,
        &old.chain,
        &[root],
        &all_crls(a).await,
        at,
        Profile::Peer,
    )
    .expect_err("kith refuses the revoked generation 1 leaf");
    assert!(matches!(err, kith_pki::Error::Revoked), "{err}");

    // Publish::Now re-signs every intermediate's CRL at once.
    let third = leaf(a, "third-3").await;
    a.revoke(
        RevokeTarget::Serial(Serial::parse(&third.record.serial).expect("serial")),
        RevocationReason::Unspecified,
        "test",
        Publish::Now,
    )
    .await
    .expect("revoke");
    assert!(!a.crl_is_stale("cluster").await.expect("stale?"));
    for crl in all_crls(a).await {
        assert!(lists(&crl, &third.record.serial));
    }
}

// ---- 4. keys survive a restart and a master-key rotation ---------------------

#[tokio::test]
async fn keys_survive_a_restart_and_a_master_key_rotation() {
    let mut h = Harness::redb().await;
    let gen1 = status(&h.authority).active.cert;
    past_renewal(&h, &status(&h.authority));
    assert_eq!(maintain(&h.authority).await, IntermediateStep::Prepared(2));
    let gen2 = status(&h.authority).prepared.expect("prepared").0.cert;

    // Reopened while prepared: issues from generation 1, signs generation 2's CRL.
    h = h.restart(PASS).await.expect("reopen after the prepare");
    let s = status(&h.authority);
    assert_eq!(s.prepared.as_ref().map(|p| &p.0.cert), Some(&gen2));
    assert_eq!(leaf(&h.authority, "a-4").await.chain, vec![gen1.clone()]);
    let others = h.authority.other_crls("cluster").await.expect("others");
    assert!(signed_by(&others[0].der, &gen2));

    // Activated by the reopened one, reopened again: issues from generation 2.
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
    assert_eq!(maintain(&h.authority).await, IntermediateStep::Activated(2));
    h = h.restart(PASS).await.expect("reopen after the activation");
    let b = leaf(&h.authority, "b-4").await;
    assert_eq!(b.chain, vec![gen2.clone()]);
    kith_verifies(&h.authority, &b).await;

    // A third generation prepared on demand fills every slot: previous,
    // active and prepared, then the master key is rotated and the store
    // reopened. Every key still opens.
    let gen3 = h
        .authority
        .prepare_intermediate("cluster", "test")
        .await
        .expect("prepare on demand");
    assert_eq!(gen3, 2 + 1);
    let report = h
        .authority
        .rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("vault rotate");
    assert!(report.master_version >= 2);
    h = h.restart(PASS).await.expect("reopen after vault rotate");
    let a = &h.authority;
    let s = status(a);
    assert_eq!(
        (
            s.active.generation,
            s.prepared.as_ref().map(|p| p.0.generation),
            s.previous.iter().map(|p| p.generation).collect::<Vec<_>>()
        ),
        (2, Some(3), vec![1])
    );
    let c = leaf(a, "c-4").await;
    assert_eq!(c.chain, vec![gen2.clone()]);
    let gen3_cert = s.prepared.expect("prepared").0.cert;
    for (issuer, cert) in [
        (CrlIssuer::Generation(1), &gen1),
        (CrlIssuer::Intermediate, &gen2),
        (CrlIssuer::Generation(3), &gen3_cert),
        (CrlIssuer::Root, &a.root_cert("cluster").expect("root")),
    ] {
        let crl = a
            .regenerate_crl_of("cluster", issuer)
            .await
            .unwrap_or_else(|e| panic!("{issuer:?} signs after vault rotate: {e}"));
        assert!(signed_by(&crl.der, cert), "{issuer:?}");
    }
    // And generation 3 activates (the root key, resealed, opens).
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Activated(3));
    let h = h.restart(PASS).await.expect("reopen after generation 3");
    let d = leaf(&h.authority, "d-4").await;
    assert_eq!(d.chain, vec![gen3_cert]);
    assert!(issuer_cn(&d.record.der).ends_with(" G3"));
}

// ---- 5. two replicas on one store -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_renewing_at_once_make_one_generation_2() {
    let h = Harness::mem().await;
    let (a, b) = (h.authority.clone(), h.second().await);
    past_renewal(&h, &status(&a));
    let steps = both_tick(&a, &b).await;
    assert!(
        one_or_both(&steps, IntermediateStep::Prepared(2)),
        "{steps:?}"
    );
    assert_eq!(audited(&*h.store, "intermediate-prepare").await, 1);
    let prepared = status(&a).prepared.expect("prepared").0;
    assert_eq!(prepared.generation, 2);
    within_a_second("b's keyring holds the same prepared one", || {
        b.intermediate_status("cluster")
            .is_ok_and(|s| s.prepared.is_some_and(|p| p.0 == prepared))
    })
    .await;

    // Both activate at once: one activation, neither fails.
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
    let steps = both_tick(&a, &b).await;
    assert!(
        one_or_both(&steps, IntermediateStep::Activated(2)),
        "{steps:?}"
    );
    assert_eq!(audited(&*h.store, "intermediate-activate").await, 1);
    for who in [&a, &b] {
        within_a_second("the activation reaches both keyrings", || {
            who.intermediate_status("cluster")
                .is_ok_and(|s| s.active.generation == 2)
        })
        .await;
        let s = status(who);
        assert_eq!(s.active.cert, prepared.cert);
        assert!(s.prepared.is_none());
        assert_eq!(s.previous.len(), 1, "generation 1 replaced once");
    }
    let from_b = leaf(&b, "from-b-5").await;
    assert_eq!(from_b.chain, vec![prepared.cert.clone()]);
    assert!(issuer_cn(&from_b.record.der).ends_with(" G2"));
    kith_verifies(&b, &from_b).await;
}

/// Replicas whose keyrings have not caught up with another's prepare and
/// activation decide from the store, not from what they last saw: one that
/// never saw generation 2 does not prepare a generation 3 the moment 2 is
/// active, and one that saw 2 prepared does not fail to activate it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_that_lag_neither_fail_nor_renew_twice() {
    let h = Harness::mem().await;
    let a = &h.authority;
    let (saw_nothing, saw_prepare) = (deaf_replica(&h).await, deaf_replica(&h).await);
    past_renewal(&h, &status(a));
    assert_eq!(maintain(a).await, IntermediateStep::Prepared(2));
    assert_eq!(maintain(&saw_prepare).await, IntermediateStep::Prepared(2));
    saw_prepare.refresh_keyring().await.expect("refresh");
    assert!(status(&saw_prepare).prepared.is_some());
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Activated(2));
    for lagging in [&saw_nothing, &saw_prepare] {
        // What its keyring says is due is no longer so in the store.
        assert_eq!(status(lagging).active.generation, 1);
        let step = lagging
            .maintain_intermediates("test")
            .await
            .expect("a lagging replica's tick does not fail");
        assert_eq!(step[0].1, IntermediateStep::Nothing);
    }
    let s = status(a);
    a.refresh_keyring().await.expect("refresh");
    assert_eq!(status(a), s, "nothing moved on");
    assert_eq!((s.active.generation, s.prepared.is_none()), (2, true));
    assert_eq!(audited(&*h.store, "intermediate-prepare").await, 1);
    assert_eq!(audited(&*h.store, "intermediate-activate").await, 1);
    // Having looked, each issues from generation 2.
    for (lagging, node) in [(saw_nothing, "lag-1"), (saw_prepare, "lag-2")] {
        assert_eq!(status(&lagging), s);
        assert_eq!(
            leaf(&lagging, node).await.chain,
            vec![s.active.cert.clone()]
        );
        lagging.close().await;
    }
}

/// Two operators forcing the activation at once: it is activated (and
/// audited) once; each is told the generation now active, or, when the
/// other's activation landed before its own read, that nothing is prepared.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_forced_activations_both_report_the_one_activated() {
    let h = Harness::mem().await;
    let (a, b) = (h.authority.clone(), h.second().await);
    assert_eq!(
        a.prepare_intermediate("cluster", "test")
            .await
            .expect("prepare"),
        2
    );
    within_a_second("b's keyring holds the prepared one", || {
        b.intermediate_status("cluster")
            .is_ok_and(|s| s.prepared.is_some())
    })
    .await;
    let force = |who: &Authority| {
        let who = who.clone();
        tokio::spawn(async move { who.activate_intermediate("cluster", "op", true).await })
    };
    let (ra, rb) = (force(&a), force(&b));
    let mut activated = 0;
    for r in [ra.await, rb.await] {
        match r.expect("the task") {
            Ok(g) => {
                assert_eq!(g, 2);
                activated += 1;
            }
            Err(e) => assert_eq!(e.code().as_str(), "rotation-not-ready", "{e}"),
        }
    }
    assert!(activated >= 1);
    assert_eq!(audited(&*h.store, "intermediate-activate").await, 1);
    let s = status(&a);
    assert_eq!((s.active.generation, s.previous.len()), (2, 1));
    // Nothing is prepared now: asked again, it says so.
    let again = a
        .activate_intermediate("cluster", "op", true)
        .await
        .expect_err("nothing prepared");
    assert_eq!(again.code().as_str(), "rotation-not-ready");
}

// ---- 6. pruning --------------------------------------------------------------

#[tokio::test]
async fn an_expired_intermediate_leaves_the_record_and_its_crl_the_others() {
    let h = Harness::new(Backend::Redb, Settings::default()).await;
    let a = &h.authority;
    let (gen1, gen2) = renew(&h).await;
    let (_, gen1_end) = kith_pki::certificate_validity(&gen1).expect("validity");

    // Still valid: kept, its CRL served.
    h.clock.set(gen1_end - Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Nothing);
    assert_eq!(status(a).previous.len(), 1);
    assert_eq!(a.other_crls("cluster").await.expect("others").len(), 1);

    // Expired: no leaf it signed is alive; it goes, and its CRL with it.
    h.clock.set(gen1_end + Duration::seconds(1));
    assert_eq!(maintain(a).await, IntermediateStep::Nothing);
    let s = status(a);
    assert!(s.previous.is_empty(), "{:?}", s.previous);
    assert_eq!(s.active.cert, gen2);
    assert!(a.other_crls("cluster").await.expect("others").is_empty());
    let stored: kith_authority::AuthorityRecord = serde_json::from_slice(
        &h.store
            .get("authority/cluster")
            .await
            .expect("get")
            .expect("the record")
            .value,
    )
    .expect("an authority record");
    assert!(stored.previous_intermediates.is_empty());
    assert!(matches!(
        a.regenerate_crl_of("cluster", CrlIssuer::Generation(1))
            .await,
        Err(Error::Invalid(_))
    ));
    // Generation 2 issues on, and its CRL is the one served.
    let l = leaf(a, "late-6").await;
    assert_eq!(l.chain, vec![gen2.clone()]);
    kith_verifies(a, &l).await;
    // A reopened authority agrees.
    let h = h.restart(PASS).await.expect("reopen");
    assert!(status(&h.authority).previous.is_empty());
}

// ---- the root's end ----------------------------------------------------------

/// Renewals follow one another until one ends with the root (generation 3:
/// prepared 6.7 years in, cut to the root's 10). A fourth would end there
/// too, with a new key and one more CRL to sign for nothing: the ticks
/// leave it to the root's rotation, and say why in the status.
#[tokio::test]
async fn no_renewal_prepares_an_intermediate_that_ends_no_later() {
    let h = Harness::mem().await;
    let a = &h.authority;
    let (_, root_end) =
        kith_pki::certificate_validity(&a.root_cert("cluster").expect("root")).expect("validity");
    for generation in [2, 3] {
        past_renewal(&h, &status(a));
        assert_eq!(maintain(a).await, IntermediateStep::Prepared(generation));
        h.clock
            .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
        assert_eq!(maintain(a).await, IntermediateStep::Activated(generation));
    }
    let s = status(a);
    assert_eq!(
        s.active.not_after, root_end,
        "generation 3 ends with the root"
    );
    for at in [
        s.renew_at + Duration::minutes(1),
        root_end - Duration::hours(2),
    ] {
        h.clock.set(at);
        assert_eq!(maintain(a).await, IntermediateStep::Nothing, "at {at}");
        assert!(status(a).prepared.is_none());
    }
    assert_eq!(audited(&*h.store, "intermediate-prepare").await, 2);
    // An operator may still renew its key on demand.
    assert_eq!(
        a.prepare_intermediate("cluster", "op")
            .await
            .expect("prepare"),
        4
    );
}
