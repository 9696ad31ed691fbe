//! Root rotation end to end, with real processes: `kith serve` with a
//! short maintenance interval, joined nodes with running agents, mTLS
//! traffic between two of them through kith-agent's `mtls` example the
//! whole time, `kith ca rotate --root`, `activate`, `finish`, `abort` and
//! `status`, joins with a token minted before the rotation (real
//! handshakes against the server's certificate), a node offline for the
//! whole rotation, and openssl judging every node's leaf at each phase and
//! the old root's CRL of a compromised rotation.
//!
//! Agents report the roots they trust and renew when the server asks: the
//! main test forces a step only past node-3, which is offline on purpose;
//! the compromised one lets the server's tick take every step by itself.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{mtls_example, openssl, tool, wait_for, Ca, Proc};
use serde_json::Value;

/// Start `kith serve` with `extra` flags; returns the process and its URL.
fn start_server(ca: &Ca, extra: &[&str]) -> (Proc, String) {
    common::start_server_with(ca, "127.0.0.1:0", &ca.pass, extra)
}

fn json(ca: &Ca, args: &[&str]) -> Value {
    ca.json(args)
}

/// `kith agent --refresh 1s` for the node in `dir`.
fn agent(dir: &Path) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["agent", "--refresh", "1s", "--dir"])
            .arg(dir)
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    )
}

