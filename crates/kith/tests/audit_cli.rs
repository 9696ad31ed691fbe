//! The audit trail end to end with real processes: operations through a
//! running server are recorded with the operator's or node's identity and
//! the request id (the client's `x-request-id`, answered back), `kith audit
//! ls` filters through the server and offline, `kith audit verify` exits 0
//! on an untouched store and non-zero, naming the record, after the store
//! was edited offline, and `kith serve --audit-log` writes JSON lines.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{kith, start_server_with, tool, Ca};
use serde_json::Value;

/// curl with the operator's credential: (status, response headers, body).
fn admin_curl(
    ca: &Ca,
    method: &str,
    url: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String, Value) {
    let cred = ca.data.join("admin");
    let head = ca.path("curl-headers");
    let mut cmd = Command::new(tool("curl"));
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "-D"])
        .arg(&head)
        .arg("--cert")
        .arg(cred.join("fullchain.pem"))
        .arg("--key")
        .arg(cred.join("key.pem"))
        .arg("--cacert")
        .arg(ca.data.join("ca.pem"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data", b]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, code) = text.rsplit_once('\n').expect("status line");
    let headers = std::fs::read_to_string(&head)
        .expect("headers")
        .to_lowercase();
    let _ = std::fs::remove_file(&head);
    (
        code.parse().expect("status"),
        headers,
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

/// The value of header `name` in curl's dump.
fn header<'a>(dump: &'a str, name: &str) -> Option<&'a str> {
    dump.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

fn records(page: &Value) -> Vec<Value> {
    page["records"].as_array().expect("records").clone()
}

fn find<'a>(recs: &'a [Value], action: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["action"] == action).collect()
}

fn pass_arg(ca: &Ca) -> String {
    ca.pass.display().to_string()
}

