//! `kith cert sign`: CSRs from openssl, Python's cryptography and Go's
//! crypto/x509 are accepted when valid; hostile ones are refused with a
//! precise code and leave no record.

mod common;

use std::path::{Path, PathBuf};

use common::{openssl, run_tool, Ca};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `openssl req` with a fresh key; `key_args` chooses the key, `extra` adds options.
fn openssl_csr(ca: &Ca, name: &str, key_args: &[&str], extra: &[&str]) -> PathBuf {
    let key = ca.path(&format!("{name}.key"));
    let csr = ca.path(&format!("{name}.csr"));
    let mut args = vec!["req", "-new", "-nodes", "-keyout", s(&key), "-out", s(&csr)];
    args.extend_from_slice(key_args);
    args.extend_from_slice(extra);
    let (ok, out) = openssl(&args);
    assert!(ok, "openssl req {name}: {out}");
    csr
}

fn p256(ca: &Ca, name: &str, subj: &str, extra: &[&str]) -> PathBuf {
    let mut all = vec!["-subj", subj];
    all.extend_from_slice(extra);
    openssl_csr(
        ca,
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &all,
    )
}

fn sign(ca: &Ca, csr: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "cert",
        "sign",
        s(csr),
        "--name",
        "node-7",
        "--role",
        "worker",
    ];
    args.extend_from_slice(extra);
    ca.run(&args)
}

fn assert_issued(ca: &Ca, csr: &Path, extra: &[&str], expect_sans: &[&str]) {
    let out = sign(ca, csr, extra);
    assert!(
        out.status.success(),
        "{}: {}",
        csr.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let chain = ca.path("issued.pem");
    std::fs::write(&chain, &out.stdout).expect("write chain");
    let ca_pem = ca.data.join("ca.pem");
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        s(&ca_pem),
        "-untrusted",
        s(&chain),
        s(&chain),
    ]);
    assert!(ok, "{}: openssl verify: {text}", csr.display());
    let (_, text) = openssl(&[
        "x509",
        "-in",
        s(&chain),
        "-noout",
        "-subject",
        "-ext",
        "subjectAltName",
    ]);
    assert!(
        text.contains("subject=O = prod.example, OU = worker, CN = node-7"),
        "{}: the CA chooses the subject, not the CSR: {text}",
        csr.display()
    );
    for san in expect_sans {
        assert!(
            text.contains(san),
            "{}: expected {san} in {text}",
            csr.display()
        );
    }
}

