//! ECDSA P-521 end to end, judged by tools nobody here wrote: CSRs from
//! openssl (SHA-256, SHA-384 and SHA-512 signatures) are signed; a P-521 CA
//! issues P-521 leaves and CRLs that openssl verifies and pkilint finds
//! clean; a node joins with a P-521 key and renews over mutual TLS.

mod common;

use std::path::Path;
use std::process::Command;

use common::{openssl, pkilint, start_server, Ca};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// pkilint finds nothing beyond the documented SPIFFE URI false positive.
fn assert_pkilint_clean(what: &str, file: &Path) {
    let f = pkilint("lint_pkix_cert", &[], file);
    let unexpected: Vec<_> = f
        .iter()
        .filter(|x| !common::is_known_spiffe_false_positive(x))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{what}: pkilint findings {unexpected:?}"
    );
}

fn assert_verifies(ca_pem: &Path, chain: &Path, leaf: &Path) {
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        s(ca_pem),
        "-untrusted",
        s(chain),
        s(leaf),
    ]);
    assert!(
        ok && out.contains(": OK"),
        "openssl verify {}: {out}",
        leaf.display()
    );
}

#[test]
fn openssl_p521_csrs_are_signed_whatever_the_digest() {
    let ca = Ca::init("p256");
    for digest in ["sha256", "sha384", "sha512"] {
        let key = ca.path(&format!("p521-{digest}.key"));
        let csr = ca.path(&format!("p521-{digest}.csr"));
        let (ok, out) = openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-521",
            &format!("-{digest}"),
            "-subj",
            "/CN=node-7",
            "-addext",
            "subjectAltName=DNS:node-7.prod.example",
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
        ]);
        assert!(ok, "openssl req: {out}");
        let out = ca.run(&[
            "cert",
            "sign",
            s(&csr),
            "--name",
            "node-7",
            "--role",
            "worker",
        ]);
        assert!(
            out.status.success(),
            "P-521 CSR signed with {digest}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let issued = ca.path(&format!("p521-{digest}.pem"));
        std::fs::write(&issued, &out.stdout).expect("write chain");
        assert_verifies(&ca.data.join("ca.pem"), &issued, &issued);
        let (_, text) = openssl(&["x509", "-in", s(&issued), "-noout", "-text"]);
        assert!(text.contains("NIST CURVE: P-521"), "a P-521 key: {text}");
        assert_pkilint_clean(&format!("leaf from a {digest} CSR"), &issued);
    }
}

#[test]
fn a_p521_ca_issues_p521_leaves_and_crls_that_openssl_and_pkilint_accept() {
    let ca = Ca::init("p521");
    let nodes = ca.path("nodes");
    ca.ok(&[
        "cert",
        "issue",
        "n-1",
        "--role",
        "worker",
        "--key-type",
        "p521",
        "--out",
        s(&nodes),
    ]);
    let dir = nodes.join("n-1");
    let (ca_pem, chain, leaf) = (
        dir.join("ca.pem"),
        dir.join("chain.pem"),
        dir.join("cert.pem"),
    );
    assert_verifies(&ca_pem, &chain, &leaf);
    let (_, text) = openssl(&["x509", "-in", s(&chain), "-noout", "-text"]);
    assert!(
        text.contains("ecdsa-with-SHA512") && text.contains("NIST CURVE: P-521"),
        "the intermediate is P-521, signed with SHA-512: {text}"
    );
    for (what, file) in [("root", &ca_pem), ("intermediate", &chain)] {
        let f = pkilint("lint_pkix_cert", &[], file);
        assert!(f.is_empty(), "P-521 {what}: pkilint findings {f:?}");
    }
    assert_pkilint_clean("P-521 leaf", &leaf);

    let crl = ca.path("crl.pem");
    ca.ok(&["crl", "--pem", "--out", s(&crl)]);
    let (ok, out) = openssl(&[
        "crl",
        "-in",
        s(&crl),
        "-CAfile",
        s(&chain),
        "-noout",
        "-verify",
    ]);
    assert!(
        ok && out.contains("verify OK"),
        "openssl crl -verify: {out}"
    );
    let f = pkilint("lint_crl", &["-t", "CRL", "-p", "PKIX"], &crl);
    assert!(f.is_empty(), "P-521 CRL: pkilint findings {f:?}");
}

#[test]
fn a_node_joins_and_renews_with_a_p521_key_under_a_p521_ca() {
    let ca = Ca::init("p521");
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let token = ca.token("worker", &[]);
    let dir = ca.join(&url, &token, "node-1", &["--key-type", "p521"]);
    let kith = || Command::new(env!("CARGO_BIN_EXE_kith"));
    let (_, text) = openssl(&["x509", "-in", s(&dir.join("cert.pem")), "-noout", "-text"]);
    assert!(
        text.contains("NIST CURVE: P-521"),
        "a P-521 node key: {text}"
    );
    assert_verifies(
        &dir.join("ca.pem"),
        &dir.join("chain.pem"),
        &dir.join("cert.pem"),
    );

    // Renewal is a TLS handshake with the P-521 key as the client credential.
    let before = std::fs::read(dir.join("cert.pem")).expect("cert");
    let out = kith()
        .args(["renew", "--dir"])
        .arg(&dir)
        .output()
        .expect("renew");
    assert!(
        out.status.success(),
        "renew: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        std::fs::read(dir.join("cert.pem")).expect("cert"),
        before,
        "renewed"
    );
    // (pkilint judges P-521 leaves above; a joined one also carries the
    // `localhost` SAN that pkilint flags whatever the key type.)
    let (_, text) = openssl(&["x509", "-in", s(&dir.join("cert.pem")), "-noout", "-text"]);
    assert!(
        text.contains("NIST CURVE: P-521"),
        "the new key is P-521 too: {text}"
    );
}
