//! The files a kith node keeps, and how they are written.
//!
//! Every file is written atomically: to a temporary file in the same
//! directory, made durable, renamed over the target, and the rename made
//! durable. A crash leaves either the old file or the new one, never a torn
//! one. Private keys are created with mode 0600 from the first byte.
//!
//! [`Batch`] does the same for thousands of files at a cost of two
//! filesystem syncs instead of two per file: stage every temporary file,
//! `syncfs` once, rename them all, `syncfs` again. A directory that does not
//! exist yet is staged whole, as a hidden sibling directory renamed into
//! place in one step: it appears complete or not at all.
//!
//! Reading is as careful as writing: [`read`] and [`read_private_file`]
//! refuse what ssh would refuse (files and directories that others can read
//! or replace) and open nothing but regular files, bounded in size.
//!
//! [`NodeIdentity`] is `identity.json`, one type for every writer (`kith
//! join`, renewals, `kith cert issue`) and reader.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use kith_api::ErrorCode;

mod identity;
mod safe;
pub use identity::{InvalidAddress, NodeIdentity, ServerAddr, DEFAULT_PORT};
pub use safe::{
    check_node_dir, check_private_dir, check_private_file, read, read_private_file,
    read_trusted_file, tighten_private_dir, MAX_FILE_BYTES,
};

/// The private key (PKCS#8 PEM), mode 0600.
pub const KEY: &str = "key.pem";
/// The leaf certificate.
pub const CERT: &str = "cert.pem";
/// The intermediates, issuer first.
pub const CHAIN: &str = "chain.pem";
/// Leaf then intermediates: what a TLS server or client presents.
pub const FULLCHAIN: &str = "fullchain.pem";
/// The roots to trust.
pub const CA: &str = "ca.pem";
/// The current CRL (PEM).
pub const CRL: &str = "crl.pem";
/// Identity facts (cluster, node, role, serial, expiry, server).
pub const IDENTITY: &str = "identity.json";

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of public files.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of directories kith creates: owner only, since they hold keys.
pub const DIR_MODE: u32 = 0o700;

/// Errors, with the path involved.
#[derive(Debug)]
pub struct Error {
    path: PathBuf,
    repr: Repr,
}

#[derive(Debug)]
enum Repr {
    /// The operating system refused or failed.
    Io {
        action: &'static str,
        source: io::Error,
    },
    /// kith refuses the file: unsafe owner, mode or type.
    Refused {
        code: ErrorCode,
        problem: String,
        fix: String,
    },
    /// The file is there but does not say what kith needs.
    Invalid { code: ErrorCode, message: String },
}

impl Error {
    fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::io(action, path, source)
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            repr: Repr::Io { action, source },
        }
    }

    pub(crate) fn refused(code: ErrorCode, path: &Path, problem: String, fix: String) -> Self {
        Self {
            path: path.to_path_buf(),
            repr: Repr::Refused { code, problem, fix },
        }
    }

    pub(crate) fn invalid(code: ErrorCode, path: &Path, message: String) -> Self {
        Self {
            path: path.to_path_buf(),
            repr: Repr::Invalid { code, message },
        }
    }

    /// A stable machine-readable code: `insecure-permissions` (owner or
    /// mode lets someone else read or replace it), `not-regular-file`
    /// (a FIFO, device, socket, directory or link where a file belongs),
    /// `not-a-directory`, `file-too-large`, `io-error`, `node-dir` (an
    /// `identity.json` that cannot be read) or `no-server` (a directory
    /// issued offline, asked to talk to a server).
    pub fn code(&self) -> ErrorCode {
        match &self.repr {
            Repr::Io { .. } => ErrorCode::IoError,
            Repr::Refused { code, .. } | Repr::Invalid { code, .. } => *code,
        }
    }

    /// Whether the file or directory is simply not there.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.repr, Repr::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The path involved.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.path.display();
        match &self.repr {
            Repr::Io { action, source } => write!(f, "{action} {path}: {source}"),
            Repr::Refused { problem, fix, .. } => {
                write!(f, "refusing {path}: it {problem}; fix: {fix}")
            }
            Repr::Invalid { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.repr {
            Repr::Io { source, .. } => Some(source),
            Repr::Refused { .. } | Repr::Invalid { .. } => None,
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(dir: &Path, name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Create `dir` and its missing parents with [`DIR_MODE`].
pub fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| Error::new("cannot create directory", dir, e))
}

fn write_temp(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf, Error> {
    let tmp = temp_path(dir, name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::new("cannot create", &tmp, e))?;
    // The mode applies from creation (the umask can only narrow it), so a
    // key is never readable by others, not even for an instant.
    f.write_all(contents)
        .map_err(|e| Error::new("cannot write", &tmp, e))?;
    Ok(tmp)
}

/// Write one file atomically and durably: temp file, fsync, rename, fsync of the directory.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = write_temp(dir, name, contents, mode)?;
    let target = dir.join(name);
    let result = File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::new("cannot sync", &tmp, e))
        .and_then(|_| {
            fs::rename(&tmp, &target).map_err(|e| Error::new("cannot rename onto", &target, e))
        })
        .and_then(|_| sync_dir(dir));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::new("cannot sync directory", dir, e))
}

