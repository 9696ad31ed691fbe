//! Where the time of a cell goes: CPU per operation of each process group,
//! NATS messages per operation, and the latency of the store's own calls.
//!
//! Method (see docs/PERFORMANCE.md):
//! - CPU: utime + stime from `/proc/<pid>/stat` of the nats-server nodes,
//!   the `kith serve` processes and this driver, sampled when the cell's
//!   workers are ready and when they are done, divided by the operations.
//! - Store calls: each node's `/connz` lists its client connections with
//!   `in_msgs`, the messages that client sent it; the connections named
//!   `kith` are the replicas' stores, so the delta is one message per get,
//!   write or consumer request (a listing or watch also sends flow-control
//!   acknowledgements). The stream's last sequence delta counts the writes.
//! - Store latency: this process times a `NatsStore` get, a conditional
//!   update and a create at the cell's concurrency on its own bucket of the
//!   same cluster. The estimate "store ≈ X ms of Y ms" is (calls - writes) ×
//!   get + writes × (update + create) / 2, with means, against the mean
//!   latency of the operation.
//!
//! Not captured: calls that overlap inside one operation (the estimate
//! adds them), the watch traffic a write causes on every replica (server
//! side, in the nats-server CPU only), retries (counted as messages, timed
//! as one call), and the machine itself: everything shares 2 cores.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kith_store::Store;
use kith_store_nats::testing::NatsCluster;
use kith_store_nats::NatsStore;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`).
pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of `pid` in clock ticks; 0 once it is gone.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces: count after its ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// GET `path` of a nats-server monitoring port, as JSON.
fn monitor_json(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// Messages the replicas' store clients (connection name `kith`) sent to
/// every node so far.
fn kith_client_msgs(nats: &NatsCluster, nodes: usize) -> u64 {
    (0..nodes)
        .filter_map(|i| monitor_json(nats.monitor_port(i)?, "/connz?limit=10000"))
        .map(|v| {
            v["connections"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter(|c| c["name"] == "kith")
                        .filter_map(|c| c["in_msgs"].as_u64())
                        .sum::<u64>()
                })
                .unwrap_or(0)
        })
        .sum()
}

/// The processes and counters a cell is measured on.
pub(crate) struct Probe<'a> {
    kith: Vec<u32>,
    nats: Option<(&'a NatsCluster, usize, &'a str)>,
    at: Option<Sample>,
    /// What the last cell used, per operation (set by [`Probe::end`]).
    pub(crate) last: Option<Usage>,
}

#[derive(Clone, Copy, Default)]
struct Sample {
    kith: u64,
    nats: u64,
    driver: u64,
    msgs: u64,
    seq: u64,
}

/// Per operation over one cell.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Usage {
    /// CPU ms of the `kith serve` processes, the nats-server nodes, and this driver.
    pub(crate) kith_ms: f64,
    pub(crate) nats_ms: f64,
    pub(crate) driver_ms: f64,
    /// Messages the replicas sent to NATS, and writes to the bucket.
    pub(crate) msgs: f64,
    pub(crate) writes: f64,
}

impl Usage {
    /// The nats-server share of all CPU spent on the cell, in %.
    pub(crate) fn nats_share(&self) -> f64 {
        100.0 * self.nats_ms / (self.kith_ms + self.nats_ms + self.driver_ms)
    }
}

impl<'a> Probe<'a> {
    pub(crate) fn new(kith: Vec<u32>, nats: Option<(&'a NatsCluster, usize, &'a str)>) -> Self {
        Self {
            kith,
            nats,
            at: None,
            last: None,
        }
    }

    async fn sample(&self) -> Sample {
        let mut s = Sample {
            kith: self.kith.iter().map(|p| cpu_ticks(*p)).sum(),
            driver: cpu_ticks(std::process::id()),
            ..Sample::default()
        };
        if let Some((nats, nodes, bucket)) = self.nats {
            s.nats = (0..nodes).filter_map(|i| nats.pid(i)).map(cpu_ticks).sum();
            s.msgs = kith_client_msgs(nats, nodes);
            s.seq = nats.stream_last_sequence(bucket).await.unwrap_or(0);
        }
        s
    }

    /// The workers are ready: the cell starts now.
    pub(crate) async fn begin(&mut self) {
        self.at = Some(self.sample().await);
    }

    /// The cell is over; `ops` operations succeeded.
    pub(crate) async fn end(&mut self, ops: usize) {
        let Some(a) = self.at.take() else { return };
        let b = self.sample().await;
        let ops = ops.max(1) as f64;
        let ms = 1e3 / clock_ticks();
        self.last = Some(Usage {
            kith_ms: b.kith.saturating_sub(a.kith) as f64 * ms / ops,
            nats_ms: b.nats.saturating_sub(a.nats) as f64 * ms / ops,
            driver_ms: b.driver.saturating_sub(a.driver) as f64 * ms / ops,
            msgs: b.msgs.saturating_sub(a.msgs) as f64 / ops,
            writes: b.seq.saturating_sub(a.seq) as f64 / ops,
        });
    }
}

/// Mean latency in ms of the store's own calls at one concurrency.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StoreLatency {
    pub(crate) get: f64,
    pub(crate) update: f64,
    pub(crate) create: f64,
}

impl StoreLatency {
    /// ms of store time for `calls` messages of which `writes` are writes.
    pub(crate) fn estimate(&self, calls: f64, writes: f64) -> f64 {
        (calls - writes).max(0.0) * self.get + writes * (self.update + self.create) / 2.0
    }
}

/// Time `c` concurrent loops of `op(worker, i)` for `secs`: mean ms.
async fn timed<F, Fut>(c: usize, secs: f64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for w in 0..c {
        let op = op.clone();
        handles.push(tokio::spawn(async move {
            let (mut n, mut total) = (0u64, Duration::ZERO);
            while Instant::now() < deadline {
                let t = Instant::now();
                op(w, n).await;
                total += t.elapsed();
                n += 1;
            }
            (n, total)
        }));
    }
    let (mut n, mut total) = (0u64, Duration::ZERO);
    for h in handles {
        let (a, b) = h.await.expect("store timing loop");
        n += a;
        total += b;
    }
    total.as_secs_f64() * 1e3 / n.max(1) as f64
}

/// The latency of a get, a conditional update and a create of 1 KiB
/// values (about a certificate record) with `c` concurrent callers on one
/// client, as one replica's store has, on a bucket of its own.
pub(crate) async fn store_latency(nats: &NatsCluster, c: usize, secs: f64) -> StoreLatency {
    let store = Arc::new(
        NatsStore::connect(nats.options("kithbench"))
            .await
            .expect("the bench's own bucket"),
    );
    let value = vec![7u8; 1024];
    let mut revs = Vec::new();
    for w in 0..c {
        let r = store
            .put(&format!("lat/c{c}/{w}"), value.clone())
            .await
            .expect("put a key to read");
        revs.push(std::sync::Mutex::new(r));
    }
    let revs = Arc::new(revs);
    let s = store.clone();
    let get = timed(c, secs, move |w, _| {
        let s = s.clone();
        async move {
            let e = s.get(&format!("lat/c{c}/{w}")).await;
            assert!(matches!(e, Ok(Some(_))), "bench get: {e:?}");
        }
    })
    .await;
    let (s, v) = (store.clone(), value.clone());
    let update = timed(c, secs, move |w, _| {
        let (s, v, revs) = (s.clone(), v.clone(), revs.clone());
        async move {
            let rev = *revs[w].lock().expect("revision lock");
            let r = s
                .update(&format!("lat/c{c}/{w}"), v, rev)
                .await
                .expect("bench conditional update");
            *revs[w].lock().expect("revision lock") = r;
        }
    })
    .await;
    let (s, v) = (store.clone(), value);
    let create = timed(c, secs, move |w, i| {
        let (s, v) = (s.clone(), v.clone());
        async move {
            s.create(&format!("new/c{c}/{w}/{i}"), v)
                .await
                .expect("bench create");
        }
    })
    .await;
    StoreLatency {
        get,
        update,
        create,
    }
}
