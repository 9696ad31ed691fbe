//! Values larger than one store value through the real server (issue 10
//! §2): on a store that takes at most 256 KiB per value, a secret of
//! several MiB is written, read by an operator and by a node, replaced and
//! removed over real HTTPS, and a CRL of several MiB is served whole.

mod common;

use std::sync::Arc;

use base64::Engine;
use common::*;
use hyper::{Method, StatusCode};
use kith_api::wire::{SecretPutRequest, SecretValue};
use kith_authority::{RevokedRecord, Settings, SettingsChange};
use kith_pki::RevocationReason;
use kith_store::{MemStore, Store};

const MAX_VALUE: usize = 256 * 1024;

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// Bytes that differ everywhere, so a misplaced chunk shows.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn small_store_server() -> (Env, MemStore) {
    let store = MemStore::with_max_value(MAX_VALUE);
    let env = Env::start_on(Some(Arc::new(store.clone())), Settings::default(), |o| o).await;
    let change = SettingsChange {
        secret_max_bytes: Some(8 << 20),
        ..SettingsChange::default()
    };
    env.authority
        .update_settings(change, "test")
        .await
        .expect("settings");
    (env, store)
}

async fn assert_every_value_fits(store: &MemStore, what: &str) {
    for e in store.list("").await.expect("list everything") {
        assert!(
            e.value.len() <= MAX_VALUE,
            "{what}: {} holds {} bytes",
            e.key,
            e.value.len()
        );
    }
}

async fn put(env: &Env, admin: &Creds, value: &[u8]) -> StatusCode {
    let body = SecretPutRequest {
        value: b64(value),
        description: None,
        allow_roles: None,
        allow_nodes: Some(vec!["n1".into()]),
        if_version: None,
    };
    let (status, body) = env
        .mtls(admin)
        .await
        .send(
            Method::PUT,
            "/v1/admin/secrets/big",
            Some(serde_json::to_vec(&body).expect("encode")),
        )
        .await
        .expect("an answer to the put");
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    status
}

async fn read(env: &Env, who: &Creds) -> Vec<u8> {
    let (status, body) = env
        .mtls(who)
        .await
        .send(Method::GET, "/v1/secrets/big", None)
        .await
        .expect("an answer to the read");
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: SecretValue = serde_json::from_slice(&body).expect("a secret value");
    base64::engine::general_purpose::STANDARD
        .decode(&v.value)
        .expect("base64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_of_several_mib_over_https() {
    let (env, store) = small_store_server().await;
    let admin = env.admin().await;
    let node = env.join_ok("n1").await;
    let v1 = noise(4 << 20, 1);
    put(&env, &admin, &v1).await;
    assert_every_value_fits(&store, "after the put").await;
    assert!(
        !store.list("chunk/").await.expect("list").is_empty(),
        "split"
    );
    assert!(
        read(&env, &admin).await == v1,
        "the operator reads it whole"
    );
    assert!(read(&env, &node).await == v1, "the node reads it whole");

    let v2 = noise(5 << 20, 2);
    put(&env, &admin, &v2).await;
    assert!(read(&env, &node).await == v2, "the replacement, whole");
    assert_every_value_fits(&store, "after the replacement").await;

    let (status, body) = env
        .mtls(&admin)
        .await
        .send(Method::DELETE, "/v1/admin/secrets/big", None)
        .await
        .expect("an answer to the delete");
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&body));
    assert!(store.list("secretval/").await.expect("list").is_empty());
    assert!(
        store.list("chunk/").await.expect("list").is_empty(),
        "no chunk left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_of_several_mib_over_https() {
    let (env, store) = small_store_server().await;
    let now = env.authority.now();
    let n = 60_000usize;
    for i in 0..n {
        let serial = format!("7f{i:030x}");
        let rec = RevokedRecord {
            serial: serial.clone(),
            node: format!("n{i}"),
            authority: "cluster".into(),
            reason: RevocationReason::Superseded,
            revoked_at: kith_pki::second_precision(now),
            not_after: kith_pki::second_precision(now + time::Duration::days(30)),
        };
        store
            .create(
                &format!("revoked/cluster/{serial}"),
                serde_json::to_vec(&rec).expect("json"),
            )
            .await
            .expect("seed");
    }
    let signed = env.authority.regenerate_crl("cluster").await.expect("sign");
    assert!(
        signed.der.len() > 2 << 20,
        "several MiB: {}",
        signed.der.len()
    );
    assert_every_value_fits(&store, "a large CRL").await;
    let served = env
        .public()
        .await
        .get_bytes("/v1/crl/cluster")
        .await
        .expect("the CRL");
    let (rest, crl) = x509_parser::parse_x509_crl(&served).expect("a CRL");
    assert!(rest.is_empty());
    // The server's own revocation watch may have re-signed it meanwhile:
    // whichever it serves lists every revocation.
    assert_eq!(crl.iter_revoked_certificates().count(), n);
    assert!(crl.crl_number().is_some());
}
