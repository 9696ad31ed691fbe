//! The files a kith node keeps, and how they are written.
//!
//! Every file is written atomically: to a temporary file in the same
//! directory, made durable, renamed over the target, and the rename made
//! durable. A crash leaves either the old file or the new one, never a torn
//! one. Private keys are created with mode 0600 from the first byte.
//!
//! [`Batch`] does the same for thousands of files at a cost of two
//! filesystem syncs instead of two per file: stage every temporary file,
//! `syncfs` once, rename them all, `syncfs` again.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct Error {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl Error {
    fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
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

/// Many atomic writes with two filesystem syncs in all.
/// Staging takes `&self`, so many threads can stage into one batch.
#[derive(Debug, Default)]
pub struct Batch {
    staged: Mutex<Vec<(PathBuf, PathBuf)>>,
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
        lock(&self.staged).push((tmp, dir.join(name)));
        let mut dirs = lock(&self.dirs);
        if !dirs.contains(dir) {
            dirs.insert(dir.to_path_buf());
        }
        Ok(())
    }

    /// Number of staged files.
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
            for (tmp, _) in &staged {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
        let mut staged = staged.into_iter();
        for (tmp, target) in staged.by_ref() {
            if let Err(e) = fs::rename(&tmp, &target) {
                // Leave nothing behind: this one and the rest not yet renamed.
                let _ = fs::remove_file(&tmp);
                for (rest, _) in staged {
                    let _ = fs::remove_file(rest);
                }
                return Err(Error::new("cannot rename onto", &target, e));
            }
        }
        sync_filesystems(&dirs)
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
        for (tmp, _) in lock(&self.staged).iter() {
            let _ = fs::remove_file(tmp);
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
}
