//! The address an operator or a node dials: a kith server reached by a name
//! its certificate does not carry is a name mismatch, said as such (with
//! the names the certificate does carry), not "is the server running?".

mod common;

use common::{start_server, Ca};

#[test]
fn a_name_the_server_certificate_does_not_carry_is_said_so() {
    let ca = Ca::init("p256");
    // Listening on 127.0.0.1 only: the certificate names that address (and
    // no DNS name), while `localhost` reaches the same socket.
    let (_server, url) = start_server(&ca, "127.0.0.1:0", &ca.pass);
    let port = url.rsplit(':').next().expect("a port");
    ca.ok(&["status", "--server", &url]);

    let wrong = format!("https://localhost:{port}");
    let stderr = ca.fails_with(&["status", "--server", &wrong], "server-name-mismatch");
    assert!(
        stderr.contains("not for localhost") && stderr.contains("127.0.0.1"),
        "the message names the host dialled and what the certificate carries:\n{stderr}"
    );
    assert!(
        stderr.contains("hint:") && stderr.contains("--advertise"),
        "the hint says which names to dial:\n{stderr}"
    );
    assert!(
        !stderr.contains("is the server running"),
        "not the unreachable hint:\n{stderr}"
    );
    // The same with an address nothing listens on is still `unreachable`.
    ca.fails_with(
        &["status", "--server", "https://127.0.0.1:1"],
        "unreachable",
    );
}

/// A node command is not offered `--data-dir` (the CA's), and refuses it
/// with the flag it takes instead; before the subcommand it stays the
/// global flag every command accepts.
#[test]
fn node_commands_refuse_the_data_dir() {
    for args in [
        &[
            "join",
            "--data-dir",
            "/tmp/x",
            "--server",
            "https://127.0.0.1:1",
            "--token",
            "t",
        ][..],
        &["renew", "--data-dir", "/tmp/x", "--dir", "/tmp/y"][..],
        &["agent", "--data-dir", "/tmp/x", "--dir", "/tmp/y"][..],
    ] {
        let stderr = common::node_fails_with(args, "invalid-argument");
        assert!(
            stderr.contains("node directory (--dir)"),
            "kith {args:?}:\n{stderr}"
        );
        let help = common::node_ok(&[args[0], "--help"]);
        assert!(
            !help.contains("--data-dir"),
            "kith {} --help:\n{help}",
            args[0]
        );
    }
    assert!(common::node_ok(&["serve", "--help"]).contains("--data-dir"));
}
