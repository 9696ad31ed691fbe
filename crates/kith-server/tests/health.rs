//! Kubernetes-style probes on the API listener, without a client
//! certificate: `/livez` answers while the process runs, `/readyz` only
//! while the CA can work: it goes `503 not-ready` when the store stops
//! answering (a NATS cluster without quorum, a wedged disk: the store's
//! calls never return), within its bound, and ready again when it answers.
//!
//! The store is a real redb file behind a wrapper that can be told to stop
//! answering: every call then waits forever, which is exactly how a hung
//! backend looks to the server.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use futures::stream::BoxStream;
use hyper::{Method, StatusCode};
use kith_api::wire::ErrorBody;
use kith_authority::Settings;
use kith_store::{Entry, Limits, Revision, Store, WatchEvent};
use kith_store_redb::RedbStore;

/// A store that answers until `hang` is set, then never again (until it is
/// cleared: calls made meanwhile stay stuck, as on a dead backend).
struct HangingStore {
    inner: Arc<dyn Store>,
    hang: Arc<AtomicBool>,
}

impl HangingStore {
    async fn gate(&self) {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Store for HangingStore {
    async fn get(&self, key: &str) -> kith_store::Result<Option<Entry>> {
        self.gate().await;
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> kith_store::Result<Revision> {
        self.gate().await;
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> kith_store::Result<Revision> {
        self.gate().await;
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: Revision,
    ) -> kith_store::Result<Revision> {
        self.gate().await;
        self.inner.update(key, value, revision).await
    }
    async fn delete(&self, key: &str) -> kith_store::Result<()> {
        self.gate().await;
        self.inner.delete(key).await
    }
    async fn delete_if(&self, key: &str, revision: Revision) -> kith_store::Result<()> {
        self.gate().await;
        self.inner.delete_if(key, revision).await
    }
    async fn list(&self, prefix: &str) -> kith_store::Result<Vec<Entry>> {
        self.gate().await;
        self.inner.list(prefix).await
    }
    async fn watch(
        &self,
        prefix: &str,
    ) -> kith_store::Result<BoxStream<'static, kith_store::Result<WatchEvent>>> {
        self.inner.watch(prefix).await
    }
    fn limits(&self) -> Limits {
        self.inner.limits()
    }
    fn writable(&self) -> kith_store::Result<()> {
        self.inner.writable()
    }
}

/// GET `path` without a client certificate; the whole exchange bounded
/// generously (the readiness bound is 2 s; a loaded 2-core machine is slow).
async fn probe(env: &Env, path: &str) -> (StatusCode, bytes::Bytes, Duration) {
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(30), async {
        env.public()
            .await
            .send(Method::GET, path, None)
            .await
            .expect("transport")
    })
    .await
    .unwrap_or_else(|_| panic!("{path} did not answer within 30 s"));
    (answer.0, answer.1, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_goes_503_when_the_store_stops_answering_and_livez_stays_200() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hang = Arc::new(AtomicBool::new(false));
    let store: Arc<dyn Store> = Arc::new(HangingStore {
        inner: Arc::new(RedbStore::open(&tmp.path().join("kith.redb")).expect("open redb")),
        hang: hang.clone(),
    });
    let env = Env::start_on(Some(store), Settings::default(), |o| o).await;

    let (st, body, _) = probe(&env, "/livez").await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (st, body, _) = probe(&env, "/readyz").await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    hang.store(true, Ordering::SeqCst);
    let (st, body, took) = probe(&env, "/readyz").await;
    assert_eq!(
        st,
        StatusCode::SERVICE_UNAVAILABLE,
        "a store that does not answer is not ready: {}",
        String::from_utf8_lossy(&body)
    );
    let err: ErrorBody = serde_json::from_slice(&body).expect("a JSON error body");
    assert_eq!(err.code, "not-ready");
    assert!(
        err.message.contains("does not answer"),
        "the message says why: {}",
        err.message
    );
    assert!(
        took >= Duration::from_secs(1),
        "the answer came after waiting for the store ({took:?})"
    );
    // Alive all the same: a restart would not make the store answer.
    let (st, _, _) = probe(&env, "/livez").await;
    assert_eq!(st, StatusCode::OK, "/livez does not depend on the store");
    let (st, _, _) = probe(&env, "/healthz").await;
    assert_eq!(st, StatusCode::OK);

    hang.store(false, Ordering::SeqCst);
    let (st, body, _) = probe(&env, "/readyz").await;
    assert_eq!(
        st,
        StatusCode::OK,
        "ready again once the store answers: {}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_take_get_only_and_need_no_client_certificate() {
    let env = Env::start().await;
    for path in ["/livez", "/readyz"] {
        let (st, body, _) = probe(&env, path).await;
        assert_eq!(
            st,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert!(v["status"].is_string(), "{path}: {v}");
        let (st, body) = env
            .public()
            .await
            .send(Method::POST, path, Some(b"{}".to_vec()))
            .await
            .expect("transport");
        assert_refused(path, (st, body), 405, "method-not-allowed");
    }
}
