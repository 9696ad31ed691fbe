//! `kith serve|agent --config FILE` (or `KITH_CONFIG`): real processes read
//! a real file; flag > environment > file > default; a bad file is an error
//! that names the file, the key and the reason, and starts nothing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{kith, wait_for, Ca, Proc};

/// A port free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Write `text` as the configuration file `name` beside the CA.
fn config(ca: &Ca, name: &str, text: &str) -> PathBuf {
    let path = ca.path(name);
    std::fs::write(&path, text).expect("write the config file");
    path
}

/// Start `kith serve` with `args` and `env` (nothing else: no --listen),
/// and return it with its `server.json` once written.
fn serve(ca: &Ca, args: &[&str], env: &[(&str, &str)]) -> (Proc, serde_json::Value) {
    let info = ca.data.join("server.json");
    let _ = std::fs::remove_file(&info);
    let mut cmd = kith(&ca.data);
    cmd.arg("serve")
        .args(args)
        .env_remove("KITH_CONFIG")
        .env_remove("KITH_SERVER_NAME")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn kith serve");
    let pid = u64::from(child.id());
    let proc = Proc(child);
    let v = wait_for("server.json", Duration::from_secs(60), || {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&info).ok()?).ok()?;
        (v["pid"].as_u64() == Some(pid)).then_some(v)
    });
    (proc, v)
}

/// Run `kith serve|agent ARGS` expecting `error[invalid-config]` and exit 1
/// before anything starts; returns stderr.
fn refused(ca: &Ca, args: &[&str]) -> String {
    refused_with(ca, args, "invalid-config")
}

/// As [`refused`], with `error[code]`.
fn refused_with(ca: &Ca, args: &[&str], code: &str) -> String {
    let out = kith(&ca.data)
        .args(args)
        .env_remove("KITH_CONFIG")
        .output()
        .expect("run kith");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "kith {args:?}:\n{stderr}");
    assert!(
        stderr.starts_with(&format!("error[{code}]: ")),
        "kith {args:?}:\n{stderr}"
    );
    assert!(
        !ca.data.join("server.json").exists(),
        "kith {args:?} started a server"
    );
    stderr
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

#[test]
fn serve_takes_its_listen_address_and_passphrase_file_from_the_file() {
    let ca = Ca::init("p256");
    let port = free_port();
    let file = config(
        &ca,
        "kith.toml",
        &format!(
            "# kith serve, from a file\n[serve]\nlisten = \"127.0.0.1:{port}\"\npassphrase-file = {}\nmax-connections = 512\n\n[agent]\ndir = \"/var/lib/kith\"\n",
            toml_path(&ca.pass)
        ),
    );
    let (_server, info) = serve(&ca, &["--config", file.to_str().expect("utf-8")], &[]);
    assert_eq!(info["listen"], format!("127.0.0.1:{port}"));
    // It really listens there: a TLS client gets the CA bundle.
    let out = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "30"])
        .arg(format!("https://127.0.0.1:{port}/v1/ca"))
        .output()
        .expect("run curl");
    let ca_json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the server answers /v1/ca with JSON");
    assert_eq!(ca_json["cluster"], "prod.example");
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let ca = Ca::init("p256");
    let file = config(
        &ca,
        "kith.toml",
        &format!(
            "[serve]\nlisten = \"127.0.0.1:0\"\nserver-name = \"kith-server-file\"\npassphrase-file = {}\n",
            toml_path(&ca.pass)
        ),
    );
    let file = file.to_str().expect("utf-8");
    // The file alone, named by KITH_CONFIG.
    let (server, info) = serve(&ca, &[], &[("KITH_CONFIG", file)]);
    assert_eq!(info["server_name"], "kith-server-file");
    drop(server);
    // The environment beats the file.
    let (server, info) = serve(
        &ca,
        &["--config", file],
        &[("KITH_SERVER_NAME", "kith-server-env")],
    );
    assert_eq!(info["server_name"], "kith-server-env");
    drop(server);
    // A flag beats both; --config beats KITH_CONFIG (which names no file).
    let (_server, info) = serve(
        &ca,
        &["--config", file, "--server-name", "kith-server-flag"],
        &[
            ("KITH_SERVER_NAME", "kith-server-env"),
            ("KITH_CONFIG", "/nonexistent/kith.toml"),
        ],
    );
    assert_eq!(info["server_name"], "kith-server-flag");
}

