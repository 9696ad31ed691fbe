//! The external judges of the root rotation tests: openssl and pkilint,
//! found through `KITH_TOOLS_DIR` (then the workspace venv, then `PATH`).
//! A missing tool fails the test: nothing here is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) use crate::common::{openssl, tool};

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
