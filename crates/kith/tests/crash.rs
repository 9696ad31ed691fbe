//! Crash safety: `kill -9` of the real server, three times, while eight
//! join loops run against it. Every join that was answered with success is
//! in the store afterwards, no serial was issued twice, and the token was
//! never spent more often than it allows (an answer lost in the crash may
//! spend a use without a certificate, never the other way round).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;

const WORKERS: usize = 8;
const ROUNDS: usize = 3;
const USES: u64 = 100_000;

#[test]
fn kill_9_under_concurrent_joins_loses_nothing_acknowledged() {
    let ca = Ca::init("p256");
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let listen = url.trim_start_matches("https://").to_string();
    let created: Value = serde_json::from_str(&ca.ok(&[
        "token",
        "create",
        "--role",
        "worker",
        "--uses",
        &USES.to_string(),
        "--ttl",
        "1h",
        "--json",
    ]))
    .expect("token JSON");
    let token = created["token"].as_str().expect("token").to_string();
    let server_addr = kith_agent::ServerAddr::parse(&url).expect("address");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut server = Some(server);
    for round in 0..ROUNDS {
        if server.is_none() {
            server = Some(start_server(&ca, &listen, &ca.pass).0);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut loops = Vec::new();
        for w in 0..WORKERS {
            let (token, addr, acked, stop) = (
                token.clone(),
                server_addr.clone(),
                acked.clone(),
                stop.clone(),
            );
            let base = ca.path(&format!("r{round}-w{w}"));
            loops.push(rt.spawn(async move {
                let mut i = 0u32;
                // Bounded: stops at the kill, or after 200 joins at most.
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 200 {
                    let name = format!("n{round}-{w}-{i}");
                    let opts = kith_agent::JoinOptions {
                        server: addr.clone(),
                        token: token.clone(),
                        node: Some(name.clone()),
                        sans: vec![],
                        dir: base.join(&name),
                        profiles: vec![],
                        key_type: kith_pki::KeyType::P256,
                        interface_ips: false,
                        force: false,
                    };
                    i += 1;
                    match kith_agent::join(&opts).await {
                        Ok(id) => acked.lock().expect("lock").push((name, id.serial)),
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }));
        }
        // Let the loops get going, then kill -9 mid-load.
        let before = acked.lock().expect("lock").len();
        wait_for("joins under load", Duration::from_secs(60), || {
            (acked.lock().expect("lock").len() >= before + 10).then_some(())
        });
        drop(server.take()); // Proc's drop is SIGKILL
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        rt.block_on(async {
            for l in loops {
                l.await.expect("join loop");
            }
        });
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() >= ROUNDS * 10, "too few joins: {}", acked.len());

    // The token, seen by a restarted server: spent at least once per
    // acknowledged join, never more than it allows.
    let restarted = start_server(&ca, &listen, &ca.pass).0;
    let tokens: Value = serde_json::from_str(&ca.ok(&["token", "ls", "--json"])).expect("JSON");
    let left = tokens[0]["uses_left"].as_u64().expect("uses_left");
    let spent = USES - left;
    assert!(
        spent >= acked.len() as u64,
        "{spent} uses spent for {} acknowledged joins",
        acked.len()
    );
    drop(restarted);

    // Every acknowledged certificate is recorded, for its node; no serial twice.
    let certs = ca.certs();
    let mut serials = BTreeSet::new();
    for c in &certs {
        let serial = c["serial"].as_str().expect("serial").to_string();
        assert!(
            serials.insert(serial.clone()),
            "serial {serial} issued twice"
        );
    }
    for (node, serial) in &acked {
        let found = certs
            .iter()
            .find(|c| c["serial"].as_str() == Some(serial.as_str()))
            .unwrap_or_else(|| panic!("acknowledged join of {node} ({serial}) lost"));
        assert_eq!(found["node"].as_str(), Some(node.as_str()));
    }
    // Nodes (not the server's or the operator's certificates) never exceed the uses spent.
    let node_certs = certs
        .iter()
        .filter(|c| c["node"].as_str().is_some_and(|n| n.starts_with('n')))
        .count() as u64;
    assert!(
        node_certs <= spent,
        "{node_certs} node certificates for {spent} uses"
    );
}
