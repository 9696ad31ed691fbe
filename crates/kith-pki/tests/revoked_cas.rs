//! CA certificates revoked by a root's CRL ([`RevokedCas`]): what kith's
//! rustls configurations refuse in a presented chain beyond webpki's
//! end-entity check. Only a CRL whose signature a trusted root verifies
//! counts.

use kith_pki::{
    CaKind, CaSpec, CrlSpec, KeyType, PrivateKey, RevocationReason, RevokedCas, RevokedEntry,
    Serial, SigningCa,
};
use time::{Duration, OffsetDateTime};

fn spec(kind: CaKind, generation: u32) -> CaSpec {
    let now = OffsetDateTime::now_utc();
    CaSpec {
        cluster: "prod.example".into(),
        authority: "cluster".into(),
        generation,
        kind,
        not_before: now - Duration::hours(1),
        not_after: now + Duration::days(365),
        serial: Serial::random().expect("serial"),
    }
}

fn key() -> PrivateKey {
    PrivateKey::generate(KeyType::P256).expect("key")
}

/// A root of `generation`: its certificate and a signer.
fn root(generation: u32) -> (Vec<u8>, SigningCa) {
    let c = spec(CaKind::Root, generation)
        .self_signed(key())
        .expect("root");
    (c.cert_der.clone(), c.into_signer().expect("signer"))
}

/// An intermediate under `parent`: its spec's serial, its certificate and a signer.
fn intermediate(parent: &SigningCa, generation: u32) -> (Serial, Vec<u8>, SigningCa) {
    let s = spec(CaKind::Intermediate, generation);
    let serial = s.serial;
    let c = s.signed_by(key(), parent).expect("intermediate");
    (serial, c.cert_der.clone(), c.into_signer().expect("signer"))
}

fn crl(by: &SigningCa, revoked: &[&Serial]) -> Vec<u8> {
    let now = OffsetDateTime::now_utc();
    CrlSpec {
        number: 1,
        this_update: now - Duration::minutes(1),
        next_update: now + Duration::days(1),
        entries: revoked
            .iter()
            .map(|s| RevokedEntry {
                serial: **s,
                revoked_at: now - Duration::minutes(1),
                reason: RevocationReason::KeyCompromise,
            })
            .collect(),
    }
    .sign(by)
    .expect("CRL")
}

#[test]
fn only_a_trusted_roots_crl_revokes_an_intermediate() {
    let (r1, r1_signer) = root(1);
    let (r2, _) = root(2);
    // Same name as R1 (same cluster, authority, generation), another key.
    let (_, forger) = root(1);
    let (i1_serial, i1, i1_signer) = intermediate(&r1_signer, 1);
    let (_, i1b, _) = intermediate(&r1_signer, 2);
    let by_r1 = crl(&r1_signer, &[&i1_serial]);

    let revoked = RevokedCas::from_root_crls(&[&r1, &r2], &[&by_r1]);
    assert!(revoked.is_revoked(&i1), "R1's CRL lists I1");
    assert!(
        !revoked.is_revoked(&i1b),
        "another intermediate of R1 is not listed"
    );
    assert!(!revoked.is_revoked(&r1) && !revoked.is_revoked(b"not a certificate"));

    // Not trusted: the CRL's issuer is not among the roots.
    assert!(RevokedCas::from_root_crls(&[&r2], &[&by_r1]).is_empty());
    // A CRL under R1's name whose signature R1's key does not verify.
    let forged = crl(&forger, &[&i1_serial]);
    assert!(RevokedCas::from_root_crls(&[&r1], &[&forged]).is_empty());
    // An intermediate's CRL (the leaves') is webpki's to judge, not this.
    let by_i1 = crl(&i1_signer, &[&i1_serial]);
    assert!(RevokedCas::from_root_crls(&[&r1], &[&by_i1]).is_empty());
    // Unreadable CRLs add nothing and take nothing away.
    let revoked = RevokedCas::from_root_crls(&[&r1], &[b"garbage".as_slice(), &by_r1]);
    assert!(revoked.is_revoked(&i1));
}
