//! Replicas with names of their own on one store: each is revoked alone,
//! nodes refuse the revoked one in the handshake once they have the CRL,
//! the revoked one stops and its name never serves again.

mod common;

use std::time::Duration;

use common::*;
use hyper::Method;
use kith_api::wire::NodeSelf;
use kith_authority::{Authority, Publish, RevokeTarget, ServerState, Settings};
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason, San, Serial};
use rustls_pki_types::ServerName;

/// Another process on the server's store: a second authority.
async fn other(env: &Env) -> Authority {
    Authority::open(
        env.authority.store().clone(),
        env.clock.clone(),
        PASS,
        Settings::default(),
    )
    .await
    .expect("a second authority on the same store")
}

fn opts(name: &str, names: &[&str], every: Duration) -> kith_server::Options {
    let mut o = kith_server::Options::new("127.0.0.1:0".parse().expect("addr"));
    o.server_name = name.to_string();
    o.names = names.iter().map(|n| n.to_string()).collect();
    o.maintenance_interval = every;
    o
}

/// A bound and running replica: its port and the end of its `run`.
struct Replica {
    addr: std::net::SocketAddr,
    run: tokio::task::JoinHandle<Result<(), kith_server::Error>>,
}

async fn start(authority: Authority, o: kith_server::Options) -> Replica {
    let name = o.server_name.clone();
    let server = kith_server::Server::bind(authority, o)
        .await
        .unwrap_or_else(|e| panic!("bind {name}: {e}"));
    assert_eq!(server.name(), name);
    let addr = server.local_addr().expect("addr");
    Replica {
        addr,
        run: tokio::spawn(server.run(std::future::pending())),
    }
}

/// A real rustls handshake to `addr` with a node's kith-server client
/// configuration (roots, CRL and server identity from its directory).
async fn handshake(dir: &std::path::Path, addr: std::net::SocketAddr) -> Result<(), rustls::Error> {
    let config = kith_agent::api_client_config(dir).expect("node client config");
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the replica listens");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    match tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .cloned()
            .unwrap_or_else(|| panic!("not a TLS refusal: {e}"))),
    }
}

/// A join for node `name` through the authority, with a fresh token.
async fn try_join(env: &Env, name: &str) -> Result<(), kith_authority::Error> {
    let token = env.token("worker", None, 1).await;
    let token = kith_api::JoinToken::parse(&token).expect("token");
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let csr = kith_pki::build_csr(&key, name, &[San::Dns(name.into())]).expect("csr");
    env.authority
        .join(&token, Some(name), &[(Profile::Peer, csr)], "test")
        .await
        .map(|_| ())
}

