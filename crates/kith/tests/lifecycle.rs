//! Issue 11, lifecycle: short certificates (a token's `--cert-ttl`, a
//! server's `--leaf-ttl`, a real agent renewing one), a join that takes its
//! name from the token, and the address policy of several nodes on one
//! host. Real `kith serve`, `kith join` and `kith agent` processes; openssl
//! reads the dates.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{kith, openssl, wait_for, Ca, Proc};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `kith serve` on a free loopback port with `extra` flags; the process
/// and the URL it advertises, once `server.json` names it.
fn serve(ca: &Ca, extra: &[&str]) -> (Proc, String) {
    let info = ca.data.join("server.json");
    let _ = std::fs::remove_file(&info);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ca.path("serve.log"))
        .expect("log file");
    let child = kith(&ca.data)
        .args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
        .arg(&ca.pass)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn kith serve");
    let pid = child.id();
    let proc = Proc(child);
    let url = wait_for("server.json", Duration::from_secs(60), || {
        let v: Value = serde_json::from_slice(&std::fs::read(&info).ok()?).ok()?;
        (v["pid"].as_u64() == Some(u64::from(pid)))
            .then(|| v["server"].as_str().map(String::from))?
    });
    (proc, url)
}

fn token(ca: &Ca, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--role", "worker", "--json"];
    args.extend_from_slice(extra);
    let v: Value = serde_json::from_str(&ca.ok(&args)).expect("token JSON");
    v["token"].as_str().expect("token").to_string()
}

/// `kith join` (no data dir: a node has none); its output.
fn join(url: &str, token: &str, dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["join", "--server", url, "--token", token])
        .args(extra)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run kith join")
}

fn joined(url: &str, token: &str, dir: &Path, extra: &[&str]) -> String {
    let out = join(url, token, dir, extra);
    assert!(
        out.status.success(),
        "join {extra:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into()
}

fn refused(url: &str, token: &str, dir: &Path, extra: &[&str], code: &str) -> String {
    let out = join(url, token, dir, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "join {extra:?} should fail with {code}"
    );
    assert!(
        stderr.contains(&format!("error[{code}]")),
        "join {extra:?}: expected error[{code}], got:\n{stderr}"
    );
    stderr
}

/// (notBefore, notAfter) of `dir`'s certificate, as openssl reads them.
fn dates(dir: &Path) -> (OffsetDateTime, OffsetDateTime) {
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-dates",
        "-dateopt",
        "iso_8601",
        "-in",
        &dir.join("cert.pem").to_string_lossy(),
    ]);
    assert!(ok, "openssl x509 -dates: {text}");
    let field = |name: &str| {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        // iso_8601 prints `2026-11-30 12:00:00Z`.
        OffsetDateTime::parse(&line.trim().replace(' ', "T"), &Rfc3339)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    (field("notBefore="), field("notAfter="))
}

fn identity(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity.json"))
        .expect("identity JSON")
}

