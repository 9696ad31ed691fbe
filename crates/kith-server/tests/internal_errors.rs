//! A failure of the server itself (5xx) answers a generic message and a
//! request id; the detail goes to the server's log only, under that id.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use hyper::Method;
use kith_api::wire::ErrorBody;
use kith_authority::{Reader, SecretUpdate};

/// Everything the server logs at ERROR, for the whole test binary.
fn captured_errors() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::ERROR)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_failure_answers_a_request_id_and_no_detail() {
    let log = captured_errors();
    let env = Env::start().await;
    let a = &env.authority;
    for (name, value) in [("one", &b"first secret"[..]), ("two", b"second secret")] {
        a.put_secret(name, value, SecretUpdate::default(), "test")
            .await
            .expect("put");
    }
    // Move "two"'s sealed value over "one"'s: its associated data names
    // "two", so reading "one" fails its integrity check (a 500).
    let store = a.store();
    let two = store
        .get("secretval/two/00000000000000000001")
        .await
        .expect("get")
        .expect("two's value");
    store
        .put("secretval/one/00000000000000000001", two.value)
        .await
        .expect("move");
    let detail = a
        .get_secret("one", None, Reader::Admin("admin:test"))
        .await
        .expect_err("integrity")
        .to_string();

    let admin = env.admin().await;
    let mut conn = env.mtls(&admin).await;
    let (status, body) = conn
        .send(Method::GET, "/v1/secrets/one", None)
        .await
        .expect("transport");
    let e: ErrorBody = serde_json::from_slice(&body).expect("a JSON error body");
    assert_eq!(
        (status.as_u16(), e.code.as_str()),
        (500, "integrity-error"),
        "{}",
        e.message
    );
    let id = e
        .request_id
        .clone()
        .expect("a 5xx answer carries a request id");
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "request id {id:?}"
    );
    assert_eq!(
        e.message,
        format!("the server failed; its log says why (request id {id})"),
        "the message is generic"
    );
    let raw = String::from_utf8_lossy(&body);
    for leak in [
        detail.as_str(),
        "integrity error",
        "secretval",
        "second secret",
    ] {
        assert!(!raw.contains(leak), "the answer leaks {leak:?}: {raw}");
    }

    // The log has the detail, under the same id.
    let logged = String::from_utf8_lossy(&log.lock().expect("log")).into_owned();
    let line = logged
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("no log line names request id {id}:\n{logged}"));
    assert!(
        line.contains(&detail),
        "the log line for {id} lacks the detail {detail:?}: {line}"
    );
    assert!(line.contains("integrity-error"), "{line}");

    // Each failure gets its own id.
    let (_, body) = conn
        .send(Method::GET, "/v1/secrets/one", None)
        .await
        .expect("transport");
    let again: ErrorBody = serde_json::from_slice(&body).expect("JSON");
    assert_ne!(again.request_id, Some(id), "a request id is per request");

    // A refusal the caller can fix keeps its detail and has no id.
    let (status, body) = conn
        .send(Method::GET, "/v1/secrets/missing", None)
        .await
        .expect("transport");
    let e: ErrorBody = serde_json::from_slice(&body).expect("JSON");
    assert_eq!((status.as_u16(), e.code.as_str()), (404, "unknown-secret"));
    assert!(e.message.contains("missing"), "{}", e.message);
    assert_eq!(e.request_id, None, "only 5xx answers carry a request id");
    assert!(
        !String::from_utf8_lossy(&body).contains("request_id"),
        "the field is left out, not null"
    );
}

/// A signing failure is the server's, not the caller's: 500, generic
/// message, request id (it was a 400 that told an unauthenticated caller
/// why the CA could not sign).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signing_failure_is_a_500_without_detail() {
    let _log = captured_errors();
    let env = Env::start().await;
    // Long past every CA certificate's life: nothing can be signed.
    env.clock
        .set(time::OffsetDateTime::now_utc() + time::Duration::days(365 * 60));
    let token = env.token("worker", None, 1).await;
    let key = kith_pki::PrivateKey::generate(kith_pki::KeyType::P256).expect("key");
    let body = kith_api::wire::JoinRequest {
        token,
        node: Some("late".into()),
        csrs: vec![csr_for(&key, "late", &[], kith_pki::Profile::Peer)],
        may_leave_out: Vec::new(),
    };
    let (status, body) = post(&mut env.public().await, "/v1/join", &body).await;
    let e: ErrorBody = serde_json::from_slice(&body).expect("a JSON error body");
    assert_eq!(
        (status.as_u16(), e.code.as_str()),
        (500, "build-failed"),
        "{}",
        e.message
    );
    let id = e.request_id.expect("a request id");
    assert_eq!(
        e.message,
        format!("the server failed; its log says why (request id {id})")
    );
    assert!(
        !e.message.contains("expired"),
        "no detail for the caller: {}",
        e.message
    );
}
