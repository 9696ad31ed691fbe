//! A rotation to another key type, reopened from the store and with the
//! master key rotated at every step; two replicas on one store.

use std::sync::Arc;

use kith_authority::{Clock, RootPhase, RootRotationOptions, RootStep};
use kith_pki::KeyType;
use time::Duration;

use crate::common::{self, request, Backend, Harness, PASS};
use crate::helpers::*;
use crate::tools::{verify, write_pem};

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
    assert_eq!(leaf.chain, std::slice::from_ref(&i2));
    every_crl_signs(&b, dir).await;

    let until = status(&b).await.other_root_until.expect("until");
    h.clock
        .advance(until - h.clock.now() + Duration::seconds(1));
    assert_eq!(
        b.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Completed)]
    );
    let (b, leaf) = reopen_and_issue(&h, "after-complete").await;
    assert_eq!(
        b.authority_roots(NAME).expect("roots"),
        std::slice::from_ref(&r2)
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_preparing_at_once_make_one_rotation() {
    let h = Harness::new(Backend::Mem, no_spread()).await;
    let a = h.authority.clone();
    let b = h.second().await;
    let (ta, tb) = (a.clone(), b.clone());
    let (x, y) = tokio::join!(
        tokio::spawn(async move {
            ta.prepare_root_rotation(NAME, &RootRotationOptions::default(), "a")
                .await
        }),
        tokio::spawn(async move {
            tb.prepare_root_rotation(NAME, &RootRotationOptions::default(), "b")
                .await
        }),
    );
    let results = [x.expect("no panic"), y.expect("no panic")];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in results {
        if let Err(e) = r {
            assert_eq!(e.code().to_string(), "rotation-not-ready");
        }
    }
    assert_eq!(audits(&a, "root-rotation-prepare").await, 1);
    let r = record(&a).await;
    let rot = r.root_rotation.expect("one rotation");
    let both = vec![r.root_cert.clone(), rot.other_root.cert.clone()];
    // The loser sees the winner's rotation by its keyring's watch.
    common::within_a_second("the one rotation's bundle in both", || {
        a.authority_roots(NAME).ok().as_ref() == Some(&both)
            && b.authority_roots(NAME).ok().as_ref() == Some(&both)
    })
    .await;
}
