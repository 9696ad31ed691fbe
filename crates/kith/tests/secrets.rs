//! Secrets end to end with real processes and real certificates: access by
//! role and name over mutual TLS, the agent's files, `kith exec`, and the
//! passphrase change and master key rotation across server restarts.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{kith, start_server, tool, wait_for, Ca, Proc};
use serde_json::Value;

/// kith with this CA's data dir and `stdin` fed in.
fn run_in(ca: &Ca, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = kith(&ca.data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kith");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("kith")
}

fn ok(ca: &Ca, args: &[&str]) -> Vec<u8> {
    let out = run_in(ca, args, b"");
    assert!(
        out.status.success(),
        "kith {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn fails(ca: &Ca, args: &[&str], code: &str) {
    let out = run_in(ca, args, b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "kith {args:?}: {stderr}");
    assert!(
        stderr.contains(&format!("error[{code}]")),
        "kith {args:?}: expected {code}:\n{stderr}"
    );
}

fn join(ca: &Ca, url: &str, role: &str, name: &str) -> PathBuf {
    ca.join_new(url, role, name)
}

/// curl with a node's (or the operator's) certificate: (status, body).
fn curl(ca: &Ca, cred: &Path, method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new(tool("curl"));
    cmd.args([
        "-sS",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "--cert",
    ])
    .arg(cred.join("fullchain.pem"))
    .arg("--key")
    .arg(cred.join("key.pem"))
    .arg("--cacert")
    .arg(ca.data.join("ca.pem"));
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data", b]);
    }
    let out = cmd.arg(url).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, code) = text.rsplit_once('\n').expect("status line");
    (
        code.parse().expect("status"),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

#[test]
fn secrets_by_policy_agent_files_exec_and_vault_operations() {
    let ca = Ca::init("p256");
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let w1 = join(&ca, &url, "worker", "w-1");
    let w2 = join(&ca, &url, "worker", "w-2");
    let d1 = join(&ca, &url, "db", "d-1");
    let admin = ca.data.join("admin");

    // An operator writes; values come from stdin byte for byte.
    let out = run_in(
        &ca,
        &[
            "secret",
            "put",
            "db-password",
            "--allow-role",
            "worker",
            "--description",
            "primary DB",
            "--json",
        ],
        b"s3cret\x00\xffbinary",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("put JSON");
    assert_eq!(v["latest"], 1);
    let out = run_in(&ca, &["secret", "put", "api-key"], b"admin-eyes-only");
    assert!(out.status.success());

    // Allowed role reads; other role 403; admin reads all; node cannot write.
    let node_get = |dir: &Path, name: &str| {
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["secret", "get", name, "--dir"])
            .arg(dir)
            .output()
            .expect("secret get")
    };
    let out = node_get(&w1, "db-password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"s3cret\x00\xffbinary");
    let out = node_get(&d1, "db-password");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[secret-forbidden]"));
    let (status, body) = curl(
        &ca,
        &d1,
        "GET",
        &format!("{url}/v1/secrets/db-password"),
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("secret-forbidden"))
    );
    let (status, body) = curl(&ca, &w1, "GET", &format!("{url}/v1/secrets/api-key"), None);
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("secret-forbidden"))
    );
    assert_eq!(ok(&ca, &["secret", "get", "api-key"]), b"admin-eyes-only");
    let (status, body) = curl(
        &ca,
        &admin,
        "GET",
        &format!("{url}/v1/secrets/db-password"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = curl(
        &ca,
        &w1,
        "PUT",
        &format!("{url}/v1/admin/secrets/db-password"),
        Some(r#"{"value":"aGk="}"#),
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("admin-required"))
    );
    // Listing never shows values.
    let listed = String::from_utf8(ok(&ca, &["secret", "ls", "--json"])).expect("utf-8");
    assert!(
        listed.contains("db-password")
            && !listed.contains("s3cret")
            && !listed.contains("admin-eyes-only")
    );

    // The agent delivers to a private directory, 0400, and an update within one refresh.
    let public_dir = ca.path("public-secrets");
    std::fs::create_dir(&public_dir).expect("mkdir");
    std::fs::set_permissions(&public_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["agent", "--secrets", "db-password", "--secrets-dir"])
        .arg(&public_dir)
        .arg("--dir")
        .arg(&w2)
        .output()
        .expect("agent");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("group or others"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secrets_dir = ca.path("secrets");
    let _agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args([
                "agent",
                "--refresh",
                "1s",
                "--secrets",
                "db-password",
                "--secrets-dir",
            ])
            .arg(&secrets_dir)
            .arg("--dir")
            .arg(&w2)
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    let file = secrets_dir.join("db-password");
    wait_for("the secret file", Duration::from_secs(20), || {
        (std::fs::read(&file).ok()? == b"s3cret\x00\xffbinary").then_some(())
    });
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);
    let dir_mode = std::fs::metadata(&secrets_dir)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
    let out = run_in(
        &ca,
        &["secret", "put", "db-password", "--if-version", "1"],
        b"rotated-value",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    wait_for("the updated secret file", Duration::from_secs(10), || {
        (std::fs::read(&file).ok()? == b"rotated-value").then_some(())
    });
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "update took {:?} with --refresh 1s",
        t.elapsed()
    );
    assert_eq!(
        std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
        0o400
    );
    // A stale check-and-set write is refused.
    let out = run_in(
        &ca,
        &["secret", "put", "db-password", "--if-version", "1"],
        b"lost-update",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[secret-conflict]"));

    // kith exec: the secret in the child's environment only.
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["exec", "--dir"])
        .arg(&w1)
        .args([
            "--env",
            "DB_PASSWORD=db-password",
            "--",
            "sh",
            "-c",
            "printf '%s' \"$DB_PASSWORD\"",
        ])
        .output()
        .expect("exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"rotated-value");

    // History, version reads, removal of a version.
    let h: Value =
        serde_json::from_slice(&ok(&ca, &["secret", "history", "db-password", "--json"]))
            .expect("history");
    assert_eq!(h.as_array().map(Vec::len), Some(2));
    assert_eq!(
        ok(&ca, &["secret", "get", "db-password", "--version", "1"]),
        b"s3cret\x00\xffbinary"
    );
    ok(&ca, &["secret", "rm", "db-password", "--version", "1"]);
    fails(
        &ca,
        &["secret", "get", "db-password", "--version", "1"],
        "unknown-secret-version",
    );

    // A revoked node reads nothing.
    ok(&ca, &["revoke", "--node", "w-1"]);
    let (status, body) = curl(
        &ca,
        &w1,
        "GET",
        &format!("{url}/v1/secrets/db-password"),
        None,
    );
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("certificate-revoked"))
    );

    // Offline vault operations: stop the server, change the passphrase,
    // rotate the master key, restart with the new passphrase.
    drop(server);
    let new_pass = ca.path("new-pass");
    common::write_private(&new_pass, b"a different and long passphrase\n");
    let mut cmd = kith(&ca.data);
    let out = cmd
        .args([
            "passphrase",
            "change",
            "--kdf-memory-mib",
            "19",
            "--passphrase-file",
        ])
        .arg(&ca.pass)
        .arg("--new-passphrase-file")
        .arg(&new_pass)
        .output()
        .expect("passphrase change");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kith(&ca.data)
        .args(["vault", "rotate", "--json", "--passphrase-file"])
        .arg(&ca.pass)
        .output()
        .expect("rotate");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the old passphrase no longer opens the vault"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[wrong-passphrase]"));
    let out = kith(&ca.data)
        .args(["vault", "rotate", "--json", "--passphrase-file"])
        .arg(&new_pass)
        .output()
        .expect("rotate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("rotate JSON");
    assert_eq!(r["master_version"], 2);
    assert!(r["secret_versions"].as_u64() >= Some(2));
    let (_server, url2) = start_server(&ca, &format!("127.0.0.1:{port}"), &new_pass);
    assert_eq!(url2, url);
    assert_eq!(ok(&ca, &["secret", "get", "db-password"]), b"rotated-value");
    assert_eq!(ok(&ca, &["secret", "get", "api-key"]), b"admin-eyes-only");
    let w3 = join(&ca, &url, "worker", "w-3"); // the CA keys work after the rotation
    let out = node_get(&w3, "db-password");
    assert_eq!(out.stdout, b"rotated-value");
}
