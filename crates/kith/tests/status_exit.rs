//! `kith status` as a cron job's check (issue 14): exit 0 when nothing needs
//! an operator; with a live node whose certificate expired (a real join with
//! a one-minute certificate, no agent to renew it) exit 11 and one line
//! `problem[nodes-expired]: ...` on stderr, and the `problems` field with
//! `--json`. The other kinds (a stale CRL, a CA inside its rotation window)
//! need the clock moved by months or a server that failed to re-sign: the
//! authority's tests drive those with the injected clock
//! (`kith-authority/tests/health.rs`); here their exit statuses are the
//! ones `kith status --help` documents.

mod common;

use std::time::Duration;

use common::{kith, start_server, wait_for, Ca};
use serde_json::Value;

fn status(ca: &Ca, json: bool) -> (Option<i32>, String, String) {
    let mut cmd = kith(&ca.data);
    cmd.arg("status");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("kith status");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn status_exits_11_for_live_nodes_with_expired_certificates_and_0_otherwise() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let (code, out, err) = status(&ca, false);
    assert_eq!(code, Some(0), "a fresh CA needs nobody:\n{out}\n{err}");
    assert!(!err.contains("problem["), "{err}");
    let (code, out, _) = status(&ca, true);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");

    // One node whose certificate lives a minute and nobody renews; another
    // that is revoked (its expiry is no one's problem).
    let short = ca.token("worker", &["--cert-ttl", "1m"]);
    ca.join(&url, &short, "short", &[]);
    let gone = ca.token("worker", &["--cert-ttl", "1m"]);
    ca.join(&url, &gone, "gone", &[]);
    ca.ok(&["revoke", "--node", "gone"]);
    let (code, out, err) = status(&ca, false);
    assert_eq!(code, Some(0), "not expired yet:\n{out}\n{err}");

    let (code, out, err) = wait_for(
        "the certificate to expire",
        Duration::from_secs(120),
        || {
            let r = status(&ca, false);
            (r.0 != Some(0)).then_some(r)
        },
    );
    assert_eq!(code, Some(11), "exit 11 for nodes-expired:\n{out}\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("problem[")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].starts_with("problem[nodes-expired]: 1 node(s)"),
        "{err}"
    );
    assert!(
        out.contains("cluster prod.example"),
        "the report still prints:\n{out}"
    );

    let (code, out, _) = status(&ca, true);
    assert_eq!(code, Some(11));
    let v: Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(v["problems"][0]["kind"], "nodes-expired", "{v}");
    assert!(v["problems"][0]["reason"]
        .as_str()
        .is_some_and(|r| !r.is_empty()));
    assert_eq!(v["problems"].as_array().map(Vec::len), Some(1), "{v}");

    // Removed, the node is nobody's problem any more.
    ca.ok(&["node", "rm", "short"]);
    let (code, out, err) = status(&ca, false);
    assert_eq!(code, Some(0), "{out}\n{err}");
}

#[test]
fn status_help_documents_every_exit_status() {
    let out = kith(std::path::Path::new("/nonexistent"))
        .args(["status", "--help"])
        .output()
        .expect("kith status --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Exit status",
        "10  crl-stale",
        "11  nodes-expired",
        "12  rotation-due",
        "13  ",
    ] {
        assert!(help.contains(needle), "{needle:?} missing:\n{help}");
    }
}
