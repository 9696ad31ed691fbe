//! What every root rotation test does: a cluster on redb with a manual
//! clock, tokens, joins and renewals as the server makes them, and reads of
//! the stored records.

use kith_api::JoinToken;
use kith_authority::{
    AuditRecord, Authority, CrlIssuer, Error, Issued, NodeRecord, RootRotationOptions,
    RootRotationStatus, Settings, TokenSpec,
};
use kith_pki::{KeyType, PrivateKey, Profile};
use time::Duration;

use crate::common::{request, Backend, Harness, PASS};
use crate::tools::{openssl, s, write_pem};

pub(crate) const NAME: &str = "cluster";

/// Nodes asked to renew by an activation are asked at once.
pub(crate) fn no_spread() -> Settings {
    Settings {
        root_renew_spread: Some(Duration::ZERO),
        ..Settings::default()
    }
}

pub(crate) async fn harness() -> Harness {
    Harness::new(Backend::Redb, no_spread()).await
}

/// A one-hour, `uses`-use `worker` token of the default authority.
pub(crate) async fn token(a: &Authority, uses: u32) -> JoinToken {
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

pub(crate) fn peer_csr(name: &str) -> Vec<(Profile, Vec<u8>)> {
    let key = PrivateKey::generate(KeyType::P256).expect("a key");
    vec![(Profile::Peer, crate::common::csr(&key, name))]
}

/// Join node `name` with `token`; its one `peer` certificate.
pub(crate) async fn join_with(a: &Authority, token: &JoinToken, name: &str) -> Issued {
    let (_, mut issued) = a
        .join(token, Some(name), &peer_csr(name), "test")
        .await
        .expect("join");
    issued.pop().expect("one certificate")
}

pub(crate) async fn join(a: &Authority, name: &str) -> Issued {
    join_with(a, &token(a, 1).await, name).await
}

/// Renew over mutual TLS with the certificate `current` presents.
pub(crate) async fn renew(a: &Authority, current: &Issued) -> Issued {
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

pub(crate) fn pin(der: &[u8]) -> [u8; 32] {
    kith_pki::spki_pin(der).expect("a pin")
}

pub(crate) fn issued_by(cert: &[u8], ca: &[u8]) -> bool {
    kith_pki::issued_by(cert, ca).expect("parse")
}

pub(crate) fn common_name(der: &[u8]) -> String {
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

pub(crate) async fn status(a: &Authority) -> RootRotationStatus {
    a.root_rotation_status(NAME)
        .await
        .expect("status")
        .expect("a rotation under way")
}

pub(crate) async fn prepare(a: &Authority, opts: RootRotationOptions) -> RootRotationStatus {
    a.prepare_root_rotation(NAME, &opts, "test")
        .await
        .expect("prepare")
}

/// The stored authority record (what every replica reads).
pub(crate) async fn record(a: &Authority) -> kith_authority::AuthorityRecord {
    let e = a
        .store()
        .get(&format!("authority/{NAME}"))
        .await
        .expect("get")
        .expect("the authority record");
    serde_json::from_slice(&e.value).expect("an authority record")
}

/// The prepared rotation's new intermediate, from the stored record.
pub(crate) async fn new_intermediate(a: &Authority) -> Vec<u8> {
    record(a)
        .await
        .root_rotation
        .expect("a rotation")
        .new_intermediate
        .expect("a prepared intermediate")
        .cert
}

pub(crate) async fn audits(a: &Authority, action: &str) -> usize {
    a.store()
        .list("audit/")
        .await
        .expect("list")
        .iter()
        .map(|e| serde_json::from_slice::<AuditRecord>(&e.value).expect("an audit record"))
        .filter(|r| r.action == action)
        .count()
}

pub(crate) fn code(e: Error) -> String {
    e.code().to_string()
}

pub(crate) async fn node(a: &Authority, name: &str) -> NodeRecord {
    let e = a
        .store()
        .get(&format!("node/{name}"))
        .await
        .expect("get")
        .expect("the node");
    serde_json::from_slice(&e.value).expect("a node record")
}

/// A second handle opened from the store with the passphrase alone, as a
/// restarted server is: every sealed key must open, and it issues.
pub(crate) async fn reopen_and_issue(h: &Harness, leaf: &str) -> (Authority, Issued) {
    let b = Authority::open(h.store.clone(), h.clock.clone(), PASS, no_spread())
        .await
        .expect("reopen from the store");
    let issued = b.issue(request(leaf)).await.expect("issue after reopening");
    (b, issued)
}

/// Sign every CRL the authority has now (the keys of I1, I2 and both
/// roots), and check each signature with openssl.
pub(crate) async fn every_crl_signs(a: &Authority, dir: &std::path::Path) {
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

pub(crate) fn key_type_of(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    c.public_key().algorithm.algorithm.to_id_string()
}

/// Whether CRL `der` was signed by the key of certificate `ca`.
pub(crate) fn crl_signed_by(der: &[u8], ca: &[u8]) -> bool {
    let (_, crl) = x509_parser::parse_x509_crl(der).expect("a CRL");
    let (_, ca) = x509_parser::parse_x509_certificate(ca).expect("a certificate");
    crl.issuer() == ca.subject() && crl.verify_signature(ca.public_key()).is_ok()
}
