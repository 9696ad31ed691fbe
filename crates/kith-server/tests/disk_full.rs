//! A full disk on a real (tmpfs) filesystem under a real server: writes
//! answer 503 `store-unavailable`, `/readyz` says not ready, nothing is
//! acknowledged that is not stored, and once space returns the server
//! recovers by itself, without a restart.
//!
//! Needs root (to mount a tmpfs); the suite runs as root locally and in CI.
//! If the mount fails the test fails: it never skips silently.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use common::*;
use hyper::{Method, StatusCode};
use kith_api::wire::{ErrorBody, IssueResponse, JoinRequest};
use kith_authority::{Authority, InitOptions, KdfParams, ManualClock, Settings};
use kith_pki::{KeyType, PrivateKey, Profile, Serial};
use kith_store::Store;
use kith_store_redb::RedbStore;
use time::OffsetDateTime;

/// A tmpfs mounted for the length of a test; unmounted on drop, lazily if
/// the server still holds the database file open.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs on {} failed (this test needs root; it must not skip): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            // Still busy (the server task holds the file): detach it now,
            // the kernel frees it when the last descriptor closes.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// Fill the filesystem holding `path` to the last page; the filler's size.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let mut written = 0u64;
    for chunk in [1usize << 20, 64 << 10, 4 << 10, 512] {
        let buf = vec![0xa5u8; chunk];
        while f.write_all(&buf).is_ok() {
            written += chunk as u64;
        }
    }
    let _ = f.sync_all();
    written
}

async fn start(data: &Path) -> Env {
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&data.join("kith.redb")).expect("open redb on the tmpfs"));
    let now = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(now));
    let authority = Authority::init(
        store,
        clock.clone(),
        InitOptions {
            cluster: "test.example".into(),
            key_type: KeyType::P256,
            kdf: KdfParams::MINIMUM,
        },
        PASS,
        Settings::default(),
    )
    .await
    .expect("init");
    let server = kith_server::Server::bind(
        authority.clone(),
        kith_server::Options::new("127.0.0.1:0".parse().expect("addr")),
    )
    .await
    .expect("bind");
    let addr = server.local_addr().expect("addr");
    tokio::spawn(server.run(std::future::pending()));
    let root = authority.root_cert("cluster").expect("root");
    Env {
        _tmp: tempfile::tempdir().expect("tempdir"),
        clock,
        authority,
        addr,
        root,
    }
}

async fn join(env: &Env, token: &str, node: &str) -> (StatusCode, bytes::Bytes) {
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let body = JoinRequest {
        token: token.to_string(),
        node: Some(node.into()),
        csrs: vec![csr_for(&key, node, &[], Profile::Peer)],
        may_leave_out: Vec::new(),
    };
    env.public()
        .await
        .send(
            Method::POST,
            "/v1/join",
            Some(serde_json::to_vec(&body).expect("encode")),
        )
        .await
        .expect("transport")
}

async fn readyz(env: &Env) -> StatusCode {
    env.public()
        .await
        .send(Method::GET, "/readyz", None)
        .await
        .expect("transport")
        .0
}

fn serial_of(body: &[u8]) -> String {
    let r: IssueResponse = serde_json::from_slice(body).expect("an issue response");
    r.certificates[0].serial.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_answers_503_and_the_server_recovers_by_itself() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = Tmpfs::mount(&tmp.path().join("data"), "24m");
    let env = start(&mnt.dir).await;
    let token = env.token("worker", None, 500).await;

    let (st, body) = join(&env, &token, "before").await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let mut acknowledged = vec![serial_of(&body)];
    assert_eq!(readyz(&env).await, StatusCode::OK);

    let filler = mnt.dir.join("filler");
    assert!(fill(&filler) > 0, "the filler wrote nothing");

    // Joins until one fails: a database file may still hold a few free
    // pages, but none may fail with anything other than 503.
    let mut refused = None;
    for i in 0..200 {
        let (st, body) = join(&env, &token, &format!("full-{i}")).await;
        if st == StatusCode::OK {
            acknowledged.push(serial_of(&body));
            continue;
        }
        let e: ErrorBody = serde_json::from_slice(&body).expect("a JSON error body");
        assert_eq!(
            (st, e.code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
            "join {i} on a full disk: {}",
            e.message
        );
        refused = Some(e.message);
        break;
    }
    let message = refused.expect("200 joins on a full 24 MiB filesystem all succeeded");
    assert!(
        message.contains("full"),
        "the message should say the disk is full: {message}"
    );
    assert!(
        !message.contains(mnt.dir.to_str().expect("utf-8 path")),
        "the answer must not leak server paths: {message}"
    );
    assert_eq!(
        readyz(&env).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "/readyz must say not ready while writes fail"
    );
    // A direct write fails the same way, and a few seconds of retries
    // (the store probes for space) do not make it lie.
    let err = env
        .authority
        .store()
        .put("probe/while-full", vec![0; 64 << 10])
        .await
        .expect_err("a 64 KiB write on a full disk");
    assert!(
        matches!(err, kith_store::Error::Unavailable(_)),
        "expected Unavailable, got {err:?}"
    );
    tokio::time::sleep(StdDuration::from_secs(3)).await;
    assert_eq!(
        readyz(&env).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "/readyz must stay not ready while the disk is still full"
    );
    let (st, _) = join(&env, &token, "still-full").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "still full");

    // Space returns: no restart, the same server and store recover.
    std::fs::remove_file(&filler).expect("remove the filler");
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while readyz(&env).await != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "/readyz not ready 60 s after space returned"
        );
        tokio::time::sleep(StdDuration::from_millis(200)).await;
    }
    let (st, body) = join(&env, &token, "after").await;
    assert_eq!(
        st,
        StatusCode::OK,
        "a join after recovery: {}",
        String::from_utf8_lossy(&body)
    );
    acknowledged.push(serial_of(&body));
    env.authority
        .store()
        .put("probe/after", vec![1; 64 << 10])
        .await
        .expect("a direct write after recovery");

    // Everything acknowledged is stored.
    for serial in &acknowledged {
        kith_authority::find_certificate(
            &**env.authority.store(),
            &Serial::parse(serial).expect("serial"),
        )
        .await
        .unwrap_or_else(|e| panic!("acknowledged certificate {serial} is missing: {e}"));
    }
}