#[test]
fn operations_are_recorded_listed_verified_and_tampering_is_named() {
    let ca = Ca::init("p256");

    // Offline, before any server: init, by the local operator, in a local chain.
    let page = ca.json(&["audit", "ls", "--json"]);
    let recs = records(&page);
    let init = find(&recs, "init");
    assert_eq!(init.len(), 1, "{recs:#?}");
    assert_eq!(init[0]["actor"], "local-operator");
    assert!(init[0]["writer"]
        .as_str()
        .expect("writer")
        .starts_with("local-"));
    assert_eq!(init[0]["request_id"], Value::Null, "offline: no request");
    let out = ca.ok(&["audit", "verify", "--passphrase-file", &pass_arg(&ca)]);
    assert!(out.contains("audit trail verified"), "{out}");

    let log = ca.path("audit.jsonl");
    let (server, url) = start_server_with(
        &ca,
        "127.0.0.1:0",
        &ca.pass,
        &[
            "--server-name",
            "kith-server-a1",
            "--audit-log",
            &log.display().to_string(),
        ],
    );

    // A token minted with the client's request id: the answer names it.
    let (status, headers, body) = admin_curl(
        &ca,
        "POST",
        &format!("{url}/v1/admin/tokens"),
        &["x-request-id: audit-test-42"],
        Some(r#"{"role":"worker"}"#),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(header(&headers, "x-request-id"), Some("audit-test-42"));
    let token = body["token"].as_str().expect("token").to_string();
    // A request id that is not short and plain is replaced, not echoed.
    let (status, headers, _) = admin_curl(
        &ca,
        "GET",
        &format!("{url}/v1/admin/tokens"),
        &[&format!("x-request-id: {}", "x".repeat(65))],
        None,
    );
    assert_eq!(status, 200);
    let replaced = header(&headers, "x-request-id").expect("a request id");
    assert_eq!(replaced.len(), 16, "{replaced}");
    assert!(replaced.bytes().all(|b| b.is_ascii_hexdigit()));

    // A node joins with it, renews, and is revoked; a secret is written.
    let node = ca.join(&url, &token, "web-1", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&node)
        .output()
        .expect("kith renew");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ca.ok(&["revoke", "--node", "web-1"]);

    // Through the server: each with who, what, on what and a request id.
    let recs = records(&ca.json(&["audit", "ls", "--json"]));
    let minted = find(&recs, "token-create");
    assert_eq!(minted.len(), 1, "{recs:#?}");
    assert_eq!(minted[0]["actor"], "admin:admin");
    assert_eq!(minted[0]["request_id"], "audit-test-42");
    assert_eq!(minted[0]["writer"], "kith-server-a1");
    assert_eq!(minted[0]["outcome"], "ok");
    let joined = find(&recs, "join");
    assert_eq!(joined.len(), 1);
    assert!(joined[0]["actor"]
        .as_str()
        .expect("actor")
        .starts_with("token:"));
    assert_eq!(joined[0]["subject"], "web-1");
    let renewed = find(&recs, "renew");
    assert_eq!(renewed.len(), 1);
    assert_eq!(renewed[0]["actor"], "node:web-1");
    let revoked = find(&recs, "revoke");
    assert!(!revoked.is_empty());
    assert_eq!(revoked[0]["actor"], "admin:admin");
    for r in [joined[0], renewed[0], revoked[0]] {
        let id = r["request_id"].as_str().expect("a request id");
        assert_eq!(id.len(), 16, "{r}");
    }
    assert_ne!(joined[0]["request_id"], renewed[0]["request_id"]);
    let unlocked = find(&recs, "unlock");
    assert_eq!(unlocked.len(), 1);
    assert_eq!(unlocked[0]["subject"], "kith-server-a1");
    // The token's secret is in no record.
    let secret = token.rsplit_once('.').expect("id.secret").1;
    assert!(!serde_json::to_string(&recs).expect("json").contains(secret));

    // Filters, through the server.
    let about = records(&ca.json(&["audit", "ls", "--node", "web-1", "--json"]));
    // Its join and renewal (a revocation's subject is the serial).
    assert_eq!(about.len(), 2, "{about:#?}");
    assert!(about
        .iter()
        .all(|r| r["subject"] == "web-1" || r["actor"] == "node:web-1"));
    let joins = records(&ca.json(&["audit", "ls", "--action", "join", "--json"]));
    assert_eq!(joins.len(), 1);
    let later = records(&ca.json(&["audit", "ls", "--since", "2999-01-01T00:00:00Z", "--json"]));
    assert!(later.is_empty());
    ca.fails_with(&["audit", "ls", "--since", "yesterday"], "invalid-argument");
    // A bad query straight to the API: a clear refusal.
    let (status, _, body) = admin_curl(
        &ca,
        "GET",
        &format!("{url}/v1/admin/audit?limit=0"),
        &[],
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid-argument"))
    );

    // Verified by the server.
    let out = ca.ok(&["audit", "verify"]);
    assert!(out.contains("audit trail verified"), "{out}");
    let report = ca.json(&["audit", "verify", "--json"]);
    assert_eq!(report["ok"], true);

    // The JSON-lines log: 0600, one line per record the server wrote.
    let mode = std::fs::metadata(&log).expect("log").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&log).expect("read log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let served = recs
        .iter()
        .filter(|r| r["writer"] == "kith-server-a1")
        .count();
    assert_eq!(lines.len(), served, "{text}");
    assert!(lines
        .iter()
        .any(|l| l["action"] == "token-create" && l["request_id"] == "audit-test-42"));
    assert!(!text.contains(secret));
    drop(server);

    // Edited offline: one byte of the join record's subject.
    let join_id = joined[0]["id"].as_str().expect("id").to_string();
    edit_record(&ca.data, &join_id);
    let out = kith(&ca.data)
        .args(["audit", "verify", "--passphrase-file", &pass_arg(&ca)])
        .output()
        .expect("kith audit verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[audit-chain-broken]"), "{stderr}");
    assert!(stderr.contains(&join_id), "the record is named: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("BROKEN {join_id}")), "{stdout}");
}

/// Change one byte of record `key`'s subject in the data directory's
/// store, with the backend itself (no kith process runs).
fn edit_record(data: &Path, key: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use kith_store::Store;
        let store = kith_store_redb::RedbStore::open(&data.join("kith.redb")).expect("open redb");
        let e = store.get(key).await.expect("get").expect("the record");
        let mut v = e.value.clone();
        let at = v
            .windows(10)
            .position(|s| s == b"\"subject\":")
            .expect("subject")
            + 11;
        v[at] ^= 0x01;
        store.put(key, v).await.expect("put");
    });
}

