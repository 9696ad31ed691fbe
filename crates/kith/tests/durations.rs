//! Absurd durations on the command line (issue 9 §6): every duration flag is
//! bounded where it is parsed, and a refusal is `error[invalid-argument]`,
//! exit 1, naming the flag and the limit: never a panic (exit 101), never a
//! CA that starts and then panics on every renewal, never a change to the store.
//!
//! Before the fix, `token create --ttl 999999999999999999d` panicked while
//! parsing (an overflow building the duration), `cert issue --ttl
//! 100000000d` panicked signing (a date past year 9999), and `serve
//! --renew-grace 100000000d` started and then panicked on every renewal.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{kith, Ca, Proc};

/// Refused as it should be: exit 1, `error[invalid-argument]`, the flag named, no panic.
fn assert_refused(what: &str, out: &Output, flag: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(out.status.code(), Some(101), "{what}: panicked:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panicked:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "{what}: exit status:\n{stderr}");
    assert!(
        stderr.contains("error[invalid-argument]") && stderr.contains(flag),
        "{what}: expected error[invalid-argument] naming {flag}:\n{stderr}"
    );
    stderr
}

#[test]
fn token_create_with_a_huge_ttl_is_refused() {
    let ca = Ca::init("p256");
    for ttl in ["999999999999999999d", "100000000d", "31d"] {
        let out = ca.run(&["token", "create", "--role", "worker", "--ttl", ttl]);
        let stderr = assert_refused(&format!("token create --ttl {ttl}"), &out, "--ttl");
        assert!(stderr.contains("at most 30 days"), "{stderr}");
    }
}

#[test]
fn cert_issue_with_a_huge_ttl_is_refused_and_issues_nothing() {
    let ca = Ca::init("p256");
    let before = ca.certs().len();
    let out_dir = ca.path("nodes");
    for ttl in ["100000000d", "999999999999999999d", "1826d"] {
        let out = ca.run(&[
            "cert",
            "issue",
            "n1",
            "--role",
            "worker",
            "--out",
            out_dir.to_str().expect("utf-8"),
            "--ttl",
            ttl,
        ]);
        let stderr = assert_refused(&format!("cert issue --ttl {ttl}"), &out, "--ttl");
        assert!(stderr.contains("at most 1825 days"), "{stderr}");
        assert!(!out_dir.join("n1").exists(), "no node folder written");
    }
    assert_eq!(ca.certs().len(), before, "nothing issued");
    // The longest allowed lifetime still issues.
    ca.ok(&[
        "cert",
        "issue",
        "n1",
        "--role",
        "worker",
        "--out",
        out_dir.to_str().expect("utf-8"),
        "--ttl",
        "1825d",
    ]);
}

#[test]
fn serve_with_a_huge_renew_grace_refuses_to_start() {
    let ca = Ca::init("p256");
    let log = ca.path("serve.log");
    let child = kith(&ca.data)
        .args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
        .arg(&ca.pass)
        .args(["--renew-grace", "100000000d"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn kith serve");
    let mut proc = Proc(child);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = proc.0.try_wait().expect("wait") {
            break s;
        }
        assert!(
            !ca.data.join("server.json").exists(),
            "kith serve started with a grace window of 100000000 days"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "kith serve neither refused nor started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = Output {
        status,
        stdout: Vec::new(),
        stderr: std::fs::read(&log).expect("read log"),
    };
    let stderr = assert_refused("serve --renew-grace 100000000d", &out, "--renew-grace");
    assert!(stderr.contains("at most 365 days"), "{stderr}");
}

/// Every duration flag, with values that overflow, are negative, zero, or
/// not durations at all.
#[test]
fn every_duration_flag_refuses_absurd_values() {
    let ca = Ca::init("p256");
    let values = [
        "999999999999999999d",
        "9223372036854775807s",
        "9223372036854775808s",
        "99999999999999999999999999w",
        "100000000d",
        "0d",
        "0s",
        "-1d",
        "+1d",
        "1.5d",
        "1e9d",
        "d",
        "",
        " ",
        "12",
        "1dd",
        "1 d",
        "1y",
        "\u{0661}d",
        "1\u{0301}d",
    ];
    let flags: &[(&[&str], &str)] = &[
        (&["token", "create", "--role", "worker"], "--ttl"),
        (&["cert", "issue", "n1", "--role", "worker"], "--ttl"),
        (
            &["cert", "sign", "x.csr", "--name", "n1", "--role", "w"],
            "--ttl",
        ),
        (&["settings", "set"], "--crl-validity"),
        (&["serve"], "--renew-grace"),
        (&["agent", "--dir", "nowhere"], "--refresh"),
    ];
    let mut cases = 0;
    for (args, flag) in flags {
        for value in values {
            let out = kith(&ca.data)
                .args(*args)
                .arg(format!("{flag}={value}"))
                .output()
                .expect("run kith");
            assert_refused(&format!("{args:?} {flag}={value:?}"), &out, flag);
            cases += 1;
        }
    }
    assert_eq!(cases, flags.len() * values.len());
}
