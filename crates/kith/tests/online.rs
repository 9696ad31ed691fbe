//! The CA service end to end, with real processes: `kith serve`, `kith
//! join`, `kith renew`, `kith agent`, the mTLS example of kith-agent, and
//! clients nobody here wrote (curl, openssl s_client, nats-server).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{kith, mtls_example, openssl, start_server, tool, wait_for, Ca, Proc};
use serde_json::Value;

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in URL")
}

/// Run kith with this CA's data dir; (success, stdout, stderr).
fn run(ca: &Ca, args: &[&str]) -> (bool, String, String) {
    let out = kith(&ca.data).args(args).output().expect("run kith");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn ok(ca: &Ca, args: &[&str]) -> String {
    let (success, stdout, stderr) = run(ca, args);
    assert!(success, "kith {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

fn json(ca: &Ca, args: &[&str]) -> Value {
    serde_json::from_str(&ok(ca, args)).unwrap_or_else(|e| panic!("kith {args:?}: not JSON: {e}"))
}

fn mtls_connect(dir: &Path, to: &str, name: &str) -> (bool, String) {
    let out = Command::new(mtls_example())
        .args(["connect", "--dir"])
        .arg(dir)
        .args(["--to", to, "--name", name, "--count", "1"])
        .output()
        .expect("run mtls connect");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn identity(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity.json"))
        .expect("identity JSON")
}

#[test]
fn serve_join_three_nodes_mtls_renew_revoke_restart() {
    let ca = Ca::init("p256");
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let port = port_of(&url);

    // An operator mints one token for three joins (admin API over mTLS,
    // server found through server.json, credential in <data>/admin).
    let token = ca.token("worker", &["--uses", "3"]);
    let nodes: Vec<PathBuf> = (1..=3).map(|i| ca.path(&format!("node-{i}"))).collect();
    for (i, dir) in nodes.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        let out = common::node_ok(&[
            "join",
            "--server",
            &url,
            "--token",
            &token,
            "--name",
            &name,
            "--no-interface-ips",
            "--json",
            "--dir",
            &dir.to_string_lossy(),
        ]);
        let v: Value = serde_json::from_str(&out).expect("join JSON");
        assert_eq!(v["node"], name.as_str());
        // Files a non-Rust program can use, judged by openssl.
        let (good, text) = openssl(&[
            "verify",
            "-CAfile",
            &dir.join("ca.pem").to_string_lossy(),
            "-untrusted",
            &dir.join("chain.pem").to_string_lossy(),
            "-purpose",
            "sslclient",
            &dir.join("cert.pem").to_string_lossy(),
        ]);
        assert!(good, "openssl verify {name}: {text}");
    }
    // A fourth join with the spent token is refused with its code.
    let node4 = ca.path("node-4");
    common::node_fails_with(
        &[
            "join",
            "--server",
            &url,
            "--token",
            &token,
            "--name",
            "node-4",
            "--dir",
            &node4.to_string_lossy(),
        ],
        "token-used-up",
    );

    // node-1 serves mTLS through the library; its agent refreshes the CRL every second.
    let mut example = Command::new(mtls_example())
        .args(["serve", "--dir"])
        .arg(&nodes[0])
        .args(["--listen", "127.0.0.1:0", "--role", "worker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    let _agent1 = Proc(
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["agent", "--refresh", "1s", "--dir"])
            .arg(&nodes[0])
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    let fqdn = "node-1.prod.example";
    for n in &nodes[1..] {
        let (good, text) = mtls_connect(n, &addr, fqdn);
        assert!(good, "{}: {text}", n.display());
        assert!(
            text.contains("hello node-") && text.contains("from node-1"),
            "{text}"
        );
    }

    // Renew node-2 once by hand and once through its agent's SIGHUP.
    let serial0 = identity(&nodes[1])["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    let key0 = std::fs::read(nodes[1].join("key.pem")).expect("key");
    let v: Value = serde_json::from_str(&{
        let out = Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["renew", "--json", "--dir"])
            .arg(&nodes[1])
            .output()
            .expect("renew");
        assert!(
            out.status.success(),
            "renew: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    })
    .expect("renew JSON");
    let serial1 = v["serial"].as_str().expect("serial").to_string();
    assert_ne!(serial0, serial1);
    assert_ne!(
        key0,
        std::fs::read(nodes[1].join("key.pem")).expect("key"),
        "renewal makes a new key"
    );
    let agent2 = Proc(
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["agent", "--refresh", "1s", "--exec"])
            .arg(format!("touch {}", ca.path("hook-ran").display()))
            .arg("--dir")
            .arg(&nodes[1])
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    std::thread::sleep(Duration::from_millis(500)); // let it install its handlers
    signal(&agent2.0, "HUP");
    wait_for("SIGHUP renewal", Duration::from_secs(20), || {
        (identity(&nodes[1])["serial"].as_str() != Some(serial1.as_str())).then_some(())
    });
    wait_for("the hook", Duration::from_secs(10), || {
        ca.path("hook-ran").exists().then_some(())
    });
    let (good, text) = mtls_connect(&nodes[1], &addr, fqdn);
    assert!(good, "renewed node-2 still talks: {text}");

    // Revoke node-3 online; node-1 refuses it once its agent has the new CRL.
    let revoked = json(
        &ca,
        &[
            "revoke",
            "--node",
            "node-3",
            "--reason",
            "key-compromise",
            "--json",
        ],
    );
    assert_eq!(revoked["revoked"][0]["node"], "node-3");
    wait_for("node-1 to refuse node-3", Duration::from_secs(30), || {
        let (good, _) = mtls_connect(&nodes[2], &addr, fqdn);
        (!good).then_some(())
    });
    let (good, text) = mtls_connect(&nodes[1], &addr, fqdn);
    assert!(good, "node-2 unaffected: {text}");
    let (good, text) = openssl(&[
        "crl",
        "-in",
        &nodes[0].join("crl.pem").to_string_lossy(),
        "-noout",
        "-text",
    ]);
    assert!(good && text.contains("Key Compromise"), "{text}");
    // node-3 cannot renew; its agent stops with the instruction on SIGHUP.
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&nodes[2])
        .output()
        .expect("renew");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("error[certificate-revoked]") && stderr.contains("kith token create"),
        "{stderr}"
    );
    let mut agent3 = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["agent", "--dir"])
        .arg(&nodes[2])
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent");
    std::thread::sleep(Duration::from_millis(500));
    signal(&agent3, "HUP");
    let status = wait_for(
        "agent of a revoked node to exit",
        Duration::from_secs(20),
        || agent3.try_wait().expect("wait"),
    );
    assert_eq!(
        status.code(),
        Some(3),
        "exit status 3: only a new token can help"
    );
    let mut err = String::new();
    std::io::Read::read_to_string(&mut agent3.stderr.take().expect("stderr"), &mut err)
        .expect("agent stderr");
    assert!(
        err.contains("error[certificate-revoked]") && err.contains("kith join"),
        "{err}"
    );

    // curl with the operator credential against the admin API; without it, 401 JSON.
    let curl = tool("curl");
    let admin = ca.data.join("admin");
    let out = Command::new(&curl)
        .args(["-sS", "--fail-with-body", "--cert"])
        .arg(admin.join("fullchain.pem"))
        .arg("--key")
        .arg(admin.join("key.pem"))
        .arg("--cacert")
        .arg(ca.data.join("ca.pem"))
        .arg(format!("{url}/v1/admin/nodes"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Value = serde_json::from_slice(&out.stdout).expect("nodes JSON");
    let states: Vec<(String, String)> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or("").into(),
                n["state"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("node-1", "active"),
            ("node-2", "active"),
            ("node-3", "revoked")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let out = Command::new(&curl)
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca.data.join("ca.pem"))
        .arg(format!("{url}/v1/admin/nodes"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("401") && text.contains("client-certificate-required"),
        "{text}"
    );
    // The public CRL endpoint serves DER that openssl reads.
    let crl_file = ca.path("served.crl");
    let out = Command::new(&curl)
        .args(["-sS", "--fail", "--cacert"])
        .arg(ca.data.join("ca.pem"))
        .arg("-o")
        .arg(&crl_file)
        .arg(format!("{url}/v1/crl/cluster"))
        .output()
        .expect("curl");
    assert!(out.status.success());
    let (good, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &crl_file.to_string_lossy(),
        "-noout",
        "-text",
    ]);
    assert!(good && text.contains("Key Compromise"), "{text}");

    // openssl s_client: a full handshake with node-2's certificate.
    let (good, text) = s_client(port, &ca.data.join("ca.pem"), Some(&nodes[1]));
    assert!(good && text.contains("Verification: OK"), "{text}");

    // kill -9 and restart on the same port: everything persisted. Meanwhile
    // node-2's agent is asked to renew while the server is down: it must
    // keep running, back off, and succeed once the server is back.
    drop(server);
    let before_outage = identity(&nodes[1])["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    let mut agent2 = agent2;
    signal(&agent2.0, "HUP");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        agent2.0.try_wait().expect("wait").is_none(),
        "a transient failure must not stop the agent"
    );
    let (_server, url2) = start_server(&ca, &format!("127.0.0.1:{port}"), &ca.pass);
    assert_eq!(url2, url);
    wait_for(
        "the agent's retry after the outage",
        Duration::from_secs(60),
        || (identity(&nodes[1])["serial"].as_str() != Some(before_outage.as_str())).then_some(()),
    );
    let listed = json(&ca, &["node", "ls", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    let tokens = json(&ca, &["token", "ls", "--json"]);
    assert_eq!(tokens[0]["uses_left"], 0);
    assert_eq!(tokens[0]["state"], "used-up");
    let status = json(&ca, &["status", "--json"]);
    assert_eq!(status["cluster"], "prod.example");
    assert!(status["authorities"][0]["crl_number"].as_u64() >= Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&nodes[1])
        .output()
        .expect("renew");
    assert!(
        out.status.success(),
        "renew after restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (good, _) = mtls_connect(&nodes[2], &addr, fqdn);
    assert!(!good, "still refused after the restart");
    drop(agent2);
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig}");
}

/// `openssl s_client` against the server, optionally with a node's certificate.
fn s_client(port: u16, ca: &Path, node: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(tool("openssl"));
    cmd.args([
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-brief",
        "-verify_return_error",
        "-CAfile",
    ])
    .arg(ca);
    if let Some(n) = node {
        cmd.arg("-cert").arg(n.join("cert.pem"));
        cmd.arg("-cert_chain").arg(n.join("chain.pem"));
        cmd.arg("-key").arg(n.join("key.pem"));
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("write");
    let out = child.wait_with_output().expect("s_client");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The README quickstart: `kith serve --dev` prints a token and the join
/// command; the join works; the operator commands work with the printed
/// data directory; SIGTERM removes the throwaway CA. The test stops reading
/// the server's stdout early: a closed pipe must not stop a server.
#[test]
fn dev_quickstart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
        .env("TMPDIR", tmp.path())
        .env_remove("KITH_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve --dev");
    let stdout = child.stdout.take().expect("stdout");
    let server = Proc(child);
    let mut join_line = String::new();
    let mut data_dir = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.expect("line");
        if let Some(rest) = line.trim().strip_prefix("Development CA in ") {
            data_dir = rest.split(' ').next().expect("dir").to_string();
        }
        if line.trim().starts_with("kith join ") {
            join_line = line.trim().to_string();
            break;
        }
    }
    assert!(
        !data_dir.is_empty() && !join_line.is_empty(),
        "serve --dev printed no join command"
    );
    let words: Vec<&str> = join_line.split_whitespace().collect();
    let arg = |name: &str| words[words.iter().position(|w| *w == name).expect(name) + 1];
    let node = tmp.path().join("node-1");
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args([
            "join",
            "--server",
            arg("--server"),
            "--token",
            arg("--token"),
            "--name",
            "node-1",
            "--dir",
        ])
        .arg(&node)
        .output()
        .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(node.join("key.pem").exists());
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["node", "ls", "--json"])
        .env("KITH_DATA_DIR", &data_dir)
        .output()
        .expect("node ls");
    let v: Value = serde_json::from_slice(&out.stdout).expect("node ls JSON");
    assert_eq!(v[0]["name"], "node-1");
    signal(&server.0, "TERM");
    wait_for("the dev CA to be removed", Duration::from_secs(20), || {
        (!Path::new(&data_dir).exists()).then_some(())
    });
}
