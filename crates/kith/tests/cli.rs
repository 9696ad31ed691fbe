//! The offline CLI end to end: passphrases, refusals, idempotent revocation,
//! file modes, verification, a second authority, and a kill -9 mid-issue.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::{Ca, PASS};

#[test]
fn passphrase_errors_are_clear_and_change_nothing() {
    let ca = Ca::init("p256");
    let wrong = ca.path("wrong");
    common::write_private(&wrong, b"not the right passphrase\n");
    let out = common::kith(&ca.data)
        .args(["cert", "issue", "n1", "--role", "worker"])
        .args([
            "--out",
            ca.path("nodes").to_str().expect("utf-8"),
            "--passphrase-file",
            wrong.to_str().expect("utf-8"),
        ])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("error[wrong-passphrase]"), "{stderr}");
    assert!(
        stderr.contains("hint:"),
        "a wrong passphrase says what to do: {stderr}"
    );
    assert!(!ca.path("nodes/n1").exists());

    // No passphrase at all, stdin not a terminal: a clear refusal, no prompt.
    let out = common::kith(&ca.data)
        .args(["crl", "--pem"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[passphrase-required]"));

    // KITH_PASSPHRASE works as well as the file.
    let out = common::kith(&ca.data)
        .args(["crl", "--pem"])
        .env("KITH_PASSPHRASE", PASS)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN X509 CRL-----"));
    assert_eq!(ca.certs().len(), 1, "only the admin credential");
}

#[test]
fn init_generates_a_passphrase_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("d");
    let run = |args: &[&str]| common::kith(&data).args(args).output().expect("run");
    let out = run(&[
        "init",
        "--cluster",
        "gen.example",
        "--kdf-memory-mib",
        "19",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let pass = v["generated_passphrase"]
        .as_str()
        .expect("a generated passphrase")
        .to_string();
    assert!(pass.len() >= 40, "{pass}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("warning"),
        "a plain warning goes with it"
    );
    let mode = std::fs::metadata(data.join("admin/key.pem"))
        .expect("admin key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let out = run(&[
        "init",
        "--cluster",
        "other.example",
        "--kdf-memory-mib",
        "19",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[already-initialized]"));
    let show = run(&["ca", "show", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(
        v["cluster"], "gen.example",
        "the first cluster is untouched"
    );

    // The generated passphrase unlocks the keys.
    let out = common::kith(&data)
        .args(["cert", "issue", "n1", "--role", "worker", "--out"])
        .arg(tmp.path().join("nodes"))
        .env("KITH_PASSPHRASE", &pass)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An unreadable passphrase file is an error, never a reason to generate one.
    let missing = tmp.path().join("no-such-file");
    let fresh = tmp.path().join("fresh");
    let out = common::kith(&fresh)
        .args(["init", "--cluster", "x.example", "--passphrase-file"])
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[io-error]"));
    assert!(!fresh.exists(), "nothing is created");

    // Not initialised elsewhere.
    let out = common::kith(&tmp.path().join("empty"))
        .args(["ca", "show"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[not-initialized]"));
}

#[test]
fn issue_revoke_verify_and_their_refusals() {
    let ca = Ca::init("p256");
    let nodes = ca.path("nodes");
    let nodes_s = nodes.to_str().expect("utf-8");
    let out = ca.ok(&[
        "cert", "issue", "n1", "n2", "--role", "worker", "--out", nodes_s, "--json",
    ]);
    let issued: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(issued.as_array().expect("array").len(), 2);
    for f in [
        "key.pem",
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "ca.pem",
        "identity.json",
    ] {
        assert!(nodes.join("n1").join(f).is_file(), "{f}");
    }
    let mode = std::fs::metadata(nodes.join("n1/key.pem"))
        .expect("key")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "key.pem is 0600");
    let id: serde_json::Value =
        serde_json::from_slice(&std::fs::read(nodes.join("n1/identity.json")).expect("read"))
            .expect("json");
    assert_eq!(
        (id["node"].as_str(), id["role"].as_str()),
        (Some("n1"), Some("worker"))
    );

    // Refusals that change nothing.
    ca.fails_with(
        &["cert", "issue", "n1", "--role", "worker", "--out", nodes_s],
        "exists",
    );
    ca.fails_with(
        &[
            "cert", "issue", "Bad_Name", "--role", "worker", "--out", nodes_s,
        ],
        "invalid-name",
    );
    ca.fails_with(
        &[
            "cert", "issue", "n3", "n3", "--role", "worker", "--out", nodes_s,
        ],
        "invalid-argument",
    );
    ca.fails_with(
        &[
            "cert",
            "issue",
            "n3",
            "--role",
            "worker",
            "--out",
            nodes_s,
            "--authority",
            "nope",
        ],
        "unknown-authority",
    );
    ca.fails_with(
        &["revoke", "00112233445566778899aabbccddeeff"],
        "unknown-certificate",
    );
    ca.fails_with(&["revoke", "--node", "ghost"], "unknown-node");
    assert_eq!(ca.certs().len(), 3, "admin + n1 + n2");

    // `cert inspect` prints a serial exactly as `cert issue` and `cert ls` do.
    let inspected: serde_json::Value = serde_json::from_str(&ca.ok(&[
        "cert",
        "inspect",
        nodes.join("n1/cert.pem").to_str().expect("utf-8"),
        "--json",
    ]))
    .expect("json");
    assert_eq!(inspected[0]["serial"], issued[0]["serial"]);

    let full = nodes.join("n1/fullchain.pem");
    let full_s = full.to_str().expect("utf-8");
    let ok = ca.ok(&[
        "cert",
        "verify",
        full_s,
        "--name",
        "n1",
        "--role",
        "worker",
        "--profile",
        "peer",
    ]);
    assert!(ok.starts_with("OK: n1"), "{ok}");
    ca.fails_with(
        &["cert", "verify", full_s, "--name", "n2"],
        "identity-mismatch",
    );
    ca.fails_with(
        &[
            "cert",
            "verify",
            nodes.join("n1/ca.pem").to_str().expect("utf-8"),
        ],
        "verify-failed",
    );

    // Revoke by node, then again: the second is a no-op that keeps the first reason.
    let first: serde_json::Value = serde_json::from_str(&ca.ok(&[
        "revoke",
        "--node",
        "n1",
        "--reason",
        "key-compromise",
        "--json",
    ]))
    .expect("json");
    assert_eq!(first["results"][0]["already_revoked"], false);
    let serial = first["results"][0]["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    let again: serde_json::Value =
        serde_json::from_str(&ca.ok(&["revoke", &serial, "--reason", "superseded", "--json"]))
            .expect("json");
    assert_eq!(again["results"][0]["already_revoked"], true);
    assert_eq!(
        again["results"][0]["reason"], "key-compromise",
        "the first reason stands"
    );
    assert_eq!(
        again["crl_numbers"][0]["number"], first["crl_numbers"][0]["number"],
        "a no-op publishes no new CRL"
    );
    ca.fails_with(&["cert", "verify", full_s], "revoked");
    let v: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &ca.run(&["cert", "verify", full_s, "--json"]).stdout,
    ))
    .expect("json");
    assert_eq!(
        (v["valid"].as_bool(), v["revoked"].as_bool()),
        (Some(false), Some(true))
    );

    // CRL numbers strictly increase.
    let n1 = crl_number(&ca);
    ca.ok(&[
        "crl",
        "--force-new",
        "--pem",
        "--out",
        ca.path("c.pem").to_str().expect("utf-8"),
    ]);
    let n2 = crl_number(&ca);
    assert!(n2 > n1, "{n2} > {n1}");

    // inspect shows public parts only.
    let out = ca.ok(&[
        "cert",
        "inspect",
        nodes.join("n2/key.pem").to_str().expect("utf-8"),
        "--json",
    ]);
    let key_pem = std::fs::read_to_string(nodes.join("n2/key.pem")).expect("read");
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(
        !out.contains(&body[10..40]),
        "inspect must not print private key material"
    );
    assert!(out.contains("spki_sha256"));
}

fn crl_number(ca: &Ca) -> u64 {
    let crl = ca.path("c.pem");
    if !crl.exists() {
        ca.ok(&["crl", "--pem", "--out", crl.to_str().expect("utf-8")]);
    }
    let v: serde_json::Value =
        serde_json::from_str(&ca.ok(&["cert", "inspect", crl.to_str().expect("utf-8"), "--json"]))
            .expect("json");
    u64::from_str_radix(v[0]["number"].as_str().expect("number"), 16).expect("hex")
}

#[test]
fn a_second_authority_is_kept_apart() {
    let ca = Ca::init("p256");
    ca.ok(&["authority", "add", "api", "--key-type", "p384"]);
    let nodes = ca.path("nodes");
    ca.ok(&[
        "cert",
        "issue",
        "gw",
        "--role",
        "api",
        "--authority",
        "api",
        "--profile",
        "client",
        "--out",
        nodes.to_str().expect("utf-8"),
    ]);
    let node_ca = std::fs::read_to_string(nodes.join("gw/ca.pem")).expect("read");
    assert_eq!(
        node_ca.matches("BEGIN CERTIFICATE").count(),
        1,
        "a node trusts only its authority's root"
    );
    let bundle = std::fs::read_to_string(ca.data.join("ca.pem")).expect("read");
    assert_eq!(
        bundle.matches("BEGIN CERTIFICATE").count(),
        2,
        "the data dir bundle has both roots"
    );
    let (ok, out) = common::openssl(&[
        "verify",
        "-CAfile",
        ca.data.join("admin/ca.pem").to_str().expect("utf-8"),
        "-untrusted",
        nodes.join("gw/chain.pem").to_str().expect("utf-8"),
        nodes.join("gw/cert.pem").to_str().expect("utf-8"),
    ]);
    assert!(
        !ok,
        "an api certificate must not chain to the cluster root: {out}"
    );
    ca.fails_with(&["authority", "add", "api"], "authority-exists");
}

#[test]
fn kill_dash_nine_mid_issue_leaves_a_consistent_store_and_no_torn_files() {
    let ca = Ca::init("p256");
    let nodes = ca.path("nodes");
    let names: Vec<String> = (0..3000).map(|i| format!("k{i}")).collect();
    let mut cmd = common::kith(&ca.data);
    cmd.args(["cert", "issue", "--role", "worker", "--out"])
        .arg(&nodes)
        .arg("--passphrase-file")
        .arg(&ca.pass)
        .args(&names)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    // Kill it once some, but not all, certificates are being recorded.
    std::thread::sleep(std::time::Duration::from_millis(900));
    child.kill().expect("kill -9"); // SIGKILL
    let _ = child.wait();

    // The store opens, and every recorded certificate is whole.
    let certs = ca.certs();
    for c in &certs {
        assert!(c["serial"].as_str().is_some_and(|s| s.len() == 32), "{c}");
    }
    // Node folders hold either nothing visible or all six files, never a torn one.
    if nodes.exists() {
        for entry in std::fs::read_dir(&nodes).expect("read_dir") {
            let dir = entry.expect("entry").path();
            let visible: Vec<_> = std::fs::read_dir(&dir)
                .expect("read_dir")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| !n.starts_with('.'))
                .collect();
            for f in &visible {
                let text = std::fs::read_to_string(dir.join(f)).expect("read");
                assert!(
                    text.trim_end().ends_with("-----") || text.trim_end().ends_with('}'),
                    "{} is torn",
                    dir.join(f).display()
                );
            }
        }
    }
    // And the CA keeps working: re-issuing over the interrupted run succeeds.
    ca.ok(&[
        "cert",
        "issue",
        "k0",
        "k1",
        "--role",
        "worker",
        "--force",
        "--out",
        nodes.to_str().expect("utf-8"),
    ]);
}
