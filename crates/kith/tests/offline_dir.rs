//! A node directory made offline by `kith cert issue` is a node directory
//! like any other: its `identity.json` is the one type every command reads
//! (`kith_nodedir::NodeIdentity`), so the commands that take `--dir` read
//! it. With no server recorded, an online command says that the directory
//! was issued offline and needs `--server` (not a parse error), changes
//! nothing, and with `--server` reads secrets as that node. Also: `--json`
//! is one global flag, accepted before or after the subcommand alike.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::{kith, start_server, Ca};
use kith_nodedir::NodeIdentity;

/// kith with this CA's data dir, no `KITH_SERVER`, and `stdin` fed in.
fn run_in(ca: &Ca, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = kith(&ca.data)
        .env_remove("KITH_SERVER")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kith");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("kith")
}

fn ok(ca: &Ca, args: &[&str]) -> Vec<u8> {
    let out = run_in(ca, args, b"");
    assert!(
        out.status.success(),
        "kith {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Run, require exit 1 with `error[code]`; returns stderr.
fn fails(ca: &Ca, args: &[&str], code: &str) -> String {
    let out = run_in(ca, args, b"");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "kith {args:?}: {stderr}");
    assert!(
        stderr.contains(&format!("error[{code}]")),
        "kith {args:?}: expected error[{code}]:\n{stderr}"
    );
    stderr
}

/// `kith cert issue NODE --role worker` into `<tmp>/nodes/NODE`.
fn issue_offline(ca: &Ca, node: &str) -> PathBuf {
    let nodes = ca.path("nodes");
    ca.ok(&[
        "cert",
        "issue",
        node,
        "--role",
        "worker",
        "--san",
        "extra.example",
        "--out",
        nodes.to_str().expect("utf-8 path"),
    ]);
    nodes.join(node)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read node dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).expect("read file"),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn offline_dir_is_read_by_every_dir_command_and_names_the_missing_server() {
    let ca = Ca::init("p256");
    let dir = issue_offline(&ca, "n1");

    // The same type that `join` writes and the agent reads.
    let id = NodeIdentity::load(&dir).expect("identity.json of cert issue loads");
    assert_eq!((id.node.as_str(), id.role.as_str()), ("n1", "worker"));
    assert_eq!(id.cluster, "prod.example");
    assert_eq!(id.server, None, "issued offline: no server recorded");
    assert_eq!(id.sans, vec!["extra.example".to_string()]);
    assert_eq!(id.crl_path, "/v1/crl/cluster");
    assert!(id.not_before < id.not_after);
    let listed: Vec<serde_json::Value> =
        serde_json::from_slice(&ok(&ca, &["cert", "ls", "--json"])).expect("cert ls JSON");
    assert!(
        listed
            .iter()
            .any(|c| c["serial"] == id.serial.as_str() && c["node"] == "n1"),
        "identity.json names the recorded serial: {listed:?}"
    );

    // Online commands say what is wrong, not that the file does not parse.
    let before = files(&dir);
    let d = s(&dir);
    for args in [
        vec!["secret", "get", "db-password", "--dir", d],
        vec!["exec", "--dir", d, "--env", "V=db-password", "--", "true"],
        vec!["renew", "--dir", d],
        vec!["agent", "--dir", d],
    ] {
        let err = fails(&ca, &args, "no-server");
        assert!(
            err.contains("issued offline"),
            "kith {args:?} names the cause:\n{err}"
        );
        assert!(!err.contains("node-dir"), "not a parse error:\n{err}");
        assert_eq!(files(&dir), before, "kith {args:?} changed the directory");
    }
    let err = fails(&ca, &["secret", "get", "x", "--dir", d], "no-server");
    assert!(err.contains("--server"), "says how to fix it:\n{err}");

    // Offline commands keep working on what cert issue wrote.
    let full = dir.join("fullchain.pem");
    ca.ok(&[
        "cert",
        "verify",
        s(&full),
        "--name",
        "n1",
        "--role",
        "worker",
    ]);
    let inspected: serde_json::Value = serde_json::from_slice(&ok(
        &ca,
        &["cert", "inspect", s(&dir.join("cert.pem")), "--json"],
    ))
    .expect("inspect JSON");
    assert!(inspected.to_string().contains(&id.serial), "{inspected}");
}

#[test]
fn offline_dir_reads_secrets_with_server_flag() {
    let ca = Ca::init("p256");
    let dir = issue_offline(&ca, "n2");
    // Another role, issued before the server holds the store.
    let other = ca.path("nodes");
    ca.ok(&[
        "cert",
        "issue",
        "m1",
        "--role",
        "manager",
        "--out",
        s(&other),
    ]);
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let put = run_in(
        &ca,
        &["secret", "put", "db-password", "--allow-role", "worker"],
        b"hunter2",
    );
    assert!(
        put.status.success(),
        "secret put: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let d = s(&dir);

    let value = ok(
        &ca,
        &["secret", "get", "db-password", "--dir", d, "--server", &url],
    );
    assert_eq!(value, b"hunter2");
    // `kith exec` reads as the node too, the value only in the child's environment.
    let out = ok(
        &ca,
        &[
            "exec",
            "--dir",
            d,
            "--server",
            &url,
            "--env",
            "V=db-password",
            "--",
            "sh",
            "-c",
            "printf %s \"$V\"",
        ],
    );
    assert_eq!(out, b"hunter2");
    // A role that is not allowed is refused as for any node.
    fails(
        &ca,
        &[
            "secret",
            "get",
            "db-password",
            "--dir",
            s(&other.join("m1")),
            "--server",
            &url,
        ],
        "secret-forbidden",
    );
}

#[test]
fn json_is_one_global_flag() {
    let ca = Ca::init("p256");
    issue_offline(&ca, "n3");
    let after = ok(&ca, &["cert", "ls", "--json"]);
    let before = ok(&ca, &["--json", "cert", "ls"]);
    let between = ok(&ca, &["cert", "--json", "ls"]);
    assert_eq!(before, after);
    assert_eq!(between, after);
    let v: serde_json::Value = serde_json::from_slice(&after).expect("JSON");
    assert!(
        v.as_array()
            .is_some_and(|a| a.iter().any(|c| c["node"] == "n3")),
        "{v}"
    );
    // Errors too: the object on stdout, the line on stderr, wherever the flag is.
    let missing = ca.path("missing.pem");
    let late = run_in(&ca, &["cert", "inspect", s(&missing), "--json"], b"");
    let early = run_in(&ca, &["--json", "cert", "inspect", s(&missing)], b"");
    assert_eq!(late.status.code(), Some(1));
    assert_eq!((early.status, &early.stdout), (late.status, &late.stdout));
    let e: serde_json::Value = serde_json::from_slice(&early.stdout).expect("error JSON");
    assert_eq!(e["error"]["code"], "io-error", "{e}");
}
