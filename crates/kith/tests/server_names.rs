//! `kith serve` names itself (`kith-server-<host>` or `--server-name`),
//! `kith revoke --server-name` revokes one server, a revoked server stops,
//! and a retired name never serves again. Real `kith serve` processes.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The documented default: `kith-server-` and this host's name, lowercased,
/// every character but a-z, 0-9 and '-' turned into '-', '-' trimmed from
/// both ends, cut to 51 characters and trimmed again.
fn expected_default_name() -> String {
    let out = Command::new("uname").arg("-n").output().expect("uname -n");
    let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let reduced: String = host
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    let t = reduced.trim_matches('-');
    let cut = t[..t.len().min(51)].trim_end_matches('-');
    if cut.is_empty() {
        "kith-server".into()
    } else {
        format!("kith-server-{cut}")
    }
}

/// `kith serve` with extra arguments and environment; the process and the
/// `server.json` it wrote, once written. Its stderr goes to `log`.
fn serve(ca: &Ca, extra: &[&str], env: &[(&str, &str)], log: &Path) -> (Proc, Value) {
    let info = ca.data.join("server.json");
    let _ = std::fs::remove_file(&info);
    let log = std::fs::File::create(log).expect("log file");
    let mut cmd = kith(&ca.data);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
        .arg(&ca.pass)
        .args(extra)
        .env_remove("KITH_SERVER_NAME")
        .stdout(Stdio::null())
        .stderr(log);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn kith serve");
    let pid = u64::from(child.id());
    let mut proc = Proc(child);
    let v = wait_for("server.json", Duration::from_secs(60), || {
        if let Ok(Some(status)) = proc.0.try_wait() {
            panic!("kith serve {extra:?} exited early: {status}");
        }
        let v: Value = serde_json::from_slice(&std::fs::read(&info).ok()?).ok()?;
        (v["pid"].as_u64() == Some(pid)).then_some(v)
    });
    (proc, v)
}

/// Run a `kith serve` that must refuse to start: its output, or a panic if
/// it is still running after a minute (it is killed then).
fn serve_refused(ca: &Ca, extra: &[&str]) -> Output {
    let mut child = kith(&ca.data)
        .args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
        .arg(&ca.pass)
        .args(extra)
        .env_remove("KITH_SERVER_NAME")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kith serve");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kith serve {extra:?} should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

fn json(ca: &Ca, args: &[&str]) -> Value {
    serde_json::from_str(&ca.ok(args)).unwrap_or_else(|e| panic!("kith {args:?}: not JSON: {e}"))
}

fn server_state(servers: &Value, name: &str) -> String {
    servers
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {servers}"))["state"]
        .as_str()
        .expect("state")
        .to_string()
}

#[test]
fn servers_are_named_revoked_one_by_one_and_retired() {
    let ca = Ca::init("p256");
    let default = expected_default_name();

    // Default name: from the host name, in server.json, the log and status.
    let log1 = ca.path("serve-1.log");
    let (first, info) = serve(&ca, &[], &[], &log1);
    assert_eq!(info["server_name"], default.as_str(), "{info}");
    let status = ca.ok(&["status"]);
    assert!(
        status.contains(&format!("answered by server {default}")),
        "{status}"
    );
    let log = std::fs::read_to_string(&log1).expect("log");
    assert!(log.contains(&format!("server {default} serving")), "{log}");
    drop(first);

    // A second server on the same data directory, named by KITH_SERVER_NAME
    // and checking itself every second.
    let log2 = ca.path("serve-2.log");
    let (mut second, info) = serve(
        &ca,
        &["--maintenance-interval", "1s"],
        &[("KITH_SERVER_NAME", "kith-server-a")],
        &log2,
    );
    assert_eq!(info["server_name"], "kith-server-a");
    let servers = json(&ca, &["server", "ls", "--json"]);
    assert_eq!(server_state(&servers, &default), "live");
    assert_eq!(server_state(&servers, "kith-server-a"), "live");
    let text = ca.ok(&["server", "ls"]);
    assert!(
        text.contains("kith-server-a") && text.contains(&default),
        "{text}"
    );

    // Revoke the first server (not running) through the second.
    let r = json(
        &ca,
        &[
            "revoke",
            "--server-name",
            &default,
            "--reason",
            "key-compromise",
            "--json",
        ],
    );
    let revoked = r["revoked"].as_array().expect("revoked");
    assert_eq!(revoked.len(), 1, "{r}");
    assert_eq!(revoked[0]["node"], default.as_str());
    let servers = json(&ca, &["server", "ls", "--json"]);
    assert_eq!(server_state(&servers, &default), "revoked");
    assert_eq!(server_state(&servers, "kith-server-a"), "live");
    let listed = servers
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["name"] == default.as_str())
        .expect("listed")["serial"]
        .clone();
    assert_eq!(
        listed, revoked[0]["serial"],
        "the listing shows the revoked certificate"
    );
    // Unknown servers and nodes are not servers.
    ca.fails_with(
        &["revoke", "--server-name", "kith-server-zz"],
        "unknown-server",
    );
    let out = ca.run(&["revoke", "--server-name", &default, "--node", "n"]);
    assert!(!out.status.success(), "--node and --server-name conflict");

    // The second server revokes itself: it notices at its next tick and
    // stops with an error and a non-zero exit, not renewing past it.
    ca.ok(&["revoke", "--server-name", "kith-server-a"]);
    let start = Instant::now();
    let status = loop {
        if let Some(st) = second.0.try_wait().expect("wait") {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the revoked server did not stop"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "a revoked server exits 1");
    let log = std::fs::read_to_string(&log2).expect("log");
    assert!(log.contains("error[server-name-retired]"), "{log}");
    assert!(
        !ca.data.join("server.json").exists(),
        "server.json is removed"
    );

    // Retired names never start again; the error names the fix.
    for extra in [&[][..], &["--server-name", "kith-server-a"][..]] {
        let out = serve_refused(&ca, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("error[server-name-retired]") && stderr.contains("--server-name"),
            "{extra:?}: {stderr}"
        );
    }
    // A name outside the server name space is refused before anything else.
    let out = serve_refused(&ca, &["--server-name", "node-1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error[invalid-name]"), "{stderr}");

    // A new name serves, on the same store.
    let (third, info) = serve(
        &ca,
        &["--server-name", "kith-server-b"],
        &[],
        &ca.path("serve-3.log"),
    );
    assert_eq!(info["server_name"], "kith-server-b");
    let servers = json(&ca, &["server", "ls", "--json"]);
    assert_eq!(server_state(&servers, "kith-server-a"), "revoked");
    assert_eq!(server_state(&servers, "kith-server-b"), "live");

    // Offline too (the server is gone; its server.json points nowhere).
    drop(third);
    let out = ca.ok(&["revoke", "--server-name", "kith-server-b"]);
    assert!(out.contains("(server kith-server-b, reason"), "{out}");
    let out = serve_refused(&ca, &["--server-name", "kith-server-b"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("error[server-name-retired]"),
        "retired offline too"
    );
}