#[test]
fn a_bad_file_names_the_file_the_key_and_the_reason() {
    let ca = Ca::init("p256");
    let cases: &[(&str, &str, &[&str])] = &[
        // An unknown key, named.
        (
            "serve",
            "[serve]\nlisen = \"127.0.0.1:0\"\n",
            &["serve.lisen", "unknown key", "--lisen"],
        ),
        // One in the other command's table too.
        (
            "serve",
            "[serve]\n[agent]\nbogus = 1\n",
            &["agent.bogus", "unknown key"],
        ),
        // A wrong type.
        (
            "serve",
            "[serve]\njson = \"yes\"\n",
            &["serve.json", "expected true or false"],
        ),
        (
            "agent",
            "[agent]\nrefresh = true\n",
            &["agent.refresh", "expected a string or a number"],
        ),
        ("agent", "agent = 3\n", &["`agent`", "expected a table"]),
        // A bad value, judged by the flag's own parser.
        (
            "serve",
            "[serve]\nlisten = \"127.0.0.1:notaport\"\n",
            &["serve.listen", "invalid socket address"],
        ),
        (
            "serve",
            "[serve]\nmax-connections = -3\n",
            &["serve.max-connections", "invalid value \"-3\""],
        ),
        (
            "agent",
            "[agent]\nrefresh = \"soon\"\n",
            &["agent.refresh", "invalid value \"soon\""],
        ),
        // A secret never inline.
        (
            "serve",
            "[serve]\npassphrase = \"hunter2\"\n",
            &["serve.passphrase", "passphrase-file"],
        ),
        // Not a table per command.
        (
            "serve",
            "listen = \"127.0.0.1:0\"\n",
            &["`listen`", "a table per command"],
        ),
        // Not TOML.
        ("serve", "[serve\n", &["not valid TOML"]),
    ];
    for (i, (command, text, expect)) in cases.iter().enumerate() {
        let file = config(&ca, &format!("bad{i}.toml"), text);
        let file = file.to_str().expect("utf-8");
        let stderr = refused(&ca, &[command, "--config", file]);
        assert!(
            stderr.contains(file),
            "{text:?}: the file is not named:\n{stderr}"
        );
        for e in *expect {
            assert!(stderr.contains(e), "{text:?}: expected {e:?} in:\n{stderr}");
        }
        assert!(
            !stderr.contains("hunter2"),
            "the secret is echoed:\n{stderr}"
        );
    }
    // An explicit file that does not exist is an error; the default one
    // (/etc/kith/kith.toml) may be absent.
    let stderr = refused(&ca, &["serve", "--config", "/nonexistent/kith.toml"]);
    assert!(stderr.contains("/nonexistent/kith.toml"), "{stderr}");
}

#[test]
fn agent_takes_its_directory_from_the_file() {
    let ca = Ca::init("p256");
    let dir = ca.path("no-such-node-dir");
    let file = config(
        &ca,
        "kith.toml",
        &format!("[agent]\ndir = {}\nrefresh = \"1m\"\n", toml_path(&dir)),
    );
    let out = common::node()
        .args(["agent", "--config", file.to_str().expect("utf-8")])
        .env_remove("KITH_CONFIG")
        .output()
        .expect("run kith agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // The agent looked in the directory the file names, not the default.
    assert!(
        stderr.contains("no-such-node-dir"),
        "the agent did not use the file's dir:\n{stderr}"
    );
}

/// The long flags `kith COMMAND --help` lists, but `--help`, `--version`
/// and `--config`.
fn long_flags(command: &str) -> Vec<String> {
    let out = common::node()
        .args([command, "--help"])
        .output()
        .expect("run kith --help");
    let help = String::from_utf8(out.stdout).expect("UTF-8 help");
    let mut flags: Vec<String> = help
        .lines()
        .map(str::trim_start)
        .filter_map(|l| {
            let l = l.strip_prefix("-h, ").unwrap_or(l);
            let l = l.strip_prefix("-V, ").unwrap_or(l);
            let name = l.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_string())
        })
        .filter(|f| !matches!(f.as_str(), "help" | "version" | "config"))
        .collect();
    flags.dedup();
    flags
}

