//! A node's files in a TLS server nobody here wrote: nginx (Debian's
//! package) with `ssl_verify_client on` and `ssl_crl crl.pem`, which wants
//! a CRL for every CA of a client's chain (the intermediate's for the leaf,
//! the root's for the intermediate). Real `kith serve`, `kith join`, `kith
//! agent`, nginx and curl processes; `openssl verify -crl_check_all` judges
//! the same files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{kith, openssl, start_server, tool, wait_for, Ca, Proc};

fn join(url: &str, token: &str, name: &str, dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args([
            "join",
            "--server",
            url,
            "--token",
            token,
            "--name",
            name,
            "--no-interface-ips",
            "--dir",
        ])
        .arg(dir)
        .output()
        .expect("run kith join");
    assert!(
        out.status.success(),
        "join {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's nginx lives in /usr/sbin, which a non-root user's PATH may
/// lack; otherwise found (or missing, loudly) as every other tool.
fn nginx() -> PathBuf {
    let sbin = PathBuf::from("/usr/sbin/nginx");
    if sbin.is_file() {
        sbin
    } else {
        tool("nginx")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// nginx in the foreground, one process, everything under `prefix`,
/// requiring client certificates of `web`'s authority and checking `web`'s
/// crl.pem. Returns once it accepts connections.
fn start_nginx(prefix: &Path, web: &Path, port: u16) -> Proc {
    let p = |f: &str| prefix.join(f).display().to_string();
    let w = |f: &str| web.join(f).display().to_string();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {pid};\nerror_log {err} info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log {acc};\n\
         server {{\n    listen 127.0.0.1:{port} ssl;\n\
         ssl_certificate {full};\n    ssl_certificate_key {key};\n\
         ssl_verify_client on;\n    ssl_client_certificate {ca};\n\
         ssl_crl {crl};\n    ssl_verify_depth 2;\n\
         location / {{ return 200 \"hello $ssl_client_s_dn\\n\"; }}\n  }}\n}}\n",
        pid = p("nginx.pid"),
        err = p("error.log"),
        acc = p("access.log"),
        full = w("fullchain.pem"),
        key = w("key.pem"),
        ca = w("ca.pem"),
        crl = w("crl.pem"),
    );
    std::fs::write(prefix.join("nginx.conf"), conf).expect("nginx.conf");
    let child = Command::new(nginx())
        .arg("-p")
        .arg(prefix)
        // Its own error log from the first line, not /var/log/nginx's.
        .arg("-e")
        .arg(prefix.join("error.log"))
        .arg("-c")
        .arg(prefix.join("nginx.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nginx");
    let proc = Proc(child);
    wait_for("nginx to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    proc
}

/// curl to nginx with `client`'s certificate; (HTTP status or 0, body).
fn curl(web: &Path, client: &Path, port: u16) -> (u32, String) {
    let out = Command::new(tool("curl"))
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert"])
        .arg(web.join("ca.pem"))
        .arg("--cert")
        .arg(client.join("fullchain.pem"))
        .arg("--key")
        .arg(client.join("key.pem"))
        .arg(format!("https://localhost:{port}/"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn verify_all_crls(trust: &Path, node: &Path) -> (bool, String) {
    let s = |d: &Path, f: &str| d.join(f).display().to_string();
    openssl(&[
        "verify",
        "-crl_check_all",
        "-CRLfile",
        &s(trust, "crl.pem"),
        "-CAfile",
        &s(trust, "ca.pem"),
        "-untrusted",
        &s(node, "chain.pem"),
        &s(node, "cert.pem"),
    ])
}

#[test]
fn nginx_accepts_a_node_and_refuses_it_once_revoked() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let created: serde_json::Value = serde_json::from_str(&ca.ok(&[
        "token", "create", "--role", "worker", "--uses", "2", "--json",
    ]))
    .expect("token JSON");
    let token = created["token"].as_str().expect("token");
    let web: PathBuf = ca.path("web");
    let client: PathBuf = ca.path("client");
    join(&url, token, "web", &web);
    join(&url, token, "client", &client);

    // crl.pem holds the intermediate's CRL and the root's.
    let crl = std::fs::read_to_string(web.join("crl.pem")).expect("crl.pem");
    assert_eq!(crl.matches("-----BEGIN X509 CRL-----").count(), 2, "{crl}");
    let (good, text) = verify_all_crls(&web, &client);
    assert!(good, "openssl verify -crl_check_all of a live node: {text}");

    let prefix = tempfile::tempdir().expect("nginx prefix");
    let port = free_port();
    let nginx = start_nginx(prefix.path(), &web, port);
    let (status, body) = curl(&web, &client, port);
    let log = || std::fs::read_to_string(prefix.path().join("error.log")).unwrap_or_default();
    assert_eq!(status, 200, "nginx refused a live node: {body}\n{}", log());
    assert!(body.contains("hello") && body.contains("client"), "{body}");
    drop(nginx);

    // Revoke the client; the web node's agent fetches the new CRL.
    ca.ok(&["revoke", "--node", "client", "--reason", "key-compromise"]);
    let before = std::fs::read(web.join("crl.pem")).expect("crl.pem");
    let agent = Proc(
        kith(&ca.data)
            .args(["agent", "--refresh", "1s", "--dir"])
            .arg(&web)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kith agent"),
    );
    wait_for(
        "the agent to write the new CRL",
        Duration::from_secs(60),
        || (std::fs::read(web.join("crl.pem")).ok()? != before).then_some(()),
    );
    drop(agent);
    let crl = std::fs::read_to_string(web.join("crl.pem")).expect("crl.pem");
    assert_eq!(crl.matches("-----BEGIN X509 CRL-----").count(), 2, "{crl}");

    // nginx reads ssl_crl at start (a reload in production: the agent's --exec).
    let _nginx = start_nginx(prefix.path(), &web, port);
    let (status, body) = curl(&web, &client, port);
    assert_ne!(status, 200, "nginx let a revoked node in: {body}");
    assert!(
        log().contains("certificate revoked"),
        "nginx's log says why: {}",
        log()
    );
    // The web node itself is still accepted (it holds the peer profile).
    let (status, body) = curl(&web, &web, port);
    assert_eq!(
        status,
        200,
        "a live node after the refresh: {body}\n{}",
        log()
    );

    let (good, text) = verify_all_crls(&web, &client);
    assert!(!good, "openssl verify passed a revoked node: {text}");
    assert!(text.contains("certificate revoked"), "{text}");
    let (good, text) = verify_all_crls(&web, &web);
    assert!(good, "openssl verify of a live node: {text}");
}
