//! A damaged database never crashes kith (issue 9 §6).
//!
//! A real data directory (the real binary: `init`, `cert issue`), then one
//! copy per damage: a byte flipped at the start of every page (where redb
//! keeps a page's type), the byte after it, and a seeded sample of offsets
//! anywhere in the file. On every copy `kith cert ls` and `kith serve` must
//! either work or fail with an error that names the file and says to restore
//! it from a backup: never exit 101, never "panicked" on stderr. Before the
//! fix, a flipped page-type byte made both panic inside redb ("entered
//! unreachable code", "Invalid page type byte").

mod common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{kith, Ca, Proc};

/// redb's page size: every page starts on a multiple of it.
const PAGE: usize = 4096;

/// A small deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    // Private like the original (kith refuses a data directory others can read).
    std::fs::set_permissions(
        to,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700),
    )
    .expect("chmod 700");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A copy of the data directory with byte `offset` of its database flipped.
fn damaged_copy(ca: &Ca, original: &[u8], offset: usize) -> std::path::PathBuf {
    let dir = ca.path(&format!("damaged-{offset}"));
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&ca.data, &dir);
    let mut bytes = original.to_vec();
    bytes[offset] ^= 0xff;
    std::fs::write(dir.join("kith.redb"), bytes).expect("write the damaged copy");
    dir
}

/// Not a crash; and a failure names the database file and the way back.
fn judge(what: &str, code: Option<i32>, stderr: &str) -> bool {
    assert_ne!(code, Some(101), "{what}: kith panicked:\n{stderr}");
    assert!(code.is_some(), "{what}: killed by a signal:\n{stderr}");
    assert!(
        !stderr.contains("panicked"),
        "{what}: a panic reached stderr:\n{stderr}"
    );
    if code == Some(0) {
        return false;
    }
    assert_eq!(code, Some(1), "{what}: exit status:\n{stderr}");
    assert!(
        stderr.contains("error[store-corrupt]")
            && stderr.contains("kith.redb")
            && stderr.contains("backup"),
        "{what}: the error must name the file and say how to recover:\n{stderr}"
    );
    true
}

fn cert_ls(dir: &Path) -> Output {
    kith(dir)
        .args(["cert", "ls"])
        .output()
        .expect("run kith cert ls")
}

/// Run `kith serve` until it is serving (then stop it) or exits by itself;
/// returns the exit status (`Some(0)` for "served") and stderr.
fn serve(dir: &Path, pass: &Path, log: &Path) -> (Option<i32>, String) {
    let child = kith(dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--passphrase-file"])
        .arg(pass)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn kith serve");
    let mut proc = Proc(child);
    let start = Instant::now();
    let code = loop {
        if let Some(status) = proc.0.try_wait().expect("wait") {
            break status.code();
        }
        if dir.join("server.json").exists() {
            break Some(0);
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "kith serve neither served nor exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(proc);
    (code, std::fs::read_to_string(log).unwrap_or_default())
}

#[test]
fn flipped_bytes_in_the_database_never_crash_cert_ls_or_serve() {
    let ca = Ca::init("p256");
    let nodes = ca.path("nodes");
    let nodes = nodes.to_str().expect("utf-8");
    ca.ok(&[
        "cert", "issue", "--role", "worker", "--out", nodes, "n1", "n2",
    ]);
    ca.ok(&["cert", "issue", "--role", "db", "--out", nodes, "n3"]);
    let original = std::fs::read(ca.data.join("kith.redb")).expect("read the database");
    assert!(original.len() >= 4 * PAGE, "a database of several pages");

    let pages = original.len() / PAGE;
    let mut offsets: Vec<usize> = (0..pages).flat_map(|p| [p * PAGE, p * PAGE + 1]).collect();
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    offsets.extend((0..64).map(|_| rng.below(original.len())));

    let mut refused = 0;
    for (i, &offset) in offsets.iter().enumerate() {
        let dir = damaged_copy(&ca, &original, offset);
        let out = cert_ls(&dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if judge(
            &format!("cert ls, byte {offset} flipped"),
            out.status.code(),
            &stderr,
        ) {
            refused += 1;
        }
        // `serve` costs a key derivation and a start: every page start, and a
        // quarter of the rest.
        if offset % PAGE == 0 || i % 4 == 0 {
            let dir = damaged_copy(&ca, &original, offset);
            let (code, stderr) = serve(&dir, &ca.pass, &ca.path("serve.log"));
            judge(&format!("serve, byte {offset} flipped"), code, &stderr);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The damage is real: the page starts alone are refused.
    assert!(
        refused >= pages / 2,
        "only {refused} of {} damaged copies were refused",
        offsets.len()
    );
    // And the undamaged original still works.
    assert_eq!(ca.certs().len(), 4, "admin + 3 nodes");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_name() {
    let ca = Ca::init("p256");
    std::fs::write(ca.data.join("kith.redb"), b"this is not a database").expect("write");
    let out = cert_ls(&ca.data);
    judge(
        "cert ls on a text file",
        out.status.code(),
        &String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1));
}
