//! The external judges of the root rotation tests: openssl and pkilint,
//! found through `KITH_TOOLS_DIR` (then the workspace venv, then `PATH`).
//! A missing tool fails the test: nothing here is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Find an external tool or panic with how to get it.
pub(crate) fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KITH_TOOLS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "required tool `{name}` not found: set KITH_TOOLS_DIR or run ./scripts/test.sh, which installs openssl and a venv with pkilint"
            )
        })
}

/// Run openssl; returns (success, stdout + stderr).
pub(crate) fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new(tool("openssl"))
        .args(args)
        .output()
        .expect("run openssl");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Write `ders` as PEM `tag` blocks to `dir/name`; returns the path.
pub(crate) fn write_pem(dir: &Path, name: &str, tag: &str, ders: &[&[u8]]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, kith_pki::pem_encode_many(tag, ders.iter().copied()))
        .expect("write a PEM file");
    path
}

/// A path as the `&str` a command line takes.
pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `openssl verify -CAfile ca [-untrusted untrusted] leaf` plus `extra`
/// options; returns (accepted, output).
pub(crate) fn verify(
    ca: &Path,
    untrusted: Option<&Path>,
    extra: &[&str],
    leaf: &Path,
) -> (bool, String) {
    let mut args = vec!["verify", "-CAfile", s(ca)];
    if let Some(u) = untrusted {
        args.extend(["-untrusted", s(u)]);
    }
    args.extend_from_slice(extra);
    args.push(s(leaf));
    let (ok, out) = openssl(&args);
    (ok && out.contains(": OK"), out)
}

/// What `lint_pkix_cert` reports at WARNING or above for the PEM
/// certificate `file`, one line per finding (empty when clean).
pub(crate) fn pkilint(file: &Path) -> Vec<String> {
    let out = Command::new(tool("lint_pkix_cert"))
        .args(["lint", "-s", "WARNING", s(file)])
        .output()
        .expect("run pkilint");
    assert!(
        out.status.code().is_some(),
        "pkilint crashed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}
