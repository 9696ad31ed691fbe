//! Trust bundle updates: a node accepts a new root only when a root it
//! already trusts vouches for it, and never lets an update drop every root
//! it trusts.

use kith_pki::{accept_bundle, CaKind, CaSpec, KeyType, PrivateKey, Serial, SigningCa};
use time::{Duration, OffsetDateTime};

fn root_spec(authority: &str) -> CaSpec {
    let now = OffsetDateTime::now_utc();
    CaSpec {
        cluster: "prod.example".into(),
        authority: authority.into(),
        generation: 1,
        kind: CaKind::Root,
        not_before: now - Duration::hours(1),
        not_after: now + Duration::days(365),
        serial: Serial::random().expect("serial"),
    }
}

/// A root: its spec, its certificate and a signer for it.
fn root(authority: &str) -> (CaSpec, PrivateKey, Vec<u8>, SigningCa) {
    let spec = root_spec(authority);
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let again = PrivateKey::from_pkcs8_der(KeyType::P256, &key.pkcs8_der()).expect("key copy");
    let cert = spec.self_signed(key).expect("root");
    let der = cert.cert_der.clone();
    let signer = cert.into_signer().expect("signer");
    (spec, again, der, signer)
}

#[test]
fn a_new_root_needs_a_voucher_and_a_trusted_root_must_stay() {
    let (_, _, r1, s1) = root("cluster");
    let (spec2, k2, r2, _) = root("cluster");
    let (_, _, rogue, rogue_signer) = root("cluster");

    let only_r1 = vec![r1.clone()];
    let both = vec![r1.clone(), r2.clone()];
    let only_r2 = vec![r2.clone()];
    let with_rogue = vec![r1.clone(), rogue.clone()];

    // Unchanged, or shrinking to a root still trusted: fine.
    assert_eq!(
        accept_bundle(&only_r1, &only_r1, &[]).expect("same"),
        only_r1
    );
    accept_bundle(&both, &only_r2, &[]).expect("one trusted root stays");

    // A root nobody vouches for is refused.
    let e = accept_bundle(&only_r1, &with_rogue, &[]).unwrap_err();
    assert!(
        e.to_string().contains("no root this node trusts vouches"),
        "{e}"
    );
    // Replacing every trusted root is refused, vouched for or not.
    let cross = vec![spec2.cross_signed_by(&k2, &s1).expect("cross-sign")];
    let e = accept_bundle(&only_r1, &only_r2, &cross).unwrap_err();
    assert!(e.to_string().contains("drops every root"), "{e}");
    let e = accept_bundle(&only_r1, &[], &[]).unwrap_err();
    assert!(e.to_string().contains("no root"), "{e}");

    // R2 cross-signed by the trusted R1 vouches for R2 (a root rotation).
    assert_eq!(
        accept_bundle(&only_r1, &both, &cross).expect("vouched"),
        both
    );
    // A voucher signed by an untrusted root, or for another key, is no voucher.
    let self_vouched = vec![spec2
        .cross_signed_by(&k2, &rogue_signer)
        .expect("cross-sign")];
    assert!(accept_bundle(&only_r1, &both, &self_vouched).is_err());
    assert!(accept_bundle(&only_r1, &with_rogue, &cross).is_err());
}
