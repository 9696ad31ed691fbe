//! Nodes take part in a root rotation (issue 13): an agent's refresh
//! reports the roots its `ca.pem` holds, the CA asks it to renew once the
//! new root is active, and the rustls configurations of a node directory
//! refuse a chain through an intermediate the old root revoked after a
//! compromise. Real server, real agents, real node directories, real TLS
//! handshakes between them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration as StdDuration;

use common::{assert_refused, Env};
use hyper::Method;
use kith_agent::{NodeIdentity, PeerPolicy};
use kith_api::wire::NodeSelf;
use kith_authority::{RootRotationOptions, Settings};
use kith_pki::{Inspected, KeyType};
use rustls_pki_types::ServerName;
use time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous: two cores shared by several builds.
const PATIENCE: StdDuration = StdDuration::from_secs(90);

async fn start() -> Env {
    // Everyone is asked to renew as soon as the rotation activates.
    let settings = Settings {
        root_renew_spread: Some(Duration::ZERO),
        ..Settings::default()
    };
    Env::start_on(None, settings, |o| o).await
}

/// Join node `name` into a new directory under `base`.
async fn join(env: &Env, base: &Path, name: &str) -> PathBuf {
    let dir = base.join(name);
    kith_agent::join(&kith_agent::JoinOptions {
        server: env.server(),
        token: env.token("worker", None, 1).await,
        node: Some(name.into()),
        sans: vec![],
        dir: dir.clone(),
        profiles: vec![],
        key_type: KeyType::P256,
        interface_ips: false,
        force: false,
    })
    .await
    .expect("join");
    dir
}

fn pem_certs(path: &Path) -> Vec<Vec<u8>> {
    kith_pki::certs_from_pem_or_der(&std::fs::read(path).expect("read PEM")).expect("PEM")
}

fn pin_hex(der: &[u8]) -> String {
    hex::encode(kith_pki::spki_pin(der).expect("pin"))
}

/// A copy of node directory `from` at `to` whose `ca.pem` holds `roots`
/// only: a peer that trusts those roots and nothing else.
fn peer_trusting(from: &Path, to: &Path, roots: &[&[u8]]) -> PathBuf {
    std::fs::create_dir_all(to).expect("mkdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
    let pem = kith_pki::pem_encode_many("CERTIFICATE", roots.iter().copied());
    std::fs::write(to.join("ca.pem"), pem).expect("write ca.pem");
    to.to_path_buf()
}

fn tls_error(e: std::io::Error) -> rustls::Error {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
        .unwrap_or_else(|| rustls::Error::General(e.to_string()))
}

/// One real mutual-TLS exchange: `server_dir` serves with
/// `kith_agent::server_config`, `client_dir` connects with
/// `kith_agent::client_config` and reads two bytes. Each side's outcome,
/// (server, client).
async fn handshake(
    server_dir: &Path,
    client_dir: &Path,
) -> (Result<(), rustls::Error>, Result<(), rustls::Error>) {
    let server = kith_agent::server_config(server_dir, &PeerPolicy::any()).expect("server config");
    let client = kith_agent::client_config(client_dir, &PeerPolicy::any()).expect("client config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = tokio_rustls::TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(tls_error)?;
        tls.write_all(b"ok").await.map_err(tls_error)?;
        tls.shutdown().await.map_err(tls_error)
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let client = async {
        let mut tls = tokio_rustls::TlsConnector::from(client)
            .connect(name, tcp)
            .await
            .map_err(tls_error)?;
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).await.map_err(tls_error)?;
        assert_eq!(&buf, b"ok");
        Ok(())
    }
    .await;
    let server = tokio::time::timeout(PATIENCE, accept)
        .await
        .expect("the server side ends")
        .expect("the server task");
    (server, client)
}

/// Both sides accept each other.
async fn accepted(server_dir: &Path, client_dir: &Path, what: &str) {
    let (s, c) = handshake(server_dir, client_dir).await;
    assert!(s.is_ok() && c.is_ok(), "{what}: server {s:?}, client {c:?}");
}

/// `GET /v1/node` with the node's own certificate, no trust report. Right
/// after a compromised activation a node refuses the server until the
/// server has moved its own certificate off the revoked intermediate (its
/// maintenance does within a second or so): tried until then.
async fn node_self(dir: &Path) -> NodeSelf {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut conn = loop {
        match kith_agent::connect(dir).await {
            Ok((_, c)) => break c,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "connect: {e}");
                tokio::time::sleep(StdDuration::from_millis(200)).await;
            }
        }
    };
    conn.json(Method::GET, "/v1/node", None::<&()>)
        .await
        .expect("/v1/node")
}

