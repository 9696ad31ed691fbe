//! Long work shows progress on a terminal and stays quiet otherwise:
//! `kith ca rotate` (its steps take seconds: unlocking, new keys) and
//! `kith vault rotate`. A terminal is a real pseudo-terminal (`script`).

mod common;

use std::process::Command;

use common::Ca;

/// Run `kith --data-dir DATA ARGS` under a pseudo-terminal; its output.
fn on_a_terminal(ca: &Ca, args: &[&str]) -> String {
    let mut line = format!(
        "{} --data-dir {}",
        env!("CARGO_BIN_EXE_kith"),
        ca.data.display()
    );
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let out = Command::new(common::tool("script"))
        .args(["-qec", &line, "/dev/null"])
        .env_remove("KITH_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn ca_rotate_shows_a_spinner_on_a_terminal_only() {
    let ca = Ca::init("p256");
    let pass = ca.pass.to_str().expect("utf-8").to_string();
    let seen = on_a_terminal(
        &ca,
        &["ca", "rotate", "--intermediate", "--passphrase-file", &pass],
    );
    assert!(
        seen.contains("authority cluster: rotating the intermediate"),
        "no progress on a terminal:\n{seen}"
    );
    assert!(seen.contains("generation 2 prepared"), "{seen}");
    // Not a terminal: the answer on stdout, nothing on stderr.
    let out = common::kith(&ca.data)
        .args([
            "ca",
            "rotate",
            "--intermediate",
            "--force",
            "--passphrase-file",
            &pass,
        ])
        .output()
        .expect("run kith");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 2 activated"));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "stderr not quiet");
    // A root rotation step too.
    let seen = on_a_terminal(&ca, &["ca", "rotate", "--root", "--passphrase-file", &pass]);
    assert!(
        seen.contains("authority cluster: preparing a new root"),
        "{seen}"
    );
}

#[test]
fn vault_rotate_shows_progress_on_a_terminal_only() {
    let ca = Ca::init("p256");
    let pass = ca.pass.to_str().expect("utf-8").to_string();
    let seen = on_a_terminal(&ca, &["vault", "rotate", "--passphrase-file", &pass]);
    assert!(
        seen.contains("resealing"),
        "no progress on a terminal:\n{seen}"
    );
    let out = common::kith(&ca.data)
        .args(["vault", "rotate", "--passphrase-file", &pass])
        .output()
        .expect("run kith");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "stderr not quiet");
}
