//! What `intermediate_renewal.rs` judges with: openssl and pkilint (found
//! through `KITH_TOOLS_DIR`, the workspace's `.venv/bin`, or PATH; a
//! missing one fails the test), x509-parser for names and CRL signatures,
//! and a store whose watch is silent (a replica whose keyring lags).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kith_pki::Serial;
use time::OffsetDateTime;

// ---- external judges -------------------------------------------------------

/// Find an external tool or panic with what installs it: a test that needs
/// one never passes without it.
pub(crate) fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KITH_TOOLS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "required tool `{name}` not found: run ./scripts/test.sh, which installs openssl and a venv with pkilint"
            )
        })
}

/// Run openssl; (success, stdout and stderr).
pub(crate) fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new(tool("openssl"))
        .args(args)
        .output()
        .expect("run openssl");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// pkilint's PKIX certificate linter at `-s WARNING`, as the CLI's tool
/// tests run it on intermediates: what it prints (nothing when clean).
pub(crate) fn pkilint_cert(file: &Path) -> String {
    let out = Command::new(tool("lint_pkix_cert"))
        .args(["lint", "-s", "WARNING", path(file)])
        .output()
        .expect("run pkilint");
    assert!(
        out.status.code().is_some(),
        "pkilint crashed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub(crate) fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Write a certificate (or a CRL, with `tag` "X509 CRL") as PEM in `dir`.
pub(crate) fn pem(dir: &Path, name: &str, tag: &str, der: &[u8]) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, kith_pki::pem_encode(tag, der)).expect("write a PEM file");
    file
}

/// `openssl verify` of `leaf` under `root` through `intermediate` at the
/// authority's clock time, with `crl` checked when given.
pub(crate) fn openssl_verify(
    dir: &Path,
    at: OffsetDateTime,
    root: &[u8],
    intermediate: &[u8],
    leaf: &[u8],
    crl: Option<&[u8]>,
) -> (bool, String) {
    let root = pem(dir, "root.pem", "CERTIFICATE", root);
    let inter = pem(dir, "intermediate.pem", "CERTIFICATE", intermediate);
    let leaf = pem(dir, "leaf.pem", "CERTIFICATE", leaf);
    let at = at.unix_timestamp().to_string();
    let mut args = vec!["verify", "-attime", &at, "-CAfile", path(&root)];
    args.extend(["-untrusted", path(&inter)]);
    let crl_file;
    if let Some(der) = crl {
        crl_file = pem(dir, "crl.pem", "X509 CRL", der);
        args.extend(["-crl_check", "-CRLfile", path(&crl_file)]);
    }
    args.push(path(&leaf));
    openssl(&args)
}

/// `openssl verify -crl_check_all` of `leaf` under `root` through
/// `intermediate`, with `crls` (one file): what nginx and Envoy do, a CRL
/// wanted for every CA of the chain.
pub(crate) fn openssl_verify_all(
    dir: &Path,
    at: OffsetDateTime,
    root: &[u8],
    intermediate: &[u8],
    leaf: &[u8],
    crls: &[Vec<u8>],
) -> (bool, String) {
    let root = pem(dir, "root.pem", "CERTIFICATE", root);
    let inter = pem(dir, "intermediate.pem", "CERTIFICATE", intermediate);
    let leaf = pem(dir, "leaf.pem", "CERTIFICATE", leaf);
    let crl_file = dir.join("crls.pem");
    std::fs::write(
        &crl_file,
        kith_pki::pem_encode_many("X509 CRL", crls.iter().map(Vec::as_slice)),
    )
    .expect("write the CRLs");
    let at = at.unix_timestamp().to_string();
    openssl(&[
        "verify",
        "-attime",
        &at,
        "-crl_check_all",
        "-CRLfile",
        path(&crl_file),
        "-CAfile",
        path(&root),
        "-untrusted",
        path(&inter),
        path(&leaf),
    ])
}

// ---- certificates and CRLs ---------------------------------------------------

pub(crate) fn cn(name: &x509_parser::x509::X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .expect("a CN")
        .to_string()
}

/// The issuer CN of a certificate.
pub(crate) fn issuer_cn(der: &[u8]) -> String {
    let (_, c) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    cn(c.issuer())
}

/// Whether `crl` is signed by `issuer` and names it as its issuer.
pub(crate) fn signed_by(crl: &[u8], issuer: &[u8]) -> bool {
    let (_, crl) = x509_parser::parse_x509_crl(crl).expect("a CRL");
    let (_, ca) = x509_parser::parse_x509_certificate(issuer).expect("a certificate");
    crl.issuer() == ca.subject() && crl.verify_signature(ca.public_key()).is_ok()
}

/// Whether `crl` lists `serial`.
pub(crate) fn lists(crl: &[u8], serial: &str) -> bool {
    let (_, crl) = x509_parser::parse_x509_crl(crl).expect("a CRL");
    let wanted = Serial::parse(serial).expect("a serial").to_hex();
    let listed = crl
        .iter_revoked_certificates()
        .any(|r| Serial::from_der_integer(r.raw_serial()).is_ok_and(|s| s.to_hex() == wanted));
    listed
}

/// A store whose watch never says anything: a replica on it learns of
/// changes only when it re-reads (the resync timer, its own writes), as a
/// replica whose watch lags.
pub(crate) struct Deaf(pub(crate) Arc<dyn kith_store::Store>);

#[async_trait::async_trait]
impl kith_store::Store for Deaf {
    async fn get(&self, key: &str) -> kith_store::Result<Option<kith_store::Entry>> {
        self.0.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> kith_store::Result<u64> {
        self.0.put(key, value).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> kith_store::Result<u64> {
        self.0.create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, rev: u64) -> kith_store::Result<u64> {
        self.0.update(key, value, rev).await
    }
    async fn delete(&self, key: &str) -> kith_store::Result<()> {
        self.0.delete(key).await
    }
    async fn delete_if(&self, key: &str, rev: u64) -> kith_store::Result<()> {
        self.0.delete_if(key, rev).await
    }
    async fn list(&self, prefix: &str) -> kith_store::Result<Vec<kith_store::Entry>> {
        self.0.list(prefix).await
    }
    async fn watch(
        &self,
        _prefix: &str,
    ) -> kith_store::Result<
        futures::stream::BoxStream<'static, kith_store::Result<kith_store::WatchEvent>>,
    > {
        use futures::StreamExt;
        Ok(futures::stream::pending().boxed())
    }
    fn limits(&self) -> kith_store::Limits {
        self.0.limits()
    }
}
