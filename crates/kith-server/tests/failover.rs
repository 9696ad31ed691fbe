//! Nodes fail over between replicas: a node joined through A renews through
//! another replica once A is gone (real TLS, the agent's own client); a
//! black-holed first address (accepts TCP, never answers) costs at most the
//! per-attempt bound; a refusal (4xx) from the first replica is the answer
//! and is not retried elsewhere. The served CRL follows the store: a
//! revocation answered by one replica is in every replica's CRL at once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use kith_agent::{NodeIdentity, ServerAddr};
use kith_authority::{AuditLimits, Settings};
use kith_pki::KeyType;

async fn replica(env: &Env, name: &str, settings: Settings) -> Replica {
    Replica::start(env, name, settings, None).await
}

async fn env() -> Env {
    Env::start_on(
        Some(std::sync::Arc::new(kith_store::MemStore::new())),
        Settings::default(),
        |o| o,
    )
    .await
}

async fn join(env: &Env, through: &ServerAddr, dir: &Path) -> NodeIdentity {
    kith_agent::join(&kith_agent::JoinOptions {
        server: through.clone(),
        token: env.token("worker", None, 1).await,
        node: Some("node-1".into()),
        sans: vec![],
        dir: dir.to_path_buf(),
        profiles: vec![],
        key_type: KeyType::P256,
        interface_ips: false,
        force: false,
    })
    .await
    .expect("join")
}