fn renew(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(dir)
        .output()
        .expect("renew");
    assert!(
        out.status.success(),
        "renew {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The issuer of the certificate in `file`, as openssl prints it.
fn issuer_of(file: &Path) -> String {
    let (good, text) = openssl(&["x509", "-noout", "-issuer", "-in", &file.to_string_lossy()]);
    assert!(good, "openssl x509 {}: {text}", file.display());
    text.trim().to_string()
}

/// Whether an issuer openssl printed is the new root's intermediate.
fn under_new(issuer: &str) -> bool {
    issuer.ends_with("intermediate CA G2")
}

fn certs_in(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// `openssl verify` of the node's leaf against its `ca.pem` (and chain).
fn verify(dir: &Path) {
    let (good, text) = openssl(&[
        "verify",
        "-CAfile",
        &dir.join("ca.pem").to_string_lossy(),
        "-untrusted",
        &dir.join("chain.pem").to_string_lossy(),
        &dir.join("cert.pem").to_string_lossy(),
    ]);
    assert!(good, "openssl verify {}: {text}", dir.display());
}

fn verify_all(nodes: &[&PathBuf]) {
    for n in nodes {
        verify(n);
    }
}

/// The issuer of the leaf the server presents for `servername`, as
/// `openssl s_client` prints it.
fn server_leaf_issuer(url: &str, servername: &str) -> String {
    let addr = url.trim_start_matches("https://");
    let out = Command::new(tool("openssl"))
        .args(["s_client", "-connect", addr, "-servername", servername])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .skip_while(|l| !l.starts_with(" 0 s:"))
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every node the root rotation status lists, in any of its groups.
fn listed(root: &Value) -> Vec<String> {
    let mut all: Vec<String> = ["converged", "pending", "offline"]
        .iter()
        .flat_map(|k| names(&root[k]))
        .collect();
    all.sort();
    all
}

/// The pin a join token carries, hex.
fn token_pin(token: &str) -> String {
    let t = kith_api::JoinToken::parse(token).expect("a join token");
    t.pin.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn root_rotation_without_a_failed_handshake() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(
        &ca,
        &["--maintenance-interval", "1s", "--root-renew-spread", "3s"],
    );
    // Minted before the rotation: pins the old root; joins twice during it.
    let before = ca.token("worker", &["--uses", "5"]);
    let old_pin = token_pin(&before);
    let nodes: Vec<PathBuf> = (1..=3)
        .map(|i| ca.join(&url, &before, &format!("node-{i}"), &[]))
        .collect();
    let mut agents: Vec<Option<Proc>> = nodes.iter().map(|n| Some(agent(n))).collect();

    // node-1 serves mTLS; node-2 talks to it five times a second for the
    // whole rotation (each line of its output is one handshake).
    let mut example = Command::new(mtls_example())
        .args(["serve", "--dir"])
        .arg(&nodes[0])
        .args(["--listen", "127.0.0.1:0", "--role", "worker"])
        .stdout(Stdio::piped())
        .stderr(File::create(ca.path("mtls-serve.log")).expect("log"))
        .spawn()
        .expect("mtls serve");
    let mut first = String::new();
    let stdout = example.stdout.take().expect("piped stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first)
        .expect("listening line");
    let _example = Proc(example);
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .expect("listening on")
        .to_string();
    let traffic_log = ca.path("traffic.log");
    let traffic = Proc(
        Command::new(mtls_example())
            .args(["connect", "--dir"])
            .arg(&nodes[1])
            .args([
                "--to",
                &addr,
                "--name",
                "node-1.prod.example",
                "--count",
                "1000000",
                "--every-ms",
                "200",
            ])
            .stdout(File::create(&traffic_log).expect("traffic log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("mtls connect"),
    );
    let handshakes = || {
        let text = std::fs::read_to_string(&traffic_log).unwrap_or_default();
        let ok = text.lines().filter(|l| l.starts_with("ok ")).count();
        let failed: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("ok "))
            .map(String::from)
            .collect();
        (ok, failed)
    };
    // Where in the traffic log each step happened, for a failure message.
    let marks = std::cell::RefCell::new(Vec::<(String, usize)>::new());
    let mark = |what: &str| {
        let (ok, failed) = handshakes();
        marks
            .borrow_mut()
            .push((what.to_string(), ok + failed.len()));
    };
    let more_handshakes = |what: &str| {
        mark(what);
        let after = handshakes().0;
        wait_for(what, Duration::from_secs(60), || {
            (handshakes().0 >= after + 10).then_some(())
        });
    };
    more_handshakes("the first handshakes");

    // node-3 is offline for the whole rotation: it trusts the old root only.
    agents[2] = None;
    assert_eq!(certs_in(&nodes[2].join("ca.pem")), 1);

    // Prepare: both roots are trusted; the old intermediate still issues.
    mark("prepare");
    let prepared = json(&ca, &["ca", "rotate", "--root", "--json"]);
    assert_eq!(prepared["step"], "prepared", "{prepared}");
    let root = &prepared["status"]["root"];
    assert_eq!(root["phase"], "prepared", "{prepared}");
    assert_eq!(root["old_root_pin"], old_pin.as_str(), "{prepared}");
    let new_pin = root["new_root_pin"].as_str().expect("new pin").to_string();
    assert_ne!(new_pin, old_pin);
    assert_eq!(root["compromised"], false, "{prepared}");
    // A second start is refused, changing nothing.
    let err = ca.fails_with(&["ca", "rotate", "--root"], "rotation-not-ready");
    assert!(err.contains("prepared already"), "{err}");
    let status = json(&ca, &["ca", "rotate", "status", "--json"]);
    let root = &status[0]["root"];
    assert_eq!(root["phase"], "prepared", "{status}");
    assert_eq!(listed(root), ["node-1", "node-2", "node-3"], "{status}");
    assert!(names(&root["offline"]).contains(&"node-3".to_string()));
    let text = ca.ok(&["ca", "rotate", "status"]);
    assert!(
        text.contains("root rotation prepared") && text.contains("node-3"),
        "{text}"
    );
    // The running agents take the new root into ca.pem (vouched for by the
    // old one); every leaf still verifies.
    for n in &nodes[..2] {
        wait_for("both roots on the node", Duration::from_secs(30), || {
            (certs_in(&n.join("ca.pem")) == 2).then_some(())
        });
    }
    verify_all(&nodes.iter().collect::<Vec<_>>());
    // A token minted before the rotation joins now (the server answers the
    // old root's pin).
    let node4 = ca.join(&url, &before, "node-4", &[]);
    verify(&node4);
    more_handshakes("handshakes while prepared");

    // The running agents report that they trust both roots; node-3, offline,
    // holds the activation back (the tick would take it otherwise).
    wait_for(
        "the running nodes reported trusting both roots",
        Duration::from_secs(30),
        || {
            let status = json(&ca, &["ca", "rotate", "status", "--json"]);
            let root = &status[0]["root"];
            let converged = names(&root["converged"]);
            ["node-1", "node-2"]
                .iter()
                .all(|n| converged.contains(&n.to_string()))
                .then_some(())
        },
    );
    let status = json(&ca, &["ca", "rotate", "status", "--json"]);
    assert_eq!(status[0]["root"]["phase"], "prepared", "{status}");
    assert!(
        names(&status[0]["root"]["offline"]).contains(&"node-3".to_string()),
        "{status}"
    );
    // Activate: refused while a live node has not said it trusts the new
    // root (node-3 never will: it is offline); forced past it.
    let err = ca.fails_with(&["ca", "rotate", "activate"], "rotation-not-ready");
    assert!(err.contains("node-3"), "{err}");
    mark("activate");
    let activated = json(&ca, &["ca", "rotate", "activate", "--force", "--json"]);
    assert_eq!(activated["step"], "activated", "{activated}");
    assert_eq!(
        activated["status"]["root"]["phase"], "active",
        "{activated}"
    );
    assert!(
        names(&activated["status"]["root"]["left_behind"]).contains(&"node-3".to_string()),
        "{activated}"
    );
    // The server re-issues its own certificate under the new intermediate
    // at once, and answers the pin of either root.
    let old_sni = kith_api::pin_sni(&hex_pin(&old_pin));
    let new_sni = kith_api::pin_sni(&hex_pin(&new_pin));
    wait_for(
        "the server's certificate under the new intermediate",
        Duration::from_secs(30),
        || under_new(&server_leaf_issuer(&url, &old_sni)).then_some(()),
    );
    assert!(under_new(&server_leaf_issuer(&url, &new_sni)));
    // A token minted before the rotation still joins: the server's chain
    // reaches the old root through the cross-signed certificate.
    let node5 = ca.join(&url, &before, "node-5", &[]);
    assert!(under_new(&issuer_of(&node5.join("cert.pem"))));
    verify(&node5);

    // The server answers `renew_now` to the nodes still under the old
    // root (spread over --root-renew-spread) and their agents renew by
    // themselves; node-4 runs no agent and renews by hand.
    mark("agents renew");
    for n in &nodes[..2] {
        wait_for(
            "an agent renewed under the new root by itself",
            Duration::from_secs(60),
            || under_new(&issuer_of(&n.join("cert.pem"))).then_some(()),
        );
    }
    // Old and new leaves interoperate.
    more_handshakes("handshakes from leaves under the new root");
    verify_all(&[&nodes[0], &nodes[1], &nodes[2], &node4, &node5]);
    mark("renew node-4");
    renew(&node4);
    more_handshakes("handshakes between leaves under the new root");
    verify_all(&[&nodes[0], &nodes[1], &nodes[2], &node4, &node5]);
    let status = json(&ca, &["ca", "rotate", "status", "--json"]);
    let root = &status[0]["root"];
    assert_eq!(root["phase"], "active", "{status}");
    assert_eq!(
        listed(root),
        ["node-1", "node-2", "node-3", "node-4", "node-5"],
        "{status}"
    );
    for n in ["node-1", "node-2", "node-4", "node-5"] {
        assert!(
            names(&root["converged"]).contains(&n.to_string()),
            "{n}: {status}"
        );
    }
    assert!(
        root["waiting_for"].as_str().unwrap_or("").contains("renew"),
        "{status}"
    );

    // Finish: refused while node-3 holds no leaf under the new root; forced,
    // it is left behind.
    let err = ca.fails_with(&["ca", "rotate", "finish"], "rotation-not-ready");
    assert!(err.contains("node-3"), "{err}");
    mark("finish");
    let finished = json(&ca, &["ca", "rotate", "finish", "--force", "--json"]);
    assert_eq!(finished["step"], "finished", "{finished}");
    let root = &finished["status"]["root"];
    assert_eq!(root["phase"], "finished", "{finished}");
    assert!(root["other_root_until"].as_str().is_some(), "{finished}");
    assert!(
        root["waiting_for"]
            .as_str()
            .unwrap_or("")
            .contains("leaves the bundle"),
        "{finished}"
    );
    // New tokens pin the new root.
    let after = ca.token("worker", &[]);
    assert_eq!(token_pin(&after), new_pin);
    let node6 = ca.join(&url, &after, "node-6", &[]);
    verify(&node6);
    verify_all(&[&nodes[0], &nodes[1], &nodes[2], &node4, &node5]);

    // node-3 comes back: its agent reaches the server with the old root
    // alone, takes the new root into ca.pem, and renews (its leaf still
    // chains to the old root, which stays in the bundle).
    agents[2] = Some(agent(&nodes[2]));
    wait_for(
        "both roots on the returning node",
        Duration::from_secs(30),
        || (certs_in(&nodes[2].join("ca.pem")) == 2).then_some(()),
    );
    // Asked to renew (`renew_now`), its agent does so by itself.
    mark("node-3 renews");
    wait_for(
        "the returning node renewed under the new root by itself",
        Duration::from_secs(60),
        || under_new(&issuer_of(&nodes[2].join("cert.pem"))).then_some(()),
    );
    verify_all(&[&nodes[0], &nodes[1], &nodes[2], &node4, &node5, &node6]);
    more_handshakes("handshakes after the finish");

    drop(traffic);
    let (ok, failed) = handshakes();
    let log = std::fs::read_to_string(&traffic_log).unwrap_or_default();
    let first_failed = log.lines().position(|l| !l.starts_with("ok "));
    assert!(
        failed.is_empty(),
        "{} of {} handshakes failed during the rotation (the first is #{first_failed:?}; steps at {:?}): {failed:?}",
        failed.len(),
        ok + failed.len(),
        marks.borrow()
    );
    let refused = std::fs::read_to_string(ca.path("mtls-serve.log")).unwrap_or_default();
    assert!(
        !refused.contains("refused"),
        "node-1 refused a handshake: {refused}"
    );
    drop(agents);
}

fn hex_pin(hex: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex pin");
    }
    out
}

/// The roots `GET /v1/ca` serves for the default authority.
fn served_roots(ca: &Ca, url: &str) -> usize {
    // The operator's credential follows the rotation (every admin command
    // updates its ca.pem); the data directory's copy is the one `init` wrote.
    let out = Command::new(tool("curl"))
        .args(["-sS", "--cacert"])
        .arg(ca.data.join("admin").join("ca.pem"))
        .arg(format!("{url}/v1/ca"))
        .output()
        .expect("curl");
    let v: Value = serde_json::from_slice(&out.stdout).expect("/v1/ca JSON");
    v["authorities"][0]["root"]
        .as_str()
        .unwrap_or_default()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// `GET /v1/crl/cluster/others`, PEM.
fn others(ca: &Ca, url: &str) -> String {
    let out = Command::new(tool("curl"))
        .args(["-sS", "--fail", "--cacert"])
        .arg(ca.data.join("ca.pem"))
        .arg(format!("{url}/v1/crl/cluster/others"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn abort_while_prepared_returns_to_one_root() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, &["--maintenance-interval", "1s"]);
    assert_eq!(served_roots(&ca, &url), 1);
    // Nothing to step or abort yet.
    for step in ["activate", "finish", "abort"] {
        let err = ca.fails_with(&["ca", "rotate", step], "rotation-not-ready");
        assert!(err.contains("no root rotation"), "{err}");
    }
    // Bad flags are refused before anything happens.
    ca.fails_with(
        &["ca", "rotate", "--root", "--key-type", "rsa-1"],
        "invalid-argument",
    );
    assert_eq!(served_roots(&ca, &url), 1);

    let prepared = json(
        &ca,
        &["ca", "rotate", "--root", "--key-type", "p384", "--json"],
    );
    assert_eq!(prepared["status"]["root"]["phase"], "prepared");
    assert_eq!(served_roots(&ca, &url), 2);
    // Agents fetch the new intermediate's CRL (and the new root's) before
    // it issues: a peer refuses a leaf whose issuer has no CRL.
    let issuers: Vec<String> = crl_texts(&others(&ca, &url), ca.tmp.path())
        .iter()
        .filter_map(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix("Issuer:").map(String::from))
        })
        .collect();
    assert!(
        issuers.iter().any(|i| i.ends_with("intermediate CA G2"))
            && issuers.iter().any(|i| i.ends_with("root CA G2")),
        "{issuers:?}"
    );
    let aborted = json(&ca, &["ca", "rotate", "abort", "--json"]);
    assert_eq!(aborted["step"], "aborted", "{aborted}");
    assert!(aborted["status"]["root"].is_null(), "{aborted}");
    assert_eq!(served_roots(&ca, &url), 1);
    let status = json(&ca, &["ca", "rotate", "status", "--json"]);
    assert!(status[0]["root"].is_null(), "{status}");
    // And a new rotation may start again.
    json(&ca, &["ca", "rotate", "--root", "--json"]);
    assert_eq!(served_roots(&ca, &url), 2);
}

/// The CRLs in a PEM text, each printed by `openssl crl -text`.
fn crl_texts(pem: &str, scratch: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (i, block) in pem
        .split_inclusive("-----END X509 CRL-----")
        .filter(|b| b.contains("-----BEGIN X509 CRL-----"))
        .enumerate()
    {
        let f = scratch.join(format!("crl-{i}.pem"));
        std::fs::write(&f, block.trim_start()).expect("write a CRL");
        let (good, text) = openssl(&["crl", "-noout", "-text", "-in", &f.to_string_lossy()]);
        let _ = std::fs::remove_file(&f);
        assert!(good, "openssl crl: {text}\n{block}");
        out.push(text);
    }
    out
}

#[test]
fn compromised_activation_revokes_the_old_intermediate() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, &["--maintenance-interval", "1s"]);
    let token = ca.token("worker", &[]);
    let node = ca.join(&url, &token, "node-1", &[]);
    // The old intermediate's serial, from the node's chain.
    let (good, serial) = openssl(&[
        "x509",
        "-noout",
        "-serial",
        "-in",
        &node.join("chain.pem").to_string_lossy(),
    ]);
    assert!(good, "{serial}");
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_ascii_uppercase();

    // node-1's agent reports its trust and renews when told: the server's
    // tick takes every step by itself.
    let _agent = agent(&node);
    let prepared = json(
        &ca,
        &[
            "ca",
            "rotate",
            "--root",
            "--compromised",
            "--overlap",
            "30s",
            "--json",
        ],
    );
    assert_eq!(
        prepared["status"]["root"]["compromised"], true,
        "{prepared}"
    );
    let phase = || {
        let status = json(&ca, &["ca", "rotate", "status", "--json"]);
        status[0]["root"]["phase"]
            .as_str()
            .unwrap_or("none")
            .to_string()
    };
    wait_for(
        "the tick activated the rotation (node-1 trusts both roots)",
        Duration::from_secs(60),
        || (phase() != "prepared").then_some(()),
    );
    // A compromised rotation cannot go back to the old keys.
    ca.fails_with(&["ca", "rotate", "abort"], "rotation-not-ready");
    // The operator's own credential is under the old root too: renewed
    // now, before the old root leaves the bundle at the end of the overlap.
    let renewed = json(&ca, &["admin", "renew", "--json"]);
    assert_eq!(renewed["renewed"], true, "{renewed}");
    // Told to renew at once, the agent does; then the tick finishes.
    wait_for(
        "node-1 renewed under the new root by itself",
        Duration::from_secs(60),
        || {
            issuer_of(&node.join("cert.pem"))
                .contains("G2")
                .then_some(())
        },
    );
    wait_for(
        "the tick finished the rotation",
        Duration::from_secs(60),
        || (phase() == "finished").then_some(()),
    );

    let texts = crl_texts(&others(&ca, &url), ca.tmp.path());
    let old_root_crl = texts
        .iter()
        .find(|t| {
            t.lines()
                .any(|l| l.trim().starts_with("Issuer:") && l.trim().ends_with("root CA"))
        })
        .unwrap_or_else(|| panic!("no CRL of the old root among {texts:?}"));
    let listed = old_root_crl
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number:"))
        .map(|s| s.trim().trim_start_matches('0').to_ascii_uppercase())
        .collect::<Vec<_>>();
    assert!(
        listed.contains(&serial),
        "the old intermediate {serial} is not in the old root's CRL: {old_root_crl}"
    );
    // The overlap given (30 s), not the old leaves' lifetime: then the old
    // root leaves the bundle and the rotation is over.
    wait_for(
        "the old root left the bundle after the overlap",
        Duration::from_secs(120),
        || (phase() == "none").then_some(()),
    );
    assert_eq!(served_roots(&ca, &url), 1);
}

/// curl with the operator credential: (status, body).
fn admin_curl(ca: &Ca, url: &str, path: &str, body: &str) -> (u16, String) {
    let admin = ca.data.join("admin");
    let out = Command::new(tool("curl"))
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cert"])
        .arg(admin.join("fullchain.pem"))
        .arg("--key")
        .arg(admin.join("key.pem"))
        .arg("--cacert")
        .arg(ca.data.join("ca.pem"))
        .args(["-H", "content-type: application/json", "--data", body])
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.trim().parse().expect("a status"), body.to_string())
}

#[test]
fn bad_root_rotation_requests_change_nothing() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, &["--maintenance-interval", "1s"]);
    for (path, body, want, code) in [
        (
            "/v1/admin/ca/rotate",
            r#"{"authority":"cluster","root":true,"force":true}"#,
            400,
            "invalid-argument",
        ),
        (
            "/v1/admin/ca/rotate",
            r#"{"authority":"cluster","root":true,"key_type":"rsa-1"}"#,
            400,
            "invalid-name", // as `POST /v1/admin/authorities` answers it
        ),
        (
            "/v1/admin/ca/rotate",
            r#"{"authority":"cluster","intermediate":true,"compromised":true}"#,
            400,
            "invalid-argument",
        ),
        (
            "/v1/admin/ca/rotate",
            r#"{"authority":"nosuch","root":true}"#,
            404,
            "unknown-authority",
        ),
        (
            "/v1/admin/ca/rotate/activate",
            r#"{"authority":"cluster","color":"red"}"#,
            400,
            "malformed-request",
        ),
        (
            "/v1/admin/ca/rotate/finish",
            r#"{"authority":"cluster"}"#,
            409,
            "rotation-not-ready",
        ),
        (
            "/v1/admin/ca/rotate/abort",
            r#"{"authority":"cluster","force":true}"#,
            400,
            "malformed-request",
        ),
        (
            "/v1/admin/ca/rotate/abort",
            r#"{"authority":"Bad Name"}"#,
            400,
            "invalid-name",
        ),
    ] {
        let (status, text) = admin_curl(&ca, &url, path, body);
        assert_eq!(status, want, "{path} {body}: {text}");
        assert!(text.contains(code), "{path} {body}: {text}");
    }
    assert_eq!(served_roots(&ca, &url), 1);
    let status = json(&ca, &["ca", "rotate", "status", "--json"]);
    assert!(status[0]["root"].is_null(), "{status}");
}

