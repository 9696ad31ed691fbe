//! The shipped systemd units (contrib/*.service) can do what the README
//! recommends (issue 11, item 13): `systemd-analyze verify` accepts them with
//! the real kith binary in `ExecStart=`, and under `ProtectSystem=strict`
//! every path the README's examples write is one the unit makes writable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `systemd-analyze`, or a loud failure saying how to install it.
fn systemd_analyze() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/bin")])
        .map(|d| d.join("systemd-analyze"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "required tool `systemd-analyze` not found: `apt-get install systemd` (./scripts/test.sh installs it)"
        )
    })
}

/// The `[Service]` settings of a unit: key to every value given (in order).
fn service_section(unit: &str) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut in_service = false;
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            in_service = line == "[Service]";
        } else if in_service && !line.starts_with('#') && !line.is_empty() {
            let (k, v) = line.split_once('=').expect("key=value");
            out.entry(k.trim().into())
                .or_default()
                .push(v.trim().into());
        }
    }
    out
}

/// The directories a unit under `ProtectSystem=strict` may write.
fn writable(service: &HashMap<String, Vec<String>>) -> Vec<PathBuf> {
    let all = |k: &str| -> Vec<String> {
        service
            .get(k)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect()
    };
    let mut dirs: Vec<PathBuf> = Vec::new();
    dirs.extend(
        all("StateDirectory")
            .iter()
            .map(|d| Path::new("/var/lib").join(d)),
    );
    dirs.extend(
        all("RuntimeDirectory")
            .iter()
            .map(|d| Path::new("/run").join(d)),
    );
    dirs.extend(all("ReadWritePaths").iter().map(PathBuf::from));
    dirs
}

fn assert_writable(unit_name: &str, service: &HashMap<String, Vec<String>>, path: &str) {
    let dirs = writable(service);
    assert!(
        dirs.iter().any(|d| Path::new(path).starts_with(d)),
        "{unit_name}: the README writes {path}, but with ProtectSystem=strict the unit makes only {dirs:?} writable"
    );
}

#[test]
fn shipped_units_pass_systemd_analyze_verify() {
    let analyze = systemd_analyze();
    let tmp = tempfile::tempdir().expect("tempdir");
    let kith = env!("CARGO_BIN_EXE_kith");
    let mut units = Vec::new();
    for name in ["kith-agent.service", "kith-server.service"] {
        let text = std::fs::read_to_string(repo().join("contrib").join(name)).expect("unit");
        assert!(
            text.contains("ExecStart=/usr/local/bin/kith "),
            "{name}: ExecStart names /usr/local/bin/kith"
        );
        let path = tmp.path().join(name);
        std::fs::write(&path, text.replace("/usr/local/bin/kith", kith)).expect("write unit");
        units.push(path);
    }
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    // Warnings (an unknown or misspelled key) leave the status 0: none either.
    let about_ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("kith-agent") || l.contains("kith-server"))
        .collect();
    assert!(about_ours.is_empty(), "systemd-analyze verify:\n{text}");

    // A broken unit is caught: the check is not blind.
    let broken = tmp.path().join("kith-broken.service");
    std::fs::write(
        &broken,
        "[Service]\nExecStart=/nonexistent/kith agent\nProtectSytem=strict\n",
    )
    .expect("write unit");
    let out = Command::new(&analyze)
        .args(["verify", "--man=no"])
        .arg(&broken)
        .output()
        .expect("run systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("ProtectSytem"),
        "{err}"
    );
}

#[test]
fn units_make_writable_what_the_readme_writes() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    let agent = std::fs::read_to_string(repo().join("contrib/kith-agent.service")).expect("unit");
    let service = service_section(&agent);
    assert_eq!(
        service.get("ProtectSystem").map(Vec::as_slice),
        Some(&["strict".to_string()][..])
    );
    // The node directory and the secrets directory of the README's agent examples.
    for needle in [
        "kith agent --dir /var/lib/kith",
        "--secrets-dir /run/kith/secrets",
    ] {
        assert!(readme.contains(needle), "README: {needle}");
    }
    assert_writable("kith-agent.service", &service, "/var/lib/kith");
    assert_writable("kith-agent.service", &service, "/run/kith/secrets");
    // The hook `systemctl reload myapp` speaks D-Bus over a Unix socket, and
    // polkit must allow it: the rule the unit names is shipped.
    let families = service
        .get("RestrictAddressFamilies")
        .map(|v| v.join(" "))
        .unwrap_or_default();
    assert!(families.contains("AF_UNIX"), "{families}");
    assert!(readme.contains("--exec \"systemctl reload myapp\""));
    assert!(agent.contains("contrib/kith-agent.rules"));
    let rules = std::fs::read_to_string(repo().join("contrib/kith-agent.rules")).expect("rules");
    assert!(
        rules.contains("org.freedesktop.systemd1.manage-units")
            && rules.contains("\"reload\"")
            && rules.contains("subject.user == \"kith\""),
        "{rules}"
    );
    // Every option variable the unit documents is one `kith agent` reads.
    let help = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["agent", "--help"])
        .output()
        .expect("kith agent --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let documented: Vec<&str> = agent
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().split_once('='))
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("KITH_AGENT_") && *k != "KITH_AGENT_ARGS")
        .collect();
    assert!(documented.len() >= 4, "{documented:?}");
    for var in documented.iter().chain(&["KITH_LOG"]) {
        assert!(
            help.contains(var),
            "`kith agent --help` does not mention {var}:\n{help}"
        );
    }

    let serve_help = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["serve", "--help"])
        .output()
        .expect("kith serve --help");
    assert!(String::from_utf8_lossy(&serve_help.stdout).contains("KITH_LOG"));
    // And it reads them: a bad value through the environment is refused as
    // the same flag would be.
    let out = Command::new(env!("CARGO_BIN_EXE_kith"))
        .args(["agent", "--dir", "/nonexistent/kith-node"])
        .env("KITH_AGENT_SIGNAL", "not-a-pid")
        .output()
        .expect("kith agent");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--signal \"not-a-pid\""), "{err}");

    let server = std::fs::read_to_string(repo().join("contrib/kith-server.service")).expect("unit");
    let service = service_section(&server);
    assert!(readme.contains("/var/lib/kith-server"));
    assert_writable("kith-server.service", &service, "/var/lib/kith-server");
}