#[test]
fn every_flag_of_serve_and_agent_is_a_key_of_the_file() {
    let ca = Ca::init("p256");
    for command in ["serve", "agent"] {
        let flags = long_flags(command);
        assert!(
            flags.len() > 5,
            "too few flags in kith {command} --help: {flags:?}"
        );
        for flag in flags {
            // A TOML date is no flag's type: the key is found, its value refused.
            let file = config(
                &ca,
                "kith.toml",
                &format!("[{command}]\n{flag} = 1979-05-27T07:32:00Z\n"),
            );
            let stderr = refused(&ca, &[command, "--config", file.to_str().expect("utf-8")]);
            if command == "serve" && flag == "dev" {
                // On the command line only (see below).
                assert!(
                    stderr.contains("key `serve.dev`: a throwaway CA"),
                    "{stderr}"
                );
                continue;
            }
            assert!(
                stderr.contains(&format!("key `{command}.{flag}`: expected")),
                "--{flag} of kith {command} cannot live in the file:\n{stderr}"
            );
        }
    }
}

/// Run `kith agent ARGS` with `env` (no other `KITH_*`), with a node
/// directory that does not exist: getting as far as looking for it means
/// the command line and the file were accepted. Returns stderr.
fn agent_reaches_its_dir(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = common::node();
    cmd.arg("agent").args(args);
    for k in [
        "KITH_CONFIG",
        "KITH_AGENT_EXEC",
        "KITH_AGENT_SIGNAL",
        "KITH_AGENT_SECRETS",
        "KITH_AGENT_SECRETS_DIR",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run kith agent");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        stderr.contains("no-such-node-dir"),
        "kith agent {args:?} with {env:?} did not get to its directory:\n{stderr}"
    );
    stderr
}

#[test]
fn a_flag_or_variable_beats_a_conflicting_key_of_the_file() {
    let ca = Ca::init("p256");
    let dir = ca.path("no-such-node-dir");
    let file = config(
        &ca,
        "kith.toml",
        &format!(
            "[agent]\ndir = {}\nexec = \"systemctl reload x\"\n",
            toml_path(&dir)
        ),
    );
    let file = file.to_str().expect("utf-8");
    // --signal (or KITH_AGENT_SIGNAL) replaces the file's exec instead of
    // clashing with a --exec nobody typed.
    agent_reaches_its_dir(&["--config", file, "--signal", "1:HUP"], &[]);
    agent_reaches_its_dir(&["--config", file], &[("KITH_AGENT_SIGNAL", "1:HUP")]);
    // Two keys of the file that cannot go together are named, as the file's.
    let both = config(
        &ca,
        "both.toml",
        "[agent]\nexec = \"systemctl reload x\"\nsignal = \"1:HUP\"\n",
    );
    let both = both.to_str().expect("utf-8");
    let stderr = refused(&ca, &["agent", "--config", both]);
    assert!(
        stderr.contains(both) && stderr.contains("agent.signal") && stderr.contains("agent.exec"),
        "{stderr}"
    );
}

#[test]
fn the_file_can_complete_what_a_flag_or_variable_requires() {
    let ca = Ca::init("p256");
    let dir = ca.path("no-such-node-dir");
    let file = config(
        &ca,
        "kith.toml",
        &format!(
            "[agent]\ndir = {}\nsecrets-dir = {}\n",
            toml_path(&dir),
            toml_path(&ca.path("secrets"))
        ),
    );
    let file = file.to_str().expect("utf-8");
    agent_reaches_its_dir(&["--config", file], &[("KITH_AGENT_SECRETS", "db")]);
    agent_reaches_its_dir(&["--config", file, "--secrets", "db"], &[]);
    // A file that does not hold it leaves clap's usage error as it was.
    std::fs::write(ca.path("empty.toml"), "").expect("write an empty config");
    let out = common::node()
        .args(["agent", "--secrets", "db"])
        .env("KITH_CONFIG", ca.path("empty.toml"))
        .env_remove("KITH_AGENT_SECRETS_DIR")
        .output()
        .expect("run kith agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--secrets-dir"), "{stderr}");
}

