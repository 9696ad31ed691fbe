//! The root's CRL (issue 11, item 1): signed by the authority's root (not
//! its intermediate), stored apart from the intermediate's, numbered by
//! compare-and-swap, served while fresh, re-signed when the validity
//! changes, and untouched by a leaf's revocation; on a real redb store.

use std::sync::Arc;

use kith_authority::{
    stored_crl_of, Authority, CrlIssuer, InitOptions, KdfParams, ManualClock, Settings,
    SettingsChange,
};
use kith_pki::KeyType;
use kith_store::Store;
use kith_store_redb::RedbStore;
use time::OffsetDateTime;

async fn setup() -> (tempfile::TempDir, Arc<dyn Store>, Authority) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&dir.path().join("kith.redb")).expect("open"));
    let authority = Authority::init(
        store.clone(),
        Arc::new(ManualClock::new(OffsetDateTime::now_utc())),
        InitOptions {
            cluster: "test.example".into(),
            key_type: KeyType::P256,
            kdf: KdfParams::MINIMUM,
        },
        b"a passphrase for tests",
        Settings::default(),
    )
    .await
    .expect("init");
    (dir, store, authority)
}

/// Whether `der` is a CRL whose signature verifies under `issuer_der`'s key
/// and whose issuer is that certificate's subject.
fn signed_by(der: &[u8], issuer_der: &[u8]) -> bool {
    let (_, crl) = x509_parser::parse_x509_crl(der).expect("a CRL");
    let (_, ca) = x509_parser::parse_x509_certificate(issuer_der).expect("a certificate");
    crl.issuer() == ca.subject() && crl.verify_signature(ca.public_key()).is_ok()
}

#[tokio::test]
async fn the_root_signs_its_own_crl_stored_apart() {
    let (_dir, store, authority) = setup().await;
    assert!(stored_crl_of(&*store, "cluster", CrlIssuer::Root)
        .await
        .expect("read")
        .is_none());
    let root = authority.root_cert("cluster").expect("root");
    let inter = authority
        .intermediate_cert("cluster")
        .expect("intermediate");

    let first = authority
        .crl_of("cluster", CrlIssuer::Root)
        .await
        .expect("root CRL");
    assert_eq!((first.number, first.entries), (1, 0));
    assert!(signed_by(&first.der, &root), "signed by the root");
    assert!(!signed_by(&first.der, &inter), "not by the intermediate");
    assert!(store.get("rootcrl/cluster").await.expect("get").is_some());

    // The intermediate's CRL is its own record, signed by the intermediate.
    let leaves = authority.crl("cluster").await.expect("intermediate CRL");
    assert!(signed_by(&leaves.der, &inter));
    assert_eq!(leaves.number, 1, "numbered apart from the root's");

    // Fresh: served as stored, no new signature.
    let again = authority
        .crl_of("cluster", CrlIssuer::Root)
        .await
        .expect("root CRL");
    assert_eq!((again.number, &again.der), (1, &first.der));

    // Signed with another validity: stale, so the next one is number 2.
    authority
        .update_settings(
            SettingsChange {
                crl_validity: Some(time::Duration::hours(2)),
                ..Default::default()
            },
            "test",
        )
        .await
        .expect("settings");
    let next = authority
        .crl_of("cluster", CrlIssuer::Root)
        .await
        .expect("root CRL");
    assert_eq!(next.number, 2);
    assert_eq!(
        next.next_update - next.this_update,
        time::Duration::hours(2)
    );
    assert!(signed_by(&next.der, &root));

    // Another authority's root signs its own.
    authority
        .add_authority("api", KeyType::P256)
        .await
        .expect("authority add");
    let api = authority
        .crl_of("api", CrlIssuer::Root)
        .await
        .expect("api root CRL");
    assert!(signed_by(
        &api.der,
        &authority.root_cert("api").expect("api root")
    ));
    assert!(!signed_by(&api.der, &root));
}
