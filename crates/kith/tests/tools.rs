//! kith's output judged by tools nobody here wrote: openssl and pkilint, for
//! every key type and every profile.

mod common;

use common::{openssl, pkilint, Ca};

fn check_key_type(kt: &str) {
    let ca = Ca::init(kt);
    let nodes = ca.path("nodes");
    let nodes_s = nodes.to_str().expect("utf-8");
    for profile in ["peer", "server", "client", "admin"] {
        ca.ok(&[
            "cert",
            "issue",
            &format!("n-{profile}"),
            "--role",
            "worker",
            "--profile",
            profile,
            "--key-type",
            kt,
            "--out",
            nodes_s,
            "--san",
            "10.0.0.9",
        ]);
    }
    let leaf = |p: &str, f: &str| nodes.join(format!("n-{p}")).join(f);
    let ca_pem = leaf("peer", "ca.pem");
    let chain = leaf("peer", "chain.pem");

    // openssl verify accepts every leaf, for the purposes its profile grants.
    for (profile, purposes) in [
        ("peer", &["sslserver", "sslclient"][..]),
        ("server", &["sslserver"][..]),
        ("client", &["sslclient"][..]),
        ("admin", &["sslclient"][..]),
    ] {
        for purpose in purposes {
            let (ok, out) = openssl(&[
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                ca_pem.to_str().expect("utf-8"),
                "-untrusted",
                chain.to_str().expect("utf-8"),
                leaf(profile, "cert.pem").to_str().expect("utf-8"),
            ]);
            assert!(
                ok && out.contains(": OK"),
                "{kt} {profile} {purpose}: {out}"
            );
        }
    }
    // ...and refuses the purposes it does not grant.
    let (ok, out) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        ca_pem.to_str().expect("utf-8"),
        "-untrusted",
        chain.to_str().expect("utf-8"),
        leaf("client", "cert.pem").to_str().expect("utf-8"),
    ]);
    assert!(
        !ok,
        "{kt}: a client certificate must not pass as a TLS server: {out}"
    );

    // pkilint: no error on root, intermediate or any leaf, beyond the one
    // documented false positive on the SPIFFE URI; no warning at all.
    for (what, file) in [("root", ca_pem.clone()), ("intermediate", chain.clone())] {
        let f = pkilint("lint_pkix_cert", &[], &file);
        assert!(f.is_empty(), "{kt} {what}: pkilint findings {f:?}");
    }
    for profile in ["peer", "server", "client", "admin"] {
        let f = pkilint("lint_pkix_cert", &[], &leaf(profile, "cert.pem"));
        let unexpected: Vec<_> = f
            .iter()
            .filter(|x| !common::is_known_spiffe_false_positive(x))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{kt} {profile}: pkilint findings {unexpected:?}"
        );
        assert_eq!(
            f.len(),
            1,
            "{kt} {profile}: the SPIFFE URI finding should be the only one: {f:?}"
        );
    }

    // Revoke one leaf; the CRL verifies and openssl reports the leaf revoked.
    let serial = ca
        .certs()
        .into_iter()
        .find(|c| c["node"] == "n-peer")
        .expect("n-peer recorded")["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    ca.ok(&["revoke", &serial, "--reason", "key-compromise"]);
    let crl = ca.path("crl.pem");
    ca.ok(&["crl", "--pem", "--out", crl.to_str().expect("utf-8")]);
    let (ok, out) = openssl(&[
        "crl",
        "-in",
        crl.to_str().expect("utf-8"),
        "-CAfile",
        chain.to_str().expect("utf-8"),
        "-noout",
        "-verify",
        "-text",
    ]);
    assert!(
        ok && out.contains("verify OK"),
        "{kt}: openssl crl -verify: {out}"
    );
    // openssl prints serials without leading zero octets.
    let mut printed = serial.as_str();
    while let Some(rest) = printed.strip_prefix("00") {
        printed = rest;
    }
    assert!(
        out.to_uppercase().contains(&printed.to_uppercase()),
        "{kt}: CRL lists the serial: {out}"
    );
    assert!(
        out.contains("Key Compromise"),
        "{kt}: CRL keeps the reason: {out}"
    );
    let verify_with_crl = |p: &str| {
        openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            ca_pem.to_str().expect("utf-8"),
            "-untrusted",
            chain.to_str().expect("utf-8"),
            "-CRLfile",
            crl.to_str().expect("utf-8"),
            leaf(p, "cert.pem").to_str().expect("utf-8"),
        ])
    };
    let (ok, out) = verify_with_crl("peer");
    assert!(
        !ok && out.contains("certificate revoked"),
        "{kt}: revoked leaf: {out}"
    );
    let (ok, out) = verify_with_crl("server");
    assert!(
        ok && out.contains(": OK"),
        "{kt}: unrevoked leaf with CRL check: {out}"
    );
    let f = pkilint("lint_crl", &["-t", "CRL", "-p", "PKIX"], &crl);
    assert!(f.is_empty(), "{kt}: pkilint CRL findings {f:?}");

    // export-key: openssl opens the encrypted PKCS#8 and it matches the certificate.
    let export_pass = ca.path("export-pass");
    common::write_private(&export_pass, b"another long passphrase\n");
    for (which, cert) in [("root", &ca_pem), ("intermediate", &chain)] {
        let out_key = ca.path(&format!("{which}.key"));
        ca.ok(&[
            "ca",
            "export-key",
            "--which",
            which,
            "--out",
            out_key.to_str().expect("utf-8"),
            "--export-passphrase-file",
            export_pass.to_str().expect("utf-8"),
        ]);
        let pem = std::fs::read_to_string(&out_key).expect("read key");
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{kt} {which}"
        );
        let passin = format!("file:{}", export_pass.display());
        let (ok, from_key) = openssl(&[
            "pkey",
            "-in",
            out_key.to_str().expect("utf-8"),
            "-passin",
            &passin,
            "-pubout",
        ]);
        assert!(ok, "{kt} {which}: openssl pkey -passin: {from_key}");
        let (ok, from_cert) = openssl(&[
            "x509",
            "-in",
            cert.to_str().expect("utf-8"),
            "-noout",
            "-pubkey",
        ]);
        assert!(ok, "{kt}: {from_cert}");
        assert_eq!(
            from_key, from_cert,
            "{kt} {which}: exported key matches the certificate"
        );
        let (ok, out) = openssl(&[
            "pkey",
            "-in",
            out_key.to_str().expect("utf-8"),
            "-passin",
            "pass:wrong-passphrase",
            "-noout",
        ]);
        assert!(
            !ok,
            "{kt} {which}: a wrong export passphrase must fail: {out}"
        );
    }
}

#[test]
fn p256() {
    check_key_type("p256");
}

#[test]
fn p384() {
    check_key_type("p384");
}

#[test]
fn ed25519() {
    check_key_type("ed25519");
}

#[test]
fn rsa2048() {
    check_key_type("rsa2048");
}

#[test]
fn rsa3072() {
    check_key_type("rsa3072");
}

#[test]
fn rsa4096() {
    check_key_type("rsa4096");
}
