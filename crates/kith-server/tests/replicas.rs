//! The server beside another process on the same store (a second replica,
//! an operator command): what that process changes reaches this server
//! without a restart.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use kith_api::wire::{IssueResponse, NodeSelf, RenewRequest};
use kith_authority::{Authority, Settings};
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason, Serial};

/// The other process: an authority opened on the server's store.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revocation_recorded_elsewhere_is_in_the_served_crl_within_two_seconds() {
    let env = Env::start().await;
    let node = env.join_ok("node-1").await;
    let b = other(&env).await;
    // Recorded, never published: as if that process died right after.
    b.revoke(
        kith_authority::RevokeTarget::Serial(Serial::parse(&node.serial).expect("serial")),
        RevocationReason::KeyCompromise,
        "test",
        kith_authority::Publish::ByCaller,
    )
    .await
    .expect("record the revocation");
    drop(b);
    let start = Instant::now();
    loop {
        let der = env
            .public()
            .await
            .get_bytes("/v1/crl/cluster")
            .await
            .expect("CRL");
        let text = format!("{:?}", kith_pki::inspect(&der).expect("CRL"));
        if text.contains(&node.serial) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the served CRL does not list a revocation recorded elsewhere"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_of_an_authority_added_elsewhere_renews_without_a_restart() {
    let env = Env::start().await;
    let b = other(&env).await;
    b.add_authority("api", KeyType::P256)
        .await
        .expect("authority add in the other process");
    // A node of the new authority, joined through the other process.
    let (_, token) = b
        .create_token(
            kith_authority::TokenSpec {
                role: "worker".into(),
                node: None,
                ttl: time::Duration::hours(1),
                uses: 1,
                allow_sans: vec![],
                authority: Some("api".into()),
            },
            "test",
        )
        .await
        .expect("token");
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let csr =
        kith_pki::build_csr(&key, "api-1", &[kith_pki::San::Dns("api-1".into())]).expect("csr");
    let (_, issued) = b
        .join(&token, Some("api-1"), &[(Profile::Peer, csr)], "test")
        .await
        .expect("join the new authority");
    let mut chain = vec![issued[0].record.der.clone()];
    chain.extend(issued[0].chain.clone());
    let creds = Creds {
        key,
        chain,
        serial: issued[0].record.serial.clone(),
    };
    // The server's client verifier follows the keyring: the handshake with
    // a certificate of the new root succeeds, and the server answers.
    let start = Instant::now();
    let me: NodeSelf = loop {
        let mut c = env.mtls(&creds).await;
        match c
            .json::<NodeSelf>(Method::GET, "/v1/node", None::<&()>)
            .await
        {
            Ok(me) => break me,
            Err(e) => {
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "the server never accepted the new authority's node: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!((me.authority.as_str(), me.current), ("api", true));
    // And it renews there, under the new authority.
    let key2 = PrivateKey::generate(KeyType::P256).expect("key");
    let body = RenewRequest {
        node: Some("api-1".into()),
        csrs: vec![csr_for(&key2, "api-1", &[], Profile::Peer)],
    };
    let r: IssueResponse = env
        .mtls(&creds)
        .await
        .json(Method::POST, "/v1/renew", Some(&body))
        .await
        .expect("renewal through the server");
    assert_eq!(r.authority, "api");
}
