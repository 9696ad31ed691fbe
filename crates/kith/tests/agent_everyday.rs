//! The agent as a service runs it (issue 11, items 10 to 12), with real
//! processes: `kith serve`, `kith join`, `kith agent` with its log in a file.
//! A missing or forbidden secret never stops renewals; a secret created
//! later appears; withdrawn access removes the file; a revoked node's agent
//! stops within one CRL refresh with status 3 and the way back; logs are
//! plain text with RFC 3339 UTC timestamps.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{kith, start_server, wait_for, Ca, Proc};
use serde_json::Value;

/// Run kith with this CA's data dir (operator commands find the server
/// through server.json), `stdin` fed in; require success.
fn ok(ca: &Ca, args: &[&str], stdin: &[u8]) -> String {
    let mut child = kith(&ca.data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kith");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("kith");
    assert!(
        out.status.success(),
        "kith {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn join(ca: &Ca, url: &str, name: &str) -> PathBuf {
    let created: Value = serde_json::from_str(&ok(
        ca,
        &["token", "create", "--role", "worker", "--json"],
        b"",
    ))
    .expect("token JSON");
    let dir = ca.path(name);
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args([
            "join",
            "--server",
            url,
            "--token",
            created["token"].as_str().expect("token"),
            "--name",
            name,
            "--no-interface-ips",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .expect("join");
    assert!(
        out.status.success(),
        "join {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn serial(dir: &Path) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(dir.join("identity.json")).expect("identity.json"))
            .expect("identity JSON");
    v["serial"].as_str().expect("serial").to_string()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig}");
}

/// `kith agent --dir DIR` with stderr into the file `log`, no terminal anywhere.
fn agent_cmd(dir: &Path, log: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kith"));
    cmd.args(["agent", "--refresh", "1s", "--dir"])
        .arg(dir)
        .env_remove("KITH_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    cmd
}

fn read(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).expect("read log")).into_owned()
}

/// A log written to a file: no escape byte anywhere (no ANSI colours), and
/// every log line starts with an RFC 3339 timestamp in UTC. (The CLI's own
/// messages, such as `error[...]` and `hint:` or `serve`'s address line,
/// are not log lines and start with a word.)
fn assert_plain_rfc3339(what: &str, text: &str) {
    assert!(
        !text.contains('\x1b'),
        "{what}: ANSI escapes in a log that is not a terminal:\n{text:?}"
    );
    let mut log_lines = 0;
    for line in text.lines() {
        let stamp = line.split_whitespace().next().unwrap_or_default();
        if !stamp.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let parsed =
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339);
        assert!(
            parsed.is_ok() && stamp.ends_with('Z'),
            "{what}: log line does not start with an RFC 3339 UTC timestamp: {line:?}"
        );
        log_lines += 1;
    }
    assert!(log_lines > 0, "{what}: no log line:\n{text}");
}

#[test]
fn missing_secrets_never_stop_renewal_and_withdrawn_ones_are_removed() {
    let ca = Ca::init("p256");
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let node = join(&ca, &url, "w1");
    ok(
        &ca,
        &["secret", "put", "present", "--allow-role", "worker"],
        b"here-now",
    );
    // "forbidden" exists but this node may not read it; "later" does not exist yet.
    ok(&ca, &["secret", "put", "forbidden", "--admin-only"], b"x");

    let secrets = ca.path("run-secrets");
    let log = ca.path("agent.log");
    let mut child = agent_cmd(&node, &log)
        .args(["--secrets", "present,forbidden,later", "--secrets-dir"])
        .arg(&secrets)
        .spawn()
        .expect("agent");
    let present = secrets.join("present");
    wait_for("the readable secret", Duration::from_secs(30), || {
        (std::fs::read(&present).ok()? == b"here-now").then_some(())
    });
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the agent stopped over a missing secret:\n{}",
        read(&log)
    );
    let mut agent = Proc(child);
    wait_for(
        "the refusals to be reported",
        Duration::from_secs(30),
        || {
            let text = read(&log);
            (text.contains("secret=forbidden") && text.contains("secret=later")).then_some(())
        },
    );
    assert!(!secrets.join("forbidden").exists() && !secrets.join("later").exists());

    // Renewal goes on: SIGHUP renews through the agent's own renewal path.
    let before = serial(&node);
    signal(&agent.0, "HUP");
    wait_for("the renewal", Duration::from_secs(30), || {
        (serial(&node) != before).then_some(())
    });

    // A secret created later appears without a restart.
    ok(
        &ca,
        &["secret", "put", "later", "--allow-role", "worker"],
        b"created-later",
    );
    wait_for("the secret created later", Duration::from_secs(60), || {
        (std::fs::read(secrets.join("later")).ok()? == b"created-later").then_some(())
    });
    // Access withdrawn (policy changed, then secret removed): the files go.
    ok(&ca, &["secret", "put", "present", "--admin-only"], b"moved");
    wait_for(
        "the withdrawn secret's file to go",
        Duration::from_secs(30),
        || (!present.exists()).then_some(()),
    );
    ok(&ca, &["secret", "rm", "later"], b"");
    wait_for(
        "the removed secret's file to go",
        Duration::from_secs(30),
        || (!secrets.join("later").exists()).then_some(()),
    );
    assert!(
        agent.0.try_wait().expect("wait").is_none(),
        "the agent must keep running:\n{}",
        read(&log)
    );
    signal(&agent.0, "TERM");
    let status = wait_for("the agent to stop", Duration::from_secs(30), || {
        agent.0.try_wait().expect("wait")
    });
    assert!(status.success(), "{status:?}:\n{}", read(&log));

    // Logs: plain text, RFC 3339 UTC, and the next renewal announced at
    // start and after the renewal.
    let text = read(&log);
    assert_plain_rfc3339("kith agent", &text);
    assert!(
        text.matches("next renewal due").count() >= 2,
        "the next renewal is announced at start and after each renewal:\n{text}"
    );
    assert!(text.contains("renew_at="), "{text}");
    assert!(text.contains("withdrawn"), "{text}");
    // The server's log too (another command, the same format).
    assert_plain_rfc3339("kith serve", &read(&ca.path("serve.log")));
}

#[test]
fn a_revoked_node_agent_stops_within_one_crl_refresh() {
    let ca = Ca::init("p256");
    let (server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let node = join(&ca, &url, "r1");
    let log = ca.path("agent.log");
    let mut agent = Proc(agent_cmd(&node, &log).spawn().expect("agent"));
    wait_for("the agent to start", Duration::from_secs(30), || {
        read(&log).contains("agent started").then_some(())
    });
    // Answered once a CRL listing the revocation is stored.
    ok(
        &ca,
        &["revoke", "--node", "r1", "--reason", "key-compromise"],
        b"",
    );
    // --refresh 1s: generous bound for a loaded machine, far below a renewal.
    let status = wait_for("the revoked agent to exit", Duration::from_secs(30), || {
        agent.0.try_wait().expect("wait")
    });
    let text = read(&log);
    assert_eq!(status.code(), Some(3), "exit status 3:\n{text}");
    // The refresh that saw it may have met the revocation record just before
    // the CRL listing it was stored: then the server's refusal says it.
    assert!(text.contains("error[certificate-revoked]"), "{text}");
    assert_says_revoked_loudly_with_the_way_back(&text, &node);
    assert_plain_rfc3339("kith agent", &text);

    // Started again, the first refresh fetches a CRL that lists it (the
    // revoke command has returned): stopped by the CRL.
    let log = ca.path("agent2.log");
    let out = agent_cmd(&node, &log).output().expect("agent");
    let text = read(&log);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "error[certificate-revoked]: this node (r1) is revoked: the CRL lists its certificate"
        ) && text.contains("reason KeyCompromise"),
        "{text}"
    );
    assert_says_revoked_loudly_with_the_way_back(&text, &node);

    // And with the server gone, from the CRL it kept, at once.
    drop(server);
    let log = ca.path("agent3.log");
    let out = agent_cmd(&node, &log).output().expect("agent");
    let text = read(&log);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("is revoked: the CRL lists"), "{text}");
    assert_says_revoked_loudly_with_the_way_back(&text, &node);
}

/// An error-level log line besides the CLI's error, and the way back with
/// the flag the next join needs in this directory.
fn assert_says_revoked_loudly_with_the_way_back(text: &str, node: &Path) {
    assert!(
        text.lines()
            .any(|l| l.contains(" ERROR ") && l.contains("revoked")),
        "{text}"
    );
    assert!(
        text.contains("kith token create --role worker --name r1")
            && text.contains("kith join --force")
            && text.contains(&format!("--dir {}", node.display())),
        "{text}"
    );
}
