//! What `intermediate_renewal.rs` judges with: openssl and pkilint (found
//! through `KITH_TOOLS_DIR`, the workspace's `.venv/bin`, or PATH; a
//! missing one fails the test), x509-parser for names and CRL signatures,
//! and a store whose watch is silent (a replica whose keyring lags); and
//! the steps the tests repeat.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kith_authority::{
    Authority, IntermediateStatus, IntermediateStep, Issued, Settings, DEFAULT_INTERMEDIATE_PUBLISH,
};
use kith_pki::{Profile, Serial};
use time::{Duration, OffsetDateTime};

use crate::common::{request, Harness, PASS};

// ---- external judges -------------------------------------------------------

pub(crate) use crate::common::{openssl, tool};

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

// ---- the steps the tests repeat ---------------------------------------------

pub(crate) fn status(a: &Authority) -> IntermediateStatus {
    a.intermediate_status("cluster")
        .expect("the intermediate status")
}

pub(crate) async fn maintain(a: &Authority) -> IntermediateStep {
    let steps = a.maintain_intermediates("test").await.expect("maintain");
    assert_eq!(steps.len(), 1, "one authority: {steps:?}");
    assert_eq!(steps[0].0, "cluster");
    steps[0].1.clone()
}

pub(crate) async fn leaf(a: &Authority, node: &str) -> Issued {
    a.issue(request(node)).await.expect("issue a leaf")
}

/// Move the clock to a whole second past the renewal point of the active
/// intermediate; returns that time (a prepare's `since`).
pub(crate) fn past_renewal(h: &Harness, s: &IntermediateStatus) -> OffsetDateTime {
    let t = s.renew_at.replace_nanosecond(0).expect("0 ns") + Duration::minutes(1);
    h.clock.set(t);
    t
}

/// Prepare generation 2 through `maintain_intermediates` and activate it
/// once published: (gen 1 certificate, gen 2 certificate).
pub(crate) async fn renew(h: &Harness) -> (Vec<u8>, Vec<u8>) {
    let gen1 = status(&h.authority).active.cert;
    past_renewal(h, &status(&h.authority));
    assert_eq!(maintain(&h.authority).await, IntermediateStep::Prepared(2));
    h.clock
        .advance(DEFAULT_INTERMEDIATE_PUBLISH + Duration::seconds(1));
    assert_eq!(maintain(&h.authority).await, IntermediateStep::Activated(2));
    let gen2 = status(&h.authority).active.cert;
    (gen1, gen2)
}

/// Every CRL a relying party holds for `authority`: the active one's and the others'.
pub(crate) async fn all_crls(a: &Authority) -> Vec<Vec<u8>> {
    let mut crls = vec![a.crl("cluster").await.expect("active CRL").der];
    for c in a.other_crls("cluster").await.expect("other CRLs") {
        crls.push(c.der);
    }
    crls
}

/// kith's own chain check (what its TLS configurations do): the leaf under
/// the root through `chain`, with every CRL served.
pub(crate) async fn kith_verifies(a: &Authority, issued: &Issued) {
    kith_pki::verify_chain(
        &issued.record.der,
        &issued.chain,
        &[a.root_cert("cluster").expect("root")],
        &all_crls(a).await,
        a.now(),
        Profile::Peer,
    )
    .expect("the leaf verifies with the CRLs served");
}

/// Every audit line of `action`.
pub(crate) async fn audited(store: &dyn kith_store::Store, action: &str) -> usize {
    store
        .list("audit/")
        .await
        .expect("list the audit")
        .iter()
        .map(|e| serde_json::from_slice::<kith_authority::AuditRecord>(&e.value).expect("record"))
        .filter(|r| r.action == action)
        .count()
}

/// `maintain_intermediates` on both replicas at once, each on its own
/// task: the step each took for the one authority.
pub(crate) async fn both_tick(a: &Authority, b: &Authority) -> Vec<IntermediateStep> {
    let tick = |who: &Authority| {
        let who = who.clone();
        tokio::spawn(async move { who.maintain_intermediates("test").await })
    };
    let (ra, rb) = (tick(a), tick(b));
    let mut steps = Vec::new();
    for r in [ra.await, rb.await] {
        let r = r.expect("the task").expect("a replica's tick never fails");
        assert_eq!(r.len(), 1);
        steps.push(r[0].1.clone());
    }
    steps
}

/// Whether `steps` hold `done` once or twice and otherwise nothing: a
/// replica that finds its keyring already holding the other's step has
/// nothing to do.
pub(crate) fn one_or_both(steps: &[IntermediateStep], done: IntermediateStep) -> bool {
    steps.contains(&done)
        && steps
            .iter()
            .all(|s| *s == done || *s == IntermediateStep::Nothing)
}

/// A replica on the shared store whose watch never delivers.
pub(crate) async fn deaf_replica(h: &Harness) -> Authority {
    let deaf: Arc<dyn kith_store::Store> = Arc::new(Deaf(h.store.clone()));
    Authority::open(deaf, h.clock.clone(), PASS, Settings::default())
        .await
        .expect("a lagging replica")
}
