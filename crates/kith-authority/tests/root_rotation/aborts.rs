//! Abort in each phase, a compromised rotation, and the rotation after an
//! abort.

use kith_authority::{Clock, CrlIssuer, RootPhase, RootRotationOptions, RootStep, Settings};
use time::Duration;

use crate::common::{request, Backend, Harness};
use crate::helpers::*;
use crate::tools::{openssl, s, verify, write_pem};

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
    // Nothing changed but the generations and the key version the aborted
    // CAs took (they were published: no later CA may take their names or
    // CRL keys; no later key their sealing AAD).
    let mut after: serde_json::Value = serde_json::from_slice(&after).expect("JSON");
    let before: serde_json::Value = serde_json::from_slice(&before).expect("JSON");
    let burnt = after.as_object_mut().expect("an object");
    assert_eq!(burnt.remove("last_root_generation"), Some(2.into()));
    assert_eq!(burnt.remove("last_intermediate_generation"), Some(2.into()));
    assert_eq!(burnt.remove("last_key_version"), Some(2.into()));
    assert_eq!(after, before);
    assert_eq!(
        a.authority_roots(NAME).expect("roots"),
        std::slice::from_ref(&r1)
    );
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
    assert_eq!(leaf.chain, std::slice::from_ref(&i1));
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
    assert_eq!(
        a.authority_roots(NAME).expect("roots"),
        std::slice::from_ref(&r1)
    );
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
async fn no_other_root_crl_is_read_without_a_rotation_or_without_what_a_compromise_revokes() {
    let h = harness().await;
    let a = &h.authority;
    let store = a.store().clone();
    let other = || async {
        kith_authority::stored_crl_of(&*store, NAME, CrlIssuer::OtherRoot)
            .await
            .expect("read")
    };
    // No rotation: no other root, so no CRL of one (not the root's own).
    a.crl_of(NAME, CrlIssuer::Root).await.expect("root CRL");
    assert!(other().await.is_none(), "no other root without a rotation");
    let empty = store
        .get("rootcrl/cluster")
        .await
        .expect("get")
        .expect("R1's CRL");

    prepare(a, RootRotationOptions::new(None, true)).await;
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    assert_eq!(other().await.expect("signed at activation").entries, 1);
    // A replica that had not seen the activation re-signs R1's CRL as its
    // root's, empty: that one is not the old root's CRL to serve.
    store
        .put("rootcrl/cluster", empty.value.clone())
        .await
        .expect("put");
    assert!(other().await.is_none(), "lacks the revoked I1");
    assert_eq!(
        a.crl_of(NAME, CrlIssuer::OtherRoot)
            .await
            .expect("re-signed")
            .entries,
        1
    );
    assert_eq!(other().await.expect("stored").entries, 1);

    // Once the rotation is over, no other root again.
    let until = a
        .finish_root_rotation(NAME, true, "test")
        .await
        .expect("finish")
        .other_root_until
        .expect("until");
    h.clock
        .advance(until - h.clock.now() + Duration::seconds(1));
    assert_eq!(
        a.maintain_root_rotations("test").await.expect("maintain"),
        [(NAME.to_string(), RootStep::Completed)]
    );
    assert!(other().await.is_none(), "no other root after the rotation");
}

/// An emergency rotation with the overlap the operator set: the old root
/// leaves the bundle that long after the finish, not when its last leaf
/// would have expired; a negative overlap is refused before anything is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_rotation_keeps_the_old_root_only_for_the_overlap_given() {
    let h = harness().await;
    let a = &h.authority;
    let r1 = a.root_cert(NAME).expect("root");
    let e = a
        .prepare_root_rotation(
            NAME,
            &RootRotationOptions::new(None, true).with_overlap(Duration::seconds(-1)),
            "test",
        )
        .await
        .expect_err("negative overlap");
    assert_eq!(code(e), "invalid-argument");
    assert_eq!(
        a.authority_roots(NAME).expect("roots"),
        std::slice::from_ref(&r1)
    );

    // A leaf under the old root that lives for days.
    let _old = join(a, "n1").await;
    prepare(
        a,
        RootRotationOptions::new(None, true).with_overlap(Duration::hours(1)),
    )
    .await;
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    let st = a
        .finish_root_rotation(NAME, true, "test")
        .await
        .expect("finish");
    let finished = a.now();
    assert_eq!(st.other_root_until, Some(finished + Duration::hours(1)));
    h.clock.advance(Duration::hours(1) + Duration::seconds(1));
    a.maintain_root_rotations("test").await.expect("maintain");
    let roots = a.authority_roots(NAME).expect("roots");
    assert_eq!(roots.len(), 1, "only the new root is left");
    assert_ne!(roots[0], r1);
}

/// After a root rotation finished, an ordinary intermediate renewal: the
/// leaves under the replaced intermediate chain to the active root, so
/// nobody is asked to renew (comparing with the active intermediate alone
/// sent every node to renew at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intermediate_renewal_after_a_root_rotation_asks_nobody_to_renew() {
    let h = harness().await;
    let a = &h.authority;
    prepare(a, RootRotationOptions::new(None, false)).await;
    a.activate_root_rotation(NAME, true, "test")
        .await
        .expect("activate");
    let under_i2 = join(a, "n1").await;
    a.finish_root_rotation(NAME, true, "test")
        .await
        .expect("finish");
    assert!(!a.renew_now(&under_i2.record), "under the new root already");
    a.prepare_intermediate(NAME, "test").await.expect("prepare");
    a.activate_intermediate(NAME, "test", true)
        .await
        .expect("activate the intermediate");
    assert!(
        !issued_by(&under_i2.record.der, &a.intermediate_cert(NAME).expect("i")),
        "a new intermediate issues"
    );
    assert!(
        !a.renew_now(&under_i2.record),
        "a leaf under the active root is not asked to renew"
    );
}

/// A key version is never used twice in a record's life: the keys of an
/// aborted rotation are gone, and the next rotation's are sealed under
/// later versions (an AAD used again would let an old sealed key pass for
/// a new one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_versions_are_never_used_again() {
    let h = harness().await;
    let a = &h.authority;
    prepare(a, RootRotationOptions::new(None, false)).await;
    let first = record(a)
        .await
        .root_rotation
        .expect("a rotation")
        .other_root
        .key_version;
    a.abort_root_rotation(NAME, "test").await.expect("abort");
    prepare(a, RootRotationOptions::new(None, false)).await;
    let second = record(a)
        .await
        .root_rotation
        .expect("a rotation")
        .other_root
        .key_version;
    assert!(second > first, "{second} after {first}");
}
