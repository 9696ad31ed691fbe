//! Load driver: joins per second (a fresh TLS connection each) and renewals
//! per second (keep-alive mutual TLS) against real `kith serve` processes,
//! next to `cfssl serve` (Debian package golang-cfssl) signing the same
//! P-256 CSRs on the same machine, in one run. Every kith certificate is
//! durably recorded before its answer; cfssl stores nothing.
//!
//! `KITH_LOAD_STORE` picks the stores, in one run (default `embedded`):
//! - `embedded`: one `kith serve` on a redb data directory; every cell
//!   (join, renew, secret, cfssl).
//! - `nats1`, `nats3`: a 3-node nats-server cluster on loopback (R3
//!   stream, `sync_interval: always`), `kith init --store` once, then 1 or
//!   3 `kith serve --store` replicas (own ports, data dirs, server names;
//!   with 3 the workers are spread round-robin); join and renew cells only.
//!   Each NATS cell also reports where its time goes (CPU per operation of
//!   nats-server, kith serve and this driver; NATS messages and writes per
//!   operation; the store's own get/update/create latency at the cell's
//!   concurrency): the method is in `load/breakdown.rs`. nats-server comes
//!   from `KITH_TOOLS_DIR` (or the workspace's `.venv/bin`, or PATH).
//!
//! A cell's clock and counters start once its workers are set up (for
//! renewals: joined, with an mTLS connection open), so set-up joins are
//! not counted as renewals.
//!
//! ```text
//! cargo bench -p kith --bench load                 # c = 1, 16, 64; 5 s per cell
//! KITH_LOAD_SECS=10 KITH_LOAD_C=1,64 KITH_LOAD_OPS=renew,cfssl cargo bench -p kith --bench load
//! KITH_LOAD_C=16 KITH_LOAD_OPS=secret cargo bench -p kith --bench load   # secret reads
//! KITH_TOOLS_DIR=.venv/bin KITH_LOAD_STORE=embedded,nats1,nats3 KITH_LOAD_C=1,64 \
//!     cargo bench -p kith --bench load            # issue 12: the NATS store
//! ```

#[path = "load/breakdown.rs"]
mod breakdown;
#[path = "load/cells.rs"]
mod cells;
#[path = "load/embedded.rs"]
mod embedded;
#[path = "load/report.rs"]
mod report;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use kith_agent::{Connection, ServerAddr};
use kith_api::wire::{
    CsrSubmission, IssueResponse, JoinRequest, RenewRequest, TokenCreateRequest, TokenCreated,
};
use kith_pki::{KeyType, PrivateKey, San};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use breakdown::{Probe, StoreLatency, Usage};
use cells::{join_and_renew, print_row, row, BoxFut, Load, Row, Target};
use kith_store_nats::testing::NatsCluster;

const PASS: &str = "bench passphrase, not a secret";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "port {port} never opened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Worker {
    key: PrivateKey,
    csr_pem: String,
}

#[derive(Default)]
struct Cell {
    latencies: Vec<Duration>,
    errors: usize,
    elapsed: Duration,
}

impl Cell {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn mean(&self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.iter().sum::<Duration>().as_secs_f64() * 1e3 / self.latencies.len() as f64
    }
    fn pct(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1e3
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca_pem: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        kith_pki::certs_from_pem_or_der(&std::fs::read(ca_pem).expect("ca.pem")).expect("roots")
    {
        roots.add(CertificateDer::from(c)).expect("root");
    }
    Arc::new(roots)
}

fn public_config(ca_pem: &Path) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots(ca_pem))
            .with_no_client_auth(),
    )
}

