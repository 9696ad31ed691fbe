//! Connection exhaustion and guessing against a real server: real TCP from
//! real loopback source addresses (127.0.0.1, .2, .3 …), real TLS, a real
//! join through `kith_agent::join`. Every loop is bounded in count and
//! time; every bound on time is generous (a loaded 2-core machine).

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use kith_api::wire::JoinRequest;
use kith_pki::{KeyType, PrivateKey, Profile};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Headers announcing a body that never comes: the reported attack.
const SLOW_BODY: &[u8] = b"POST /v1/join HTTP/1.1\r\nHost: 127.0.0.1\r\n\
Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n";

/// Every network step of a test client gives up after this.
const STEP: Duration = Duration::from_secs(10);

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// The limits a test sets; everything else is the default.
fn with(
    f: impl FnOnce(&mut kith_server::Limits),
) -> impl FnOnce(kith_server::Options) -> kith_server::Options {
    move |mut o| {
        f(&mut o.limits);
        o
    }
}

fn client_config(env: &Env) -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(env.roots())
            .with_no_client_auth(),
    )
}

/// TCP from `source`, then a TLS handshake; any failure (a refusal is a
/// reset or an end of stream) is an `Err`, a hang is `TimedOut`.
async fn connect_from(env: &Env, source: IpAddr) -> std::io::Result<TlsStream<TcpStream>> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "test client timed out");
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(source, 0))?;
    let tcp = tokio::time::timeout(STEP, sock.connect(env.addr))
        .await
        .map_err(|_| timed_out())??;
    let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
    tokio::time::timeout(
        STEP,
        TlsConnector::from(client_config(env)).connect(name, tcp),
    )
    .await
    .map_err(|_| timed_out())?
}

/// One request from `source` on a new connection: status, headers, body.
async fn request_from(
    env: &Env,
    source: IpAddr,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> (StatusCode, hyper::HeaderMap, bytes::Bytes) {
    let tls = connect_from(env, source).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "127.0.0.1");
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, kith_api::JSON);
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body.unwrap_or_default())))
        .expect("request");
    let resp = tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, bytes)
}

/// Wait (at most `within`) for the server to close `tls`; how long it took.
async fn closed_within(tls: &mut TlsStream<TcpStream>, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, tls.read(&mut buf)).await {
            Err(_) => return None,
            // An error answer before the close is fine; the close is what counts.
            Ok(Ok(n)) if n > 0 => continue,
            Ok(_) => return Some(start.elapsed()),
        }
    }
}

/// Descriptors this process holds for the server's side of its
/// connections (sockets whose local port is the server's, listener
/// included): what an attacker costs the server.
fn server_descriptors(port: u16) -> usize {
    let suffix = format!(":{port:04X}");
    let mut inodes = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && cols[1].ends_with(&suffix) && cols[9] != "0" {
                inodes.insert(format!("socket:[{}]", cols[9]));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| inodes.contains(l.to_string_lossy().as_ref()))
        .count()
}

fn join_body(token: &str, node: &str) -> Vec<u8> {
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    serde_json::to_vec(&JoinRequest {
        token: token.into(),
        node: Some(node.into()),
        csrs: vec![csr_for(&key, node, &[], Profile::Peer)],
        may_leave_out: Vec::new(),
    })
    .expect("encode")
}

fn error_code(body: &[u8]) -> String {
    let e: kith_api::wire::ErrorBody = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {body:?}"));
    assert!(!e.message.is_empty(), "an error message");
    e.code
}

