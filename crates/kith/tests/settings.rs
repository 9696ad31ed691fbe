//! `kith settings`: the settings every replica shares (CRL validity,
//! largest secret, versions kept). Offline it works on the store with the
//! passphrase; with `kith serve` running the same command goes through the
//! admin API (no passphrase, and the server holds the store); the server
//! applies a change at once: the CRL it serves, the secrets it accepts.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{kith, openssl, start_server, tool, write_private, Ca};
use serde_json::Value;

/// `kith settings ARGS`, with the CA's passphrase file when `pass`.
fn settings(ca: &Ca, args: &[&str], pass: bool) -> Output {
    let mut cmd = kith(&ca.data);
    cmd.arg("settings").args(args);
    if pass {
        cmd.arg("--passphrase-file").arg(&ca.pass);
    }
    cmd.output().expect("run kith settings")
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn fails(what: &str, out: Output, code: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{what}: exit status\n{stderr}");
    assert!(
        stderr.contains(&format!("error[{code}]")),
        "{what}: expected error[{code}]:\n{stderr}"
    );
    stderr
}

/// `settings show --json`, parsed.
fn show(ca: &Ca) -> Value {
    serde_json::from_str(&ok(
        "settings show",
        settings(ca, &["show", "--json"], false),
    ))
    .expect("settings JSON")
}

fn values(crl: u64, max: u64, keep: u64) -> Value {
    serde_json::json!({
        "crl_validity_seconds": crl,
        "secret_max_bytes": max,
        "keep_versions": keep,
    })
}

/// curl with the operator credential: (status, body).
fn curl(ca: &Ca, method: &str, url: &str, body: Option<&str>) -> (u16, Vec<u8>) {
    let admin = ca.data.join("admin");
    let mut cmd = Command::new(tool("curl"));
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg("--cert")
        .arg(admin.join("fullchain.pem"))
        .arg("--key")
        .arg(admin.join("key.pem"))
        .arg("--cacert")
        .arg(ca.data.join("ca.pem"));
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data", b]);
    }
    let out = cmd.arg(url).output().expect("curl");
    assert!(out.status.success(), "curl {method} {url}: {out:?}");
    let split = out
        .stdout
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("status line");
    let code = std::str::from_utf8(&out.stdout[split + 1..])
        .expect("status")
        .parse()
        .expect("status");
    (code, out.stdout[..split].to_vec())
}

/// nextUpdate − thisUpdate of the CRL the server serves, read by openssl.
fn served_crl_validity(ca: &Ca, url: &str) -> time::Duration {
    let (status, der) = curl(ca, "GET", &format!("{url}/v1/crl/cluster"), None);
    assert_eq!(status, 200);
    let file = ca.path("served.crl");
    std::fs::write(&file, der).expect("write CRL");
    let path = file.to_str().expect("utf-8 path");
    let (good, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        path,
        "-noout",
        "-lastupdate",
        "-nextupdate",
    ]);
    assert!(good, "openssl crl: {text}");
    let date = |field: &str| -> time::PrimitiveDateTime {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .unwrap_or_else(|| panic!("no {field} in {text}"));
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        let format = time::macros::format_description!(
            "[month repr:short] [day padding:none] [hour]:[minute]:[second] [year] GMT"
        );
        time::PrimitiveDateTime::parse(&line, format).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    date("nextUpdate=") - date("lastUpdate=")
}

fn secret_put(ca: &Ca, name: &str, value: &[u8]) -> Output {
    let file = ca.path("value");
    write_private(&file, value);
    kith(&ca.data)
        .args(["secret", "put", name, "--from-file"])
        .arg(&file)
        .output()
        .expect("run kith secret put")
}

fn remove(p: &Path) {
    let _ = std::fs::remove_file(p);
}

