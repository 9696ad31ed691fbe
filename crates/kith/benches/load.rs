//! Load driver: joins per second (a fresh TLS connection each) and renewals
//! per second (keep-alive mutual TLS) against a real `kith serve` process,
//! next to `cfssl serve` (Debian package golang-cfssl) signing the same
//! P-256 CSRs on the same machine, in one run. Every kith certificate is
//! durably recorded before its answer; cfssl stores nothing.
//!
//! ```text
//! cargo bench -p kith --bench load                 # c = 1, 16, 64; 5 s per cell
//! KITH_LOAD_SECS=10 KITH_LOAD_C=1,64 KITH_LOAD_OPS=renew,cfssl cargo bench -p kith --bench load
//! KITH_LOAD_C=16 KITH_LOAD_OPS=secret cargo bench -p kith --bench load   # secret reads
//! ```

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

async fn run_cell<F, Fut>(c: usize, secs: f64, f: F) -> Cell
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<
            Output = Box<
                dyn FnMut() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
                    + Send,
            >,
        > + Send,
{
    let f = Arc::new(f);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..c {
        let f = f.clone();
        handles.push(tokio::spawn(async move {
            let mut op = f(w).await;
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
    let mut cell = Cell::default();
    for h in handles {
        let (lat, errors) = h.await.expect("worker");
        cell.latencies.extend(lat);
        cell.errors += errors;
    }
    cell.elapsed = start.elapsed();
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
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, PASS).expect("pass");
    // kith refuses a passphrase file others can read.
    std::fs::set_permissions(&pass, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod pass");
    let kith = env!("CARGO_BIN_EXE_kith");
    run(Command::new(kith)
        .args([
            "init",
            "--cluster",
            "bench.example",
            "--kdf-memory-mib",
            "19",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--passphrase-file")
        .arg(&pass));
    let port = free_port();
    let _server = Proc(
        Command::new(kith)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(&data)
            .arg("--passphrase-file")
            .arg(&pass)
            // Throughput, not the per-node renewal limit, is measured here.
            .args(["--renew-limit", "1000000"])
            .env("KITH_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("kith serve"),
    );
    // cfssl with its own P-256 CA, made by openssl.
    let cf = tmp.path().join("cfssl");
    std::fs::create_dir_all(&cf).expect("dir");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=cfssl bench CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
        ])
        .arg(cf.join("ca-key.pem"))
        .arg("-out")
        .arg(cf.join("ca.pem")));
    let cf_port = free_port();
    let _cfssl = Proc(
        Command::new("cfssl")
            .args([
                "serve",
                "-loglevel",
                "2",
                "-address",
                "127.0.0.1",
                "-port",
                &cf_port.to_string(),
                "-ca",
            ])
            .arg(cf.join("ca.pem"))
            .arg("-ca-key")
            .arg(cf.join("ca-key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cfssl serve: install the Debian package golang-cfssl"),
    );
    wait_port(port);
    wait_port(cf_port);

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
    let server = ServerAddr {
        host: "127.0.0.1".into(),
        port,
    };
    let ca_pem: PathBuf = data.join("ca.pem");
    let admin_cfg = kith_agent::api_client_config(&data.join("admin")).expect("admin credential");
    let mut admin = Connection::open(&server, admin_cfg)
        .await
        .expect("admin connection");
    let mut tokens = Vec::new();
    for _ in 0..max_c {
        let t: TokenCreated = admin
            .json(
                Method::POST,
                "/v1/admin/tokens",
                Some(&TokenCreateRequest {
                    role: "bench".into(),
                    ttl_seconds: Some(86_400),
                    uses: Some(1_000_000),
                    ..Default::default()
                }),
            )
            .await
            .expect("token");
        tokens.push(t.token);
    }
    let tokens = Arc::new(tokens);
    let _: kith_api::wire::SecretInfo = admin
        .json(
            Method::PUT,
            "/v1/admin/secrets/bench-secret",
            Some(&kith_api::wire::SecretPutRequest {
                value: {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.encode([7u8; 1024])
                },
                allow_roles: Some(vec!["bench".into()]),
                ..Default::default()
            }),
        )
        .await
        .expect("bench secret");
    let public = public_config(&ca_pem);

    println!("kith load driver: {secs} s per cell, same P-256 CSRs for kith and cfssl (cfssl {cf_port}, kith {port})");
    println!(
        "{:<28} {:>4} {:>10} {:>9} {:>9} {:>7}",
        "operation", "c", "req/s", "p50 ms", "p99 ms", "errors"
    );
    let mut summary = Vec::new();
    for &c in &cs {
        // Joins: a fresh TCP + TLS connection for each.
        if want("join") {
            let (w2, t2, p2, s2) = (
                workers.clone(),
                tokens.clone(),
                public.clone(),
                server.clone(),
            );
            let mut cell = run_cell(c, secs, move |w| {
                let (workers, tokens, public, server) =
                    (w2.clone(), t2.clone(), p2.clone(), s2.clone());
                async move {
                    let mut i = 0u64;
                    Box::new(move || {
                        i += 1;
                        let body = JoinRequest {
                            token: tokens[w].clone(),
                            node: Some(format!("j{c}-{w}-{i}")),
                            csrs: vec![CsrSubmission {
                                profile: "peer".into(),
                                csr: workers[w].csr_pem.clone(),
                            }],
                            may_leave_out: Vec::new(),
                        };
                        let (public, server) = (public.clone(), server.clone());
                        Box::pin(async move {
                            let Ok(mut conn) = Connection::open(&server, public).await else {
                                return false;
                            };
                            conn.json::<IssueResponse>(Method::POST, "/v1/join", Some(&body))
                                .await
                                .is_ok()
                        })
                            as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
                    }) as Op
                }
            })
            .await;
            println!(
                "{:<28} {:>4} {:>10.0} {:>9.2} {:>9.2} {:>7}",
                "kith join (new TLS each)",
                c,
                cell.rate(),
                cell.pct(0.5),
                cell.pct(0.99),
                cell.errors
            );
            summary.push(("join", c, cell.rate(), cell.pct(0.99)));
        }

        // Renewals: join once, then renew in a loop, each renewal over a new
        // mTLS connection with the certificate the previous one returned
        // (only the current certificate renews): a node's real cost.
        if want("renew") {
            let (w2, t2, p2, s2, ca2) = (
                workers.clone(),
                tokens.clone(),
                public.clone(),
                server.clone(),
                ca_pem.clone(),
            );
            let mut cell = run_cell(c, secs, move |w| {
                let (workers, tokens, public, server, ca_pem) =
                    (w2.clone(), t2.clone(), p2.clone(), s2.clone(), ca2.clone());
                async move {
                    let node = format!("r{c}-{w}");
                    let csr = CsrSubmission {
                        profile: "peer".into(),
                        csr: workers[w].csr_pem.clone(),
                    };
                    let conn = Arc::new(tokio::sync::Mutex::new(
                        joined_connection(&server, public, &ca_pem, &tokens[w], &node, &workers[w])
                            .await,
                    ));
                    let body = RenewRequest {
                        node: Some(node),
                        csrs: vec![csr],
                    };
                    let (server, ca_pem) = (Arc::new(server), Arc::new(ca_pem));
                    let worker = workers.clone();
                    Box::new(move || {
                        let (conn, body) = (conn.clone(), body.clone());
                        let (server, ca_pem, workers) =
                            (server.clone(), ca_pem.clone(), worker.clone());
                        Box::pin(async move {
                            let mut conn = conn.lock().await;
                            let Ok(r) = conn
                                .json::<IssueResponse>(Method::POST, "/v1/renew", Some(&body))
                                .await
                            else {
                                return false;
                            };
                            // The next renewal presents the new certificate,
                            // as a node does (the old one renews no more).
                            *conn = mtls_connection(&server, &ca_pem, &workers[w], &r).await;
                            true
                        })
                            as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
                    }) as Op
                }
            })
            .await;
            println!(
                "{:<28} {:>4} {:>10.0} {:>9.2} {:>9.2} {:>7}",
                "kith renew (mTLS, current cert)",
                c,
                cell.rate(),
                cell.pct(0.5),
                cell.pct(0.99),
                cell.errors
            );
            summary.push(("renew", c, cell.rate(), cell.pct(0.99)));
        }

        // Secret reads: a node reads a 1 KiB secret over keep-alive mTLS
        // (policy check, unwrap, decrypt, audit record per read).
        if want("secret") {
            let (w2, t2, p2, s2, ca2) = (
                workers.clone(),
                tokens.clone(),
                public.clone(),
                server.clone(),
                ca_pem.clone(),
            );
            let mut cell = run_cell(c, secs, move |w| {
                let (workers, tokens, public, server, ca_pem) =
                    (w2.clone(), t2.clone(), p2.clone(), s2.clone(), ca2.clone());
                async move {
                    let node = format!("s{c}-{w}");
                    let conn = Arc::new(tokio::sync::Mutex::new(
                        joined_connection(&server, public, &ca_pem, &tokens[w], &node, &workers[w])
                            .await,
                    ));
                    Box::new(move || {
                        let conn = conn.clone();
                        Box::pin(async move {
                            let mut c = conn.lock().await;
                            kith_agent::secrets::fetch_with(&mut c, "bench-secret", None)
                                .await
                                .is_ok_and(|(_, v)| v.len() == 1024)
                        })
                            as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
                    }) as Op
                }
            })
            .await;
            println!(
                "{:<28} {:>4} {:>10.0} {:>9.2} {:>9.2} {:>7}",
                "kith secret read (mTLS)",
                c,
                cell.rate(),
                cell.pct(0.5),
                cell.pct(0.99),
                cell.errors
            );
        }

        // cfssl: keep-alive plain HTTP, the same CSRs.
        if want("cfssl") {
            let w2 = workers.clone();
            let mut cell = run_cell(c, secs, move |w| {
                let workers = w2.clone();
                async move {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", cf_port))
                        .await
                        .expect("cfssl connect");
                    let _ = tcp.set_nodelay(true);
                    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .expect("cfssl http");
                    tokio::spawn(conn);
                    let sender = Arc::new(tokio::sync::Mutex::new(sender));
                    let body = Bytes::from(
                        serde_json::to_vec(
                            &serde_json::json!({ "certificate_request": workers[w].csr_pem }),
                        )
                        .expect("json"),
                    );
                    Box::new(move || {
                        let (sender, body) = (sender.clone(), body.clone());
                        Box::pin(async move {
                            let req = Request::builder()
                                .method(Method::POST)
                                .uri("/api/v1/cfssl/sign")
                                .header("host", "127.0.0.1")
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .expect("request");
                            let mut s = sender.lock().await;
                            if s.ready().await.is_err() {
                                return false;
                            }
                            match s.send_request(req).await {
                                Ok(resp) => {
                                    let ok = resp.status().is_success();
                                    let body =
                                        resp.into_body().collect().await.map(|b| b.to_bytes());
                                    ok && body.is_ok_and(|b| {
                                        b.windows(14).any(|w| w == b"\"success\":true")
                                    })
                                }
                                Err(_) => false,
                            }
                        })
                            as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
                    }) as Op
                }
            })
            .await;
            println!(
                "{:<28} {:>4} {:>10.0} {:>9.2} {:>9.2} {:>7}",
                "cfssl sign (keep-alive HTTP)",
                c,
                cell.rate(),
                cell.pct(0.5),
                cell.pct(0.99),
                cell.errors
            );
            summary.push(("cfssl", c, cell.rate(), cell.pct(0.99)));
        }
    }
    let find = |op: &str, c: usize| summary.iter().find(|s| s.0 == op && s.1 == c).map(|s| s.2);
    for &c in &cs {
        if let (Some(r), Some(cf)) = (find("renew", c), find("cfssl", c)) {
            println!(
                "c={c}: kith renewals / cfssl signs = {:.2}x (target at c=64: 2.5x)",
                r / cf
            );
        }
    }
    if let Some(s) = summary.iter().find(|s| s.0 == "join" && s.1 == 1) {
        println!("join p99 at c=1: {:.2} ms (target < 5 ms)", s.3);
    }
}
