//! Huge durations through the real server (issue 9 §6): a token lifetime
//! from the API and a renewal grace window from a library caller are bounded
//! with a clear error, never a panic in a handler (which drops the
//! connection) and never a change to the store.

mod common;

use common::*;
use hyper::{Method, StatusCode};
use kith_agent::Connection;
use kith_api::wire::{ErrorBody, RenewRequest, TokenCreateRequest};
use kith_pki::{KeyType, PrivateKey, Profile};

async fn post(
    c: &mut Connection,
    path: &str,
    body: &impl serde::Serialize,
) -> (StatusCode, bytes::Bytes) {
    c.send(
        Method::POST,
        path,
        Some(serde_json::to_vec(body).expect("encode")),
    )
    .await
    .expect("an answer, not a dropped connection")
}

fn refused(what: &str, (status, body): (StatusCode, bytes::Bytes), code: &str) -> String {
    let e: ErrorBody = serde_json::from_slice(&body)
        .unwrap_or_else(|err| panic!("{what}: error body is not JSON ({err}): {body:?}"));
    assert_eq!(
        (status, e.code.as_str()),
        (StatusCode::BAD_REQUEST, code),
        "{what}: {}",
        e.message
    );
    e.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_token_lifetimes_from_the_api_are_refused() {
    let env = Env::start().await;
    let admin = env.admin().await;
    let mut c = env.mtls(&admin).await;
    let day = 86_400u64;
    for ttl in [
        u64::MAX,
        i64::MAX as u64,
        i64::MAX as u64 + 1,
        999_999_999_999_999_999,
        100_000_000 * day,
        30 * day + 1,
        0,
    ] {
        let before = env.snapshot().await;
        let got = post(
            &mut c,
            "/v1/admin/tokens",
            &TokenCreateRequest {
                role: "worker".into(),
                node: None,
                ttl_seconds: Some(ttl),
                uses: None,
                allow_sans: Vec::new(),
                authority: None,
                cert_ttl_seconds: None,
            },
        )
        .await;
        let message = refused(&format!("ttl_seconds {ttl}"), got, "invalid-argument");
        assert!(
            message.contains("30 days"),
            "the refusal names the maximum: {message}"
        );
        assert_eq!(before, env.snapshot().await, "ttl {ttl}: the store changed");
    }
    // The largest allowed one still works.
    let (status, body) = post(
        &mut c,
        "/v1/admin/tokens",
        &TokenCreateRequest {
            role: "worker".into(),
            node: None,
            ttl_seconds: Some(30 * day),
            uses: None,
            allow_sans: Vec::new(),
            authority: None,
            cert_ttl_seconds: None,
        },
    )
    .await;
    assert!(status.is_success(), "30 days: {status} {body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_renewal_grace_is_an_error_not_a_panic_on_every_renewal() {
    let env = Env::start_with(|mut o| {
        o.renew_grace = time::Duration::days(100_000_000);
        o
    })
    .await;
    let creds = env.join_ok("node-1").await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let body = RenewRequest {
        node: None,
        csrs: vec![csr_for(&key, "node-1", &[], Profile::Peer)],
    };
    for round in 0..3 {
        let mut c = env.mtls(&creds).await;
        let before = env.snapshot().await;
        let got = post(&mut c, "/v1/renew", &body).await;
        let message = refused(&format!("renewal {round}"), got, "invalid-argument");
        assert!(message.contains("grace"), "{message}");
        assert_eq!(before, env.snapshot().await, "the store changed");
    }
}