/// Run `c` workers for `secs`: each is set up (`f(worker)`) first, then
/// the clock and `probe` start, and every worker repeats its operation
/// until the deadline.
async fn run_cell<F, Fut>(c: usize, secs: f64, probe: &mut Probe<'_>, f: F) -> Cell
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Op> + Send,
{
    let f = Arc::new(f);
    let ready = Arc::new(tokio::sync::Barrier::new(c + 1));
    let go = Arc::new(tokio::sync::Barrier::new(c + 1));
    let deadline = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut handles = Vec::new();
    for w in 0..c {
        let (f, ready, go, deadline) = (f.clone(), ready.clone(), go.clone(), deadline.clone());
        handles.push(tokio::spawn(async move {
            let mut op = f(w).await;
            ready.wait().await;
            go.wait().await;
            let deadline = *deadline.get().expect("set before the start");
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op().await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    // A worker whose set-up failed has panicked: do not wait for it forever.
    tokio::time::timeout(Duration::from_secs(300), ready.wait())
        .await
        .expect("every worker set up within 300 s (a set-up panicked?)");
    probe.begin().await;
    let start = Instant::now();
    deadline
        .set(start + Duration::from_secs_f64(secs))
        .expect("one start");
    go.wait().await;
    let mut cell = Cell::default();
    for h in handles {
        let (lat, errors) = h.await.expect("worker");
        cell.latencies.extend(lat);
        cell.errors += errors;
    }
    cell.elapsed = start.elapsed();
    probe.end(cell.latencies.len()).await;
    cell
}

/// Join as `node` with the worker's CSR, then open a keep-alive mutual-TLS
/// connection with the certificate it got.
async fn joined_connection(
    server: &ServerAddr,
    public: Arc<rustls::ClientConfig>,
    ca_pem: &Path,
    token: &str,
    node: &str,
    worker: &Worker,
) -> Connection {
    let csr = CsrSubmission {
        profile: "peer".into(),
        csr: worker.csr_pem.clone(),
    };
    let mut conn = Connection::open(server, public).await.expect("connect");
    let joined: IssueResponse = conn
        .json(
            Method::POST,
            "/v1/join",
            Some(&JoinRequest {
                token: token.to_string(),
                node: Some(node.to_string()),
                csrs: vec![csr],
                may_leave_out: Vec::new(),
            }),
        )
        .await
        .expect("join");
    mtls_connection(server, ca_pem, worker, &joined).await
}

/// An mTLS connection presenting the certificate of `issued` (a join or a
/// renewal) with the worker's key: only a node's current certificate renews.
async fn mtls_connection(
    server: &ServerAddr,
    ca_pem: &Path,
    worker: &Worker,
    issued: &IssueResponse,
) -> Connection {
    let mut chain = kith_pki::certs_from_pem_or_der(issued.certificates[0].certificate.as_bytes())
        .expect("leaf");
    chain.extend(
        kith_pki::certs_from_pem_or_der(issued.certificates[0].chain.as_bytes()).expect("chain"),
    );
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(worker.key.pkcs8_der().to_vec()));
    let cfg = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots(ca_pem))
            .with_client_auth_cert(chain.into_iter().map(CertificateDer::from).collect(), key)
            .expect("client cert"),
    );
    Connection::open(server, cfg).await.expect("mTLS")
}

type Op =
    Box<dyn FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send>;

/// The `kith` binary under test.
const KITH: &str = env!("CARGO_BIN_EXE_kith");

/// `kith serve` on 127.0.0.1:`port`, its store given by `store_args`.
fn spawn_serve(store_args: &[&std::ffi::OsStr], pass: &Path, port: u16) -> Proc {
    Proc(
        Command::new(KITH)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(store_args)
            .arg("--passphrase-file")
            .arg(pass)
            // Throughput, not the per-node renewal limit nor the per-source
            // connection cap, is measured here: every worker connects from
            // 127.0.0.1, and a renewal opens its next mTLS connection before
            // the old one is gone (64 workers once hit the default 128).
            .args(["--renew-limit", "1000000"])
            .args(["--max-connections-per-source", "1024"])
            .env("KITH_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("kith serve"),
    )
}

/// `kith init` of a bench CA in `data`, with `extra` store options.
fn init_ca(data: &Path, pass: &Path, extra: &[&std::ffi::OsStr]) {
    run(Command::new(KITH)
        .args([
            "init",
            "--cluster",
            "bench.example",
            "--kdf-memory-mib",
            "19",
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .arg("--passphrase-file")
        .arg(pass));
}

#[tokio::main]
async fn main() {
    let secs: f64 = std::env::var("KITH_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let cs: Vec<usize> = std::env::var("KITH_LOAD_C")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let max_c = cs.iter().copied().max().unwrap_or(1);
    let ops = std::env::var("KITH_LOAD_OPS").unwrap_or_else(|_| "join,renew,secret,cfssl".into());
    let want = |op: &str| ops.split(',').any(|o| o.trim() == op);
    let stores = std::env::var("KITH_LOAD_STORE").unwrap_or_else(|_| "embedded".into());
    let stores: Vec<&str> = stores.split(',').map(str::trim).collect();
    for s in &stores {
        assert!(
            ["embedded", "nats1", "nats3"].contains(s),
            "KITH_LOAD_STORE: {s:?} is not one of embedded, nats1, nats3"
        );
    }
    let store = |s: &str| stores.contains(&s);
    let tmp = tempfile::tempdir().expect("tempdir");
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, PASS).expect("pass");
    // kith refuses a passphrase file others can read.
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod pass");

    // One P-256 key and CSR per worker, made before any timing; the same
    // CSRs go to kith and to cfssl. An IP SAN only, so one CSR fits any node name.
    let workers: Arc<Vec<Worker>> = Arc::new(
        (0..max_c)
            .map(|_| {
                let key = PrivateKey::generate(KeyType::P256).expect("key");
                let der = kith_pki::build_csr(
                    &key,
                    "bench",
                    &[San::Ip("127.0.0.1".parse().expect("ip"))],
                )
                .expect("csr");
                Worker {
                    csr_pem: kith_pki::pem_encode("CERTIFICATE REQUEST", &der),
                    key,
                }
            })
            .collect(),
    );
    let load = Load { secs, workers };
    let mut rows: Vec<Row> = Vec::new();
    println!("kith load driver: {secs} s per cell, stores {stores:?}, same P-256 CSRs for kith and cfssl");
    println!(
        "{:<9} {:<31} {:>4} {:>10} {:>9} {:>9} {:>7}",
        "store", "operation", "c", "req/s", "p50 ms", "p99 ms", "errors"
    );
    if store("embedded") {
        embedded::embedded(&load, tmp.path(), &pass, &cs, &want, &mut rows).await;
    }
    let mut latency: Vec<(usize, StoreLatency)> = Vec::new();
    if store("nats1") || store("nats3") {
        let nats = NatsCluster::start_monitored(3).await;
        // Which nats-server ran matters: 2.15 fsyncs a replicated stream
        // once per raft append, earlier ones once per message as well.
        let bin = nats.bin();
        let version = Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|e| format!("(--version failed: {e})"));
        println!("NATS cells: {version} ({})", bin.display());
        let url = std::ffi::OsString::from(nats.url());
        let init = tmp.path().join("nats-init");
        init_ca(&init, &pass, &["--store".as_ref(), url.as_os_str()]);
        // The store's own latency, before any replica runs.
        for &c in &cs {
            latency.push((
                c,
                breakdown::store_latency(&nats, c, (secs / 2.0).clamp(1.0, 5.0)).await,
            ));
        }
        for (name, tag, n) in [("nats1", "n1-", 1), ("nats3", "n3-", 3)] {
            if !store(name) {
                continue;
            }
            let mut procs = Vec::new();
            let mut servers = Vec::new();
            for i in 0..n {
                let port = free_port();
                let dir = tmp.path().join(format!("{name}-replica-{i}"));
                let server_name = std::ffi::OsString::from(format!("kith-server-{name}-{i}"));
                procs.push(spawn_serve(
                    &[
                        "--store".as_ref(),
                        url.as_os_str(),
                        "--data-dir".as_ref(),
                        dir.as_os_str(),
                        "--server-name".as_ref(),
                        server_name.as_os_str(),
                    ],
                    &pass,
                    port,
                ));
                servers.push(ServerAddr {
                    host: "127.0.0.1".into(),
                    port,
                });
            }
            for s in &servers {
                wait_port(s.port);
            }
            let t = Target {
                name,
                tag,
                servers: Arc::new(servers),
                procs,
                ca_pem: init.join("ca.pem"),
                admin: init.join("admin"),
            };
            let (_admin, tokens) = t.tokens(max_c).await;
            join_and_renew(
                &load,
                &t,
                &tokens,
                &cs,
                &want,
                Some((&nats, 3, "kith")),
                &mut rows,
            )
            .await;
        }
    }
    report::summary(&rows, &cs, &latency);
}
