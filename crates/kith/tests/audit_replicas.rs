//! Two real `kith serve` replicas on one real 3-node NATS cluster, written
//! to at once: each keeps its own audit chain, nothing is lost, and every
//! chain verifies, through either replica and offline on the bucket.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{kith, wait_for, write_private, Proc, PASS};
use kith_store_nats::testing::NatsCluster;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

struct Cluster {
    _rt: tokio::runtime::Runtime,
    _nats: NatsCluster,
    store: String,
    tmp: tempfile::TempDir,
    pass: PathBuf,
}

impl Cluster {
    fn kith(&self, data: &Path) -> Command {
        let mut c = kith(data);
        c.env("KITH_STORE", &self.store);
        c
    }

    fn dir(&self, i: usize) -> PathBuf {
        self.tmp.path().join(format!("ca-{i}"))
    }

    /// `kith serve` replica `i` as `kith-server-r<i>`; its process and URL.
    fn replica(&self, i: usize) -> (Proc, String) {
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}");
        let data = self.dir(i);
        let info = data.join("server.json");
        let log =
            std::fs::File::create(self.tmp.path().join(format!("serve-{i}.log"))).expect("log");
        let child = self
            .kith(&data)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--advertise",
                &url,
                "--server-name",
                &format!("kith-server-r{i}"),
            ])
            .arg("--passphrase-file")
            .arg(&self.pass)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kith serve");
        let pid = child.id();
        let proc = Proc(child);
        wait_for("server.json", Duration::from_secs(90), || {
            let v: Value = serde_json::from_slice(&std::fs::read(&info).ok()?).ok()?;
            (v["pid"].as_u64() == Some(u64::from(pid))).then_some(())
        });
        (proc, url)
    }

    /// An operator command through `url`.
    fn op(&self, url: &str, args: &[&str]) -> Output {
        self.kith(&self.dir(0))
            .args(args)
            .args(["--server", url])
            .arg("--admin-dir")
            .arg(self.dir(0).join("admin"))
            .output()
            .expect("run kith")
    }
}

#[test]
fn two_replicas_writing_at_once_keep_verifiable_chains() {
    const EACH: usize = 8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let nats = rt.block_on(NatsCluster::start(3));
    let store = nats.url();
    let tmp = tempfile::tempdir().expect("tempdir");
    let pass = tmp.path().join("pass");
    write_private(&pass, format!("{PASS}\n").as_bytes());
    let c = Cluster {
        _rt: rt,
        _nats: nats,
        store,
        tmp,
        pass,
    };
    let out = c
        .kith(&c.dir(0))
        .args([
            "init",
            "--cluster",
            "audit.example",
            "--kdf-memory-mib",
            "19",
        ])
        .arg("--passphrase-file")
        .arg(&c.pass)
        .output()
        .expect("kith init");
    assert!(out.status.success(), "init: {}", err(&out));
    let (_r0, url0) = c.replica(0);
    let (_r1, url1) = c.replica(1);

    // Tokens minted through both replicas at once.
    std::thread::scope(|s| {
        for url in [&url0, &url1] {
            let c = &c;
            s.spawn(move || {
                for _ in 0..EACH {
                    let out = c.op(url, &["token", "create", "--role", "worker", "--json"]);
                    assert!(
                        out.status.success(),
                        "token create via {url}: {}",
                        err(&out)
                    );
                }
            });
        }
    });

    let page: Value = serde_json::from_slice(
        &c.op(
            &url0,
            &["audit", "ls", "--action", "token-create", "--json"],
        )
        .stdout,
    )
    .expect("audit ls JSON");
    let recs = page["records"].as_array().expect("records");
    assert_eq!(recs.len(), 2 * EACH, "nothing lost: {page:#}");
    for w in ["kith-server-r0", "kith-server-r1"] {
        let mine = recs.iter().filter(|r| r["writer"] == w).count();
        assert_eq!(mine, EACH, "each replica writes its own chain ({w})");
    }

    for url in [&url0, &url1] {
        let out = c.op(url, &["audit", "verify", "--json"]);
        assert!(out.status.success(), "verify via {url}: {}", err(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("report");
        assert_eq!(report["ok"], true, "{report:#}");
        let chains = report["chains"].as_array().expect("chains");
        for w in ["kith-server-r0", "kith-server-r1"] {
            let chain = chains.iter().find(|ch| ch["writer"] == w).expect("a chain");
            assert_eq!(chain["head_seq"], chain["records"], "{chain}");
        }
    }

    // Offline on the bucket, with the passphrase (no server named: a
    // directory without server.json).
    let reader = c.tmp.path().join("reader");
    let out = c
        .kith(&reader)
        .args(["audit", "verify", "--passphrase-file"])
        .arg(&c.pass)
        .output()
        .expect("kith audit verify");
    assert!(out.status.success(), "offline verify: {}", err(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit trail verified"));
}