/// Rewrite `dir`'s identity.json to try `servers` in that order.
fn set_servers(dir: &Path, servers: &[ServerAddr]) {
    let mut id = NodeIdentity::load(dir).expect("identity");
    id.server = Some(servers[0].clone());
    id.replicas = servers[1..].to_vec();
    // The file exists (and keeps its mode): rewritten in place.
    std::fs::write(dir.join("identity.json"), id.to_json().expect("json")).expect("write identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joined_through_a_renews_through_b_after_a_is_shut_down() {
    let env = env().await;
    let a = replica(&env, "kith-server-a", Settings::default()).await;
    let b = replica(&env, "kith-server-b", Settings::default()).await;
    // A lists B once it has heartbeated since B registered.
    let start = Instant::now();
    loop {
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(env.roots())
            .with_no_client_auth();
        let mut c = kith_agent::Connection::open(&a.addr, std::sync::Arc::new(cfg))
            .await
            .expect("connect to A");
        let ca: kith_api::wire::CaResponse = c
            .json(hyper::Method::GET, "/v1/ca", None::<&()>)
            .await
            .expect("/v1/ca");
        if ca.replicas.contains(&b.addr.url()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "A never listed B: {ca:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node-1");
    let joined = join(&env, &a.addr, &dir).await;
    assert!(
        joined.replicas.contains(&b.addr),
        "the join answer lists B: {joined:?}"
    );
    assert_eq!(joined.server.as_ref(), Some(&a.addr), "joined through A");
    // identity.json keeps the list.
    assert_eq!(NodeIdentity::load(&dir).expect("load"), joined);

    let a_addr = a.addr.clone();
    a.stop().await;
    // Only A and B known, A first: the renewal must go to B.
    set_servers(&dir, &[a_addr.clone(), b.addr.clone()]);
    let renewed = kith_agent::renew(&dir).await.expect("renews through B");
    assert_ne!(renewed.serial, joined.serial);
    assert_eq!(
        renewed.server.as_ref(),
        Some(&b.addr),
        "B, which worked, goes first"
    );
    // The list is refreshed from B's answer: it names the third replica
    // (the harness's own server), which identity.json did not know.
    assert!(
        renewed.replicas.contains(&env.server()),
        "the replicas of B's answer: {renewed:?}"
    );
    assert_eq!(NodeIdentity::load(&dir).expect("load"), renewed);
    // The node's other commands fail over too: a refresh through B.
    set_servers(&dir, &[a_addr, b.addr.clone()]);
    kith_agent::refresh(&dir).await.expect("refresh through B");
    let (id, _conn) = kith_agent::connect(&dir).await.expect("connect through B");
    assert_eq!(id.server.as_ref(), Some(&b.addr));
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_black_holed_first_address_costs_at_most_the_attempt_bound() {
    let env = env().await;
    let b = replica(&env, "kith-server-b", Settings::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node-1");
    let joined = join(&env, &b.addr, &dir).await;
    // Accepts TCP (the kernel completes the handshake into the backlog) and
    // never answers.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hole_addr = ServerAddr {
        host: "127.0.0.1".into(),
        port: hole.local_addr().expect("addr").port(),
    };
    set_servers(&dir, &[hole_addr, b.addr.clone()]);
    let start = Instant::now();
    let renewed = kith_agent::renew(&dir).await.expect("renews through B");
    let took = start.elapsed();
    assert_ne!(renewed.serial, joined.serial);
    assert!(
        took >= kith_agent::CONNECT_TIMEOUT,
        "the black hole was tried first: {took:?}"
    );
    // The bound plus a generous allowance for a loaded machine, well under
    // the request timeout (30 s) a hung attempt would have cost.
    assert!(
        took < kith_agent::CONNECT_TIMEOUT + Duration::from_secs(15),
        "stalled for {took:?}"
    );
    drop(hole);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refusal_from_the_first_replica_is_not_retried_elsewhere() {
    let env = env().await;
    // R refuses every renewal (rate-limited, 429); B would renew.
    let strict = Settings {
        audit_limits: AuditLimits {
            max_renewals: 0,
            ..AuditLimits::default()
        },
        ..Settings::default()
    };
    let r = replica(&env, "kith-server-r", strict).await;
    let b = replica(&env, "kith-server-b", Settings::default()).await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node-1");
    let joined = join(&env, &b.addr, &dir).await;
    set_servers(&dir, &[r.addr.clone(), b.addr.clone()]);
    let e = kith_agent::renew(&dir)
        .await
        .expect_err("R's refusal is the answer");
    assert_eq!(e.code(), "rate-limited", "{e}");
    assert!(!e.is_outage());
    let id = NodeIdentity::load(&dir).expect("load");
    assert_eq!(id.serial, joined.serial, "nothing renewed elsewhere");
    assert_eq!(id.server.as_ref(), Some(&r.addr), "the order is unchanged");
    // The same renewal, B first, goes through: B was never asked above.
    set_servers(&dir, &[b.addr.clone(), r.addr.clone()]);
    kith_agent::renew(&dir).await.expect("B renews");
    r.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_answered_by_one_replica_is_in_every_replicas_crl_within_two_seconds() {
    let env = env().await;
    let a = replica(&env, "kith-server-a", Settings::default()).await;
    let b = replica(&env, "kith-server-b", Settings::default()).await;
    let node = env.join_ok("node-1").await;
    // Both serve a CRL first (signed and stored), so that what follows is
    // about a later revocation reaching a replica that already has one.
    let crl_of = |addr: ServerAddr| {
        let env = &env;
        async move {
            let cfg = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(env.roots())
                .with_no_client_auth();
            let mut c = kith_agent::Connection::open(&addr, std::sync::Arc::new(cfg))
                .await
                .expect("connect");
            let der = c.get_bytes("/v1/crl/cluster").await.expect("CRL");
            format!("{:?}", kith_pki::inspect(&der).expect("a CRL"))
        }
    };
    assert!(!crl_of(a.addr.clone()).await.contains(&node.serial));
    assert!(!crl_of(b.addr.clone()).await.contains(&node.serial));
    // Revoked through A's API.
    let admin = env.admin().await;
    let cfg = env.mtls_config(&admin);
    let mut c = kith_agent::Connection::open(&a.addr, cfg)
        .await
        .expect("mtls to A");
    let _: kith_api::wire::RevokeResponse = c
        .json(
            hyper::Method::POST,
            "/v1/admin/revoke",
            Some(&serde_json::json!({ "serial": node.serial })),
        )
        .await
        .expect("revoke through A");
    let start = Instant::now();
    loop {
        if crl_of(b.addr.clone()).await.contains(&node.serial) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "B's served CRL does not list a revocation answered by A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(crl_of(a.addr.clone()).await.contains(&node.serial));
    a.stop().await;
    b.stop().await;
}
