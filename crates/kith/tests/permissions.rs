//! File permissions and file types, with the real binary on real files:
//! kith creates what it keeps with owner-only modes, refuses (with the path,
//! the mode found and the fix) private files and directories that others
//! can read or write, and never opens anything but a regular file where it
//! expects one, so a FIFO planted in a node directory cannot hang it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{kith, start_server, wait_for, Ca, Proc};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd` to completion, killing it (and failing the test) if it is
/// still running after `limit`: a hang is the failure these tests look for.
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kith");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for kith"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("kith (pid {pid}) still running after {limit:?}: it hung");
        }
    }
}

/// Assert a refusal: non-zero exit, the code, the path and the fix.
fn assert_refused(out: &Output, code: &str, path: &Path, fix: &str) {
    let t = text(out);
    assert!(
        !out.status.success(),
        "expected a refusal, got success:\n{t}"
    );
    assert!(
        t.contains(&format!("error[{code}]")),
        "expected error[{code}]:\n{t}"
    );
    assert!(
        t.contains(&path.display().to_string()),
        "the error names {}:\n{t}",
        path.display()
    );
    assert!(t.contains(fix), "the error says the fix {fix:?}:\n{t}");
}

/// Start `kith serve` and expect it to refuse to start: it exits with an
/// error before writing server.json. Returns its output.
fn serve_refused(ca: &Ca) -> Output {
    let info = ca.data.join("server.json");
    let _ = fs::remove_file(&info);
    let child = kith(&ca.data)
        .args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
        .arg(&ca.pass)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kith serve");
    let mut proc = Proc(child);
    let start = Instant::now();
    loop {
        if proc.0.try_wait().expect("try_wait").is_some() {
            break;
        }
        assert!(
            !info.exists(),
            "kith serve started (wrote server.json) despite the unsafe data directory"
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "kith serve neither refused nor started in 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = Output {
        status: proc.0.wait().expect("wait"),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut e) = proc.0.stderr.take() {
        let _ = e.read_to_end(&mut out.stderr);
    }
    out
}

#[test]
fn init_into_an_existing_0755_directory_keeps_everything_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    fs::create_dir(&data).expect("mkdir");
    chmod(&data, 0o755);
    let pass = tmp.path().join("pass");
    common::write_private(&pass, common::PASS.as_bytes());
    let out = kith(&data)
        .args([
            "init",
            "--cluster",
            "prod.example",
            "--kdf-memory-mib",
            "19",
        ])
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .expect("init");
    assert!(out.status.success(), "init: {}", text(&out));
    assert_eq!(mode(&data), 0o700, "the data directory is tightened");
    assert_eq!(mode(&data.join("kith.redb")), 0o600, "the database");
    assert_eq!(
        mode(&data.join("admin")),
        0o700,
        "the admin credential directory"
    );
    assert_eq!(mode(&data.join("admin/key.pem")), 0o600, "the admin key");
}

#[test]
fn init_refuses_a_data_directory_others_can_write() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    fs::create_dir(&data).expect("mkdir");
    chmod(&data, 0o777);
    let pass = tmp.path().join("pass");
    common::write_private(&pass, common::PASS.as_bytes());
    let out = kith(&data)
        .args([
            "init",
            "--cluster",
            "prod.example",
            "--kdf-memory-mib",
            "19",
        ])
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .expect("init");
    assert_refused(&out, "insecure-permissions", &data, "chmod 700");
    assert_eq!(
        fs::read_dir(&data).expect("ls").count(),
        0,
        "nothing written"
    );
}

#[test]
fn serve_refuses_a_passphrase_file_others_can_read() {
    let ca = Ca::init("p256");
    chmod(&ca.pass, 0o644);
    let out = serve_refused(&ca);
    assert_refused(&out, "insecure-permissions", &ca.pass, "chmod 600");
    assert!(
        text(&out).contains("0644"),
        "the mode found: {}",
        text(&out)
    );
}

#[test]
fn serve_refuses_an_admin_key_others_can_read() {
    let ca = Ca::init("p256");
    let key = ca.data.join("admin/key.pem");
    chmod(&key, 0o644);
    let out = serve_refused(&ca);
    assert_refused(&out, "insecure-permissions", &key, "chmod 600");
}