#[test]
fn root_rotation_on_the_store_without_a_server() {
    let ca = Ca::init("p256");
    let pass = ca.pass.to_string_lossy().to_string();
    let ok_json = |args: &[&str]| -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--passphrase-file", &pass, "--json"]);
        serde_json::from_str(&ca.ok(&all)).expect("JSON")
    };
    let prepared = ok_json(&["ca", "rotate", "--root", "--compromised"]);
    assert_eq!(prepared["step"], "prepared", "{prepared}");
    assert_eq!(
        prepared["status"]["root"]["compromised"], true,
        "{prepared}"
    );
    let status = ok_json(&["ca", "rotate", "status"]);
    assert_eq!(status[0]["root"]["phase"], "prepared", "{status}");
    let activated = ok_json(&["ca", "rotate", "activate", "--force"]);
    assert_eq!(
        activated["status"]["root"]["phase"], "active",
        "{activated}"
    );
    // The new intermediate issues now.
    let shown: Value = serde_json::from_str(&ca.ok(&["ca", "show", "--json"])).expect("JSON");
    let subject = shown["authorities"][0]["intermediate"]["subject"]
        .as_str()
        .expect("subject");
    assert!(subject.ends_with("intermediate CA G2"), "{subject}");
    let finished = ok_json(&["ca", "rotate", "finish", "--force"]);
    assert_eq!(
        finished["status"]["root"]["phase"], "finished",
        "{finished}"
    );
}
