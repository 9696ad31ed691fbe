//! One node certificate hammering secrets it may not read, over real mutual
//! TLS: the audit trail grows by a bounded number of records, the answers
//! turn into 429 `rate-limited` with `Retry-After`, and other nodes are
//! not affected.

mod common;

use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use kith_api::wire::ErrorBody;
use kith_authority::{AuditRecord, SecretUpdate};

/// Refused reads from one certificate.
const HAMMER: usize = 2000;

async fn denied_records(env: &Env) -> usize {
    env.authority
        .store()
        .list("audit/")
        .await
        .expect("list")
        .iter()
        .map(|e| serde_json::from_slice::<AuditRecord>(&e.value).expect("audit record"))
        .filter(|r| r.action == "secret-denied")
        .count()
}

/// One GET with the full response head (the agent's client drops headers).
async fn get_with_headers(
    env: &Env,
    creds: &Creds,
    path: &str,
) -> (StatusCode, hyper::HeaderMap, bytes::Bytes) {
    let tcp = tokio::net::TcpStream::connect(env.addr)
        .await
        .expect("connect");
    let tls = tokio_rustls::TlsConnector::from(env.mtls_config(creds))
        .connect(
            rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("TLS");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP");
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, "127.0.0.1")
        .body(Empty::<bytes::Bytes>::new())
        .expect("request");
    let resp = sender.send_request(req).await.expect("answer");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hammering_refused_secret_reads_is_bounded_and_rate_limited() {
    let env = Env::start().await;
    env.authority
        .put_secret(
            "db-password",
            b"hunter2",
            SecretUpdate {
                allow_roles: Some(vec!["db".into()]),
                ..SecretUpdate::default()
            },
            "admin:test",
        )
        .await
        .expect("put");
    let attacker = env.join_ok("node-1").await;
    let before = denied_records(&env).await;

    let mut c = env.mtls(&attacker).await;
    let mut codes = std::collections::BTreeMap::<(u16, String), usize>::new();
    for i in 0..HAMMER {
        // The subject varies (a guessed name reads like a forbidden one).
        let path = if i % 2 == 0 {
            "/v1/secrets/db-password".to_string()
        } else {
            format!("/v1/secrets/guess-{i}")
        };
        let (st, body) = c.send(Method::GET, &path, None).await.expect("transport");
        let e: ErrorBody = serde_json::from_slice(&body).expect("JSON error");
        *codes.entry((st.as_u16(), e.code)).or_default() += 1;
    }
    let limits = kith_authority::AuditLimits::default();
    let forbidden = codes
        .get(&(403, "secret-forbidden".into()))
        .copied()
        .unwrap_or(0);
    let limited = codes
        .get(&(429, "rate-limited".into()))
        .copied()
        .unwrap_or(0);
    assert_eq!(forbidden + limited, HAMMER, "{codes:?}");
    // The hammering may straddle a window boundary on a slow machine.
    assert!(forbidden <= 2 * limits.max_refusals as usize, "{codes:?}");
    let records = denied_records(&env).await - before;
    assert!(
        (1..=4).contains(&records),
        "{records} audit records for {HAMMER} refused reads"
    );

    // The 429 says when to come back.
    let (st, headers, body) = get_with_headers(&env, &attacker, "/v1/secrets/db-password").await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{body:?}");
    let retry: u64 = headers
        .get(hyper::header::RETRY_AFTER)
        .expect("Retry-After")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("seconds");
    assert!(
        (1..=limits.window.as_secs()).contains(&retry),
        "Retry-After {retry}"
    );

    // Another node is refused as usual, and recorded.
    let other = env.join_ok("node-2").await;
    let (st, _, body) = get_with_headers(&env, &other, "/v1/secrets/db-password").await;
    let e: ErrorBody = serde_json::from_slice(&body).expect("JSON error");
    assert_eq!(
        (st, e.code.as_str()),
        (StatusCode::FORBIDDEN, "secret-forbidden")
    );
}