/// (a) The reported attack, from one address, on more connections than it
/// may hold: with the default limits the server keeps its descriptors to
/// the per-source cap, and a real join from another address succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_join_succeeds_while_one_source_stalls_hundreds_of_requests() {
    const ATTACK: usize = 300;
    let env = Env::start().await;
    let cap = kith_server::Limits::default().max_connections_per_source;
    let attacker = loopback(2);
    let mut held = Vec::new();
    let mut refused = 0;
    let started = Instant::now();
    for _ in 0..ATTACK {
        match connect_from(&env, attacker).await {
            Ok(mut tls) => {
                if tls.write_all(SLOW_BODY).await.is_ok() && tls.flush().await.is_ok() {
                    held.push(tls);
                } else {
                    refused += 1;
                }
            }
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut,
                    "a refusal is prompt"
                );
                refused += 1;
            }
        }
    }
    let opening = started.elapsed();
    let fds = server_descriptors(env.addr.port());
    eprintln!(
        "attack: {} held, {refused} refused, in {opening:?}; server-side descriptors {fds}",
        held.len()
    );

    // A real join, from the address every node uses, during the attack.
    let dir = tempfile::tempdir().expect("tempdir");
    let token = env.token("worker", None, 1).await;
    let t = Instant::now();
    let id = tokio::time::timeout(
        Duration::from_secs(60),
        kith_agent::join(&kith_agent::JoinOptions {
            server: env.server(),
            token,
            node: Some("during-attack".into()),
            sans: vec![],
            dir: dir.path().join("node"),
            profiles: vec![],
            key_type: KeyType::P256,
            interface_ips: false,
            force: false,
        }),
    )
    .await
    .expect("the join finishes while the attack runs")
    .expect("the join succeeds while the attack runs");
    assert_eq!(id.node, "during-attack");
    eprintln!("join during the attack took {:?}", t.elapsed());

    // The attack holds no more than its source's share ...
    assert!(
        held.len() <= cap,
        "one source holds {} stalled connections (cap {cap})",
        held.len()
    );
    // ... and costs the server no more descriptors than that (+ the
    // listener and the join's connection, which may still be closing).
    assert!(
        fds <= cap + 4,
        "the server holds {fds} descriptors for {} attacking connections",
        held.len()
    );
    drop(held);
}

/// (b) Stalled requests of every shape are closed by the server within the
/// request deadline, counted from their first byte; not before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_requests_are_closed_within_the_request_deadline() {
    let deadline = Duration::from_secs(2);
    // Well under the 10 s the unfixed server's header timer allowed, and
    // generous for a loaded machine.
    let bound = deadline + Duration::from_secs(5);
    let env = Env::start_with(with(|l| l.request_timeout = deadline)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12u8 {
        let mut tls = connect_from(&env, loopback(10 + i % 3))
            .await
            .expect("connect");
        tasks.spawn(async move {
            let start = Instant::now();
            let kind = match i % 3 {
                // Headers announcing 60000 bytes, then silence.
                0 => {
                    tls.write_all(SLOW_BODY).await.expect("write");
                    "silent body"
                }
                // Part of the body, then silence.
                1 => {
                    tls.write_all(SLOW_BODY).await.expect("write");
                    tls.write_all(b"{\"token\":").await.expect("write");
                    "partial body"
                }
                // Headers one byte at a time, never finished (slowloris).
                _ => {
                    for b in b"GET /healthz HTTP/1.1\r\nX-Slow: ".iter().take(6) {
                        let _ = tls.write_all(&[*b]).await;
                        tokio::time::sleep(Duration::from_millis(300)).await;
                    }
                    "trickled headers"
                }
            };
            // The server may already have closed a slow trickler.
            let _ = tls.flush().await;
            let after = closed_within(&mut tls, bound + Duration::from_secs(10)).await;
            (kind, after.map(|_| start.elapsed()))
        });
    }
    // And a connection that never sends a byte.
    let mut silent = connect_from(&env, loopback(20)).await.expect("connect");
    let silent_closed = closed_within(&mut silent, bound + Duration::from_secs(10)).await;
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.expect("task"));
    }
    results.sort_by_key(|r| r.0);
    for &(kind, closed) in &results {
        let ok = closed.is_some_and(|after| after <= bound && after >= deadline.mul_f32(0.9));
        assert!(ok, "{kind}: closed after {closed:?}, not within [0.9 x {deadline:?}, {bound:?}]; all: {results:?}");
    }
    let silent_closed = silent_closed.expect("a silent connection is closed");
    assert!(
        silent_closed <= bound,
        "silent: closed after {silent_closed:?}"
    );
    // The server still serves.
    let (st, _, _) = request_from(&env, loopback(1), Method::GET, "/healthz", None).await;
    assert_eq!(st, StatusCode::OK);
}

