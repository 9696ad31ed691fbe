//! One `revoke(target)`: a serial or a node, the CRL re-signed before it
//! returns (`Publish::Now`) or left to the caller (`Publish::ByCaller`,
//! then `publish_crls`), and `remove_node`; on a real redb store.

use std::sync::Arc;

use kith_authority::{
    stored_crl, Authority, Error, Identity, IssueRequest, Issued, Publish, RevokeOutcome,
    RevokeTarget,
};
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason, Serial};
use kith_store::Store;

mod common;

async fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Authority) {
    let h = common::Harness::redb().await;
    (h.dir, h.store, h.authority)
}

async fn issue(authority: &Authority, node: &str) -> Issued {
    authority
        .issue(IssueRequest {
            identity: Identity {
                node: node.into(),
                role: "worker".into(),
                profile: Profile::Peer,
                authority: None,
                ttl: None,
            },
            public_key: PrivateKey::generate(KeyType::P256)
                .expect("key")
                .public_key(),
            extra_sans: Vec::new(),
        })
        .await
        .expect("issue")
}

fn serial(i: &Issued) -> Serial {
    Serial::parse(&i.record.serial).expect("serial")
}

/// The stored CRL's number and whether its DER lists `serial`.
async fn crl(store: &dyn Store, serial: &str) -> (u64, bool) {
    let c = stored_crl(store, "cluster")
        .await
        .expect("read")
        .expect("a CRL is stored");
    let listed = format!("{:?}", kith_pki::inspect(&c.der).expect("a CRL"));
    (c.number, listed.contains(serial))
}

#[tokio::test]
async fn publish_now_leaves_a_fresh_crl_that_lists_it() {
    let (_dir, store, authority) = setup().await;
    let a = issue(&authority, "node-1").await;
    let out = authority
        .revoke(
            RevokeTarget::Serial(serial(&a)),
            RevocationReason::KeyCompromise,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke");
    assert!(matches!(out.as_slice(), [RevokeOutcome::Revoked(r)] if r.serial == a.record.serial));
    assert!(!authority.crl_is_stale("cluster").await.expect("stale?"));
    let (number, listed) = crl(&*store, &a.record.serial).await;
    assert!(listed, "the CRL signed by revoke lists the certificate");
    // Revoking again changes nothing, and signs nothing.
    let again = authority
        .revoke(
            RevokeTarget::Serial(serial(&a)),
            RevocationReason::Unspecified,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke again");
    assert!(
        matches!(again.as_slice(), [RevokeOutcome::AlreadyRevoked(r)] if r.reason == RevocationReason::KeyCompromise)
    );
    assert_eq!(crl(&*store, &a.record.serial).await, (number, true));
}

#[tokio::test]
async fn by_caller_records_now_and_publish_crls_signs_once() {
    let (_dir, store, authority) = setup().await;
    let first = issue(&authority, "node-0").await;
    authority
        .revoke(
            RevokeTarget::Serial(serial(&first)),
            RevocationReason::Superseded,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke a first one, so a CRL is stored");
    let (before, _) = crl(&*store, &first.record.serial).await;
    let a = issue(&authority, "node-1").await;
    let b = issue(&authority, "node-1").await;
    let out = authority
        .revoke(
            RevokeTarget::Node("node-1".into()),
            RevocationReason::KeyCompromise,
            "test",
            Publish::ByCaller,
        )
        .await
        .expect("revoke the node");
    let mut revoked: Vec<&str> = out.iter().map(|o| o.record().serial.as_str()).collect();
    revoked.sort_unstable();
    let mut expected = vec![a.record.serial.as_str(), b.record.serial.as_str()];
    expected.sort_unstable();
    assert_eq!(revoked, expected);
    assert!(out.iter().all(|o| matches!(o, RevokeOutcome::Revoked(_))));
    // Recorded, not yet published: the stored CRL is stale and says so.
    assert!(authority.crl_is_stale("cluster").await.expect("stale?"));
    assert_eq!(crl(&*store, &a.record.serial).await, (before, false));
    // One signature for the two revocations of one authority.
    let signed = authority.publish_crls(&out).await.expect("publish");
    assert_eq!(signed.len(), 1);
    assert_eq!(signed[0].number, before + 1);
    assert!(!authority.crl_is_stale("cluster").await.expect("stale?"));
    assert_eq!(crl(&*store, &a.record.serial).await, (before + 1, true));
    assert!(crl(&*store, &b.record.serial).await.1);
    // Nothing newly revoked: nothing to sign.
    let again = authority
        .revoke(
            RevokeTarget::Node("node-1".into()),
            RevocationReason::KeyCompromise,
            "test",
            Publish::ByCaller,
        )
        .await
        .expect("revoke the node again");
    assert!(again
        .iter()
        .all(|o| matches!(o, RevokeOutcome::AlreadyRevoked(_))));
    assert!(authority
        .publish_crls(&again)
        .await
        .expect("publish")
        .is_empty());
}

#[tokio::test]
async fn remove_node_revokes_and_bars_and_unknown_targets_are_refused() {
    let (_dir, store, authority) = setup().await;
    let e = authority
        .revoke(
            RevokeTarget::Node("nobody".into()),
            RevocationReason::Unspecified,
            "test",
            Publish::Now,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownNode(_)), "{e}");
    let e = authority
        .revoke(
            RevokeTarget::Serial(Serial::parse("0a0b0c").expect("serial")),
            RevocationReason::Unspecified,
            "test",
            Publish::Now,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnknownCertificate(_)), "{e}");
    // Issued offline, the node is recorded as a join records it (so that
    // its directory can be adopted and renew): removing it revokes it.
    issue(&authority, "node-1").await;
    let removed = authority
        .remove_node(
            "node-1",
            RevocationReason::CessationOfOperation,
            "test",
            Publish::Now,
        )
        .await
        .expect("remove a node issued offline");
    assert!(
        removed
            .iter()
            .any(|o| matches!(o, RevokeOutcome::Revoked(_))),
        "{removed:?}"
    );
    assert!(stored_crl(&*store, "cluster")
        .await
        .expect("read")
        .is_some());
}

/// Revoking by serial cannot revoke the last live operator certificate
/// (nobody could use the admin API again), as revoking the operator by
/// name cannot; a replaced one (renewal) or one of several goes.
#[tokio::test]
async fn the_last_operator_certificate_is_not_revoked_by_serial() {
    let (_dir, store, authority) = setup().await;
    let key = || {
        PrivateKey::generate(KeyType::P256)
            .expect("key")
            .public_key()
    };
    let first = authority
        .add_operator("admin", key(), None, "test")
        .await
        .expect("the first operator");
    let before = store.list("revoked/").await.expect("list").len();
    let e = authority
        .revoke(
            RevokeTarget::Serial(serial(&first)),
            RevocationReason::Superseded,
            "test",
            Publish::Now,
        )
        .await
        .expect_err("the last operator certificate");
    assert_eq!(e.code(), "last-operator", "{e}");
    assert_eq!(store.list("revoked/").await.expect("list").len(), before);
    // With a second live operator the first can go by serial.
    authority
        .add_operator("bob", key(), None, "test")
        .await
        .expect("a second operator");
    authority
        .revoke(
            RevokeTarget::Serial(serial(&first)),
            RevocationReason::Superseded,
            "test",
            Publish::Now,
        )
        .await
        .expect("one of two operators");
}