#[test]
fn settings_offline_then_through_the_server() {
    let ca = Ca::init("p256");

    // Offline: the defaults, read without the passphrase.
    assert_eq!(show(&ca), values(604_800, 1 << 20, 10));
    let text = ok("settings show", settings(&ca, &["show"], false));
    assert!(text.contains("crl-validity     7d"), "{text}");
    assert!(
        text.contains("secret-max-size  1MiB (1048576 bytes)"),
        "{text}"
    );

    // A change offline needs the passphrase, like every offline change.
    fails(
        "settings set without a passphrase",
        settings(&ca, &["set", "--keep-versions", "5"], false),
        "passphrase-required",
    );
    let set = [
        "set",
        "--crl-validity",
        "3d",
        "--secret-max-size",
        "4MiB",
        "--keep-versions",
        "5",
    ];
    let text = ok("settings set", settings(&ca, &set, true));
    assert!(text.contains("crl-validity     3d"), "{text}");
    assert!(text.contains("keep-versions    5"), "{text}");
    assert_eq!(show(&ca), values(259_200, 4 << 20, 5));

    // Bad values: refused, naming the flag, nothing changed.
    for (args, flag) in [
        (&["set", "--keep-versions", "0"][..], "--keep-versions"),
        (&["set", "--keep-versions", "101"][..], "--keep-versions"),
        (
            &["set", "--secret-max-size", "17MiB"][..],
            "--secret-max-size",
        ),
        (&["set", "--secret-max-size", "0"][..], "--secret-max-size"),
        (&["set", "--crl-validity", "30m"][..], "--crl-validity"),
        (&["set", "--crl-validity", "366d"][..], "--crl-validity"),
    ] {
        let stderr = fails(
            &format!("{args:?}"),
            settings(&ca, args, true),
            "invalid-argument",
        );
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    fails(
        "settings set with nothing to set",
        settings(&ca, &["set"], true),
        "invalid-argument",
    );
    assert_eq!(show(&ca), values(259_200, 4 << 20, 5));

    // With a server running (it holds the store), the same commands go
    // through its admin API: no passphrase needed.
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    assert_eq!(show(&ca), values(259_200, 4 << 20, 5));
    assert_eq!(served_crl_validity(&ca, &url), time::Duration::days(3));
    // The server's body limit follows the setting: 3 MiB is accepted (the
    // default 1 MiB would refuse it).
    ok(
        "a 3 MiB secret",
        secret_put(&ca, "big", &vec![b'b'; 3 << 20]),
    );
    let out = ok(
        "settings set through the server",
        settings(
            &ca,
            &[
                "set",
                "--crl-validity",
                "1d",
                "--secret-max-size",
                "1K",
                "--keep-versions",
                "2",
                "--json",
            ],
            false,
        ),
    );
    let answer: Value = serde_json::from_str(&out).expect("settings set --json");
    assert_eq!(answer, values(86_400, 1024, 2));
    assert_eq!(show(&ca), values(86_400, 1024, 2));

    // In effect at once: the CRL served is signed with the new validity,
    // the secret limit refuses one byte more, two versions are kept.
    assert_eq!(served_crl_validity(&ca, &url), time::Duration::days(1));
    fails(
        "a secret over the new limit",
        secret_put(&ca, "api-key", &[b'x'; 1025]),
        "secret-too-large",
    );
    // And the body limit shrank with it: the server reads no more than the
    // setting allows (with room for base64 and the JSON around it).
    fails(
        "a body far over the new limit",
        secret_put(&ca, "api-key", &vec![b'x'; 100 << 10]),
        "body-too-large",
    );
    // What was stored under the old limit is still there, whole.
    let big = kith(&ca.data)
        .args(["secret", "get", "big"])
        .output()
        .expect("run kith secret get");
    assert_eq!(ok("secret get big", big).len(), 3 << 20);
    for _ in 0..3 {
        ok("secret put", secret_put(&ca, "api-key", &[b'x'; 1024]));
    }
    let history: Value = serde_json::from_str(&ok(
        "secret history",
        kith(&ca.data)
            .args(["secret", "history", "api-key", "--json"])
            .output()
            .expect("run kith"),
    ))
    .expect("history JSON");
    assert_eq!(history.as_array().expect("array").len(), 2, "{history}");

    // The route itself: bad values and unknown fields refused, nothing changed.
    let api = format!("{url}/v1/admin/settings");
    for (body, code) in [
        (r#"{"keep_versions": 0}"#, "invalid-argument"),
        (r#"{"crl_validity_seconds": 60}"#, "invalid-argument"),
        (
            r#"{"secret_max_bytes": 18446744073709551615}"#,
            "invalid-argument",
        ),
        (r#"{}"#, "invalid-argument"),
        (r#"{"keep_version": 3}"#, "malformed-request"),
    ] {
        let (status, answer) = curl(&ca, "PATCH", &api, Some(body));
        let e: Value = serde_json::from_slice(&answer).expect("error JSON");
        assert_eq!(
            (status, e["code"].as_str()),
            (400, Some(code)),
            "{body}: {e}"
        );
    }
    let (status, answer) = curl(&ca, "GET", &api, None);
    assert_eq!(status, 200);
    let now: Value = serde_json::from_slice(&answer).expect("settings JSON");
    assert_eq!(now, values(86_400, 1024, 2));

    // A server that is gone (killed: its server.json stays behind): offline again.
    drop(server);
    assert!(ca.data.join("server.json").exists());
    assert_eq!(show(&ca), values(86_400, 1024, 2));
    ok(
        "settings set offline again",
        settings(&ca, &["set", "--secret-max-size", "1MiB"], true),
    );
    assert_eq!(show(&ca), values(86_400, 1 << 20, 2));
    remove(&ca.path("value"));
    remove(&ca.path("served.crl"));
}

#[test]
fn the_removed_per_process_flags_are_gone() {
    let ca = Ca::init("p256");
    for args in [
        &["crl", "--pem", "--validity", "3d"][..],
        &["revoke", "0123", "--crl-validity", "3d"][..],
        &["serve", "--secret-max-size", "4M"][..],
    ] {
        let out = kith(&ca.data).args(args).output().expect("run kith");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("unexpected argument"), "{args:?}: {stderr}");
    }
}
