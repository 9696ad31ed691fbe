//! `kith crl --root`: the CRL an authority's root signs (of its
//! intermediates), offline from the store and through a running server, so
//! an operator can hand nginx (`ssl_crl`) or `openssl verify -crl_check_all`
//! both CRLs without a node directory. Judged by openssl.

mod common;

use std::path::Path;

use common::{openssl, start_server, Ca};

/// `openssl crl -noout -issuer -crlnumber` of a PEM file.
fn issuer_and_number(file: &Path) -> (String, String) {
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        &file.to_string_lossy(),
        "-noout",
        "-issuer",
        "-crlnumber",
    ]);
    assert!(ok, "openssl crl: {text}");
    let issuer = text
        .lines()
        .find_map(|l| l.strip_prefix("issuer="))
        .expect("an issuer line")
        .trim()
        .to_string();
    let number = text
        .lines()
        .find_map(|l| l.strip_prefix("crlNumber="))
        .expect("a crlNumber line")
        .trim()
        .to_string();
    (issuer, number)
}

/// The subject of the first certificate of a PEM file.
fn subject(file: &Path) -> String {
    let (ok, text) = openssl(&["x509", "-in", &file.to_string_lossy(), "-noout", "-subject"]);
    assert!(ok, "openssl x509: {text}");
    text.trim()
        .strip_prefix("subject=")
        .expect("a subject line")
        .trim()
        .to_string()
}

fn check(ca: &Ca, root_pem: &Path, tag: &str) {
    let root_crl = ca.path(&format!("root-{tag}.pem"));
    let leaf_crl = ca.path(&format!("leaves-{tag}.pem"));
    ca.ok(&[
        "crl",
        "--root",
        "--pem",
        "--out",
        &root_crl.to_string_lossy(),
    ]);
    ca.ok(&["crl", "--pem", "--out", &leaf_crl.to_string_lossy()]);
    let (root_issuer, _) = issuer_and_number(&root_crl);
    let (leaf_issuer, _) = issuer_and_number(&leaf_crl);
    assert_eq!(root_issuer, subject(root_pem), "{tag}: signed by the root");
    assert_ne!(
        root_issuer, leaf_issuer,
        "{tag}: not the intermediate's CRL"
    );
    // The root's signature, checked by openssl against the root alone.
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        &root_crl.to_string_lossy(),
        "-CAfile",
        &root_pem.to_string_lossy(),
        "-noout",
    ]);
    assert!(ok && text.contains("verify OK"), "{tag}: {text}");
}

#[test]
fn the_root_crl_offline_and_through_a_running_server() {
    let ca = Ca::init("p256");
    // `init` writes the bundle (the cluster authority's root) into the data dir.
    let root_pem = ca.data.join("ca.pem");
    check(&ca, &root_pem, "offline");

    let (_server, _url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    check(&ca, &root_pem, "online");
    // --force-new signs a new root CRL through the server: its number grows.
    let before = ca.path("before.pem");
    let after = ca.path("after.pem");
    ca.ok(&["crl", "--root", "--pem", "--out", &before.to_string_lossy()]);
    ca.ok(&[
        "crl",
        "--root",
        "--force-new",
        "--pem",
        "--out",
        &after.to_string_lossy(),
    ]);
    let (_, n1) = issuer_and_number(&before);
    let (_, n2) = issuer_and_number(&after);
    assert!(
        u64::from_str_radix(n2.trim_start_matches("0x"), 16).expect("hex number")
            > u64::from_str_radix(n1.trim_start_matches("0x"), 16).expect("hex number"),
        "root CRL number {n1} -> {n2}"
    );
}
