//! A rogue CA with real processes: a joined node's own certificate (which
//! chains to the cluster root, and carries the CA's address) served on the
//! CA's address once the real server is gone. `join`, `renew`, `secret get`,
//! `exec` and the agent must all refuse it in the handshake: nothing sent to
//! it (not a token, not a request), no file written.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// A TLS server presenting a node's certificate and key: what any node
/// could run. Counts handshakes that completed and bytes received after them.
struct Rogue {
    handshakes: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

impl Rogue {
    fn start(addr: SocketAddr, node_dir: &Path) -> Self {
        // Leaf, intermediate, and the root from ca.pem: the chain the real
        // server sends, so a joining node's pin check passes.
        let mut chain: Vec<CertificateDer<'static>> = Vec::new();
        for file in ["fullchain.pem", "ca.pem"] {
            chain.extend(
                CertificateDer::pem_file_iter(node_dir.join(file))
                    .expect("PEM file")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certificates"),
            );
        }
        let key = PrivateKeyDer::from_pem_file(node_dir.join("key.pem")).expect("key.pem");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicUsize::new(0));
        let (h, r) = (handshakes.clone(), received.clone());
        let listener = rt.block_on(async {
            tokio::net::TcpListener::bind(addr)
                .await
                .expect("bind the CA's address")
        });
        rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, h, r) = (acceptor.clone(), h.clone(), r.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    h.fetch_add(1, Ordering::SeqCst);
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                        r.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        Self {
            handshakes,
            received,
            _rt: rt,
        }
    }

    fn assert_nothing_received(&self, what: &str) {
        assert_eq!(
            (
                self.handshakes.load(Ordering::SeqCst),
                self.received.load(Ordering::SeqCst)
            ),
            (0, 0),
            "{what}: the client completed a handshake with, or sent bytes to, a node posing as the CA"
        );
    }
}

/// Every file of a directory and its contents, to prove nothing was written.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kith"));
    c.stdin(Stdio::null()).env_remove("KITH_SERVER");
    c
}

fn refused(what: &str, out: std::process::Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded against a rogue CA");
    assert!(
        stderr.contains("error[not-kith-server]"),
        "{what}: expected error[not-kith-server], got:\n{stderr}"
    );
}

#[test]
fn a_node_posing_as_the_ca_is_refused_by_every_node_command() {
    let ca = Ca::init("p256");
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let created: Value = serde_json::from_str(&ca.ok(&[
        "token", "create", "--role", "worker", "--uses", "4", "--json",
    ]))
    .expect("token JSON");
    let token = created["token"].as_str().expect("token").to_string();
    let join = |name: &str, extra: &[&str]| ca.join(&url, &token, name, extra);
    // The attacker: a node whose certificate names the CA's address (any
    // token holder may ask for a loopback address).
    let evil = join("node-evil", &["--san", "127.0.0.1"]);
    let victim = join("node-2", &[]);
    ca.ok(&[
        "secret",
        "put",
        "db-password",
        "--allow-role",
        "worker",
        "--from-file",
        &ca.pass.to_string_lossy(),
    ]);

    // The real CA goes away; the node answers on its address.
    let addr: SocketAddr = url
        .trim_start_matches("https://")
        .parse()
        .expect("server address");
    drop(server);
    let rogue = Rogue::start(addr, &evil);
    let before = contents(&victim);

    refused(
        "renew",
        bin()
            .args(["renew", "--dir"])
            .arg(&victim)
            .output()
            .expect("renew"),
    );
    refused(
        "secret get",
        bin()
            .args(["secret", "get", "db-password", "--dir"])
            .arg(&victim)
            .output()
            .expect("secret get"),
    );
    refused(
        "exec",
        bin()
            .args(["exec", "--dir"])
            .arg(&victim)
            .args(["--env", "P=db-password", "--", "true"])
            .output()
            .expect("exec"),
    );
    // The agent: a refresh every second and a renewal asked for with SIGHUP.
    let log = ca.path("agent.log");
    let agent = Proc(
        bin()
            .args(["agent", "--refresh", "1s", "--dir"])
            .arg(&victim)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"))
            .spawn()
            .expect("agent"),
    );
    wait_for(
        "the agent to refuse a refresh",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("not a kith server").then_some(())
        },
    );
    let hup = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());
    wait_for(
        "the agent to refuse a renewal",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&log).ok()?;
            text.contains("renewal failed").then_some(())
        },
    );
    drop(agent);
    assert_eq!(before, contents(&victim), "the node directory changed");

    // A join with a good token pinned to the real root: the token is never sent.
    let fresh = ca.path("node-3");
    refused(
        "join",
        bin()
            .args([
                "join", "--server", &url, "--token", &token, "--name", "node-3",
            ])
            .args(["--no-interface-ips", "--dir"])
            .arg(&fresh)
            .output()
            .expect("join"),
    );
    assert!(!fresh.exists(), "join wrote a node directory");
    rogue.assert_nothing_received("every command");
}