fn identity(dir: &Path) -> NodeIdentity {
    NodeIdentity::load(dir).expect("identity.json")
}

/// The agent loop on `dir` (refreshing every second) until the node holds
/// another certificate than `serial`; the new serial.
async fn agent_renews(dir: &Path, serial: &str) -> String {
    let mut opts = kith_agent::agent::AgentOptions::new(dir.to_path_buf());
    opts.refresh_every = StdDuration::from_secs(1);
    let agent = tokio::spawn(kith_agent::agent::run(opts));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let renewed = loop {
        let now = identity(dir).serial;
        if now != serial {
            break now;
        }
        assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent did not renew when asked"
        );
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    };
    agent.abort();
    renewed
}

/// The planned rotation, from the nodes' side: trust reported, renewal on
/// request, leaves under the new intermediate accepted by peers that trust
/// either root alone, the cross-signed certificate gone after finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_root_rotation() {
    let env = start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = join(&env, tmp.path(), "node-a").await;
    let b = join(&env, tmp.path(), "node-b").await;
    let r1 = env.root.clone();
    let i1 = env.authority.intermediate_cert("cluster").expect("I1");
    assert!(
        !node_self(&a).await.renew_now,
        "no rotation: no renewal asked"
    );

    let prepared = env
        .authority
        .prepare_root_rotation("cluster", &RootRotationOptions::new(None, false), "test")
        .await
        .expect("prepare");
    assert_eq!(prepared.offline.len(), 2, "{prepared:?}");
    let roots = env.authority.authority_roots("cluster").expect("roots");
    let r2 = roots
        .iter()
        .find(|r| **r != r1)
        .expect("the new root is in the bundle")
        .clone();

    // One refresh: both roots in ca.pem (R1 vouches for R2), the report
    // recorded on the node's record.
    for dir in [&a, &b] {
        assert!(
            kith_agent::refresh(dir).await.expect("refresh"),
            "ca.pem changed"
        );
        let held = pem_certs(&dir.join("ca.pem"));
        assert!(
            held.contains(&r1) && held.contains(&r2),
            "ca.pem holds R1 and R2"
        );
    }
    let record = env.authority.node("node-a").await.expect("node record");
    let mut want = vec![pin_hex(&r1), pin_hex(&r2)];
    want.sort();
    assert_eq!(record.trusts, want, "the node's record trusts both pins");
    let status = env
        .authority
        .root_rotation_status("cluster")
        .await
        .expect("status")
        .expect("a rotation");
    assert_eq!(status.phase.as_str(), "prepared");
    assert_eq!(status.converged, ["node-a", "node-b"], "{status:?}");
    assert!(
        status.pending.is_empty() && status.offline.is_empty(),
        "{status:?}"
    );
    assert!(
        !node_self(&a).await.renew_now,
        "prepared: no renewal asked yet"
    );
    // A peer that never refreshed: its ca.pem holds R1 only (b's leaf is
    // under I1; its crl.pem has every CRL it needs, I2's included).
    let r1_only = peer_trusting(&b, &tmp.path().join("r1-only"), &[&r1]);

    // Activate: the next refresh says "renew now", and the agent does, at
    // once (its certificate is nowhere near two thirds of its life).
    env.authority
        .activate_root_rotation("cluster", false, "test")
        .await
        .expect("activate");
    let i2 = env.authority.intermediate_cert("cluster").expect("I2");
    assert_ne!(i1, i2);
    let r2_by_r1 = env.authority.cross_signed("cluster").expect("cross")[0].clone();
    assert!(kith_pki::issued_by(&r2_by_r1, &r1).expect("cross-signed"));
    assert!(
        node_self(&a).await.renew_now,
        "active: a leaf under I1 is asked to renew"
    );
    let old_serial = identity(&a).serial;
    agent_renews(&a, &old_serial).await;
    let leaf = pem_certs(&a.join("cert.pem")).remove(0);
    assert!(
        kith_pki::issued_by(&leaf, &i2).expect("issuer"),
        "the leaf is under I2"
    );
    assert_eq!(
        pem_certs(&a.join("chain.pem")),
        [i2.clone(), r2_by_r1.clone()],
        "the chain is [I2, R2 signed by R1]"
    );
    assert!(!node_self(&a).await.renew_now, "renewed: not asked again");

    // Real handshakes, both ways: a peer trusting R1 alone accepts the new
    // leaf through the cross-signed certificate ...
    accepted(&r1_only, &a, "R1-only server, renewed client").await;
    accepted(&a, &r1_only, "renewed server, R1-only client").await;
    // ... and so does one trusting R2 alone (b renewed: its own chain must
    // lead to its one root).
    let b_serial = identity(&b).serial;
    kith_agent::renew(&b).await.expect("renew b");
    assert_ne!(identity(&b).serial, b_serial);
    let r2_only = peer_trusting(&b, &tmp.path().join("r2-only"), &[&r2]);
    accepted(&r2_only, &a, "R2-only server, renewed client").await;
    accepted(&a, &r2_only, "renewed server, R2-only client").await;

    // Finish: every live node holds a leaf under I2; new chains are [I2].
    env.authority
        .finish_root_rotation("cluster", false, "test")
        .await
        .expect("finish");
    kith_agent::renew(&a).await.expect("renew after finish");
    assert_eq!(
        pem_certs(&a.join("chain.pem")),
        [i2],
        "no cross-signed certificate"
    );
    assert!(!node_self(&a).await.renew_now);
    accepted(&r2_only, &a, "R2-only server, finished client").await;
    accepted(&a, &b, "both renewed").await;
}

