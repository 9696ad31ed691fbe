//! `kith backup` and `kith restore` end to end with real processes: a CA
//! with nodes, a secret and a revocation is backed up through the server;
//! its data directory is destroyed; the backup is restored and served
//! again. Nodes renew, read the secret, the CRL (judged by openssl) still
//! lists the revocation and is numbered past every CRL the old CA signed.
//! A damaged backup is refused before anything is created, and a restore
//! never writes over a CA.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{kith, node, openssl, start_server, tool, wait_for, Ca};
use serde_json::Value;

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("port")
}

fn identity(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity.json"))
        .expect("identity JSON")
}

/// The CRL the server serves for `cluster`, as openssl prints it.
fn served_crl(ca: &Ca, url: &str) -> String {
    served_crl_at(ca, url, "/v1/crl/cluster")
}

/// The CRL at `path`, as openssl prints it.
fn served_crl_at(ca: &Ca, url: &str, path: &str) -> String {
    let file = ca.path("served.crl");
    let out = Command::new(tool("curl"))
        .args(["-sS", "--fail", "--cacert"])
        .arg(ca.data.join("ca.pem"))
        .arg("-o")
        .arg(&file)
        .arg(format!("{url}{path}"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (good, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &file.to_string_lossy(),
        "-noout",
        "-text",
    ]);
    assert!(good, "{text}");
    text
}

/// The CRL Number openssl prints (decimal, or hex after "0x").
fn crl_number(text: &str) -> u64 {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.contains("X509v3 CRL Number") {
            let v = lines.next().expect("a number line").trim();
            return match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).expect("hex number"),
                None => v.parse().expect("decimal number"),
            };
        }
    }
    panic!("no CRL number in:\n{text}")
}

