//! What the load bench counts with (`kith/benches/load/breakdown.rs`),
//! checked on a real 3-node cluster: each node's monitoring port answers
//! as that node, its pid is a live process, one store call is one message
//! of the client named `kith` in `/connz`, and one write is one stream
//! sequence.

use std::io::{Read, Write};
use std::time::Duration;

use kith_store::Store;
use kith_store_nats::testing::NatsCluster;
use kith_store_nats::NatsStore;

fn monitor_json(port: u16, path: &str) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("monitoring port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    serde_json::from_str(body).expect("JSON")
}

/// Messages sent so far by the clients named `kith`, over every node.
fn kith_msgs(nats: &NatsCluster) -> u64 {
    (0..3)
        .map(|i| {
            let port = nats.monitor_port(i).expect("started monitored");
            monitor_json(port, "/connz?limit=10000")
        })
        .map(|v| {
            v["connections"]
                .as_array()
                .expect("connections")
                .iter()
                .filter(|c| c["name"] == "kith")
                .map(|c| c["in_msgs"].as_u64().expect("in_msgs"))
                .sum::<u64>()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_pids_and_sequence_count_what_a_store_does() {
    let plain = NatsCluster::start(1).await;
    assert_eq!(
        plain.monitor_port(0),
        None,
        "monitoring only when asked for"
    );
    drop(plain);
    let nats = NatsCluster::start_monitored(3).await;
    for i in 0..3 {
        let port = nats.monitor_port(i).expect("started monitored");
        let varz = monitor_json(port, "/varz");
        assert_eq!(varz["server_name"], format!("n{i}"), "node {i}'s own port");
        let pid = nats.pid(i).expect("a running node has a pid");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
        assert!(stat.contains("(nats-server)"), "{stat}");
    }
    let store = NatsStore::connect(nats.options("counted"))
        .await
        .expect("connect");
    let (m0, s0) = (
        kith_msgs(&nats),
        nats.stream_last_sequence("counted")
            .await
            .expect("sequence"),
    );
    let mut rev = store.create("a/b", b"1".to_vec()).await.expect("create");
    for i in 0..3u8 {
        rev = store.update("a/b", vec![i], rev).await.expect("update");
    }
    for _ in 0..5 {
        assert!(store.get("a/b").await.expect("get").is_some());
    }
    assert_eq!(
        nats.stream_last_sequence("counted")
            .await
            .expect("sequence")
            - s0,
        4,
        "one sequence per write"
    );
    assert_eq!(kith_msgs(&nats) - m0, 9, "one message per store call");
    nats.pid(0).expect("running");
    let mut nats = nats;
    nats.kill(0);
    assert_eq!(nats.pid(0), None, "a killed node has no pid");
}