#[test]
fn serve_refuses_a_data_directory_group_can_write_or_others_can_read() {
    let ca = Ca::init("p256");
    chmod(&ca.data, 0o770);
    let out = serve_refused(&ca);
    assert_refused(&out, "insecure-permissions", &ca.data, "chmod 700");
    chmod(&ca.data, 0o755);
    let out = serve_refused(&ca);
    assert_refused(&out, "insecure-permissions", &ca.data, "chmod 700");
    // A database others can read is refused by offline commands too.
    chmod(&ca.data, 0o700);
    let db = ca.data.join("kith.redb");
    chmod(&db, 0o644);
    let out = ca.run(&["cert", "ls"]);
    assert_refused(&out, "insecure-permissions", &db, "chmod 600");
}

#[test]
fn a_fifo_planted_as_the_database_is_refused_not_opened() {
    let ca = Ca::init("p256");
    let db = ca.data.join("kith.redb");
    fs::remove_file(&db).expect("rm db");
    let status = Command::new("mkfifo").arg(&db).status().expect("mkfifo");
    assert!(status.success());
    let mut cmd = kith(&ca.data);
    cmd.args(["cert", "ls"]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    assert_refused(&out, "not-regular-file", &db, "regular file");
}

/// A running CA and one joined node.
struct Cluster {
    ca: Ca,
    _server: Proc,
    node: PathBuf,
}

impl Cluster {
    fn start() -> Self {
        let ca = Ca::init("p256");
        let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
        let out = kith(&ca.data)
            .args(["token", "create", "--role", "worker", "--json"])
            .output()
            .expect("token create");
        assert!(out.status.success(), "token create: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
        let token = v["token"].as_str().expect("token").to_string();
        let node = ca.path("node-1");
        let out = Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["join", "--server", &url, "--token", &token])
            .args(["--name", "node-1", "--no-interface-ips", "--dir"])
            .arg(&node)
            .output()
            .expect("join");
        assert!(out.status.success(), "join: {}", text(&out));
        assert_eq!(mode(&node), 0o700, "a node directory is created 0700");
        assert_eq!(mode(&node.join("key.pem")), 0o600, "a node key is 0600");
        Self {
            ca,
            _server: server,
            node,
        }
    }

    /// `kith renew`, `kith secret get --dir` and `kith agent`, each run to
    /// completion under a generous bound.
    fn node_commands(&self) -> Vec<(&'static str, Output)> {
        let bound = Duration::from_secs(60);
        let mut renew = Command::new(env!("CARGO_BIN_EXE_kith"));
        renew.args(["renew", "--dir"]).arg(&self.node);
        let mut get = kith(&self.ca.data);
        get.args(["secret", "get", "db-password", "--dir"])
            .arg(&self.node);
        let mut agent = Command::new(env!("CARGO_BIN_EXE_kith"));
        agent.args(["agent", "--dir"]).arg(&self.node);
        vec![
            ("renew", run_bounded(renew, bound)),
            ("secret get --dir", run_bounded(get, bound)),
            ("agent", run_bounded(agent, bound)),
        ]
    }

    fn cert(&self) -> Vec<u8> {
        fs::read(self.node.join("cert.pem")).expect("cert.pem")
    }
}

#[test]
fn join_into_an_existing_directory_tightens_it_or_refuses_before_spending_the_token() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let out = kith(&ca.data)
        .args([
            "token", "create", "--role", "worker", "--uses", "1", "--json",
        ])
        .output()
        .expect("token create");
    assert!(out.status.success(), "token create: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
    let token = v["token"].as_str().expect("token").to_string();
    let join = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kith"))
            .args(["join", "--server", &url, "--token", &token])
            .args(["--name", "node-1", "--no-interface-ips", "--dir"])
            .arg(dir)
            .output()
            .expect("join")
    };

    let open = ca.path("open");
    fs::create_dir(&open).expect("mkdir");
    chmod(&open, 0o777);
    let out = join(&open);
    assert_refused(&out, "insecure-permissions", &open, "chmod 700");
    assert_eq!(
        fs::read_dir(&open).expect("ls").count(),
        0,
        "nothing written"
    );

    // The token was not spent: its one use joins a 0755 directory, made 0700.
    let packaged = ca.path("var-lib-kith");
    fs::create_dir(&packaged).expect("mkdir");
    chmod(&packaged, 0o755);
    let out = join(&packaged);
    assert!(out.status.success(), "join: {}", text(&out));
    assert_eq!(mode(&packaged), 0o700);
    assert_eq!(mode(&packaged.join("key.pem")), 0o600);
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&packaged)
        .output()
        .expect("renew");
    assert!(out.status.success(), "renew: {}", text(&out));
}