/// A temporary file or directory and where it goes.
#[derive(Debug)]
struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    is_dir: bool,
}

impl Staged {
    /// Remove the temporary file or directory; best effort, for cleanup.
    fn discard(&self) {
        let _ = if self.is_dir {
            fs::remove_dir_all(&self.tmp)
        } else {
            fs::remove_file(&self.tmp)
        };
    }
}

/// Many atomic writes with two filesystem syncs in all.
/// Staging takes `&self`, so many threads can stage into one batch.
#[derive(Debug, Default)]
pub struct Batch {
    staged: Mutex<Vec<Staged>>,
    dirs: Mutex<BTreeSet<PathBuf>>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Write `contents` to a temporary file beside `dir/name`; nothing is
    /// visible under `name` until [`Batch::commit`].
    pub fn stage(&self, dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<(), Error> {
        let tmp = write_temp(dir, name, contents, mode)?;
        lock(&self.staged).push(Staged {
            tmp,
            target: dir.join(name),
            is_dir: false,
        });
        self.note_dir(dir);
        Ok(())
    }

    fn note_dir(&self, dir: &Path) {
        let mut dirs = lock(&self.dirs);
        if !dirs.contains(dir) {
            dirs.insert(dir.to_path_buf());
        }
    }

    /// Stage `files` (name, contents, mode) as the contents of `dir`. When
    /// `dir` does not exist they are written under their own names into a
    /// hidden sibling directory that [`Batch::commit`] renames onto `dir`:
    /// one rename for the lot, and the directory appears whole. When it
    /// exists, each file is staged as by [`Batch::stage`].
    pub fn stage_dir(&self, dir: &Path, files: &[(&str, &[u8], u32)]) -> Result<(), Error> {
        if dir.exists() {
            for (name, contents, mode) in files {
                self.stage(dir, name, contents, *mode)?;
            }
            return Ok(());
        }
        // `Path::parent` of a bare name is "", which names no directory.
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = temp_path(parent, &name);
        fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(&tmp)
            .map_err(|e| Error::new("cannot create directory", &tmp, e))?;
        let staged = Staged {
            tmp,
            target: dir.to_path_buf(),
            is_dir: true,
        };
        for (file, contents, mode) in files {
            let path = staged.tmp.join(file);
            let written = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(*mode)
                .open(&path)
                .and_then(|mut f| f.write_all(contents));
            if let Err(e) = written {
                staged.discard();
                return Err(Error::new("cannot write", &path, e));
            }
        }
        lock(&self.staged).push(staged);
        self.note_dir(parent);
        Ok(())
    }

    /// Number of staged files and whole directories.
    pub fn len(&self) -> usize {
        lock(&self.staged).len()
    }

    /// Whether nothing is staged.
    pub fn is_empty(&self) -> bool {
        lock(&self.staged).is_empty()
    }

    /// Make every staged file durable, rename all into place, make the renames durable.
    pub fn commit(self) -> Result<(), Error> {
        let dirs = std::mem::take(&mut *lock(&self.dirs));
        let staged = std::mem::take(&mut *lock(&self.staged));
        if dirs.is_empty() {
            return Ok(());
        }
        if let Err(e) = sync_filesystems(&dirs) {
            for s in &staged {
                s.discard();
            }
            return Err(e);
        }
        rename_all(staged)?;
        sync_filesystems(&dirs)
    }
}

/// Rename everything staged into place, on every core: renames into
/// different directories do not contend, and on one thread a large batch
/// waits on the kernel's directory work one rename at a time. On the first failure
/// every rename not yet done is abandoned and its temporary file removed;
/// renames already done stay (each is a whole, durable-once-synced file).
fn rename_all(staged: Vec<Staged>) -> Result<(), Error> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = staged.len().div_ceil(threads).max(1);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let errors: Vec<Error> = std::thread::scope(|scope| {
        let workers: Vec<_> = staged
            .chunks(chunk)
            .map(|part| {
                let failed = &failed;
                scope.spawn(move || -> Option<Error> {
                    let mut error = None;
                    for s in part {
                        if error.is_none() && !failed.load(Ordering::Relaxed) {
                            // A staged directory replaces only an empty one
                            // (made meanwhile); a non-empty one is an error.
                            match fs::rename(&s.tmp, &s.target) {
                                Ok(()) => continue,
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    error = Some(Error::new("cannot rename onto", &s.target, e));
                                }
                            }
                        }
                        // Leave nothing behind: this one and the rest not yet renamed.
                        s.discard();
                    }
                    error
                })
            })
            .collect();
        workers
            .into_iter()
            .filter_map(|w| match w.join() {
                Ok(e) => e,
                Err(_) => Some(Error::new(
                    "a rename thread failed under",
                    Path::new("."),
                    io::Error::other("panicked"),
                )),
            })
            .collect()
    });
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One `syncfs` per filesystem that holds any of `dirs`.
fn sync_filesystems(dirs: &BTreeSet<PathBuf>) -> Result<(), Error> {
    let mut synced = BTreeSet::new();
    for dir in dirs {
        let dev = fs::metadata(dir)
            .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
            .map_err(|e| Error::new("cannot stat", dir, e))?;
        if synced.insert(dev) {
            syncfs(dir)?;
        }
    }
    Ok(())
}

