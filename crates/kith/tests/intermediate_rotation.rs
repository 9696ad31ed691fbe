//! Intermediate rotation end to end, with real processes: `kith serve`
//! with a short publish delay and maintenance interval, joined nodes with
//! running agents, mTLS traffic between two of them through kith-agent's
//! `mtls` example the whole time, `kith ca rotate --intermediate` and
//! `kith ca rotate status`, renewals onto the new intermediate, and
//! openssl and curl judging what the nodes hold and the server serves.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{mtls_example, openssl, tool, wait_for, Ca, Proc};
use serde_json::Value;

/// How long the server publishes a prepared intermediate before it issues.
/// Long enough that `status` run right after the prepare still sees it
/// waiting on a loaded machine; the agents refresh every second.
const PUBLISH: &str = "15s";

/// Start `kith serve` with `extra` flags; returns the process and its URL.
fn start_server(ca: &Ca, extra: &[&str]) -> (Proc, String) {
    common::start_server_with(ca, "127.0.0.1:0", &ca.pass, extra)
}

fn json(ca: &Ca, args: &[&str]) -> Value {
    ca.json(args)
}

fn mtls_connect_once(dir: &Path, to: &str, name: &str) -> bool {
    Command::new(mtls_example())
        .args(["connect", "--dir"])
        .arg(dir)
        .args(["--to", to, "--name", name, "--count", "1"])
        .output()
        .expect("run mtls connect")
        .status
        .success()
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

/// `openssl verify` of the node's leaf against its roots and chain.
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

/// The issuer of every CRL in a PEM text, each read by `openssl crl`.
fn crl_issuers(pem: &str, scratch: &Path) -> Vec<String> {
    let mut issuers = Vec::new();
    for (i, block) in pem
        .split_inclusive("-----END X509 CRL-----")
        .filter(|b| b.contains("-----BEGIN X509 CRL-----"))
        .enumerate()
    {
        let f = scratch.join(format!("crl-{i}.pem"));
        std::fs::write(&f, block.trim_start()).expect("write a CRL");
        let (good, text) = openssl(&["crl", "-noout", "-issuer", "-in", &f.to_string_lossy()]);
        let _ = std::fs::remove_file(&f);
        assert!(good, "openssl crl: {text}\n{block}");
        issuers.push(text.trim().to_string());
    }
    issuers
}

/// Whether an issuer openssl printed is the first intermediate (whose name
/// has no generation) or that of generation `g`.
fn is_generation(issuer: &str, g: u32) -> bool {
    match g {
        1 => issuer.ends_with("intermediate CA"),
        g => issuer.ends_with(&format!("intermediate CA G{g}")),
    }
}

fn node_crl_issuers(dir: &Path, scratch: &Path) -> Vec<String> {
    crl_issuers(
        &std::fs::read_to_string(dir.join("crl.pem")).unwrap_or_default(),
        scratch,
    )
}

/// `GET /v1/crl/{authority}/others` with curl, verifying the server
/// against `ca`: (status, content type, cache control, body).
fn others(url: &str, ca: &Path, authority: &str) -> (u16, String, String, String) {
    let out = Command::new(tool("curl"))
        .args(["-sS", "-D", "-", "--cacert"])
        .arg(ca)
        .arg(format!("{url}/v1/crl/{authority}/others"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("headers, then the body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    (
        status,
        header("content-type"),
        header("cache-control"),
        body.to_string(),
    )
}

/// curl with the operator credential: (status, body).
fn admin_curl(ca: &Ca, url: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let admin = ca.data.join("admin");
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
    .arg(admin.join("fullchain.pem"))
    .arg("--key")
    .arg(admin.join("key.pem"))
    .arg("--cacert")
    .arg(ca.data.join("ca.pem"));
    if let Some(b) = body {
        cmd.args(["-H", "content-type: application/json", "--data", b]);
    }
    let out = cmd.arg(format!("{url}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.trim().parse().expect("a status"), body.to_string())
}

#[test]
fn others_endpoint_serves_the_prepared_intermediates_crl() {
    let ca = Ca::init("p256");
    // No maintenance step during the test: an hour's publish delay.
    let (_server, url) = start_server(&ca, &["--intermediate-publish", "1h"]);
    let ca_pem = ca.data.join("ca.pem");

    let (status, ctype, cache, body) = others(&url, &ca_pem, "cluster");
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "application/x-pem-file");
    assert_eq!(cache, "no-cache");
    assert!(body.trim().is_empty(), "nothing prepared yet: {body:?}");

    let prepared = json(&ca, &["ca", "rotate", "--intermediate", "--json"]);
    assert_eq!(prepared["step"], "prepared", "{prepared}");
    assert_eq!(prepared["generation"], 2, "{prepared}");

    let (status, _, _, body) = others(&url, &ca_pem, "cluster");
    assert_eq!(status, 200, "{body}");
    let issuers = crl_issuers(&body, ca.tmp.path());
    assert_eq!(issuers.len(), 1, "{body}");
    assert!(is_generation(&issuers[0], 2), "{issuers:?}");

    // An unknown authority: a JSON 404, as for its other CRLs.
    let (status, _, _, body) = others(&url, &ca_pem, "nosuch");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown-authority"), "{body}");

    // The admin API refuses what it cannot do, with a code, changing nothing.
    for (method, path, body, want, code) in [
        (
            "POST",
            "/v1/admin/ca/rotate",
            Some(r#"{"authority":"cluster"}"#),
            400,
            "invalid-argument",
        ),
        (
            "POST",
            "/v1/admin/ca/rotate",
            Some(r#"{"authority":"cluster","intermediate":true,"root":true}"#),
            400,
            "invalid-argument",
        ),
        (
            "POST",
            "/v1/admin/ca/rotate",
            Some(r#"{"authority":"cluster","intermediate":true}"#),
            409,
            "rotation-not-ready",
        ),
        (
            "GET",
            "/v1/admin/ca/rotation?color=red",
            None,
            400,
            "invalid-argument",
        ),
        (
            "GET",
            "/v1/admin/ca/rotation?authority=nosuch",
            None,
            404,
            "unknown-authority",
        ),
    ] {
        let (status, text) = admin_curl(&ca, &url, method, path, body);
        assert_eq!(status, want, "{method} {path}: {text}");
        assert!(text.contains(code), "{method} {path}: {text}");
    }
    let (status, text) = admin_curl(&ca, &url, "GET", "/v1/admin/ca/rotation", None);
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).expect("status JSON");
    assert_eq!(v[0]["phase"], "publishing", "{v}");
    assert_eq!(v[0]["generation"], 1, "{v}");
    // Without the operator credential: refused before any handler.
    let (status, text) = {
        let out = Command::new(tool("curl"))
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
            .arg(&ca_pem)
            .arg(format!("{url}/v1/admin/ca/rotation"))
            .output()
            .expect("curl");
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        let (b, s) = t.rsplit_once('\n').expect("a status line");
        (s.trim().to_string(), b.to_string())
    };
    assert_eq!(status, "401", "{text}");
}

#[test]
fn intermediate_rotation_without_a_failed_handshake() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(
        &ca,
        &[
            "--intermediate-publish",
            PUBLISH,
            "--maintenance-interval",
            "1s",
        ],
    );
    let token = ca.token("worker", &["--uses", "3"]);
    let nodes: Vec<PathBuf> = (1..=3)
        .map(|i| ca.join(&url, &token, &format!("node-{i}"), &[]))
        .collect();
    for n in &nodes {
        assert!(is_generation(&issuer_of(&n.join("cert.pem")), 1));
    }
    let _agents: Vec<Proc> = nodes.iter().map(|n| agent(n)).collect();

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
    let fqdn = "node-1.prod.example";
    let traffic_log = ca.path("traffic.log");
    let traffic = Proc(
        Command::new(mtls_example())
            .args(["connect", "--dir"])
            .arg(&nodes[1])
            .args([
                "--to",
                &addr,
                "--name",
                fqdn,
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
    wait_for("the first handshakes", Duration::from_secs(30), || {
        (handshakes().0 >= 3).then_some(())
    });

    // Prepare: generation 2 is published, generation 1 still issues.
    let prepared = json(&ca, &["ca", "rotate", "--intermediate", "--json"]);
    assert_eq!(prepared["step"], "prepared", "{prepared}");
    assert_eq!(prepared["generation"], 2);
    let status = json(&ca, &["ca", "rotate", "status", "--json"]);
    let st = &status.as_array().expect("a list")[0];
    assert_eq!(st["authority"], "cluster", "{status}");
    assert_eq!(st["phase"], "publishing", "{status}");
    assert_eq!(st["generation"], 1, "{status}");
    assert_eq!(st["prepared"]["generation"], 2, "{status}");
    assert!(
        st["prepared"]["activate_at"].as_str().is_some()
            && st["detail"].as_str().unwrap_or("").contains("CRL"),
        "{status}"
    );
    // The human form says the phase and until when it waits.
    let text = ca.ok(&["ca", "rotate", "status", "--authority", "cluster"]);
    assert!(
        text.contains("publishing") && text.contains("may issue from"),
        "{text}"
    );
    // Asking again before the publish delay: refused, saying until when.
    let err = ca.fails_with(&["ca", "rotate", "--intermediate"], "rotation-not-ready");
    assert!(err.contains("may issue from"), "{err}");

    // Every agent fetches the prepared intermediate's CRL beside the
    // active one's (both stay there after the activation too).
    for n in &nodes {
        wait_for("both CRLs on every node", Duration::from_secs(30), || {
            let issuers = node_crl_issuers(n, ca.tmp.path());
            (issuers.iter().any(|i| is_generation(i, 1))
                && issuers.iter().any(|i| is_generation(i, 2)))
            .then_some(())
        });
    }
    // The maintenance tick activates it once published long enough.
    wait_for("the activation", Duration::from_secs(60), || {
        let s = json(&ca, &["ca", "rotate", "status", "--json"]);
        (s[0]["generation"] == 2).then_some(s)
    });
    let status = json(&ca, &["ca", "rotate", "status", "--json"]);
    assert_eq!(status[0]["phase"], "steady", "{status}");
    assert!(status[0]["prepared"].is_null(), "{status}");
    assert_eq!(status[0]["previous"][0]["generation"], 1, "{status}");

    // node-2 renews onto generation 2 while it keeps talking to node-1,
    // still on generation 1; then node-1 renews too.
    renew(&nodes[1]);
    assert!(is_generation(&issuer_of(&nodes[1].join("cert.pem")), 2));
    verify(&nodes[1]);
    verify(&nodes[0]); // an old leaf still verifies: same root, its chain kept
    let after = handshakes().0;
    wait_for(
        "handshakes with the new leaf",
        Duration::from_secs(30),
        || (handshakes().0 >= after + 10).then_some(()),
    );
    renew(&nodes[0]);
    assert!(is_generation(&issuer_of(&nodes[0].join("cert.pem")), 2));
    verify(&nodes[0]);
    let after = handshakes().0;
    wait_for(
        "handshakes between new leaves",
        Duration::from_secs(30),
        || (handshakes().0 >= after + 10).then_some(()),
    );
    drop(traffic);
    let (ok, failed) = handshakes();
    assert!(
        failed.is_empty(),
        "{} of {} handshakes failed during the rotation: {failed:?}",
        failed.len(),
        ok + failed.len()
    );
    let refused = std::fs::read_to_string(ca.path("mtls-serve.log")).unwrap_or_default();
    assert!(
        !refused.contains("refused"),
        "node-1 refused a handshake: {refused}"
    );

    // crl.pem holds both intermediates' CRLs (and the root's).
    let issuers = node_crl_issuers(&nodes[0], ca.tmp.path());
    assert!(
        issuers.iter().any(|i| is_generation(i, 1)) && issuers.iter().any(|i| is_generation(i, 2)),
        "{issuers:?}"
    );
    assert_eq!(issuers.len(), 3, "{issuers:?}");

    // node-3, still on generation 1, is revoked: node-1 refuses it once
    // its agent has the old intermediate's new CRL.
    assert!(is_generation(&issuer_of(&nodes[2].join("cert.pem")), 1));
    verify(&nodes[2]);
    assert!(
        mtls_connect_once(&nodes[2], &addr, fqdn),
        "node-3 talks before"
    );
    json(&ca, &["revoke", "--node", "node-3", "--json"]);
    wait_for("node-1 to refuse node-3", Duration::from_secs(30), || {
        (!mtls_connect_once(&nodes[2], &addr, fqdn)).then_some(())
    });
    assert!(
        mtls_connect_once(&nodes[1], &addr, fqdn),
        "node-2 unaffected"
    );
}

#[test]
fn rotate_on_the_store_without_a_server() {
    let ca = Ca::init("p256");
    let pass = ca.pass.to_string_lossy().to_string();
    let with_pass = |args: &[&str]| -> Vec<String> {
        args.iter()
            .copied()
            .chain(["--passphrase-file", &pass])
            .map(String::from)
            .collect()
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ca.run(&args)
    };
    let ok_json = |args: &[&str]| -> Value {
        let out = run(&with_pass(args));
        assert!(
            out.status.success(),
            "kith {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let fails = |args: &[&str], code: &str| {
        let out = run(&with_pass(args));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "kith {args:?}: {stderr}");
        assert!(stderr.contains(&format!("error[{code}]")), "{stderr}");
        stderr
    };

    // Bad requests change nothing.
    fails(&["ca", "rotate"], "invalid-argument");
    fails(
        &["ca", "rotate", "--intermediate", "--authority", "nosuch"],
        "unknown-authority",
    );
    let status = ok_json(&["ca", "rotate", "status", "--json"]);
    assert_eq!(status[0]["phase"], "steady", "{status}");
    assert_eq!(status[0]["generation"], 1, "{status}");
    assert!(status[0]["prepared"].is_null(), "{status}");

    let prepared = ok_json(&["ca", "rotate", "--intermediate", "--json"]);
    assert_eq!(prepared["step"], "prepared", "{prepared}");
    assert_eq!(prepared["status"]["phase"], "publishing", "{prepared}");
    // The default publish delay (an hour) holds offline too.
    let err = fails(&["ca", "rotate", "--intermediate"], "rotation-not-ready");
    assert!(err.contains("may issue from"), "{err}");
    let status = ok_json(&["ca", "rotate", "status", "--authority", "cluster", "--json"]);
    assert_eq!(status[0]["prepared"]["generation"], 2, "{status}");
    assert_eq!(status[0]["generation"], 1, "{status}");

    let activated = ok_json(&["ca", "rotate", "--intermediate", "--force", "--json"]);
    assert_eq!(activated["step"], "activated", "{activated}");
    assert_eq!(activated["generation"], 2, "{activated}");
    assert_eq!(activated["status"]["phase"], "steady", "{activated}");
    assert_eq!(activated["status"]["previous"][0]["generation"], 1);

    // What the CA shows and signs now is generation 2's.
    let shown: Value = serde_json::from_str(&ca.ok(&["ca", "show", "--json"])).expect("JSON");
    let subject = shown["authorities"][0]["intermediate"]["subject"]
        .as_str()
        .expect("subject");
    assert!(subject.ends_with("intermediate CA G2"), "{subject}");
    ca.ok(&[
        "cert",
        "issue",
        "web-1",
        "--role",
        "web",
        "--out",
        &ca.path("out").to_string_lossy(),
    ]);
    let cert = ca.path("out/web-1/cert.pem");
    assert!(is_generation(&issuer_of(&cert), 2));
}