/// A compromised rotation: once activated, the old root's CRL revokes the
/// old intermediate, and the rustls configurations refuse a peer still
/// presenting a leaf under it, in either direction; the renewed one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_intermediate_is_refused_after_a_compromise() {
    let env = start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = join(&env, tmp.path(), "node-a").await;
    let b = join(&env, tmp.path(), "node-b").await;
    let r1 = env.root.clone();
    let i1 = env.authority.intermediate_cert("cluster").expect("I1");
    env.authority
        .prepare_root_rotation("cluster", &RootRotationOptions::new(None, true), "test")
        .await
        .expect("prepare");
    for dir in [&a, &b] {
        kith_agent::refresh(dir).await.expect("refresh");
    }
    env.authority
        .activate_root_rotation("cluster", false, "test")
        .await
        .expect("activate");
    for dir in [&a, &b] {
        kith_agent::refresh(dir)
            .await
            .expect("refresh after activation");
    }
    // crl.pem now holds the old root's CRL, listing I1.
    let cert_info = |der: &[u8]| match kith_pki::inspect(der).expect("certificate").remove(0) {
        Inspected::Certificate(c) => c,
        other => panic!("not a certificate: {other:?}"),
    };
    let r1_info = cert_info(&r1);
    let i1_serial = cert_info(&i1).serial;
    let listed = kith_pki::inspect(&std::fs::read(b.join("crl.pem")).expect("crl.pem"))
        .expect("crl.pem parses")
        .into_iter()
        .any(|i| match i {
            Inspected::Crl(c) => {
                c.issuer == r1_info.subject && c.revoked.iter().any(|e| e.serial == i1_serial)
            }
            _ => false,
        });
    assert!(listed, "crl.pem holds R1's CRL listing I1 ({i1_serial})");
    // Both ask to renew at once (compromised: no spread).
    assert!(node_self(&a).await.renew_now && node_self(&b).await.renew_now);

    let old_serial = identity(&a).serial;
    agent_renews(&a, &old_serial).await;

    // b still presents its leaf under I1: refused as revoked by the
    // renewed node, as a client and as a server.
    let (server, client) = handshake(&a, &b).await;
    assert!(
        matches!(
            server,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ),
        "the renewed server refuses b's chain through I1 as revoked: {server:?} (client: {client:?})"
    );
    let (server, client) = handshake(&b, &a).await;
    assert!(
        matches!(
            client,
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Revoked
            ))
        ),
        "the renewed client refuses b's chain through I1 as revoked: {client:?} (server: {server:?})"
    );
    // Renewed, b is accepted.
    kith_agent::renew(&b).await.expect("renew b");
    accepted(&a, &b, "both renewed").await;
    accepted(&b, &a, "both renewed, the other way").await;
}

