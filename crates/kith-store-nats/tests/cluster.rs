//! The NATS backend through what a cluster does to it: a stream leader
//! killed mid-write, every node restarted, a watcher's node killed, a
//! listing of 100,000 keys, an old server refused.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kith_store::{Error, Store, WatchEvent};
use kith_store_nats::testing::NatsCluster;
use kith_store_nats::{NatsOptions, NatsStore};

async fn connect(c: &NatsCluster, bucket: &str) -> Arc<NatsStore> {
    trace();
    Arc::new(
        NatsStore::connect(c.options(bucket))
            .await
            .expect("connect"),
    )
}

/// Debug lines of this crate and async-nats into the test's captured
/// output, so a failure in CI shows what the client went through.
fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("kith_store_nats=debug,async_nats=debug")
        .with_test_writer()
        .try_init();
}

/// Wait until the bucket's stream has a leader again.
async fn wait_leader(c: &NatsCluster, bucket: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(l) = c.stream_leader(bucket).await {
            return l;
        }
        assert!(Instant::now() < deadline, "no stream leader within 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates of distinct keys and a compare-and-swap counter run while the
/// stream leader is killed with SIGKILL: every create that was answered
/// `Ok` is stored, none is answered `AlreadyExists` (each key has one
/// writer, so that would be a retried create of its own write), and the
/// counter holds exactly the number of increments answered `Ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_mid_write_loses_and_doubles_nothing() {
    let mut cluster = NatsCluster::start(3).await;
    let store = connect(&cluster, "failover").await;
    store
        .put("counter/n", 0u64.to_be_bytes().to_vec())
        .await
        .expect("seed");
    let stop = Arc::new(AtomicBool::new(false));
    let creators: Vec<_> = (0..4)
        .map(|w| {
            let (s, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("made/{w}-{i}");
                    match s.create(&key, vec![w; 64]).await {
                        Ok(_) => acked.push(key),
                        Err(Error::AlreadyExists { .. }) => {
                            panic!(
                                "{key}: a retried create reported its own write as AlreadyExists"
                            )
                        }
                        Err(Error::Unavailable(_)) => {}
                        Err(e) => panic!("{key}: {e}"),
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    let counters: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok(Some(e)) = s.get("counter/n").await else {
                        continue;
                    };
                    let n = u64::from_be_bytes(e.value.try_into().expect("8 bytes"));
                    match s
                        .update("counter/n", (n + 1).to_be_bytes().to_vec(), e.revision)
                        .await
                    {
                        Ok(_) => done += 1,
                        Err(Error::RevisionMismatch { .. } | Error::Unavailable(_)) => {}
                        Err(e) => panic!("counter: {e}"),
                    }
                }
                done
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = wait_leader(&cluster, "failover").await;
    cluster.kill(leader);
    let killed = Instant::now();
    // Writes resume on the new leader.
    loop {
        if store.put("probe/after-kill", vec![1]).await.is_ok() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no write within 30 s of the kill"
        );
    }
    let resumed = killed.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart(leader);
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in creators {
        acked.extend(t.await.expect("creator"));
    }
    let mut increments = 0;
    for t in counters {
        increments += t.await.expect("counter");
    }
    assert!(
        acked.len() > 10,
        "too few creates to mean anything: {}",
        acked.len()
    );
    let stored: BTreeSet<String> = store
        .list("made/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    for k in &acked {
        assert!(stored.contains(k), "{k} was acknowledged but is not stored");
    }
    let n = store.get("counter/n").await.expect("get").expect("present");
    assert_eq!(
        u64::from_be_bytes(n.value.try_into().expect("8 bytes")),
        increments,
        "every acknowledged increment once, no other"
    );
    eprintln!("writes resumed {resumed:?} after the leader was killed; {} creates, {increments} increments", acked.len());
}

/// Every node stopped, then started again: every acknowledged record is
/// there (the cluster syncs each write: `sync_interval: always`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whole_cluster_restart_keeps_every_acknowledged_record() {
    let mut cluster = NatsCluster::start(3).await;
    let store = connect(&cluster, "restart").await;
    let mut want = Vec::new();
    for i in 0..200u32 {
        let key = format!("r/{i}");
        let rev = store
            .put(&key, i.to_be_bytes().to_vec())
            .await
            .expect("put");
        want.push((key, rev));
    }
    store.delete("r/7").await.expect("delete");
    assert!(store.writable().is_ok());
    for i in 0..3 {
        cluster.kill(i);
    }
    // Readiness says so while no node is reachable.
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.writable().is_ok() {
        assert!(
            Instant::now() < deadline,
            "still 'writable' with every node down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    cluster.wait_ready().await;
    // The same client reconnects by itself; a new one sees the same.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.writable().is_err() {
        assert!(
            Instant::now() < deadline,
            "the client did not reconnect in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        store
            .list("r/")
            .await
            .expect("list on the reconnected client")
            .len(),
        199
    );
    let store = connect(&cluster, "restart").await;
    let got = store.list("r/").await.expect("list after restart");
    assert_eq!(got.len(), 199);
    for (key, rev) in want.iter().filter(|(k, _)| k != "r/7") {
        let e = store
            .get(key)
            .await
            .expect("get")
            .expect("present after restart");
        assert_eq!(e.revision, *rev, "{key}");
    }
    assert!(store.get("r/7").await.expect("get").is_none());
}

/// A watcher whose NATS node is killed keeps receiving: its consumer is
/// made again from the last revision it saw, on another node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_survives_its_node_being_killed() {
    let mut cluster = NatsCluster::start(3).await;
    let watcher = connect(&cluster, "watch").await;
    let writer = connect(&cluster, "watch").await;
    let mut w = watcher.watch("w/").await.expect("watch");
    writer.put("w/before", vec![1]).await.expect("put");
    let first = tokio::time::timeout(Duration::from_secs(10), w.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(WatchEvent::Put(ref e)))) if e.key == "w/before"),
        "{first:?}"
    );
    let node: usize = watcher
        .connected_server()
        .strip_prefix('n')
        .and_then(|n| n.parse().ok())
        .expect("test servers are named nN");
    cluster.kill(node);
    // Writes during and after the outage, through another client.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut written = Vec::new();
    for i in 0..5 {
        loop {
            match writer.put(&format!("w/after-{i}"), vec![2]).await {
                Ok(r) => {
                    written.push(r);
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "writer: {e}"),
            }
        }
    }
    let mut seen = Vec::new();
    while seen.len() < written.len() {
        match tokio::time::timeout(Duration::from_secs(30), w.next()).await {
            Ok(Some(Ok(WatchEvent::Put(e)))) => seen.push(e.revision),
            other => panic!("after the kill the watch gave {other:?}; saw {seen:?} of {written:?}"),
        }
    }
    assert_eq!(seen, written, "every write after the kill, once, in order");
}