/// (c) Connections over the total cap, or over one source's cap, are
/// refused at once (no hang, no TLS) while the caps hold, and accepted
/// again as soon as a slot is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_over_the_caps_are_refused_until_a_slot_is_freed() {
    let env = Env::start_with(with(|l| {
        l.max_connections = 6;
        l.max_connections_per_source = 4;
        // Held connections must outlive the test's steps.
        l.request_timeout = Duration::from_secs(120);
    }))
    .await;
    let (a, b, c) = (loopback(2), loopback(3), loopback(4));
    let mut from_a = Vec::new();
    for _ in 0..4 {
        from_a.push(connect_from(&env, a).await.expect("under the source cap"));
    }
    let refused = |what: &str, r: std::io::Result<TlsStream<TcpStream>>| match r {
        Ok(_) => panic!("{what}: accepted over the cap"),
        Err(e) => assert_ne!(
            e.kind(),
            std::io::ErrorKind::TimedOut,
            "{what}: refused promptly, not left hanging"
        ),
    };
    for _ in 0..3 {
        refused("a 5th from one source", connect_from(&env, a).await);
    }
    let mut from_b = Vec::new();
    for _ in 0..2 {
        from_b.push(
            connect_from(&env, b)
                .await
                .expect("another source, under the total"),
        );
    }
    refused("a 7th in all", connect_from(&env, c).await);
    refused("a 7th in all, from b", connect_from(&env, b).await);

    // Free one of a's slots: a new connection from c gets in, and serves.
    drop(from_a.pop());
    let start = Instant::now();
    let tls = loop {
        match connect_from(&env, c).await {
            Ok(t) => break t,
            Err(_) if start.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no slot after one was freed: {e}"),
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP");
    tokio::spawn(conn);
    let resp = sender
        .send_request(
            hyper::Request::get("/healthz")
                .header(hyper::header::HOST, "127.0.0.1")
                .body(Full::new(bytes::Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("an answer");
    assert_eq!(resp.status(), StatusCode::OK);
    // And now the total is full again.
    refused("full again", connect_from(&env, loopback(5)).await);
    drop((from_a, from_b));
}

type Sender = hyper::client::conn::http1::SendRequest<Full<bytes::Bytes>>;

/// A kept-alive HTTP connection from 127.0.0.1, and when it was closed.
async fn keepalive(env: &Env) -> (Sender, tokio::sync::oneshot::Receiver<Instant>) {
    let tls = connect_from(env, loopback(1)).await.expect("connect");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = conn.await;
        let _ = tx.send(Instant::now());
    });
    (sender, rx)
}

/// (d) A kept-alive connection that stays idle is closed after the idle
/// timeout; one that keeps asking is not (idle, not lifetime).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_kept_alive_connection_is_closed() {
    let idle = Duration::from_secs(3);
    let env = Env::start_with(with(|l| l.idle_timeout = idle)).await;
    let get = |sender: &mut Sender| {
        sender.send_request(
            hyper::Request::get("/healthz")
                .header(hyper::header::HOST, "127.0.0.1")
                .body(Full::new(bytes::Bytes::new()))
                .expect("request"),
        )
    };

    // Busy: a request every 300 ms, for twice the idle timeout.
    let (mut busy, mut busy_closed) = keepalive(&env).await;
    let start = Instant::now();
    while start.elapsed() < idle * 2 {
        let r = get(&mut busy)
            .await
            .expect("a kept-alive connection in use stays open");
        assert_eq!(r.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(busy_closed.try_recv().is_err(), "closed while in use");

    // Idle: one request, then nothing.
    let (mut lazy, closed) = keepalive(&env).await;
    let r = get(&mut lazy).await.expect("answer");
    assert_eq!(r.status(), StatusCode::OK);
    let answered = Instant::now();
    // Under the 10 s of the unfixed server's header timer.
    let bound = idle + Duration::from_secs(4);
    let at = tokio::time::timeout(bound + Duration::from_secs(10), closed)
        .await
        .unwrap_or_else(|_| panic!("an idle connection still open after {bound:?} + 10 s"))
        .expect("closed");
    let after = at.duration_since(answered);
    assert!(
        after <= bound,
        "idle connection closed only after {after:?}"
    );
    assert!(
        after >= idle / 2,
        "closed after {after:?}, before the idle timeout"
    );
}

/// (e) Token guessing from one source: after the limit every join from it
/// is refused with 429, a JSON error and Retry-After, even with a good
/// token (which stays unspent), while another source still joins. Cheap
/// public requests have their own, larger per-source budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_guessing_is_limited_per_source_while_others_still_join() {
    const GUESSES: u32 = 5;
    let env = Env::start_with(with(|l| {
        l.failed_joins = kith_server::Rate::new(GUESSES, Duration::from_secs(600));
        l.public_requests = kith_server::Rate::new(40, Duration::from_secs(600));
    }))
    .await;
    let good = env.token("worker", None, 1).await;
    // A guess: the right pin and id, a wrong secret.
    let mut guess = good.clone();
    let last = guess.pop().expect("non-empty");
    guess.push(if last == '0' { '1' } else { '0' });
    let guesser = loopback(1);

    let mut codes = Vec::new();
    for i in 0..GUESSES + 3 {
        let (st, headers, body) = request_from(
            &env,
            guesser,
            Method::POST,
            "/v1/join",
            Some(join_body(&guess, &format!("guess-{i}"))),
        )
        .await;
        let code = error_code(&body);
        if st == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = headers
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("Retry-After: seconds");
            assert!((1..=600).contains(&retry), "Retry-After {retry}");
        }
        codes.push((st.as_u16(), code));
    }
    let expected: Vec<(u16, String)> = (0..GUESSES + 3)
        .map(|i| {
            if i < GUESSES {
                (401, "invalid-token".to_string())
            } else {
                (429, "rate-limited".to_string())
            }
        })
        .collect();
    assert_eq!(codes, expected);

    // The good token from the guessing source: refused, and not spent.
    let before = env.snapshot().await;
    let (st, _, body) = request_from(
        &env,
        guesser,
        Method::POST,
        "/v1/join",
        Some(join_body(&good, "honest-1")),
    )
    .await;
    assert_eq!(
        (st.as_u16(), error_code(&body).as_str()),
        (429, "rate-limited")
    );
    assert_eq!(
        before,
        env.snapshot().await,
        "a refused join changed the store"
    );

    // Another source joins with it.
    let (st, _, body) = request_from(
        &env,
        loopback(2),
        Method::POST,
        "/v1/join",
        Some(join_body(&good, "honest-1")),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    // Public reads: a budget per source, then 429; other sources unaffected.
    let reader = loopback(3);
    let mut first_refusal = None;
    for i in 0..60 {
        let (st, _, body) = request_from(&env, reader, Method::GET, "/v1/ca", None).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(error_code(&body), "rate-limited");
            first_refusal = Some(i);
            break;
        }
        assert_eq!(st, StatusCode::OK);
    }
    assert_eq!(first_refusal, Some(40), "refused after its budget of 40");
    let (st, _, _) = request_from(&env, reader, Method::GET, "/healthz", None).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "health checks count too");
    let (st, _, _) = request_from(&env, loopback(4), Method::GET, "/v1/ca", None).await;
    assert_eq!(st, StatusCode::OK, "another source still reads");
}