/// `GET /v1/node?trusts=`: a malformed report is `400 malformed-request`
/// and records nothing; pins of roots the cluster never had are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_reports_are_checked() {
    let env = start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = join(&env, tmp.path(), "node-a").await;
    env.authority
        .prepare_root_rotation("cluster", &RootRotationOptions::new(None, false), "test")
        .await
        .expect("prepare");
    let r1 = pin_hex(&env.root);
    let (_, mut conn) = kith_agent::connect(&a).await.expect("connect");
    // The first presentation of a certificate is recorded (it ends the
    // renewal rights of any it replaced): done before the snapshots.
    let _: NodeSelf = conn
        .json(Method::GET, "/v1/node", None::<&()>)
        .await
        .expect("present");
    let nine = [r1.as_str(); 9].join(",");
    for (what, query) in [
        ("not hex", "trusts=xyz".to_string()),
        ("short", format!("trusts={}", &r1[..62])),
        ("upper case", format!("trusts={}", r1.to_uppercase())),
        ("empty item", format!("trusts={r1},")),
        ("empty", "trusts=".to_string()),
        ("nine pins", format!("trusts={nine}")),
        ("twice", format!("trusts={r1}&trusts={r1}")),
        ("unknown parameter", format!("trust={r1}")),
        ("no value", "trusts".to_string()),
    ] {
        let before = env.snapshot().await;
        let got = conn
            .send(Method::GET, &format!("/v1/node?{query}"), None)
            .await
            .expect("transport");
        assert_refused(what, got, 400, "malformed-request");
        assert_eq!(before, env.snapshot().await, "{what}: the store changed");
    }
    let record = env.authority.node("node-a").await.expect("record");
    assert!(
        record.trusts.is_empty() && record.trust_reported.is_none(),
        "{record:?}"
    );

    // A root nobody here ever had is ignored; the known one is kept.
    let stranger = hex::encode([7u8; 32]);
    let me: NodeSelf = conn
        .json(
            Method::GET,
            &format!("/v1/node?trusts={stranger},{r1}"),
            None::<&()>,
        )
        .await
        .expect("a well-formed report");
    assert_eq!(me.node, "node-a");
    let record = env.authority.node("node-a").await.expect("record");
    assert_eq!(record.trusts, [r1], "only the cluster's root is recorded");
    let status = env
        .authority
        .root_rotation_status("cluster")
        .await
        .expect("status")
        .expect("rotation");
    assert_eq!(
        status.pending,
        ["node-a"],
        "reported, but not both roots: {status:?}"
    );
}
