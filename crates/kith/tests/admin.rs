//! Operator commands with a real `kith serve` holding the store (issue 11,
//! items 4-6): every operator command goes through the admin API when a
//! server runs (the store is locked to it) and works on the store when none
//! does; admin commands on the CA host reach the server by its listen
//! address when its advertised name does not resolve there; operators are
//! added, renewed, listed and revoked, and `kith status` warns 30 days
//! before the credential in use expires. The CA lives in the default data
//! directory (`$XDG_DATA_HOME/kith`), as a user's would.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{openssl, wait_for, write_private, Proc, PASS};
use serde_json::Value;

/// A CA in the default data directory of a private `$XDG_DATA_HOME`.
struct Home {
    tmp: tempfile::TempDir,
    pass: PathBuf,
}

impl Home {
    fn init() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pass = tmp.path().join("pass");
        write_private(&pass, format!("{PASS}\n").as_bytes());
        let home = Self { tmp, pass };
        let pass = home.pass.to_str().expect("utf-8 path").to_string();
        home.ok(&[
            "init",
            "--cluster",
            "prod.example",
            "--kdf-memory-mib",
            "19",
            "--passphrase-file",
            &pass,
        ]);
        home
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("xdg/kith")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `kith ARGS` with no `--data-dir`: the default data directory.
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
        cmd.env("XDG_DATA_HOME", self.tmp.path().join("xdg"))
            .env("HOME", self.tmp.path())
            .env_remove("KITH_DATA_DIR")
            .env_remove("KITH_SERVER")
            .env_remove("KITH_ADMIN_DIR")
            .env_remove("KITH_PASSPHRASE")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run kith")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kith {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("kith {args:?}: not JSON ({e}):\n{out}"))
    }

    fn fails_with(&self, args: &[&str], code: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(1),
            "kith {args:?}: exit status\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("error[{code}]")),
            "kith {args:?}: expected error[{code}]:\n{stderr}"
        );
        stderr
    }

    /// `kith serve` on a free loopback port (and `extra` flags), once it
    /// has written `server.json`.
    fn serve(&self, extra: &[&str]) -> Proc {
        let info = self.data().join("server.json");
        let _ = std::fs::remove_file(&info);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("serve.log"))
            .expect("log file");
        let child = self
            .cmd()
            .args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
            .arg(&self.pass)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kith serve");
        let pid = u64::from(child.id());
        let proc = Proc(child);
        wait_for("server.json", Duration::from_secs(60), || {
            let v: Value = serde_json::from_slice(&std::fs::read(&info).ok()?).ok()?;
            (v["pid"].as_u64() == Some(pid)).then_some(())
        });
        proc
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

fn serials(certs: &Value) -> Vec<(String, String, Option<String>)> {
    certs
        .as_array()
        .expect("cert ls JSON is an array")
        .iter()
        .map(|c| {
            (
                c["node"].as_str().expect("node").to_string(),
                c["serial"].as_str().expect("serial").to_string(),
                c["revoked"]["reason"].as_str().map(String::from),
            )
        })
        .collect()
}