#[test]
fn csrs_from_three_toolchains_are_accepted() {
    let ca = Ca::init("p256");
    // openssl: P-256 with SANs and the subjectKeyIdentifier openssl adds (rcgen's parser chokes on it).
    let c = p256(
        &ca,
        "o-p256",
        "/CN=whatever/O=Evil Corp",
        &[
            "-addext",
            "subjectAltName=DNS:node-7.prod.example,DNS:localhost,IP:10.0.0.7",
            "-addext",
            "subjectKeyIdentifier=hash",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    assert_issued(
        &ca,
        &c,
        &[],
        &[
            "DNS:node-7.prod.example",
            "DNS:localhost",
            "IP Address:10.0.0.7",
        ],
    );
    // openssl: RSA 2048 with only a common name.
    let c = openssl_csr(
        &ca,
        "o-rsa",
        &["-newkey", "rsa:2048"],
        &["-subj", "/CN=node-7"],
    );
    assert_issued(&ca, &c, &[], &["DNS:node-7.prod.example"]);
    // openssl: Ed25519.
    let c = openssl_csr(
        &ca,
        "o-ed",
        &["-newkey", "ed25519"],
        &[
            "-subj",
            "/CN=node-7",
            "-addext",
            "subjectAltName=DNS:node-7",
        ],
    );
    assert_issued(&ca, &c, &[], &["DNS:node-7.prod.example"]);
    // An explicitly allowed extra name.
    let c = p256(
        &ca,
        "o-allowed",
        "/CN=node-7",
        &["-addext", "subjectAltName=DNS:db.internal.example"],
    );
    assert_issued(
        &ca,
        &c,
        &["--allow-san", "db.internal.example"],
        &["DNS:db.internal.example"],
    );

    // Python's cryptography (from the test venv).
    let py = ca.path("py.csr");
    let script = format!(
        r#"
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
import ipaddress
key = ec.generate_private_key(ec.SECP384R1())
csr = (x509.CertificateSigningRequestBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node-7")]))
    .add_extension(x509.SubjectAlternativeName([x509.DNSName("node-7.prod.example"), x509.IPAddress(ipaddress.ip_address("fd00::7"))]), critical=False)
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    .sign(key, hashes.SHA384()))
open("{}", "wb").write(csr.public_bytes(serialization.Encoding.PEM))
"#,
        s(&py)
    );
    let (ok, out) = run_tool("python", &["-c", &script]);
    assert!(ok, "python cryptography: {out}");
    assert_issued(
        &ca,
        &py,
        &[],
        &["DNS:node-7.prod.example", "IP Address:FD00:0:0:0:0:0:0:7"],
    );

    // Go's crypto/x509 (fixtures made by tests/fixtures/gen_go_csrs.go).
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    assert_issued(
        &ca,
        &fixtures.join("go-p256.csr"),
        &[],
        &["DNS:localhost", "IP Address:10.0.0.7"],
    );
    assert_issued(
        &ca,
        &fixtures.join("go-rsa2048.csr"),
        &[],
        &["DNS:node-7.prod.example"],
    );
    assert_issued(
        &ca,
        &fixtures.join("go-ed25519.csr"),
        &[],
        &["DNS:node-7.prod.example"],
    );

    // DER input works too.
    let c = p256(&ca, "o-der", "/CN=node-7", &["-outform", "DER"]);
    assert_issued(&ca, &c, &[], &["DNS:node-7.prod.example"]);
}

#[test]
fn hostile_csrs_are_refused_precisely_and_change_nothing() {
    let ca = Ca::init("p256");
    let before = ca.certs();
    let mut cases: Vec<(&str, PathBuf, Vec<&str>, &str, &str)> = Vec::new();

    // Bad signature: flip the last byte of a valid DER CSR (inside the signature).
    let good = p256(&ca, "good", "/CN=node-7", &["-outform", "DER"]);
    let mut der = std::fs::read(&good).expect("read");
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let bad_sig = ca.path("bad-sig.der");
    std::fs::write(&bad_sig, &der).expect("write");
    cases.push(("bad signature", bad_sig, vec![], "bad-signature", ""));

    // Truncated DER.
    let truncated = ca.path("truncated.der");
    std::fs::write(&truncated, &der[..der.len() / 2]).expect("write");
    cases.push(("truncated", truncated, vec![], "malformed-csr", ""));

    let rsa1024 = openssl_csr(
        &ca,
        "rsa1024",
        &["-newkey", "rsa:1024"],
        &["-subj", "/CN=node-7"],
    );
    cases.push(("RSA-1024", rsa1024, vec![], "weak-key", "RSA 1024 < 2048"));

    let p192 = ca.path("p192.key");
    let (ok, out) = openssl(&[
        "ecparam",
        "-name",
        "prime192v1",
        "-genkey",
        "-noout",
        "-out",
        s(&p192),
    ]);
    assert!(ok, "{out}");
    let p192_csr = ca.path("p192.csr");
    let (ok, out) = openssl(&[
        "req",
        "-new",
        "-key",
        s(&p192),
        "-subj",
        "/CN=node-7",
        "-out",
        s(&p192_csr),
    ]);
    assert!(ok, "{out}");
    cases.push(("P-192", p192_csr, vec![], "weak-key", "P-192"));

    let sha1 = p256(&ca, "sha1", "/CN=node-7", &["-sha1"]);
    cases.push(("SHA-1 signature", sha1, vec![], "weak-signature", ""));

    let wildcard = p256(
        &ca,
        "wild",
        "/CN=node-7",
        &["-addext", "subjectAltName=DNS:*.prod.example"],
    );
    cases.push((
        "wildcard",
        wildcard,
        vec![],
        "wildcard-not-allowed",
        "*.prod.example",
    ));

    let other = p256(
        &ca,
        "other",
        "/CN=node-7",
        &["-addext", "subjectAltName=DNS:node-8.prod.example"],
    );
    cases.push((
        "another node's name",
        other,
        vec![],
        "san-not-allowed",
        "node-8.prod.example",
    ));

    let other_cn = p256(&ca, "othercn", "/CN=node-8", &[]);
    cases.push((
        "another node's name as CN",
        other_cn,
        vec![],
        "san-not-allowed",
        "node-8",
    ));

    let as_ca = p256(
        &ca,
        "ca",
        "/CN=node-7",
        &["-addext", "basicConstraints=critical,CA:TRUE"],
    );
    cases.push(("asks to be a CA", as_ca, vec![], "ca-not-allowed", ""));

    let email = p256(
        &ca,
        "email",
        "/CN=node-7",
        &["-addext", "subjectAltName=email:root@prod.example"],
    );
    cases.push((
        "email SAN",
        email,
        vec![],
        "san-not-allowed",
        "root@prod.example",
    ));

    let uri = p256(
        &ca,
        "uri",
        "/CN=node-7",
        &[
            "-addext",
            "subjectAltName=URI:spiffe://prod.example/manager/node-7",
        ],
    );
    cases.push((
        "another SPIFFE ID",
        uri,
        vec![],
        "san-not-allowed",
        "spiffe://prod.example/manager/node-7",
    ));

    let ip = p256(
        &ca,
        "ip",
        "/CN=node-7",
        &["-addext", "subjectAltName=IP:10.9.9.9"],
    );
    cases.push((
        "IP SAN when turned off",
        ip,
        vec!["--no-ip-sans"],
        "ip-not-allowed",
        "10.9.9.9",
    ));

    let nonames = p256(&ca, "nonames", "/O=nobody", &[]);
    cases.push(("no names", nonames, vec![], "no-names", ""));

    let garbage = ca.path("garbage.bin");
    std::fs::write(&garbage, vec![0x30u8; 1024 * 1024]).expect("write");
    cases.push(("1 MB of garbage", garbage, vec![], "csr-too-large", ""));

    let text = ca.path("text.txt");
    std::fs::write(&text, "this is not a certificate request\n").expect("write");
    cases.push(("not PEM at all", text, vec![], "malformed-csr", ""));

    let wrong_block = ca.data.join("ca.pem");
    cases.push((
        "a certificate, not a CSR",
        wrong_block,
        vec![],
        "malformed-csr",
        "no CERTIFICATE REQUEST",
    ));

    let empty = ca.path("empty");
    std::fs::write(&empty, b"").expect("write");
    cases.push(("empty", empty, vec![], "malformed-csr", ""));

    assert!(cases.len() >= 15);
    for (what, csr, extra, code, detail) in &cases {
        let out = sign(&ca, csr, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: must fail: {stderr}");
        assert!(
            stderr.contains(&format!("error[{code}]")),
            "{what}: expected {code}, got {stderr}"
        );
        assert!(
            stderr.contains(detail),
            "{what}: expected {detail:?} in {stderr}"
        );
        assert!(out.stdout.is_empty(), "{what}: no certificate on stdout");
    }
    // An invalid --name is refused before any CSR parsing.
    let good_pem = p256(&ca, "good2", "/CN=node-7", &[]);
    ca.fails_with(
        &[
            "cert",
            "sign",
            s(&good_pem),
            "--name",
            "Node_7",
            "--role",
            "worker",
        ],
        "invalid-name",
    );
    assert_eq!(ca.certs(), before, "refused CSRs must leave no record");
}
