//! Helpers shared by the CLI tests: run the real `kith` binary, find the
//! external judges (openssl, pkilint) and fail loudly when one is missing.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PASS: &str = "correct horse battery staple";

/// `kith --data-dir DATA`, with no passphrase in the environment and no
/// terminal on stdin, so nothing can prompt.
pub fn kith(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
    cmd.arg("--data-dir")
        .arg(data)
        .env_remove("KITH_PASSPHRASE")
        .stdin(std::process::Stdio::null());
    cmd
}

/// `kith` for node-side commands (`join`, `renew`, `agent`, `secret get
/// --dir`): no data directory, nothing in the environment, no terminal.
pub fn node() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
    cmd.env_remove("KITH_PASSPHRASE")
        .env_remove("KITH_SERVER")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Run node-side `kith args` and require success; returns stdout.
pub fn node_ok(args: &[&str]) -> String {
    let out = node().args(args).output().expect("run kith");
    assert!(
        out.status.success(),
        "kith {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Run node-side `kith args` and require exit 1 with `error[code]`; returns stderr.
pub fn node_fails_with(args: &[&str], code: &str) -> String {
    let out = node().args(args).output().expect("run kith");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "kith {args:?}: exit status\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("error[{code}]")),
        "kith {args:?}: expected error[{code}], got:\n{stderr}"
    );
    stderr
}

/// Write `path` with mode 0600, as kith requires of a passphrase file.
pub fn write_private(path: &Path, contents: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .expect("write a private file");
}

/// A CA in a temporary data directory, with its passphrase in a file.
pub struct Ca {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub pass: PathBuf,
}

impl Ca {
    pub fn init(key_type: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        let pass = tmp.path().join("pass");
        write_private(&pass, format!("{PASS}\n").as_bytes());
        let ca = Self { tmp, data, pass };
        ca.ok(&[
            "init",
            "--cluster",
            "prod.example",
            "--key-type",
            key_type,
            "--kdf-memory-mib",
            "19",
        ]);
        ca
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Run kith with this data dir and passphrase file (for commands that take it).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = kith(&self.data);
        cmd.args(args);
        let needs_pass = matches!(
            args.first().copied(),
            Some("init" | "revoke" | "crl" | "authority")
        ) || matches!(
            args.get(..2),
            Some(["cert", "issue" | "sign"] | ["ca", "export-key"])
        );
        if needs_pass {
            cmd.arg("--passphrase-file").arg(&self.pass);
        }
        cmd.output().expect("run kith")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kith {args:?} failed:\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Run and require failure with `error[code]`; returns stderr.
    /// [`Ca::ok`], parsed as JSON (for `--json` commands).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kith {args:?}: not JSON: {e}\n{out}"))
    }

    pub fn fails_with(&self, args: &[&str], code: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            !out.status.success(),
            "kith {args:?} should fail with {code}, but succeeded"
        );
        assert_eq!(out.status.code(), Some(1), "kith {args:?}: exit status");
        assert!(
            stderr.contains(&format!("error[{code}]")),
            "kith {args:?}: expected error[{code}], got:\n{stderr}"
        );
        stderr
    }

    /// Mint a join token for `role` (`kith token create --json`, through
    /// the running server); `extra` adds flags (`--uses 3`, `--name n1`).
    pub fn token(&self, role: &str, extra: &[&str]) -> String {
        let mut args = vec!["token", "create", "--role", role, "--json"];
        args.extend_from_slice(extra);
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&args)).expect("token create JSON");
        v["token"].as_str().expect("a token").to_string()
    }

    /// Join node `name` at `url` with `token` into `<tmp>/<name>` (no
    /// interface addresses, so several nodes on this host never contend
    /// for them); `extra` adds flags. Requires success; returns the node
    /// directory.
    pub fn join(&self, url: &str, token: &str, name: &str, extra: &[&str]) -> PathBuf {
        let dir = self.path(name);
        let mut args = vec!["join", "--server", url, "--token", token, "--name", name];
        args.extend_from_slice(&["--no-interface-ips", "--dir"]);
        let mut cmd = node();
        cmd.args(&args).arg(&dir).args(extra);
        let out = cmd.output().expect("run kith join");
        assert!(
            out.status.success(),
            "join {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    }

    /// Mint a one-use token for `role` and join node `name` with it.
    pub fn join_new(&self, url: &str, role: &str, name: &str) -> PathBuf {
        let token = self.token(role, &[]);
        self.join(url, &token, name, &[])
    }

    /// Every recorded certificate (`kith cert ls --json`).
    pub fn certs(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["cert", "ls", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out)
            .expect("cert ls JSON")
            .as_array()
            .expect("array")
            .clone()
    }
}

/// Find an external tool or panic with the command that installs it.
pub fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KITH_TOOLS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    // The venv scripts/test.sh creates at the workspace root.
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "required tool `{name}` not found: run ./scripts/test.sh, which installs openssl and a venv with pkilint"
            )
        })
}

