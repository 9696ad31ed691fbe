//! `PUT` racing `DELETE` of a secret through the real server (issue 9 §6):
//! real TLS, two operator connections, a real redb store. After each pair,
//! every listed version answers 200 with the value written for it (before
//! the fix, a listed version whose value was gone answered 500 until the
//! next write), an acknowledged put is listed unless an acknowledged delete
//! came with it, and no value record outlives its listing.

mod common;

use std::collections::{BTreeSet, HashMap};

use base64::Engine;
use common::*;
use hyper::{Method, StatusCode};
use kith_agent::Connection;
use kith_api::wire::{SecretInfo, SecretPutRequest, SecretValue, SecretVersionView};

const ROUNDS: usize = 120;
const NAME: &str = "raced";

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

async fn put(c: &mut Connection, value: &[u8]) -> (StatusCode, bytes::Bytes) {
    let body = SecretPutRequest {
        value: b64(value),
        description: None,
        allow_roles: None,
        allow_nodes: None,
        if_version: None,
    };
    c.send(
        Method::PUT,
        &format!("/v1/admin/secrets/{NAME}"),
        Some(serde_json::to_vec(&body).expect("encode")),
    )
    .await
    .expect("an answer to the put")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_racing_delete_over_the_api_keeps_every_listed_version_readable() {
    let env = Env::start().await;
    let admin = env.admin().await;
    let (mut a, mut b, mut reader) = (
        env.mtls(&admin).await,
        env.mtls(&admin).await,
        env.mtls(&admin).await,
    );
    let mut written: HashMap<u64, Vec<u8>> = HashMap::new();
    for round in 0..ROUNDS {
        let base = format!("base-{round}").into_bytes();
        let (status, body) = put(&mut a, &base).await;
        assert_eq!(status, StatusCode::OK, "round {round}: setup put: {body:?}");
        let info: SecretInfo = serde_json::from_slice(&body).expect("secret info");
        written.insert(info.latest, base);

        let value = format!("value-{round}").into_bytes();
        let rm_path = if round % 2 == 0 {
            format!("/v1/admin/secrets/{NAME}")
        } else {
            format!("/v1/admin/secrets/{NAME}?version={}", info.latest)
        };
        let (put_answer, rm_answer) =
            tokio::join!(put(&mut a, &value), b.send(Method::DELETE, &rm_path, None));
        let (put_status, put_body) = put_answer;
        assert_eq!(put_status, StatusCode::OK, "round {round}: {put_body:?}");
        let put_version = serde_json::from_slice::<SecretInfo>(&put_body)
            .expect("secret info")
            .latest;
        written.insert(put_version, value);
        let (rm_status, rm_body) = rm_answer.expect("an answer to the delete");
        assert!(
            rm_status == StatusCode::OK || rm_status == StatusCode::NOT_FOUND,
            "round {round}: delete answered {rm_status}: {rm_body:?}"
        );

        let (status, body) = reader
            .send(
                Method::GET,
                &format!("/v1/admin/secrets/{NAME}/history"),
                None,
            )
            .await
            .expect("history");
        let listed: BTreeSet<u64> = if status == StatusCode::NOT_FOUND {
            BTreeSet::new()
        } else {
            assert_eq!(status, StatusCode::OK, "round {round}: history: {body:?}");
            serde_json::from_slice::<Vec<SecretVersionView>>(&body)
                .expect("history")
                .iter()
                .map(|v| v.version)
                .collect()
        };
        for v in &listed {
            let (status, body) = reader
                .send(
                    Method::GET,
                    &format!("/v1/secrets/{NAME}?version={v}"),
                    None,
                )
                .await
                .expect("read");
            assert_eq!(
                status,
                StatusCode::OK,
                "round {round}: listed version {v} does not read: {body:?}"
            );
            let got: SecretValue = serde_json::from_slice(&body).expect("value");
            assert_eq!(Some(&got.value), written.get(v).map(|w| b64(w)).as_ref());
        }
        assert!(
            listed.contains(&put_version) || rm_status == StatusCode::OK,
            "round {round}: the acknowledged put of version {put_version} is gone \
             without an acknowledged delete"
        );
        let stored: BTreeSet<u64> = env
            .authority
            .store()
            .list(&format!("secretval/{NAME}/"))
            .await
            .expect("list")
            .iter()
            .filter_map(|e| e.key.rsplit('/').next()?.parse().ok())
            .collect();
        assert_eq!(
            stored, listed,
            "round {round}: value records vs the listing"
        );
    }
}