/// A listing is a subject-filtered consumer read to its end: complete for
/// 100,000 keys, after deletes, and for a prefix that matches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_is_complete_for_100k_keys() {
    let cluster = NatsCluster::start(1).await;
    let store = connect(&cluster, "many").await;
    let keys: Vec<String> = (0..100_000).map(|i| format!("big/{:06}", i)).collect();
    futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let s = store.clone();
            async move { s.put(&k, vec![7; 16]).await.expect("put") }
        })
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await;
    store
        .put("bigger/x", vec![1])
        .await
        .expect("a neighbour prefix");
    let t = Instant::now();
    let all = store.list("big/").await.expect("list");
    eprintln!("listed 100,000 keys in {:?}", t.elapsed());
    assert_eq!(all.len(), 100_000);
    assert!(all.windows(2).all(|p| p[0].key < p[1].key), "in key order");
    assert_eq!(all.first().map(|e| e.key.as_str()), Some("big/000000"));
    futures::stream::iter(keys.iter().step_by(10).cloned())
        .map(|k| {
            let s = store.clone();
            async move { s.delete(&k).await.expect("delete") }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    let left = store.list("big/").await.expect("list after deletes");
    assert_eq!(left.len(), 90_000);
    assert!(left.iter().all(|e| !e.key.ends_with('0')));
    assert!(store.list("none/").await.expect("zero matches").is_empty());
    assert_eq!(
        store.list("big").await.expect("string prefix").len(),
        90_001
    );
}

/// A server older than 2.11 is refused before anything is read or written.
/// No such server is installed here, so a listener speaks the first lines
/// of the protocol as nats-server 2.10 does (INFO, then PONG).
#[tokio::test]
async fn an_old_server_is_refused() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let info = r#"INFO {"server_id":"OLD","server_name":"old","version":"2.10.22","proto":1,"go":"go1.22","host":"127.0.0.1","port":4222,"headers":true,"max_payload":1048576,"jetstream":true}"#;
                let _ = w.write_all(format!("{info}\r\n").as_bytes()).await;
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.starts_with("PING") {
                        let _ = w.write_all(b"PONG\r\n").await;
                    }
                }
            });
        }
    });
    let mut o = NatsOptions::from_url(&format!("nats://127.0.0.1:{port}")).expect("url");
    o.retry_window = Duration::from_secs(2);
    let err = NatsStore::connect(o)
        .await
        .expect_err("2.10 must be refused");
    let text = err.to_string();
    assert!(text.contains("2.10.22") && text.contains("2.11"), "{text}");
}