/// Run a tool; returns (success, stdout+stderr).
pub fn run_tool(name: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool(name))
        .args(args)
        .output()
        .expect("run tool");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub fn openssl(args: &[&str]) -> (bool, String) {
    run_tool("openssl", args)
}

/// One pkilint finding.
#[derive(Debug)]
pub struct Finding {
    pub code: String,
    pub severity: String,
    pub message: String,
}

/// Run a pkilint linter at `-s WARNING` and parse what it reports.
pub fn pkilint(linter: &str, extra: &[&str], file: &Path) -> Vec<Finding> {
    let mut args = vec!["lint"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-s", "WARNING"]);
    let f = file.to_str().expect("utf-8 path");
    args.push(f);
    let out = Command::new(tool(linter))
        .args(&args)
        .output()
        .expect("run pkilint");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.code().is_some(),
        "{linter} crashed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut findings = Vec::new();
    for line in text.lines() {
        // "    pkix.code (SEVERITY): message" or "    pkix.code (SEVERITY)"
        let t = line.trim();
        if let Some(open) = t.find(" (") {
            if let Some(close) = t[open..].find(')') {
                let severity = &t[open + 2..open + close];
                if ["FATAL", "ERROR", "WARNING", "NOTICE", "INFO"].contains(&severity) {
                    findings.push(Finding {
                        code: t[..open].to_string(),
                        severity: severity.to_string(),
                        message: t[open + close + 1..]
                            .trim_start_matches(':')
                            .trim()
                            .to_string(),
                    });
                }
            }
        }
    }
    if findings.is_empty() {
        assert!(
            text.trim().is_empty(),
            "{linter} printed something unparsed for {f}:\n{text}"
        );
    }
    findings
}

/// The one error-level finding kith accepts from pkilint: its URI check
/// uses a scheme allow-list without `spiffe` (see docs/CONFORMANCE.md).
pub fn is_known_spiffe_false_positive(f: &Finding) -> bool {
    f.code == "pkix.invalid_uri_syntax" && f.message.contains("\"spiffe://")
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Poll `f` every 100 ms until it gives a value; panic after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start `kith serve` on `listen` with passphrase file `pass` (its log goes
/// to `serve.log` beside the data directory); returns the process and the
/// URL it advertises, once it has written `server.json`.
pub fn start_server(ca: &Ca, listen: &str, pass: &Path) -> (Proc, String) {
    start_server_with(ca, listen, pass, &[])
}

/// [`start_server`] with `extra` flags for `kith serve`; the log is at
/// info level.
pub fn start_server_with(ca: &Ca, listen: &str, pass: &Path, extra: &[&str]) -> (Proc, String) {
    let info = ca.data.join("server.json");
    let _ = std::fs::remove_file(&info);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ca.path("serve.log"))
        .expect("log file");
    let child = kith(&ca.data)
        .args(["serve", "--listen", listen, "--passphrase-file"])
        .arg(pass)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn kith serve");
    let pid = child.id();
    let proc = Proc(child);
    let url = wait_for("server.json", Duration::from_secs(60), || {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&info).ok()?).ok()?;
        (v["pid"].as_u64() == Some(u64::from(pid)))
            .then(|| v["server"].as_str().map(String::from))?
    });
    (proc, url)
}

/// The example binary of kith-agent (`mtls`), built by `cargo test
/// --workspace`.
pub fn mtls_example() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("examples/mtls");
    assert!(
        p.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (scripts/test.sh does), which builds kith-agent's examples",
        p.display()
    );
    p
}