/// A token's `--cert-ttl 1m` gives leaves of one minute (the validity
/// starts a fifth of it early for clock skew, not five minutes), at join
/// and at renewal; below a minute is refused by the server with the bound;
/// the server's `--leaf-ttl` is the default of tokens that set none.
#[test]
fn certificate_lifetimes_from_the_token_and_the_server() {
    let ca = Ca::init("p256");
    let (_server, url) = serve(&ca, &["--leaf-ttl", "2m"]);

    let short = token(&ca, &["--cert-ttl", "1m"]);
    let dir = ca.path("short");
    let before = OffsetDateTime::now_utc();
    joined(
        &url,
        &short,
        &dir,
        &["--name", "short", "--no-interface-ips"],
    );
    let after = OffsetDateTime::now_utc();
    let (not_before, not_after) = dates(&dir);
    assert!(
        not_after >= before.replace_nanosecond(0).expect("ns") + time::Duration::seconds(60)
            && not_after <= after + time::Duration::seconds(60),
        "a 1m token gives a leaf ending 60 s after its issuance: {not_after} (issued between {before} and {after})"
    );
    assert_eq!(
        not_after - not_before,
        time::Duration::seconds(72),
        "60 s of life after 12 s of backdating"
    );
    // A renewal keeps the token's lifetime.
    let serial = identity(&dir)["serial"].clone();
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&dir)
        .output()
        .expect("renew");
    assert!(
        out.status.success(),
        "renew: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(identity(&dir)["serial"], serial, "renewed");
    let (nb, na) = dates(&dir);
    assert_eq!(
        na - nb,
        time::Duration::seconds(72),
        "the renewal is as short"
    );

    // Below the floor: refused by the server, nothing minted.
    let out = ca.run(&["token", "create", "--role", "worker", "--cert-ttl", "59s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a 59 s certificate lifetime was accepted"
    );
    assert!(
        stderr.contains("error[invalid-argument]") && stderr.contains("1 minute"),
        "the refusal names the floor: {stderr}"
    );
    let listed: Value = serde_json::from_str(&ca.ok(&["token", "ls", "--json"])).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(
        listed[0]["cert_ttl_seconds"], 60,
        "the token record carries its lifetime"
    );

    // No --cert-ttl: the server's --leaf-ttl 2m.
    let plain = token(&ca, &[]);
    let dir = ca.path("plain");
    joined(
        &url,
        &plain,
        &dir,
        &["--name", "plain", "--no-interface-ips"],
    );
    let (nb, na) = dates(&dir);
    assert_eq!(
        na - nb,
        time::Duration::seconds(144),
        "120 s + 24 s backdated"
    );

    // A server default below the floor does not start.
    let out = kith(&ca.data)
        .args(["serve", "--leaf-ttl", "30s", "--passphrase-file"])
        .arg(&ca.pass)
        .output()
        .expect("serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("1 minute"),
        "serve --leaf-ttl 30s: {stderr}"
    );
}

/// What the README's quickstart shows: an agent keeps a short certificate
/// renewed by itself, at about two thirds of its life, without moving the
/// clock.
#[test]
fn an_agent_renews_a_one_minute_certificate_by_itself() {
    let ca = Ca::init("p256");
    let (_server, url) = serve(&ca, &[]);
    let t = token(&ca, &["--cert-ttl", "1m"]);
    let dir = ca.path("node");
    joined(&url, &t, &dir, &["--name", "node", "--no-interface-ips"]);
    let first = identity(&dir)["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    let first_end = dates(&dir).1;
    let _agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["agent", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("agent"),
    );
    // Due about 36 s after issuance; a loaded machine gets generous time.
    wait_for("the agent's renewal", Duration::from_secs(150), || {
        (identity(&dir)["serial"].as_str() != Some(first.as_str())).then_some(())
    });
    let (_, end) = dates(&dir);
    assert!(
        end > first_end,
        "the renewed certificate lasts longer: {end}"
    );
    assert!(
        OffsetDateTime::now_utc() < first_end,
        "renewed before the first certificate expired"
    );
}

/// A token minted for a name joins as that name without `--name`; a DNS
/// name the token does not allow says how to allow it, and so does `join
/// --help`.
#[test]
fn a_join_takes_its_name_from_the_token() {
    let ca = Ca::init("p256");
    let (_server, url) = serve(&ca, &[]);
    let t = token(&ca, &["--name", "web-7"]);
    let dir = ca.path("web");
    let out = joined(&url, &t, &dir, &["--no-interface-ips", "--json"]);
    let v: Value = serde_json::from_str(&out).expect("join JSON");
    assert_eq!(v["node"], "web-7", "{out}");
    assert_eq!(identity(&dir)["node"], "web-7");

    // On the node, `cert verify` checks against the node directory, and
    // without one says where to look.
    let cert = dir.join("cert.pem");
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["--data-dir"])
        .arg(ca.path("no-ca-here"))
        .args(["cert", "verify", "--name", "web-7", "--dir"])
        .arg(&dir)
        .arg(&cert)
        .output()
        .expect("cert verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.starts_with("OK: web-7"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["--data-dir"])
        .arg(ca.path("no-ca-here"))
        .args(["cert", "verify"])
        .arg(&cert)
        .output()
        .expect("cert verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[not-initialized]") && stderr.contains("--dir"),
        "{stderr}"
    );
    // Another cluster's certificate does not verify against this node's bundle.
    let other = Ca::init("p256");
    other.ok(&[
        "cert",
        "issue",
        "stranger",
        "--role",
        "worker",
        "--out",
        &other.path("out").to_string_lossy(),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["cert", "verify", "--dir"])
        .arg(&dir)
        .arg(other.path("out/stranger/cert.pem"))
        .output()
        .expect("cert verify");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("does not verify"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A token without a name still joins as the host's name.
    let t = token(&ca, &[]);
    let host = kith_agent_host_name();
    let out = joined(
        &url,
        &t,
        &ca.path("host"),
        &["--no-interface-ips", "--json"],
    );
    let v: Value = serde_json::from_str(&out).expect("join JSON");
    assert_eq!(v["node"], host.as_str(), "{out}");

    // A slow RSA key says it is coming.
    let t = token(&ca, &[]);
    let out = join(
        &url,
        &t,
        &ca.path("rsa"),
        &[
            "--name",
            "rsa",
            "--no-interface-ips",
            "--key-type",
            "rsa2048",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("generating an rsa2048 key"), "{stderr}");

    let t = token(&ca, &[]);
    let stderr = refused(
        &url,
        &t,
        &ca.path("extra"),
        &[
            "--name",
            "extra",
            "--san",
            "api.example.com",
            "--no-interface-ips",
        ],
        "san-not-allowed",
    );
    assert!(
        stderr.contains("--allow-san"),
        "the hint says how: {stderr}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["join", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--allow-san"), "{help}");
    assert!(help.contains("token was minted for"), "{help}");
}

/// The first label of this host's name, as `kith join` derives it.
fn kith_agent_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .split('.')
        .next()
        .expect("label")
        .to_ascii_lowercase()
}

/// Two nodes on one host both join with their interface addresses: the
/// second's certificate leaves out those the first holds, and its output
/// says so. An address asked for by name (`--san`) that another node
/// holds is refused `ip-taken`, spending nothing.
#[test]
fn nodes_sharing_a_host_and_a_held_address_asked_for() {
    let ca = Ca::init("p256");
    let (_server, url) = serve(&ca, &[]);
    let t = token(&ca, &["--uses", "3"]);
    let ips = if_addrs_non_loopback();
    assert!(
        !ips.is_empty(),
        "this test needs a non-loopback, non-link-local interface address"
    );
    let one = ca.path("one");
    let out = joined(&url, &t, &one, &["--name", "one", "--san", "10.99.0.7"]);
    assert!(!out.contains("left out"), "{out}");
    let two = ca.path("two");
    let out = joined(&url, &t, &two, &["--name", "two"]);
    assert!(out.contains("left out of the certificate"), "{out}");
    let sans = |dir: &Path| {
        let (ok, text) = openssl(&[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &dir.join("cert.pem").to_string_lossy(),
        ]);
        assert!(ok, "{text}");
        text
    };
    let (s1, s2) = (sans(&one), sans(&two));
    for (ip, shown) in &ips {
        assert!(
            s1.contains(shown.as_str()),
            "the first node holds {ip}: {s1}"
        );
        assert!(
            !s2.contains(shown.as_str()),
            "the second leaves {ip} out: {s2}"
        );
        assert!(out.contains(ip.as_str()), "the output names {ip}: {out}");
    }
    assert!(s2.contains("127.0.0.1"), "loopback is shared: {s2}");

    // Asked for by name: refused, and the token keeps its last use.
    let stderr = refused(
        &url,
        &t,
        &ca.path("three"),
        &[
            "--name",
            "three",
            "--no-interface-ips",
            "--san",
            "10.99.0.7",
        ],
        "ip-taken",
    );
    assert!(stderr.contains("--allow-san"), "{stderr}");
    let listed: Value = serde_json::from_str(&ca.ok(&["token", "ls", "--json"])).expect("JSON");
    assert_eq!(listed[0]["uses_left"], 1, "{listed}");
}

/// This host's addresses that `kith join` reports (not loopback, not
/// link-local): as Rust and as openssl print them.
fn if_addrs_non_loopback() -> Vec<(String, String)> {
    let out = Command::new("ip")
        .args(["-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.find(|x| *x == "inet" || *x == "inet6")?;
            let addr = w.next()?.split('/').next()?;
            let ip: std::net::IpAddr = addr.parse().ok()?;
            Some((
                ip.to_string(),
                match ip {
                    // openssl prints IPv6 addresses in full, upper case.
                    std::net::IpAddr::V6(v6) => v6
                        .segments()
                        .iter()
                        .map(|s| format!("{s:X}"))
                        .collect::<Vec<_>>()
                        .join(":"),
                    std::net::IpAddr::V4(v4) => v4.to_string(),
                },
            ))
        })
        .collect()
}

/// Errors and listings that say what to do (issue 11, item 14): `revoke`
/// without an argument shows every form, a wrong passphrase does not send
/// the operator back to `init`'s after a change, `secret ls` has a header,
/// `status` shows validity left and `status --json` counts by name.
#[test]
fn errors_and_listings_that_say_what_to_do() {
    let ca = Ca::init("p256");
    let out = kith(&ca.data).arg("revoke").output().expect("revoke");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for form in [
        "error[invalid-argument]",
        "kith revoke SERIAL",
        "--node NAME",
        "--server-name NAME",
    ] {
        assert!(
            stderr.contains(form),
            "revoke without argument names {form}: {stderr}"
        );
    }

    let wrong = ca.path("wrong");
    common::write_private(&wrong, b"not the passphrase at all\n");
    let out = kith(&ca.data)
        .args(["crl", "--passphrase-file"])
        .arg(&wrong)
        .output()
        .expect("crl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error[wrong-passphrase]"), "{stderr}");
    assert!(
        stderr.contains("current passphrase") && stderr.contains("kith passphrase"),
        "the hint allows for a changed passphrase: {stderr}"
    );

    let (_server, _url) = serve(&ca, &[]);
    let value = ca.path("value");
    common::write_private(&value, b"hunter2");
    ca.ok(&[
        "secret",
        "put",
        "db-password",
        "--allow-role",
        "db",
        "--from-file",
        &value.to_string_lossy(),
    ]);
    let listed = ca.ok(&["secret", "ls"]);
    let mut lines = listed.lines();
    let header = lines.next().expect("a header line");
    for column in ["NAME", "LATEST", "SIZE", "VERSIONS", "ACCESS", "UPDATED"] {
        assert!(
            header.contains(column),
            "secret ls header has {column}: {listed}"
        );
    }
    assert!(
        lines.next().is_some_and(|l| l.starts_with("db-password")),
        "{listed}"
    );

    let status = ca.ok(&["status"]);
    assert!(
        status.contains("days left"),
        "status shows validity left: {status}"
    );
    let v: Value = serde_json::from_str(&ca.ok(&["status", "--json"])).expect("status JSON");
    assert!(
        v["nodes"].is_object() && v["tokens"].is_object(),
        "named counts: {v}"
    );
}

/// A directory `kith cert issue` made offline becomes renewable: the
/// issuance recorded its node as a join does, and `kith node adopt`
/// records a server in it and renews there; `kith renew` then works on its
/// own, and the server lists the node.
#[test]
fn an_offline_directory_is_adopted_and_renews() {
    let ca = Ca::init("p256");
    let out = ca.path("out");
    ca.ok(&[
        "cert",
        "issue",
        "n1",
        "--role",
        "worker",
        "--san",
        "n1.example.net",
        "--out",
        &out.to_string_lossy(),
    ]);
    let dir = out.join("n1");
    assert_eq!(identity(&dir)["server"], Value::Null);
    let first = identity(&dir)["serial"].clone();
    let (_server, url) = serve(&ca, &[]);

    let adopt = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["node", "adopt", "--server", &url, "--dir"])
        .arg(&dir)
        .output()
        .expect("node adopt");
    assert!(
        adopt.status.success(),
        "node adopt: {}{}",
        String::from_utf8_lossy(&adopt.stdout),
        String::from_utf8_lossy(&adopt.stderr)
    );
    let adopted = identity(&dir);
    assert_ne!(adopted["serial"], first, "adoption renewed");
    assert_ne!(adopted["server"], Value::Null, "the server is recorded");
    let (ok, sans) = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        &dir.join("cert.pem").to_string_lossy(),
    ]);
    assert!(
        ok && sans.contains("n1.example.net"),
        "the operator's names stay: {sans}"
    );

    let renew = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&dir)
        .output()
        .expect("renew");
    assert!(
        renew.status.success(),
        "{}",
        String::from_utf8_lossy(&renew.stderr)
    );
    assert_ne!(identity(&dir)["serial"], adopted["serial"]);
    let nodes: Value = serde_json::from_str(&ca.ok(&["node", "ls", "--json"])).expect("JSON");
    assert!(
        nodes.as_array().is_some_and(|n| n
            .iter()
            .any(|v| v["name"] == "n1" && v["state"] == "active")),
        "{nodes}"
    );
}
