//! The CLI's side of replicas, with one real `kith serve` and one dead
//! address: operator commands and `kith join` take `--server a,b` and try
//! each in turn; node commands go to the next known replica when the one
//! recorded first is out of service; `kith status` shows the replicas.

mod common;

use std::path::Path;

use common::{node, node_ok, start_server, Ca};

/// An address nothing listens on (a port bound, then released).
fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("https://127.0.0.1:{port}")
}

fn identity(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity.json"))
        .expect("identity JSON")
}

#[test]
fn server_lists_are_tried_in_turn_and_status_shows_the_replicas() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let dead = dead_address();
    let both = format!("{dead},{url}");

    // An operator command: the dead address first, then the live one.
    let out = ca.ok(&["--json", "status", "--server", &both]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    let replicas = v["replicas"].as_array().expect("replicas in status");
    assert_eq!(replicas.len(), 1, "{v}");
    assert_eq!(replicas[0]["advertise"], url.as_str());
    assert_eq!(replicas[0]["live"], true);
    assert!(replicas[0]["name"]
        .as_str()
        .expect("name")
        .starts_with("kith-server"));
    let text = ca.ok(&["status", "--server", &both]);
    assert!(
        text.contains("replicas:") && text.contains(&url) && text.contains(" live"),
        "{text}"
    );
    // The dead one alone is an error, named.
    ca.fails_with(&["status", "--server", &dead], "unreachable");

    // A join through the same list records the server that answered and
    // the replicas its answer listed.
    let token = ca.token("worker", &[]);
    let dir = ca.path("node-1");
    let out = node()
        .args([
            "join", "--server", &both, "--token", &token, "--name", "node-1",
        ])
        .args(["--no-interface-ips", "--dir"])
        .arg(&dir)
        .output()
        .expect("run kith join");
    assert!(
        out.status.success(),
        "join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = identity(&dir);
    let port = url.rsplit(':').next().expect("a port");
    assert_eq!(id["server"]["port"].to_string(), port, "{id}");

    // A node whose recorded server is dead renews through the next one,
    // which is then recorded first; the list is refreshed from its answer.
    let mut id = id;
    let dead_port: u16 = dead
        .rsplit(':')
        .next()
        .expect("port")
        .parse()
        .expect("port");
    let live = id["server"].clone();
    id["server"] = serde_json::json!({ "host": "127.0.0.1", "port": dead_port });
    id["replicas"] = serde_json::json!([live]);
    std::fs::write(
        dir.join("identity.json"),
        serde_json::to_vec_pretty(&id).expect("json"),
    )
    .expect("rewrite identity.json");
    let dir_s = dir.to_str().expect("utf-8 path");
    node_ok(&["renew", "--dir", dir_s]);
    let after = identity(&dir);
    assert_eq!(after["server"], live, "{after}");
    // The list is the renewal answer's: the live replicas only.
    assert!(after.get("replicas").is_none(), "{after}");
}