#[test]
fn node_commands_refuse_a_world_writable_node_directory_and_a_readable_key() {
    let c = Cluster::start();
    let before = c.cert();

    chmod(&c.node, 0o777);
    for (what, out) in c.node_commands() {
        eprintln!("{what}: {}", text(&out));
        assert_refused(&out, "insecure-permissions", &c.node, "chmod 700");
    }
    chmod(&c.node, 0o700);

    let key = c.node.join("key.pem");
    chmod(&key, 0o644);
    for (what, out) in c.node_commands() {
        eprintln!("{what}: {}", text(&out));
        assert_refused(&out, "insecure-permissions", &key, "chmod 600");
    }
    assert_eq!(c.cert(), before, "a refusal changes nothing");
    assert_eq!(
        mode(&key),
        0o644,
        "kith does not silently fix what it refuses"
    );

    // Fixed as told, the node renews.
    chmod(&key, 0o600);
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["renew", "--dir"])
        .arg(&c.node)
        .output()
        .expect("renew");
    assert!(out.status.success(), "renew after the fix: {}", text(&out));
    assert_ne!(c.cert(), before, "renewed");
}

#[test]
fn a_fifo_planted_as_crl_pem_fails_renew_fast_instead_of_hanging() {
    let c = Cluster::start();
    let crl = c.node.join("crl.pem");
    fs::remove_file(&crl).expect("rm crl.pem");
    let status = Command::new("mkfifo").arg(&crl).status().expect("mkfifo");
    assert!(status.success());
    let before = c.cert();

    let mut renew = Command::new(env!("CARGO_BIN_EXE_kith"));
    renew.args(["renew", "--dir"]).arg(&c.node);
    let out = run_bounded(renew, Duration::from_secs(60));
    assert_refused(&out, "not-regular-file", &crl, "regular file");
    assert_eq!(c.cert(), before, "nothing renewed");

    // The agent refuses it at start.
    let mut agent = Command::new(env!("CARGO_BIN_EXE_kith"));
    agent.args(["agent", "--dir"]).arg(&c.node);
    let out = run_bounded(agent, Duration::from_secs(60));
    assert_refused(&out, "not-regular-file", &crl, "regular file");

    // Planted under a running agent, it is reported at each refresh and the
    // agent carries on (it still answers signals) instead of hanging.
    fs::remove_file(&crl).expect("rm the FIFO");
    let log = c.ca.path("agent.log");
    let agent = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["agent", "--refresh", "1s", "--dir"])
        .arg(&c.node)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log"))
        .spawn()
        .expect("agent");
    let mut agent = Proc(agent);
    // The agent refreshes at once at start (then says "ready"), writing
    // crl.pem again: plant the FIFO after that first refresh.
    wait_for("the agent's first refresh", Duration::from_secs(60), || {
        let l = fs::read_to_string(&log).ok()?;
        l.contains(" ready").then_some(())
    });
    fs::remove_file(&crl).expect("rm the fresh crl.pem");
    let status = Command::new("mkfifo").arg(&crl).status().expect("mkfifo");
    assert!(status.success());
    wait_for(
        "the agent to report the FIFO",
        Duration::from_secs(60),
        || {
            let l = fs::read_to_string(&log).ok()?;
            l.contains("not a regular file").then_some(())
        },
    );
    let pid = agent.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let stopped = wait_for(
        "the agent to stop on SIGTERM",
        Duration::from_secs(30),
        || agent.0.try_wait().ok().flatten(),
    );
    assert!(
        stopped.success(),
        "agent: {}",
        fs::read_to_string(&log).unwrap_or_default()
    );
}
