//! What monitoring reads of the CA (`Authority::health_view`) and the
//! problems `kith status` exits non-zero for, driven with the injected
//! clock on a real redb store: a fresh CA has none; a revocation not yet
//! re-signed is a stale CRL until it is; a node whose certificate expired
//! (not revoked, not removed) is reported, and so is a CRL past its next
//! update; an intermediate past its renewal point that nobody renewed, and
//! a root with less than a third of its life left, are inside their
//! rotation window.

mod common;

use common::{csr, Harness};
use kith_authority::{Authority, ProblemKind, Publish, RevokeTarget, TokenSpec};
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason, Serial};
use time::Duration;

async fn join(a: &Authority, node: &str) -> (String, time::OffsetDateTime) {
    let (_, token) = a
        .create_token(
            TokenSpec {
                role: "worker".into(),
                node: None,
                ttl: Duration::hours(1),
                uses: 1,
                allow_sans: Vec::new(),
                authority: None,
            },
            "test",
        )
        .await
        .expect("token");
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let (_, issued) = a
        .join(
            &token,
            Some(node),
            &[(Profile::Peer, csr(&key, node))],
            "127.0.0.1",
        )
        .await
        .expect("join");
    (issued[0].record.serial.clone(), issued[0].record.not_after)
}

fn kinds(a: &kith_authority::HealthView) -> Vec<ProblemKind> {
    a.problems().iter().map(|p| p.kind).collect()
}

#[tokio::test]
async fn a_fresh_ca_has_no_problem_and_its_expiries_are_its_certificates() {
    let h = Harness::redb().await;
    let a = &h.authority;
    // The first CRL is signed on first demand.
    a.crl("cluster").await.expect("sign the first CRL");
    let v = a.health_view().await.expect("health view");
    assert!(v.problems().is_empty(), "{:?}", v.problems());
    let root = a.root_cert("cluster").expect("root");
    let inter = a.intermediate_cert("cluster").expect("intermediate");
    for (role, der) in [("root", &root), ("intermediate", &inter)] {
        let (_, not_after) = kith_pki::certificate_validity(der).expect("validity");
        let serial = kith_pki::certificate_serial(der).expect("serial").to_hex();
        let found: Vec<_> = v.cas.iter().filter(|c| c.role == role).collect();
        assert_eq!(found.len(), 1, "{role}: {:?}", v.cas);
        assert_eq!(found[0].not_after, not_after, "{role}");
        assert_eq!(found[0].serial, serial, "{role}");
        assert_eq!(found[0].state, "active");
    }
    assert_eq!(v.crls.len(), 1);
    assert!(v.crls[0].number >= 1 && v.crls[0].next_update.is_some());
    assert_eq!(v.earliest_node_expiry, None);
    assert_eq!(v.tokens_outstanding, 0);
}

#[tokio::test]
async fn each_state_is_reported_and_clears_when_it_is_mended() {
    let h = Harness::redb().await;
    let a = &h.authority;
    a.crl("cluster").await.expect("first CRL");
    let (serial, _) = join(a, "n1").await;
    let (_, n2_expiry) = join(a, "n2").await;
    let v = a.health_view().await.expect("view");
    assert_eq!(v.nodes.get("active"), Some(&2));
    assert!(v.earliest_node_expiry.is_some_and(|e| e <= n2_expiry));
    assert!(v.problems().is_empty(), "{:?}", v.problems());

    // A revocation whose CRL nobody re-signed yet (its process died first).
    let outcomes = a
        .revoke(
            RevokeTarget::Serial(Serial::parse(&serial).expect("serial")),
            RevocationReason::KeyCompromise,
            "test",
            Publish::ByCaller,
        )
        .await
        .expect("revoke");
    let v = a.health_view().await.expect("view");
    assert_eq!(kinds(&v), vec![ProblemKind::CrlStale]);
    assert!(
        v.problems()[0]
            .reason
            .contains("not re-signed after a revocation"),
        "{:?}",
        v.problems()
    );
    a.publish_crls(&outcomes).await.expect("re-sign");
    let v = a.health_view().await.expect("view");
    assert!(v.problems().is_empty(), "re-signed: {:?}", v.problems());

    // Past the live node's expiry: n2 (not revoked) has only an expired
    // certificate; the CRL (7 days) is past its next update too.
    h.clock
        .set(n2_expiry.max(v.crls[0].next_update.expect("signed")) + Duration::hours(1));
    let v = a.health_view().await.expect("view");
    assert_eq!(
        kinds(&v),
        vec![ProblemKind::CrlStale, ProblemKind::NodesExpired],
        "most urgent first: {:?}",
        v.problems()
    );
    assert!(v.problems()[0].reason.contains("past its next update"));
    assert!(
        v.problems()[1].reason.starts_with("1 node(s)"),
        "{:?}",
        v.problems()
    );
    // The revoked node is not counted as expired.
    assert_eq!(v.nodes.get("revoked"), Some(&1));
    a.crl("cluster").await.expect("re-sign");
    let v = a.health_view().await.expect("view");
    assert_eq!(kinds(&v), vec![ProblemKind::NodesExpired]);
}

#[tokio::test]
async fn an_intermediate_nobody_renewed_and_an_old_root_are_due_for_rotation() {
    let h = Harness::redb().await;
    let a = &h.authority;
    let status = a.intermediate_status("cluster").expect("status");
    // Just before the renewal point: nothing.
    h.clock.set(status.renew_at - Duration::hours(1));
    a.crl("cluster").await.expect("CRL");
    let v = a.health_view().await.expect("view");
    assert!(
        !kinds(&v).contains(&ProblemKind::RotationDue),
        "{:?}",
        v.problems()
    );

    // Past it, and no server renewed it.
    h.clock.set(status.renew_at + Duration::hours(1));
    a.crl("cluster").await.expect("CRL");
    let v = a.health_view().await.expect("view");
    let due: Vec<_> = v
        .problems()
        .into_iter()
        .filter(|p| p.kind == ProblemKind::RotationDue)
        .collect();
    assert_eq!(due.len(), 1, "{due:?}");
    assert!(due[0].reason.contains("intermediate"), "{due:?}");

    // Renewal started (prepared, publishing): not an alarm until an hour
    // after it should have become active.
    a.prepare_intermediate("cluster", "test")
        .await
        .expect("prepare");
    a.crl("cluster").await.expect("CRL");
    let v = a.health_view().await.expect("view");
    assert!(
        !kinds(&v).contains(&ProblemKind::RotationDue),
        "{:?}",
        v.problems()
    );
    assert!(v
        .cas
        .iter()
        .any(|c| c.role == "intermediate" && c.state == "prepared"));
    let activate_at = a
        .intermediate_status("cluster")
        .expect("status")
        .prepared
        .expect("prepared")
        .1;
    h.clock.set(activate_at + Duration::hours(2));
    a.crl("cluster").await.expect("CRL");
    let v = a.health_view().await.expect("view");
    assert!(
        kinds(&v).contains(&ProblemKind::RotationDue),
        "stuck: {:?}",
        v.problems()
    );

    // A root with less than a third of its life left.
    let root = a.root_cert("cluster").expect("root");
    let (nb, na) = kith_pki::certificate_validity(&root).expect("validity");
    h.clock.set(nb + (na - nb) * 0.7);
    let v = a.health_view().await.expect("view");
    assert!(
        v.problems()
            .iter()
            .any(|p| p.kind == ProblemKind::RotationDue && p.reason.contains("root")),
        "{:?}",
        v.problems()
    );
}