impl Drop for Batch {
    /// An uncommitted batch leaves no temporary files behind.
    fn drop(&mut self) {
        for s in lock(&self.staged).iter() {
            s.discard();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn syncfs(dir: &Path) -> Result<(), Error> {
    let d = File::open(dir).map_err(|e| Error::new("cannot open", dir, e))?;
    rustix::fs::syncfs(&d).map_err(|e| Error::new("cannot sync filesystem of", dir, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_sets_mode_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        write_atomic(d.path(), KEY, b"one", KEY_MODE).unwrap();
        write_atomic(d.path(), KEY, b"two", KEY_MODE).unwrap();
        assert_eq!(fs::read(d.path().join(KEY)).unwrap(), b"two");
        let mode = fs::metadata(d.path().join(KEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn batch_is_invisible_until_commit_and_clean_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let b = Batch::new();
        b.stage(d.path(), CERT, b"c", PUBLIC_MODE).unwrap();
        assert!(!d.path().join(CERT).exists());
        drop(b);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            0,
            "dropped batch leaves nothing"
        );
        let b = Batch::new();
        b.stage(d.path(), CERT, b"c", PUBLIC_MODE).unwrap();
        b.stage(d.path(), KEY, b"k", KEY_MODE).unwrap();
        b.commit().unwrap();
        assert_eq!(fs::read(d.path().join(CERT)).unwrap(), b"c");
        let mode = fs::metadata(d.path().join(KEY))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 2);
    }

    #[test]
    fn failed_rename_fails_the_commit_and_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        let b = Batch::new();
        let dirs: Vec<PathBuf> = (0..40).map(|i| d.path().join(format!("n{i}"))).collect();
        for dir in &dirs {
            create_dir(dir).unwrap();
            b.stage(dir, CERT, b"c", PUBLIC_MODE).unwrap();
            b.stage(dir, KEY, b"k", KEY_MODE).unwrap();
        }
        // A non-empty directory where one file should go: that rename fails.
        let blocker = dirs[17].join(CERT);
        create_dir(&blocker.join("inside")).unwrap();
        let err = b.commit().expect_err("a rename onto a directory fails");
        assert!(err.to_string().contains("cannot rename onto"), "{err}");
        for dir in &dirs {
            for e in fs::read_dir(dir).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "{name} left in {}", dir.display());
            }
        }
    }

    #[test]
    fn a_new_directory_is_staged_whole_and_an_existing_one_file_by_file() {
        let d = tempfile::tempdir().unwrap();
        let fresh = d.path().join("node-1");
        let files: &[(&str, &[u8], u32)] = &[(KEY, b"k", KEY_MODE), (CERT, b"c", PUBLIC_MODE)];
        let b = Batch::new();
        b.stage_dir(&fresh, files).unwrap();
        assert!(!fresh.exists(), "nothing visible before commit");
        drop(b);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            0,
            "dropped: nothing left"
        );

        let b = Batch::new();
        b.stage_dir(&fresh, files).unwrap();
        b.commit().unwrap();
        assert_eq!(fs::read(fresh.join(CERT)).unwrap(), b"c");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&fresh.join(KEY)), 0o600);
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no staging directory left"
        );

        // Existing directory: its files are replaced one by one, others kept.
        fs::write(fresh.join("other"), b"o").unwrap();
        let b = Batch::new();
        b.stage_dir(&fresh, &[(CERT, b"c2", PUBLIC_MODE)]).unwrap();
        b.commit().unwrap();
        assert_eq!(fs::read(fresh.join(CERT)).unwrap(), b"c2");
        assert_eq!(fs::read(fresh.join("other")).unwrap(), b"o");
        assert_eq!(fs::read_dir(&fresh).unwrap().count(), 3);
    }

    #[test]
    fn a_staged_directory_never_replaces_a_non_empty_one() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("node-1");
        let b = Batch::new();
        b.stage_dir(&target, &[(CERT, b"c", PUBLIC_MODE)]).unwrap();
        // Someone fills the directory between staging and commit.
        create_dir(&target).unwrap();
        fs::write(target.join(KEY), b"theirs").unwrap();
        b.commit()
            .expect_err("a non-empty directory is not replaced");
        assert_eq!(fs::read(target.join(KEY)).unwrap(), b"theirs");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "staging directory removed"
        );
    }
}