fn state_of(views: &[kith_authority::ServerView], name: &str) -> (ServerState, usize) {
    let v = views
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {views:?}"));
    (v.state, v.live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_are_revoked_one_by_one_and_nodes_refuse_the_revoked_one() {
    let hour = Duration::from_secs(3600);
    // Replica A (this process) and replica B (another authority on the same
    // store), both behind one load-balancer name.
    let env = Env::start_with(|_| opts("kith-server-a", &["lb.test.example"], hour)).await;
    let b_authority = other(&env).await;
    let b = start(
        b_authority.clone(),
        opts("kith-server-b", &["lb.test.example"], hour),
    )
    .await;
    let views = env.authority.server_views().await.expect("servers");
    for name in ["kith-server-a", "kith-server-b"] {
        assert_eq!(state_of(&views, name), (ServerState::Live, 1), "{name}");
        let v = views.iter().find(|v| v.name == name).expect("listed");
        assert!(
            v.sans.contains(&San::Dns("lb.test.example".into())),
            "{name} carries the shared name: {:?}",
            v.sans
        );
    }
    // The shared name is the servers': no node is named like it.
    let e = try_join(&env, "lb").await.unwrap_err();
    assert_eq!(e.code(), "san-not-allowed", "{e}");

    // A node joins through A; it talks to both replicas.
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node-1");
    kith_agent::join(&kith_agent::JoinOptions {
        server: env.server(),
        token: env.token("worker", None, 1).await,
        node: Some("node-1".into()),
        sans: vec![],
        dir: dir.clone(),
        profiles: vec![],
        key_type: KeyType::P256,
        interface_ips: false,
        force: false,
    })
    .await
    .expect("join");
    handshake(&dir, env.addr).await.expect("A is accepted");
    handshake(&dir, b.addr).await.expect("B is accepted");

    // Revoke B alone.
    let out = env
        .authority
        .revoke(
            RevokeTarget::Server("kith-server-b".into()),
            RevocationReason::KeyCompromise,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke server B");
    assert_eq!(out.len(), 1, "B's one live certificate");
    assert_eq!(out[0].record().node, "kith-server-b");
    let b_serial = out[0].record().serial.clone();
    let views = env.authority.server_views().await.expect("servers");
    assert_eq!(state_of(&views, "kith-server-a"), (ServerState::Live, 1));
    assert_eq!(state_of(&views, "kith-server-b"), (ServerState::Revoked, 0));
    // The claim on the shared name was B's (it bound last); A still carries
    // the name, so it is still no node's.
    let e = try_join(&env, "lb").await.unwrap_err();
    assert_eq!(
        e.code(),
        "san-not-allowed",
        "the name of a live replica: {e}"
    );

    // The node's CRL refresh (through A) brings B's revocation: B is refused
    // in the handshake, before a byte is sent; A is still accepted.
    kith_agent::refresh(&dir).await.expect("refresh through A");
    let crl = std::fs::read(dir.join("crl.pem")).expect("crl.pem");
    let listed = kith_pki::inspect(&crl)
        .expect("crl.pem")
        .into_iter()
        .any(|i| match i {
            kith_pki::Inspected::Crl(info) => info.revoked.iter().any(|e| e.serial == b_serial),
            _ => false,
        });
    assert!(listed, "the node's CRL lists B's certificate");
    match handshake(&dir, b.addr).await {
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {}
        other => panic!("the revoked replica must be refused as revoked, got {other:?}"),
    }
    handshake(&dir, env.addr)
        .await
        .expect("A is still accepted");
    let me: NodeSelf = kith_agent::connect(&dir)
        .await
        .expect("connect to A")
        .1
        .json(Method::GET, "/v1/node", None::<&()>)
        .await
        .expect("A serves the node");
    assert_eq!(me.node, "node-1");
    // B was still serving (its next maintenance tick is an hour away): the
    // refusal above was the node's own, in the handshake.
    assert!(!b.run.is_finished(), "B still runs");

    // B's name is retired: a replica started again under it is refused, and
    // nothing is written.
    let before = env.snapshot().await;
    let e = kith_server::Server::bind(
        b_authority.clone(),
        opts("kith-server-b", &["lb.test.example"], hour),
    )
    .await
    .expect_err("a retired name must not start");
    match &e {
        kith_server::Error::Authority(a) => assert_eq!(a.code(), "server-name-retired", "{e}"),
        other => panic!("expected server-name-retired, got {other}"),
    }
    assert!(
        e.to_string().contains("--server-name"),
        "names the fix: {e}"
    );
    assert_eq!(
        before,
        env.snapshot().await,
        "a refused start writes nothing"
    );

    // Once A is revoked too, the shared name is free for a node.
    env.authority
        .revoke(
            RevokeTarget::Server("kith-server-a".into()),
            RevocationReason::CessationOfOperation,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke server A");
    try_join(&env, "lb")
        .await
        .expect("no live server carries lb");
    b.run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_replica_stops_instead_of_renewing() {
    let env = Env::start().await;
    let b_authority = other(&env).await;
    let b = start(
        b_authority.clone(),
        opts("kith-server-b", &[], Duration::from_millis(100)),
    )
    .await;
    // Revoked elsewhere (by this process's authority): at its next
    // maintenance tick B sees it and stops serving with the error.
    env.authority
        .revoke(
            RevokeTarget::Server("kith-server-b".into()),
            RevocationReason::KeyCompromise,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke B");
    let ended = tokio::time::timeout(Duration::from_secs(30), b.run)
        .await
        .expect("B stops within 30 s")
        .expect("B's task ends normally");
    match ended {
        Err(kith_server::Error::Authority(e)) => {
            assert_eq!(e.code(), "server-name-retired", "{e}")
        }
        other => panic!("B must stop with server-name-retired, got {other:?}"),
    }
    assert!(
        tokio::net::TcpStream::connect(b.addr).await.is_err(),
        "B no longer accepts connections"
    );
    // It did not issue itself a certificate past its revocation.
    let views = env.authority.server_views().await.expect("servers");
    assert_eq!(state_of(&views, "kith-server-b"), (ServerState::Revoked, 0));

    // Revoking one certificate of a server by serial retires its name too.
    let c = start(
        b_authority.clone(),
        opts("kith-server-c", &[], Duration::from_secs(3600)),
    )
    .await;
    let views = env.authority.server_views().await.expect("servers");
    let serial = views
        .iter()
        .find(|v| v.name == "kith-server-c")
        .expect("C listed")
        .serial
        .clone();
    env.authority
        .revoke(
            RevokeTarget::Serial(Serial::parse(&serial).expect("serial")),
            RevocationReason::KeyCompromise,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke C's certificate");
    assert!(env
        .authority
        .server_retired("kith-server-c")
        .await
        .expect("read"));
    let e = kith_server::Server::bind(
        b_authority,
        opts("kith-server-c", &[], Duration::from_secs(3600)),
    )
    .await
    .expect_err("C's name is retired");
    assert!(e.to_string().contains("retired"), "{e}");
    c.run.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_outside_the_server_name_space_are_refused_and_nothing_changes() {
    let env = Env::start().await;
    let before = env.snapshot().await;
    for bad in [
        "node-1",
        "kith-serverx",
        "kith-server-",
        "Kith-Server-A",
        "kith-server-a.b",
        "admin",
        "",
    ] {
        let e = kith_server::Server::bind(
            env.authority.clone(),
            opts(bad, &[], Duration::from_secs(60)),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{bad:?} must be refused"));
        match &e {
            kith_server::Error::Authority(a) => {
                assert_eq!(a.code(), "invalid-name", "{bad:?}: {e}")
            }
            other => panic!("{bad:?}: expected invalid-name, got {other}"),
        }
        // The authority refuses them too, whoever asks.
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let e = env
            .authority
            .issue_server_certificate(bad, key.public_key(), vec![], time::Duration::days(1))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid-name", "{bad:?}: {e}");
    }
    // An unknown server cannot be revoked, and nothing is written.
    let e = env
        .authority
        .revoke(
            RevokeTarget::Server("kith-server-zz".into()),
            RevocationReason::Unspecified,
            "test",
            Publish::Now,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown-server", "{e}");
    assert_eq!(before, env.snapshot().await, "refusals write nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_single_server_name_of_older_stores_keeps_working() {
    // A store whose one server ran as `kith-server`, its certificate indexed
    // the way stores were before name spaces (nodecert/kith-server/).
    let env = Env::start_with(|o| {
        let mut o = o;
        o.server_name = "kith-server".into();
        o
    })
    .await;
    let store = env.authority.store().clone();
    for e in store.list("servercert/kith-server/").await.expect("list") {
        let serial = &e.key["servercert/kith-server/".len()..];
        store
            .put(&format!("nodecert/kith-server/{serial}"), e.value.clone())
            .await
            .expect("legacy index");
        store.delete(&e.key).await.expect("drop the new index");
    }
    // A newly named replica starts beside it; both are listed.
    let b = start(
        other(&env).await,
        opts("kith-server-b", &[], Duration::from_secs(3600)),
    )
    .await;
    let views = env.authority.server_views().await.expect("servers");
    assert_eq!(state_of(&views, "kith-server"), (ServerState::Live, 1));
    assert_eq!(state_of(&views, "kith-server-b"), (ServerState::Live, 1));
    // Revoking the node `kith-server` cannot reach it; revoking the server can.
    let e = env
        .authority
        .revoke(
            RevokeTarget::Node("kith-server".into()),
            RevocationReason::Unspecified,
            "test",
            Publish::Now,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown-node", "{e}");
    let out = env
        .authority
        .revoke(
            RevokeTarget::Server("kith-server".into()),
            RevocationReason::Superseded,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke the old server");
    assert_eq!(out.len(), 1);
    let views = env.authority.server_views().await.expect("servers");
    assert_eq!(state_of(&views, "kith-server"), (ServerState::Revoked, 0));
    assert_eq!(state_of(&views, "kith-server-b"), (ServerState::Live, 1));
    b.run.abort();
}
