//! Every key type kith generates is one its own CSR check accepts, and a
//! signature that does not verify is refused as such, whatever the curve.
//! (P-521 CSRs were refused as `bad-signature`: x509-parser does not know
//! the curve, so kith verifies ECDSA itself.)

use kith_pki::{build_csr, parse_csr, KeyDescription, KeyType, PrivateKey, San};

fn csr(kt: KeyType) -> Vec<u8> {
    let key = PrivateKey::generate(kt).expect("generate");
    build_csr(&key, "node-1", &[San::Dns("node-1".into())]).expect("build CSR")
}

#[test]
fn every_generated_key_type_passes_its_own_csr_check() {
    for kt in KeyType::ALL {
        let parsed = parse_csr(&csr(kt)).unwrap_or_else(|e| panic!("{kt}: {e}"));
        assert_eq!(parsed.dns, ["node-1"], "{kt}");
        if kt == KeyType::P521 {
            assert_eq!(
                parsed.key,
                KeyDescription::Ec {
                    curve: "P-521".into(),
                    bits: 521
                }
            );
        }
    }
}

#[test]
fn a_tampered_ecdsa_signature_is_bad_on_every_curve() {
    for kt in [KeyType::P256, KeyType::P384, KeyType::P521] {
        let mut der = csr(kt);
        // The signature is the last element: flip a bit of its final byte.
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let e = parse_csr(&der).expect_err("tampered");
        assert_eq!(e.kind.code(), "bad-signature", "{kt}: {e}");
        // Or a bit of the signed request itself (inside the subject name).
        let mut der = csr(kt);
        let at = der
            .windows(6)
            .position(|w| w == b"node-1")
            .expect("the name is in the CSR");
        der[at] ^= 0x01;
        let e = parse_csr(&der).expect_err("tampered body");
        assert_eq!(e.kind.code(), "bad-signature", "{kt}: {e}");
    }
}

#[test]
fn p521_is_spelled_and_parsed() {
    let kt: KeyType = "p521".parse().expect("p521 parses");
    assert_eq!(kt, KeyType::P521);
    assert_eq!(kt.to_string(), "p521");
    assert!(!kt.is_rsa());
    let key = PrivateKey::generate(kt).expect("generate");
    let again = PrivateKey::from_pkcs8_der(kt, &key.pkcs8_der()).expect("reload");
    assert_eq!(again.public_key(), key.public_key());
}
