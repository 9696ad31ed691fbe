//! The README's high-availability demo, `scripts/ha-demo.sh`, run as a
//! newcomer would (with this build of kith and the venv's nats-server):
//! it must finish, and the node must have renewed through the second
//! replica after the first stopped.

mod common;

use std::process::Command;

#[test]
fn the_readme_ha_demo_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/ha-demo.sh"))
        .env("KITH", env!("CARGO_BIN_EXE_kith"))
        .env("NATS_SERVER", common::tool("nats-server"))
        .env_remove("KITH_STORE")
        .env_remove("KITH_DATA_DIR")
        .output()
        .expect("run scripts/ha-demo.sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "the demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("node-1 renewed through replica 2")
            && stdout.contains("kith-server-demo-2"),
        "{stdout}"
    );
    // Both replicas were learnt at join.
    let line = stdout
        .lines()
        .find(|l| l.contains("identity.json knows"))
        .expect("the join line");
    assert_eq!(line.matches("127.0.0.1:").count(), 2, "{line}");
}