/// Nothing listening: waited for through the retry window (a cluster may
/// be starting), then a clear error naming the address.
#[tokio::test]
async fn nothing_listening_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut o = NatsOptions::from_url(&format!("nats://127.0.0.1:{port}")).expect("url");
    o.retry_window = Duration::from_secs(3);
    let t = Instant::now();
    let err = NatsStore::connect(o).await.expect_err("nothing listens");
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    // Waited for (nodes may be starting), but within the window.
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

/// What the idempotent retry rests on, checked against the real server: a
/// conditional write repeated with the same message id (as a retry after a
/// lost answer is) is answered as a duplicate with the first write's
/// sequence, not refused for the sequence it moved, nor stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_write_id_is_answered_with_the_first_sequence() {
    use async_nats::jetstream::message::PublishMessage;
    let cluster = NatsCluster::start(3).await;
    let store = connect(&cluster, "dedup").await; // creates KV_dedup
    let client = async_nats::connect(format!("127.0.0.1:{}", cluster.client_port(0)))
        .await
        .expect("connect");
    let js = async_nats::jetstream::new(client);
    let send = |id: &'static str| {
        let js = js.clone();
        async move {
            let msg = PublishMessage::build()
                .payload("v".into())
                .message_id(id)
                .expected_last_subject_sequence(0);
            js.send_publish("$KV.dedup.k", msg)
                .await
                .expect("send")
                .await
        }
    };
    let first = send("write-1").await.expect("first write");
    let again = send("write-1").await.expect("the repeat is not refused");
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.sequence, first.sequence);
    assert!(
        send("write-2").await.is_err(),
        "another id is held to the condition"
    );
    let e = store.get("k").await.expect("get").expect("present");
    assert_eq!(e.revision, first.sequence, "stored once");
}

/// A node killed, writes made without it, the node started again and
/// listings made at once through a client of that node only: each is
/// complete, short (answered by the stream leader) and long (a consumer,
/// which may sit on the lagging node, fenced by a write it must deliver).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listings_through_a_lagging_node_are_complete() {
    let mut cluster = NatsCluster::start(3).await;
    let writer = connect(&cluster, "lag").await;
    writer.put("small/0", vec![0]).await.expect("put");
    let leader = wait_leader(&cluster, "lag").await;
    let lagging = (leader + 1) % 3;
    cluster.kill(lagging);
    futures::stream::iter(0..2000)
        .map(|i| {
            let w = writer.clone();
            async move {
                let key = if i < 100 {
                    format!("small/{}", i + 1)
                } else {
                    format!("large/{i:05}")
                };
                w.put(&key, vec![1; 32])
                    .await
                    .expect("put without the killed node")
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    cluster.restart(lagging);
    let mut o = cluster.options("lag");
    o.servers = vec![format!("nats://127.0.0.1:{}", cluster.client_port(lagging))];
    for round in 0..5 {
        let reader = NatsStore::connect(o.clone())
            .await
            .expect("connect to the restarted node");
        let small = reader.list("small/").await.expect("short listing");
        assert_eq!(small.len(), 101, "round {round}: short listing");
        let large = reader.list("large/").await.expect("long listing");
        assert_eq!(large.len(), 1900, "round {round}: long listing");
    }
}