#[test]
fn every_operator_command_goes_through_the_running_server() {
    let home = Home::init();
    // No server: offline, as before (the store is read directly).
    let offline = home.json(&["ca", "show", "--json"]);
    assert_eq!(offline["cluster"], "prod.example");
    assert_eq!(serials(&home.json(&["cert", "ls", "--json"])).len(), 1);

    let server = home.serve(&[]);
    // None of these is given the passphrase: they go through the admin API
    // with the operator credential (before: error[store-locked]).
    let ca = home.json(&["ca", "show", "--json"]);
    assert_eq!(ca["cluster"], "prod.example");
    assert_eq!(ca["authorities"][0]["name"], "cluster");
    assert_eq!(
        ca["authorities"][0]["root_pin_sha256"],
        offline["authorities"][0]["root_pin_sha256"]
    );
    assert!(home.ok(&["ca", "show"]).contains("root pin"));

    let listed = home.json(&["cert", "ls", "--json"]);
    assert!(
        serials(&listed).iter().any(|(n, _, _)| n == "admin"),
        "{listed}"
    );

    let out = home.path("nodes");
    let out_s = out.to_str().expect("utf-8");
    let issued = home.json(&[
        "cert",
        "issue",
        "web-1",
        "web-2",
        "--role",
        "web",
        "--san",
        "web.prod.example",
        "--out",
        out_s,
        "--json",
    ]);
    assert_eq!(issued.as_array().map(Vec::len), Some(2), "{issued}");
    let web1 = out.join("web-1");
    assert_eq!(mode(&web1.join("key.pem")), 0o600);
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        web1.join("ca.pem").to_str().expect("utf-8"),
        "-untrusted",
        web1.join("chain.pem").to_str().expect("utf-8"),
        web1.join("cert.pem").to_str().expect("utf-8"),
    ]);
    assert!(ok, "openssl verify: {text}");
    let (_, text) = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        web1.join("cert.pem").to_str().expect("utf-8"),
    ]);
    assert!(text.contains("web.prod.example"), "{text}");
    let web_serial = issued[0]["serial"].as_str().expect("serial").to_string();
    assert!(
        serials(&home.json(&["cert", "ls", "--json", "--node", "web-1"]))
            .iter()
            .any(|(_, s, _)| *s == web_serial)
    );
    // An operator certificate is not cut by `cert issue` online.
    home.fails_with(
        &[
            "cert",
            "issue",
            "op",
            "--role",
            "admin",
            "--profile",
            "admin",
            "--out",
            out_s,
        ],
        "profile-not-allowed",
    );

    // A CSR made elsewhere (openssl), signed under the policy given.
    let key = home.path("api.key");
    let csr = home.path("api.csr");
    let (ok, text) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        key.to_str().expect("utf-8"),
        "-out",
        csr.to_str().expect("utf-8"),
        "-subj",
        "/CN=whoever",
        "-addext",
        "subjectAltName=DNS:api.prod.example",
    ]);
    assert!(ok, "openssl req: {text}");
    let csr_s = csr.to_str().expect("utf-8");
    home.fails_with(
        &["cert", "sign", csr_s, "--name", "api-1", "--role", "api"],
        "san-not-allowed",
    );
    let signed = home.json(&[
        "cert",
        "sign",
        csr_s,
        "--name",
        "api-1",
        "--role",
        "api",
        "--allow-san",
        "api.prod.example",
        "--json",
    ]);
    assert_eq!(signed["node"], "api-1");
    assert!(
        signed["sans"].to_string().contains("api.prod.example"),
        "{signed}"
    );
    assert!(signed["chain_pem"]
        .as_str()
        .is_some_and(|p| p.matches("BEGIN CERTIFICATE").count() == 2));

    let crl = home.path("crl.pem");
    let crl_s = crl.to_str().expect("utf-8");
    home.ok(&["crl", "--pem", "--out", crl_s]);
    let (ok, text) = openssl(&["crl", "-noout", "-text", "-in", crl_s]);
    assert!(ok, "openssl crl: {text}");
    let first = crl_number(&text);
    home.ok(&["crl", "--pem", "--force-new", "--out", crl_s]);
    let (_, text) = openssl(&["crl", "-noout", "-text", "-in", crl_s]);
    assert_eq!(crl_number(&text), first + 1, "{text}");

    let added = home.ok(&["authority", "add", "api"]);
    assert!(added.contains("added authority api"), "{added}");
    let ca = home.json(&["ca", "show", "--json"]);
    let names: Vec<&str> = ca["authorities"]
        .as_array()
        .expect("authorities")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["api", "cluster"]);
    let bundle = std::fs::read_to_string(home.data().join("ca.pem")).expect("ca.pem");
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2, "{bundle}");
    home.fails_with(&["authority", "add", "api"], "authority-exists");

    let ops = home.json(&["admin", "ls", "--json"]);
    assert_eq!(ops[0]["name"], "admin");
    assert_eq!(ops[0]["state"], "live");
    let status = home.json(&["status", "--json"]);
    assert_eq!(status["cluster"], "prod.example");

    // The server is gone (killed: its server.json stays behind): offline
    // again, and what it recorded is in the store.
    drop(server);
    let certs = serials(&home.json(&["cert", "ls", "--json"]));
    assert!(certs.iter().any(|(_, s, _)| *s == web_serial));
    assert_eq!(
        home.json(&["ca", "show", "--json"])["authorities"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        home.json(&["admin", "ls", "--json"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    // Offline, what needs the keys needs the passphrase, as before.
    home.fails_with(&["crl", "--pem"], "passphrase-required");
}

fn crl_number(text: &str) -> u64 {
    let line = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 CRL Number"))
        .nth(1)
        .unwrap_or_else(|| panic!("no CRL number in:\n{text}"));
    line.trim().parse().expect("CRL number")
}

#[test]
fn admin_commands_reach_the_listen_address_when_the_advertised_name_does_not_resolve() {
    let home = Home::init();
    let _server = home.serve(&["--advertise", "https://kith-ca.invalid:7443"]);
    let info: Value = serde_json::from_slice(
        &std::fs::read(home.data().join("server.json")).expect("server.json"),
    )
    .expect("server.json JSON");
    assert_eq!(info["server"], "https://kith-ca.invalid:7443");
    assert!(info["listen"]
        .as_str()
        .is_some_and(|l| l.starts_with("127.0.0.1:")));
    // Before: error[unreachable] on the name (status), or the store locked.
    let status = home.json(&["status", "--json"]);
    assert_eq!(status["cluster"], "prod.example");
    assert_eq!(
        home.json(&["ca", "show", "--json"])["cluster"],
        "prod.example"
    );
    home.ok(&["token", "create", "--role", "worker"]);
    // An address given explicitly is the only one tried.
    home.fails_with(
        &["status", "--server", "https://kith-ca.invalid:7443"],
        "unreachable",
    );
}

#[test]
fn operators_are_added_renewed_listed_and_revoked() {
    let home = Home::init();
    let admin = home.data().join("admin");
    let server = home.serve(&[]);

    let bob = home.path("bob");
    let bob_s = bob.to_str().expect("utf-8").to_string();
    let added = home.json(&["admin", "add", "bob", "--out", &bob_s, "--json"]);
    assert_eq!(added["name"], "bob");
    assert_eq!(mode(&bob.join("key.pem")), 0o600);
    let (_, text) = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        bob.join("cert.pem").to_str().expect("utf-8"),
    ]);
    assert!(
        text.contains("spiffe://prod.example/kith/admin/bob"),
        "{text}"
    );
    // Bob is an operator of his own: the admin API takes his credential.
    home.ok(&["status", "--admin-dir", &bob_s]);
    home.fails_with(&["admin", "add", "bob", "--out", &bob_s], "exists");
    home.fails_with(
        &["admin", "add", "carol", "--out", &bob_s],
        "exists", // a directory holding a key is not overwritten
    );
    let ops = home.json(&["admin", "ls", "--json"]);
    let states: Vec<(&str, &str)> = ops
        .as_array()
        .expect("array")
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap_or(""),
                o["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(states, [("admin", "live"), ("bob", "live")]);

    // Renewal: not due for a fresh credential, done when asked.
    let not_due = home.json(&["admin", "renew", "--if-due", "--json"]);
    assert_eq!(not_due["renewed"], false, "{not_due}");
    let old = home.path("admin-old");
    copy_dir(&admin, &old);
    let old_key = std::fs::read(admin.join("key.pem")).expect("key");
    let renewed = home.json(&["admin", "renew", "--json"]);
    assert_eq!(renewed["renewed"], true, "{renewed}");
    assert_ne!(renewed["serial"], renewed["replaced"]);
    assert_ne!(
        std::fs::read(admin.join("key.pem")).expect("key"),
        old_key,
        "a new key"
    );
    assert_eq!(mode(&admin.join("key.pem")), 0o600);
    home.ok(&["status"]);
    // The replaced certificate is revoked and refused at once.
    let replaced = renewed["replaced"].as_str().expect("replaced");
    assert!(serials(&home.json(&["cert", "ls", "--json"]))
        .iter()
        .any(|(_, s, r)| s == replaced && r.as_deref() == Some("superseded")));
    home.fails_with(
        &["status", "--admin-dir", old.to_str().expect("utf-8")],
        "certificate-revoked",
    );

    // Revoking bob: refused by the admin gate from the next request on.
    let revoked = home.json(&["admin", "revoke", "bob", "--json"]);
    assert_eq!(revoked["revoked"][0]["node"], "bob", "{revoked}");
    home.fails_with(&["status", "--admin-dir", &bob_s], "certificate-revoked");
    home.fails_with(&["admin", "revoke", "bob"], "unknown-operator");
    // The last live operator cannot revoke itself (or be revoked).
    let last = home.fails_with(&["admin", "revoke", "admin"], "last-operator");
    assert!(last.contains("kith admin add"), "{last}");
    home.ok(&["status"]);
    // A node name never reaches an operator.
    home.fails_with(&["admin", "revoke", "nobody"], "unknown-operator");

    // Offline (server stopped): listing needs no passphrase, adding does.
    drop(server);
    let ops = home.json(&["admin", "ls", "--json"]);
    assert_eq!(ops[1]["state"], "revoked", "{ops}");
    let carol = home.path("carol");
    let pass = home.pass.to_str().expect("utf-8").to_string();
    home.ok(&[
        "admin",
        "add",
        "carol",
        "--out",
        carol.to_str().expect("utf-8"),
        "--passphrase-file",
        &pass,
    ]);
    let out = home.ok(&["admin", "revoke", "carol", "--passphrase-file", &pass]);
    assert!(out.contains("operator carol"), "{out}");
    let ops = home.json(&["admin", "ls", "--json"]);
    assert_eq!(ops[2]["name"], "carol");
    assert_eq!(ops[2]["state"], "revoked", "{ops}");
    home.fails_with(
        &["admin", "revoke", "admin", "--passphrase-file", &pass],
        "last-operator",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        std::fs::copy(e.path(), &dest).expect("copy");
    }
}

#[test]
fn status_warns_thirty_days_before_the_operator_credential_expires() {
    let home = Home::init();
    let pass = home.pass.to_str().expect("utf-8").to_string();
    // An operator credential with ten days left (cut offline).
    let out = home.path("short");
    home.ok(&[
        "cert",
        "issue",
        "ops",
        "--role",
        "admin",
        "--profile",
        "admin",
        "--ttl",
        "10d",
        "--out",
        out.to_str().expect("utf-8"),
        "--passphrase-file",
        &pass,
    ]);
    let _server = home.serve(&[]);
    let short = out.join("ops");
    let run = home.run(&["status", "--admin-dir", short.to_str().expect("utf-8")]);
    assert!(run.status.success(), "{run:?}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("warning: the operator credential")
            && stderr.contains("expires in 9 days")
            && stderr.contains("kith admin renew"),
        "{stderr}"
    );
    // A fresh credential (a year) is not warned about.
    let run = home.run(&["status"]);
    assert!(run.status.success(), "{run:?}");
    assert!(
        !String::from_utf8_lossy(&run.stderr).contains("warning"),
        "{run:?}"
    );
}