#[test]
fn dev_is_refused_in_the_file() {
    let ca = Ca::init("p256");
    let file = config(&ca, "kith.toml", "[serve]\ndev = true\n");
    let stderr = refused(&ca, &["serve", "--config", file.to_str().expect("utf-8")]);
    assert!(
        stderr.contains("key `serve.dev`") && stderr.contains("kith serve --dev"),
        "{stderr}"
    );
}

/// `kith agent --config FILE` with a node directory that does not exist,
/// expecting `error[code]` naming `named` and saying `fix`.
fn agent_refuses(file: &Path, code: &str, named: &Path, fix: &str) {
    let out = common::node()
        .args(["agent", "--config", file.to_str().expect("utf-8")])
        .env_remove("KITH_CONFIG")
        .output()
        .expect("run kith agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("error[{code}]: configuration file ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&named.display().to_string()),
        "{} not named:\n{stderr}",
        named.display()
    );
    assert!(stderr.contains(fix), "no {fix:?} in:\n{stderr}");
    assert!(
        !stderr.contains("no-such-node-dir"),
        "the file was applied:\n{stderr}"
    );
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_file_someone_else_could_write_is_refused() {
    let ca = Ca::init("p256");
    let text = format!(
        "[agent]\ndir = {}\nexec = \"touch /tmp/owned\"\n",
        toml_path(&ca.path("no-such-node-dir"))
    );
    // In a directory of its own (mode 0755 under a private tempdir).
    let dir = ca.path("etc-kith");
    std::fs::create_dir(&dir).expect("mkdir");
    chmod(&dir, 0o755);
    let file = dir.join("kith.toml");
    std::fs::write(&file, &text).expect("write");
    chmod(&file, 0o644);
    // As it should be: applied.
    agent_reaches_its_dir(&["--config", file.to_str().expect("utf-8")], &[]);

    // Writable by group or others.
    for mode in [0o666, 0o664, 0o646] {
        chmod(&file, mode);
        agent_refuses(&file, "insecure-permissions", &file, "chmod 644");
    }
    chmod(&file, 0o644);

    // Owned by another user (the tests run as root or as the owner).
    use std::os::unix::fs::{chown, MetadataExt};
    let owner = std::fs::metadata(&file).expect("stat").uid();
    if chown(&file, Some(4242), None).is_ok() {
        agent_refuses(&file, "insecure-permissions", &file, "chown");
        chown(&file, Some(owner), None).expect("chown back");
    }

    // In a directory that group or others can write, sticky or not for a
    // group, not sticky for others.
    for mode in [0o775, 0o757, 0o777] {
        chmod(&dir, mode);
        agent_refuses(&file, "insecure-permissions", &dir, "chmod 755");
    }
    // Sticky and writable by all, like /tmp: others cannot swap the file.
    chmod(&dir, 0o1777);
    agent_reaches_its_dir(&["--config", file.to_str().expect("utf-8")], &[]);
    chmod(&dir, 0o755);

    // A link from a safe place to a file in an unsafe one: what the link
    // leads to is checked.
    let unsafe_dir = ca.path("drop");
    std::fs::create_dir(&unsafe_dir).expect("mkdir");
    chmod(&unsafe_dir, 0o777);
    let planted = unsafe_dir.join("kith.toml");
    std::fs::write(&planted, &text).expect("write");
    chmod(&planted, 0o644);
    let link = dir.join("linked.toml");
    std::os::unix::fs::symlink(&planted, &link).expect("symlink");
    agent_refuses(&link, "insecure-permissions", &unsafe_dir, "chmod 755");
    // A link that sits in an unsafe directory: it could be swapped.
    let safe_target = dir.join("kith.toml");
    let link2 = unsafe_dir.join("link.toml");
    std::os::unix::fs::symlink(&safe_target, &link2).expect("symlink");
    agent_refuses(&link2, "insecure-permissions", &unsafe_dir, "chmod 755");
    // Not a regular file.
    agent_refuses(&dir, "not-regular-file", &dir, "regular file");
}
