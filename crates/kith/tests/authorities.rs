//! Authorities are separate trust domains (issue 11, item 2): a token of
//! the `api` authority joins (the server presents the `api` chain to a node
//! that asks for it), each node's `ca.pem` holds only its own authority's
//! root after refreshes, and a leaf of one authority verifies neither with
//! openssl nor in a rustls handshake against the other's bundle. Real
//! `kith serve` and `kith join` processes; refreshes through kith-agent.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{openssl, start_server, Ca};
use kith_agent::PeerPolicy;
use rustls_pki_types::ServerName;

fn token(ca: &Ca, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--role", "worker", "--json"];
    args.extend_from_slice(extra);
    let v: serde_json::Value = serde_json::from_str(&ca.ok(&args)).expect("token JSON");
    v["token"].as_str().expect("token").to_string()
}

fn join(url: &str, token: &str, name: &str, dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args([
            "join",
            "--server",
            url,
            "--token",
            token,
            "--name",
            name,
            "--no-interface-ips",
            "--dir",
        ])
        .arg(dir)
        .output()
        .expect("run kith join");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn roots(dir: &Path) -> Vec<Vec<u8>> {
    kith_pki::certs_from_pem_or_der(&std::fs::read(dir.join("ca.pem")).expect("ca.pem"))
        .expect("ca.pem parses")
}

fn verify(trust: &Path, node: &Path) -> (bool, String) {
    let s = |d: &Path, f: &str| d.join(f).display().to_string();
    openssl(&[
        "verify",
        "-CAfile",
        &s(trust, "ca.pem"),
        "-untrusted",
        &s(node, "chain.pem"),
        &s(node, "cert.pem"),
    ])
}

/// One mutual-TLS handshake over loopback: `server_dir`'s server
/// configuration against `client_dir`'s client configuration. Ok when
/// both sides accept.
async fn handshake(server_dir: &Path, client_dir: &Path, server_name: &str) -> Result<(), String> {
    let server =
        kith_agent::server_config(server_dir, &PeerPolicy::any()).map_err(|e| e.to_string())?;
    let client =
        kith_agent::client_config(client_dir, &PeerPolicy::any()).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| format!("server side: {e}"))?;
        // Make the client read the server's verdict on its certificate.
        tokio::io::AsyncWriteExt::write_all(&mut tls, b"ok")
            .await
            .map_err(|e| format!("server write: {e}"))
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from(server_name.to_string()).expect("server name");
    let client_side = async {
        let mut tls = tokio_rustls::TlsConnector::from(Arc::clone(&client))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("client side: {e}"))?;
        let mut buf = [0u8; 2];
        tokio::io::AsyncReadExt::read_exact(&mut tls, &mut buf)
            .await
            .map_err(|e| format!("client read: {e}"))?;
        Ok::<(), String>(())
    }
    .await;
    let server_side = accept.await.expect("accept task");
    client_side.and(server_side)
}

#[test]
fn each_authority_joins_and_stays_apart() {
    let ca = Ca::init("p256");
    ca.ok(&["authority", "add", "api"]);
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let cluster_token = token(&ca, &["--uses", "2"]);
    let api_token = token(&ca, &["--authority", "api", "--uses", "2"]);

    let c1: PathBuf = ca.path("c1");
    let c2: PathBuf = ca.path("c2");
    let a1: PathBuf = ca.path("a1");
    for (tok, name, dir) in [
        (&cluster_token, "c1", &c1),
        (&cluster_token, "c2", &c2),
        (&api_token, "a1", &a1),
    ] {
        let (good, err) = join(&url, tok, name, dir);
        assert!(good, "join {name}: {err}");
    }

    // Refreshes (bundle and CRL from /v1/ca and /v1/crl, over mutual TLS
    // with the node's certificate, which needs the node's own chain).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for dir in [&c1, &a1, &c1, &a1] {
        rt.block_on(kith_agent::refresh(dir))
            .unwrap_or_else(|e| panic!("refresh {}: {e}", dir.display()));
    }
    let (cluster_roots, api_roots) = (roots(&c1), roots(&a1));
    assert_eq!(cluster_roots.len(), 1, "c1's ca.pem holds one root");
    assert_eq!(api_roots.len(), 1, "a1's ca.pem holds one root");
    assert_ne!(
        cluster_roots, api_roots,
        "the two authorities have their own roots"
    );
    assert_eq!(roots(&c2), cluster_roots);

    // openssl: each leaf verifies against its own bundle only.
    for (trust, node, same) in [
        (&c1, &c2, true),
        (&a1, &a1, true),
        (&c1, &a1, false),
        (&a1, &c1, false),
    ] {
        let (good, text) = verify(trust, node);
        assert_eq!(
            good,
            same,
            "openssl verify {} against {}'s ca.pem: {text}",
            node.display(),
            trust.display()
        );
    }

    // rustls: c1 serves; c2 gets in, a1 does not; nor does c1 get into a1.
    rt.block_on(async {
        handshake(&c1, &c2, "c1.prod.example")
            .await
            .expect("two nodes of one authority");
        let err = handshake(&c1, &a1, "c1.prod.example")
            .await
            .expect_err("an api node must not pass a cluster node's verifier");
        assert!(
            err.contains("UnknownIssuer") || err.contains("unknown"),
            "{err}"
        );
        let err = handshake(&a1, &c1, "a1.prod.example")
            .await
            .expect_err("a cluster node must not pass an api node's verifier");
        assert!(
            err.contains("UnknownIssuer") || err.contains("unknown"),
            "{err}"
        );
    });
}