#[test]
fn an_audit_log_open_to_others_is_refused_before_anything_starts() {
    let ca = Ca::init("p256");
    let log = ca.path("audit.jsonl");
    std::fs::write(&log, b"").expect("write");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = kith(&ca.data)
        .args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
        .arg(&ca.pass)
        .arg("--audit-log")
        .arg(&log)
        .output()
        .expect("kith serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[insecure-permissions]"), "{stderr}");
    assert!(!ca.data.join("server.json").exists(), "nothing started");
}

/// The head of `writer`'s chain and its records' keys, read offline.
fn chain_state(data: &Path, writer: &str) -> (Vec<u8>, u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use kith_store::Store;
        let store = kith_store_redb::RedbStore::open(&data.join("kith.redb")).expect("open redb");
        let head = store
            .get(&format!("audithead/{writer}"))
            .await
            .expect("get")
            .expect("a head")
            .value;
        let seq = serde_json::from_slice::<Value>(&head).expect("head JSON")["seq"]
            .as_u64()
            .expect("seq");
        (head, seq)
    })
}

/// Put `head` back as `writer`'s head and delete its records past `seq`.
fn roll_back(data: &Path, writer: &str, head: Vec<u8>, seq: u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use kith_store::Store;
        let store = kith_store_redb::RedbStore::open(&data.join("kith.redb")).expect("open redb");
        for e in store.list(&format!("audit/{writer}/")).await.expect("list") {
            let n: u64 = e
                .key
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("seq");
            if n > seq {
                store.delete(&e.key).await.expect("delete");
            }
        }
        store
            .put(&format!("audithead/{writer}"), head)
            .await
            .expect("put");
    });
}

#[test]
fn a_head_rolled_back_with_its_tail_is_caught_by_the_shipped_log() {
    let ca = Ca::init("p256");
    let log = ca.path("audit.jsonl");
    let serve_args = [
        "--server-name",
        "kith-server-a1",
        "--audit-log",
        log.to_str().expect("UTF-8 path"),
    ];
    let (server, _) = start_server_with(&ca, "127.0.0.1:0", &ca.pass, &serve_args);
    ca.token("worker", &[]);
    drop(server);
    let (old_head, old_seq) = chain_state(&ca.data, "kith-server-a1");
    let (server, _) = start_server_with(&ca, "127.0.0.1:0", &ca.pass, &serve_args);
    ca.token("worker", &[]);
    ca.token("worker", &[]);
    drop(server);
    let (_, seq) = chain_state(&ca.data, "kith-server-a1");
    assert!(seq > old_seq + 2, "{seq} vs {old_seq}");
    // Someone with the store alone drops the later records and puts the
    // earlier head back: the store proves nothing wrong ...
    roll_back(&ca.data, "kith-server-a1", old_head, old_seq);
    let out = ca.ok(&["audit", "verify", "--passphrase-file", &pass_arg(&ca)]);
    assert!(out.contains("audit trail verified"), "{out}");
    // ... the log shipped outside it does, naming the first record lost.
    let out = kith(&ca.data)
        .args([
            "audit",
            "verify",
            "--passphrase-file",
            &pass_arg(&ca),
            "--anchor",
        ])
        .arg(&log)
        .output()
        .expect("kith audit verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[audit-chain-broken]"), "{stderr}");
    let first_lost = format!("audit/kith-server-a1/{:020}", old_seq + 1);
    assert!(stderr.contains(&first_lost), "{stderr}");
    // A file that is not an audit log is refused as such.
    let junk = ca.path("junk");
    std::fs::write(&junk, b"not json\n").expect("write");
    let out = kith(&ca.data)
        .args([
            "audit",
            "verify",
            "--passphrase-file",
            &pass_arg(&ca),
            "--anchor",
        ])
        .arg(&junk)
        .output()
        .expect("kith audit verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[malformed-input]"), "{stderr}");
}