fn lists_serial(crl_text: &str, serial_hex: &str) -> bool {
    let want = serial_hex.trim_start_matches('0').to_ascii_uppercase();
    crl_text.lines().any(|l| {
        l.trim()
            .strip_prefix("Serial Number: ")
            .is_some_and(|s| s.trim_start_matches('0').to_ascii_uppercase() == want)
    })
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

fn renew(dir: &Path) -> String {
    let out = node()
        .args(["renew", "--dir"])
        .arg(dir)
        .output()
        .expect("kith renew");
    assert!(
        out.status.success(),
        "renew {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    identity(dir)["serial"]
        .as_str()
        .expect("serial")
        .to_string()
}

fn secret_get(dir: &Path, name: &str) -> Vec<u8> {
    let out = node()
        .args(["secret", "get", name, "--dir"])
        .arg(dir)
        .output()
        .expect("kith secret get");
    assert!(
        out.status.success(),
        "secret get: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn put_secret(ca: &Ca, name: &str, value: &[u8], role: &str) {
    use std::io::Write;
    let mut child = kith(&ca.data)
        .args(["secret", "put", name, "--allow-role", role])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kith secret put");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "secret put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn backup_destroy_restore_serve() {
    let ca = Ca::init("p256");
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let port = port_of(&url);
    let n1 = ca.join_new(&url, "worker", "n-1");
    let n2 = ca.join_new(&url, "worker", "n-2");
    let n3 = ca.join_new(&url, "worker", "n-3");
    put_secret(&ca, "db-password", b"s3cret\x00bytes", "worker");
    let n3_serial = identity(&n3)["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    ca.ok(&["revoke", "--node", "n-3", "--reason", "key-compromise"]);

    // Online: through the server, with the operator credential.
    let file = ca.path("ca.kbk");
    let made = ca.json(&["backup", "--out", &file.to_string_lossy(), "--json"]);
    assert_eq!(made["via"], "server", "{made}");
    let mode = std::fs::metadata(&file)
        .expect("backup")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "backup mode {mode:o}");
    // Sealed: neither the secret's value nor a private key is in clear in
    // any record (values are base64 in the file: decoded here).
    let bytes = std::fs::read(&file).expect("read backup");
    let text = String::from_utf8_lossy(&bytes);
    let mut values = 0;
    for line in text.lines().skip(1) {
        let v: Value = serde_json::from_str(line).expect("a record line");
        let value = base64_decode(v["value"].as_str().expect("value"));
        let key = v["key"].as_str().expect("key");
        let has = |needle: &[u8]| value.windows(needle.len()).any(|w| w == needle);
        assert!(!has(b"s3cret"), "{key}: the secret is in clear");
        assert!(!has(b"PRIVATE KEY"), "{key}: a PEM private key is in clear");
        values += 1;
    }
    assert!(values > 10, "{values} records");
    // Refuses to replace a file unless told to.
    ca.fails_with(&["backup", "--out", &file.to_string_lossy()], "exists");

    // After the backup, the old CA goes on: a revocation and more CRLs.
    ca.ok(&["revoke", "--node", "n-2", "--reason", "superseded"]);
    let before = served_crl(&ca, &url);
    let published_after_backup = crl_number(&before);
    assert!(lists_serial(&before, &n3_serial), "{before}");

    // Disaster: the server and its data directory are gone. The operator
    // kept its credential (a file, not a record) elsewhere.
    drop(server);
    let kept_admin = ca.path("kept-admin");
    copy_dir(&ca.data.join("admin"), &kept_admin);
    let ca_pem = std::fs::read(ca.data.join("ca.pem")).expect("ca.pem");
    std::fs::remove_dir_all(&ca.data).expect("destroy the data directory");

    let restored = ca.json(&["restore", "--from", &file.to_string_lossy(), "--json"]);
    assert!(restored["records"].as_u64() > Some(10), "{restored}");
    let crl_keys = text
        .lines()
        .skip(1)
        .filter(|l| l.contains("\"key\":\"crl/") || l.contains("\"key\":\"rootcrl/"))
        .count();
    assert!(crl_keys >= 2, "an intermediate and a root CRL were signed");
    assert_eq!(
        restored["crls_due"].as_u64(),
        Some(crl_keys as u64),
        "{restored}"
    );
    assert!(
        restored["crl_number_floor"].as_u64() > Some(1 << 32),
        "{restored}"
    );
    // A restore never writes over a CA (here: the one just restored).
    ca.fails_with(
        &["restore", "--from", &file.to_string_lossy()],
        "already-initialized",
    );
    copy_dir(&kept_admin, &ca.data.join("admin"));
    std::fs::write(ca.data.join("ca.pem"), &ca_pem).expect("ca.pem");

    let (_server, url) = start_server(&ca, &format!("127.0.0.1:{port}"), &ca.pass);
    // Nodes renew against the restored CA, and read the secret.
    let old = identity(&n1)["serial"]
        .as_str()
        .expect("serial")
        .to_string();
    assert_ne!(renew(&n1), old, "n-1 got a new certificate");
    assert_eq!(secret_get(&n1, "db-password"), b"s3cret\x00bytes");
    // The CRL lists the revocation made before the backup, and its number
    // is past every number the old CA published, after the backup too.
    // The first CRL served is already a new one: the restored record's
    // old DER is never served.
    let after = served_crl(&ca, &url);
    assert!(
        crl_number(&after) > published_after_backup,
        "the first CRL served after the restore is numbered {}, not past {published_after_backup}",
        crl_number(&after)
    );
    assert!(lists_serial(&after, &n3_serial), "{after}");
    let root = served_crl_at(&ca, &url, "/v1/crl/cluster/root");
    assert!(crl_number(&root) > 1 << 32, "the root's CRL: {root}");
    assert!(
        crl_number(&after) > 1 << 32,
        "number {} not moved past the backup's",
        crl_number(&after)
    );
    // n-2 was revoked after the backup: the restored CA does not know it
    // (the README says to revoke again), and n-2 renews until then.
    renew(&n2);
    ca.ok(&["revoke", "--node", "n-2", "--reason", "superseded"]);
    let again = served_crl(&ca, &url);
    assert!(crl_number(&again) > crl_number(&after), "{again}");

    // The audit trail came back with the rest and still verifies, with the
    // backup itself recorded (who took it, through which request).
    let verified = ca.json(&["audit", "verify", "--json"]);
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(
        verified["breaks"].as_array().is_some_and(Vec::is_empty),
        "{verified}"
    );
    assert!(verified["records"].as_u64() > Some(10), "{verified}");
    let backups = ca.json(&["audit", "ls", "--action", "backup", "--json"]);
    let records = backups["records"].as_array().expect("records");
    assert_eq!(records.len(), 1, "{backups}");
    assert_eq!(records[0]["actor"], "admin:admin", "{backups}");
    assert!(records[0]["request_id"].is_string(), "{backups}");
}

/// Offline (no server): the backup is read from the data directory; a
/// damaged or truncated file is refused with nothing created; a good one
/// restores record for record.
#[test]
fn offline_backup_and_damaged_files() {
    let ca = Ca::init("p256");
    let file = ca.path("offline.kbk");
    let made = ca.json(&["backup", "--out", &file.to_string_lossy(), "--json"]);
    assert_eq!(made["via"], "store", "{made}");
    let bytes = std::fs::read(&file).expect("read");

    let target = |name: &str| -> PathBuf { ca.path(name) };
    let restore_into = |dir: &Path, from: &Path| {
        kith(dir)
            .args(["restore", "--from"])
            .arg(from)
            .output()
            .expect("kith restore")
    };
    let damaged = [
        ("flipped", {
            let mut b = bytes.clone();
            let i = b.len() - 20;
            b[i] ^= 0x01;
            b
        }),
        ("truncated", bytes[..bytes.len() - 30].to_vec()),
        ("last line dropped", {
            let body = &bytes[..bytes.len() - 1];
            let cut = body.iter().rposition(|b| *b == b'\n').expect("lines");
            bytes[..=cut].to_vec()
        }),
        ("not a backup", b"hello\nworld\n".to_vec()),
    ];
    for (what, content) in damaged {
        let f = ca.path("damaged.kbk");
        std::fs::write(&f, &content).expect("write");
        let dir = target("never");
        let out = restore_into(&dir, &f);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains("error[integrity-error]"),
            "{what}: {stderr}"
        );
        assert!(
            !dir.exists(),
            "{what}: a damaged backup created {}",
            dir.display()
        );
    }

    let dir = target("restored");
    let out = restore_into(&dir, &file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A backup taken before any CRL was signed: the first CRL of the
    // restored CA is numbered past the floor all the same (not 1 again).
    let crl_file = ca.path("restored.crl");
    let out = kith(&dir)
        .args(["crl", "--passphrase-file"])
        .arg(&ca.pass)
        .arg("--out")
        .arg(&crl_file)
        .output()
        .expect("kith crl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (good, text) = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        &crl_file.to_string_lossy(),
        "-noout",
        "-text",
    ]);
    assert!(good, "{text}");
    assert!(crl_number(&text) > 1 << 32, "{text}");
    // The restored CA backs up to the same records: each one of the first
    // backup is there unchanged, but the cluster record (its CRL number
    // floor moved); the CRL signed just now and its audit record are new.
    let again = ca.path("again.kbk");
    let out = kith(&dir)
        .args(["backup", "--json", "--out"])
        .arg(&again)
        .output()
        .expect("kith backup");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = |b: &[u8]| -> std::collections::BTreeSet<String> {
        String::from_utf8_lossy(b)
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    };
    let (first, second) = (lines(&bytes), lines(&std::fs::read(&again).expect("read")));
    let lost: Vec<&String> = first
        .difference(&second)
        .filter(|l| !l.contains("\"key\":\"cluster/meta\""))
        .collect();
    assert!(lost.is_empty(), "records changed by a round trip: {lost:?}");
    assert_eq!(
        first
            .iter()
            .filter(|l| l.contains("\"key\":\"cluster/meta\""))
            .count(),
        1
    );
}

/// A backup restored onto a real 3-node NATS cluster (another kind of
/// store, with smaller values): a replica on it serves the CA's nodes, and
/// a backup taken through that replica restores into a data directory
/// again with the same records.
#[test]
fn restore_onto_nats_and_back() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let nats = rt.block_on(kith_store_nats::testing::NatsCluster::start(3));
    let ca = Ca::init("p256");
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let port = port_of(&url);
    let n1 = ca.join_new(&url, "worker", "n-1");
    put_secret(&ca, "api", b"moved by a backup", "worker");
    let file = ca.path("ca.kbk");
    ca.ok(&["backup", "--out", &file.to_string_lossy()]);
    drop(server);

    let home = ca.path("nats-home");
    let restored = kith(&home)
        .env("KITH_STORE", nats.url())
        .args(["restore", "--json", "--from"])
        .arg(&file)
        .output()
        .expect("kith restore");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let log = std::fs::File::create(ca.path("serve-nats.log")).expect("log");
    let child = kith(&home)
        .env("KITH_STORE", nats.url())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--passphrase-file",
        ])
        .arg(&ca.pass)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kith serve --store nats");
    let _serving = common::Proc(child);
    wait_for("serve on NATS", Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    renew(&n1);
    assert_eq!(secret_get(&n1, "api"), b"moved by a backup");

    // Back again, through the replica on NATS, with the same credential.
    let again = ca.path("again.kbk");
    let made = ca.json(&[
        "backup",
        "--json",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--out",
        &again.to_string_lossy(),
    ]);
    assert_eq!(made["via"], "server", "{made}");
    let out = kith(&ca.path("back-home"))
        .args(["restore", "--from"])
        .arg(&again)
        .output()
        .expect("kith restore");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = |f: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_to_string(f)
            .expect("read")
            .lines()
            .skip(1)
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("JSON line");
                v["key"].as_str().expect("key").to_string()
            })
            .collect()
    };
    let (first, second) = (keys(&file), keys(&again));
    let missing: Vec<_> = first.difference(&second).collect();
    assert!(missing.is_empty(), "records lost on the way: {missing:?}");
}