/// (f) With a new-connection rate set, a source that opens connections in
/// a loop (a TLS handshake each, closed at once) is refused before the
/// handshake once over it; another source still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_rate_refuses_a_handshake_flood_from_one_source() {
    const RATE: u32 = 5;
    let env = Env::start_with(with(|l| {
        l.new_connections = Some(kith_server::Rate::new(RATE, Duration::from_secs(600)));
    }))
    .await;
    let flooder = loopback(2);
    let mut outcomes = Vec::new();
    for _ in 0..RATE + 5 {
        let r = connect_from(&env, flooder).await;
        if let Err(e) = &r {
            assert_ne!(e.kind(), std::io::ErrorKind::TimedOut, "refused promptly");
        }
        outcomes.push(r.is_ok());
    }
    let expected: Vec<bool> = (0..RATE + 5).map(|i| i < RATE).collect();
    assert_eq!(
        outcomes, expected,
        "the first {RATE} handshakes, then refusals"
    );
    let (st, _, _) = request_from(&env, loopback(3), Method::GET, "/healthz", None).await;
    assert_eq!(st, StatusCode::OK, "another source still connects");
}

/// Everything the server logs at WARN and above, for the whole test binary.
fn captured_warnings() -> Arc<std::sync::Mutex<Vec<u8>>> {
    static LOG: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .init();
        buf
    })
    .clone()
}

struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// (g) Guessing is logged once per source per window, not per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_guessing_is_logged_once_per_source_per_window() {
    let log = captured_warnings();
    let env = Env::start_with(with(|l| {
        l.failed_joins = kith_server::Rate::new(3, Duration::from_secs(600));
    }))
    .await;
    let guesser = loopback(7);
    let mut guess = env.token("worker", None, 1).await;
    let last = guess.pop().expect("non-empty");
    guess.push(if last == '0' { '1' } else { '0' });
    let mut refused = 0;
    for i in 0..20 {
        let (st, _, _) = request_from(
            &env,
            guesser,
            Method::POST,
            "/v1/join",
            Some(join_body(&guess, &format!("g-{i}"))),
        )
        .await;
        refused += usize::from(st == StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(refused, 17, "3 guesses, then refusals");
    let text = String::from_utf8_lossy(&log.lock().expect("log buffer")).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("127.0.0.7")).collect();
    assert_eq!(lines.len(), 1, "one warning for 20 attempts: {lines:#?}");
    assert!(
        lines[0].contains("failed token guesses") && lines[0].contains("3/10m"),
        "{}",
        lines[0]
    );
}
