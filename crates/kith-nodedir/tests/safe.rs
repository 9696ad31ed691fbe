//! The safe reads of kith-nodedir against real files: modes, owners,
//! FIFOs, devices, links, directories and sizes, each refused with its code,
//! the path and the fix.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kith_nodedir::{
    check_node_dir, check_private_dir, check_private_file, read, read_private_file,
    tighten_private_dir, Error, CA, CRL, KEY, KEY_MODE, MAX_FILE_BYTES, PUBLIC_MODE,
};
use rustix::fs::Mode;

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
}

fn node_dir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("node");
    kith_nodedir::create_dir(&d).expect("mkdir");
    kith_nodedir::write_atomic(&d, KEY, b"key", KEY_MODE).expect("key");
    kith_nodedir::write_atomic(&d, CRL, b"crl", PUBLIC_MODE).expect("crl");
    (t, d)
}

fn code(r: Result<impl Sized, Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("{}: {e}", e.code()),
    }
}

#[test]
fn reads_what_kith_writes() {
    let (_t, d) = node_dir();
    assert_eq!(&*read(&d, KEY).expect("key"), b"key");
    assert_eq!(&*read(&d, CRL).expect("crl"), b"crl");
}

#[test]
fn a_key_others_can_read_is_refused_with_the_fix() {
    let (_t, d) = node_dir();
    let key = d.join(KEY);
    for m in [0o640, 0o604, 0o644, 0o660, 0o602] {
        chmod(&key, m);
        let e = read(&d, KEY).expect_err("refused");
        assert_eq!(e.code(), "insecure-permissions");
        let msg = e.to_string();
        assert!(msg.contains(&key.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{m:04o}")), "{msg}");
        assert!(
            msg.contains(&format!("chmod 600 {}", key.display())),
            "{msg}"
        );
    }
    chmod(&key, 0o400);
    assert!(read(&d, KEY).is_ok(), "0400 is stricter still");
}

#[test]
fn a_file_or_directory_of_another_user_is_refused() {
    let (_t, d) = node_dir();
    let nobody = Some(rustix::fs::Uid::from_raw(65534));
    // Only root can give a file away; as another user this proves nothing.
    if rustix::fs::chown(d.join(KEY), nobody, None).is_err() {
        eprintln!("not root: skipping the ownership check");
        return;
    }
    let e = read(&d, KEY).expect_err("another user's key");
    assert_eq!(e.code(), "insecure-permissions");
    assert!(e.to_string().contains("uid 65534"), "{e}");
    assert!(e.to_string().contains("chown"), "{e}");
    rustix::fs::chown(&d, nobody, None).expect("chown dir");
    assert_eq!(
        check_private_dir(&d).expect_err("dir").code(),
        "insecure-permissions"
    );
}

#[test]
fn a_public_file_others_can_write_is_refused() {
    let (_t, d) = node_dir();
    let crl = d.join(CRL);
    chmod(&crl, 0o666);
    let e = read(&d, CRL).expect_err("refused");
    assert_eq!(e.code(), "insecure-permissions");
    assert!(e.to_string().contains("chmod 644"), "{e}");
}

#[test]
fn a_node_dir_others_can_write_or_read_is_refused() {
    let (_t, d) = node_dir();
    for m in [0o777, 0o770, 0o705, 0o755, 0o720] {
        chmod(&d, m);
        let e = read(&d, CRL).expect_err("refused");
        assert_eq!(e.code(), "insecure-permissions", "{m:o}: {e}");
        assert!(e.to_string().contains("chmod 700"), "{e}");
        assert!(check_private_dir(&d).is_err());
    }
    chmod(&d, 0o750);
    assert_eq!(
        code(read(&d, CRL)),
        "ok",
        "a group may read (a service's group)"
    );
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let (_t, d) = node_dir();
    let crl = d.join(CRL);
    fs::remove_file(&crl).expect("rm");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &crl,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    // Without O_NONBLOCK this open would wait for a writer forever.
    let e = read(&d, CRL).expect_err("refused");
    assert_eq!(e.code(), "not-regular-file", "{e}");
    assert!(e.to_string().contains("FIFO"), "{e}");
    let e = read_private_file(&crl).expect_err("refused");
    assert_eq!(e.code(), "not-regular-file", "{e}");
}

#[test]
fn a_directory_a_symlink_or_a_device_is_refused() {
    let (_t, d) = node_dir();
    fs::create_dir(d.join("dir.pem")).expect("mkdir");
    assert_eq!(
        read(&d, "dir.pem").expect_err("dir").code(),
        "not-regular-file"
    );
    std::os::unix::fs::symlink(d.join(KEY), d.join("link.pem")).expect("symlink");
    assert_eq!(
        read(&d, "link.pem").expect_err("link").code(),
        "not-regular-file"
    );
    assert_eq!(
        read_private_file(Path::new("/dev/zero"))
            .expect_err("device")
            .code(),
        "not-regular-file"
    );
    assert_eq!(
        check_private_file(&d.join("link.pem"))
            .expect_err("link")
            .code(),
        "not-regular-file"
    );
}

#[test]
fn a_whole_node_directory_is_checked_and_missing_files_are_not_its_business() {
    let (_t, d) = node_dir();
    check_node_dir(&d).expect("what kith wrote passes");
    fs::remove_file(d.join(CRL)).expect("rm");
    check_node_dir(&d).expect("a missing CRL is for its reader to report");
    fs::create_dir(d.join(CA)).expect("mkdir");
    assert_eq!(
        check_node_dir(&d).expect_err("dir").code(),
        "not-regular-file"
    );
    fs::remove_dir(d.join(CA)).expect("rmdir");
    chmod(&d.join(KEY), 0o644);
    assert_eq!(
        check_node_dir(&d).expect_err("key").code(),
        "insecure-permissions"
    );
}

#[test]
fn a_large_file_is_refused() {
    let (_t, d) = node_dir();
    let big = vec![b'x'; MAX_FILE_BYTES as usize + 1];
    kith_nodedir::write_atomic(&d, CRL, &big, PUBLIC_MODE).expect("write");
    assert_eq!(read(&d, CRL).expect_err("big").code(), "file-too-large");
    let exact = vec![b'x'; MAX_FILE_BYTES as usize];
    kith_nodedir::write_atomic(&d, CRL, &exact, PUBLIC_MODE).expect("write");
    assert_eq!(read(&d, CRL).expect("at the limit").len(), exact.len());
}

#[test]
fn a_passphrase_file_is_checked_and_its_directory_too() {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path().join("pass");
    kith_nodedir::write_atomic(t.path(), "pass", b"secret\n", 0o600).expect("write");
    assert_eq!(&*read_private_file(&p).expect("read"), b"secret\n");
    chmod(&p, 0o644);
    let e = read_private_file(&p).expect_err("readable");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    chmod(&p, 0o600);
    chmod(t.path(), 0o777);
    let e = read_private_file(&p).expect_err("writable directory");
    assert_eq!(e.code(), "insecure-permissions");
    assert!(e.to_string().contains("chmod 755"), "{e}");
    chmod(t.path(), 0o1777);
    assert!(
        read_private_file(&p).is_ok(),
        "a sticky directory (/tmp) is fine"
    );
    chmod(t.path(), 0o700);
    // A link is followed and the file it reaches is what is checked.
    let link = t.path().join("link");
    std::os::unix::fs::symlink(&p, &link).expect("symlink");
    assert!(read_private_file(&link).is_ok());
    chmod(&p, 0o640);
    assert!(read_private_file(&link).is_err());
}

#[test]
fn tighten_fixes_a_readable_directory_and_refuses_a_writable_one() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    fs::create_dir(&d).expect("mkdir");
    chmod(&d, 0o755);
    tighten_private_dir(&d).expect("tightened");
    assert_eq!(
        fs::metadata(&d).expect("stat").permissions().mode() & 0o777,
        0o700
    );
    chmod(&d, 0o775);
    assert_eq!(
        tighten_private_dir(&d).expect_err("writable").code(),
        "insecure-permissions"
    );
    assert_eq!(
        fs::metadata(&d).expect("stat").permissions().mode() & 0o777,
        0o775,
        "a refused directory is left as it was"
    );
}
