//! Reading what kith keeps without trusting the filesystem to be kind.
//!
//! The rules are ssh's (`StrictModes`): a private file (a key, the CA
//! database, a passphrase file) must be owned by this user or root and be
//! unreadable and unwritable by group and others; a directory that holds
//! private files must not be writable by group or others (the data and node
//! directories not readable by others either), else whoever can write it can
//! swap a file kith then trusts.
//!
//! And kith opens only regular files where it expects one: `O_NONBLOCK`, so a
//! FIFO planted under a file's name cannot block the open; `O_NOFOLLOW` inside
//! a directory kith writes itself (it never puts a link there); then `fstat`
//! of the opened descriptor, not of the path, so what is checked is what is
//! read. Reads are bounded: a node's files are small.
//!
//! Node-directory files are opened relative to a descriptor of the checked
//! directory (`openat`), so the directory cannot be swapped between its check
//! and the open.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kith_api::ErrorCode;
use rustix::fs::{Mode, OFlags};
use zeroize::Zeroizing;

use crate::{Error, CA, CERT, CHAIN, CRL, FULLCHAIN, IDENTITY, KEY};

/// The most read from any file of a node directory or a passphrase file.
/// Certificates, a CRL and `identity.json` are a few KiB; a CRL with tens
/// of thousands of entries still fits.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Bits that must be clear on a private file: any access by group or others.
const PRIVATE_FILE_FORBIDDEN: u32 = 0o077;
/// Bits that must be clear on any file kith trusts: write by group or others.
const FILE_FORBIDDEN: u32 = 0o022;
/// Bits that must be clear on a data or node directory: write by group or
/// others, read by others.
const PRIVATE_DIR_FORBIDDEN: u32 = 0o026;
/// Bits that must be clear on the directory holding a private file.
const PARENT_DIR_FORBIDDEN: u32 = 0o022;

/// What a checked path is, for messages and fixes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A file only its owner may read.
    PrivateFile,
    /// A file others may read but not write.
    PublicFile,
    /// A directory of private files (data directory, node directory).
    PrivateDir,
    /// A directory holding a private file given by path.
    ParentDir,
    /// A directory on the way to a file kith trusts given by path.
    TrustedDir,
}

impl Kind {
    fn forbidden(self) -> u32 {
        match self {
            Self::PrivateFile => PRIVATE_FILE_FORBIDDEN,
            Self::PublicFile => FILE_FORBIDDEN,
            Self::PrivateDir => PRIVATE_DIR_FORBIDDEN,
            Self::ParentDir | Self::TrustedDir => PARENT_DIR_FORBIDDEN,
        }
    }

    fn is_dir(self) -> bool {
        matches!(self, Self::PrivateDir | Self::ParentDir | Self::TrustedDir)
    }

    /// The mode the fix suggests: the safe mode closest to what is there.
    fn fixed_mode(self, mode: u32) -> u32 {
        match self {
            Self::PrivateFile => 0o600,
            Self::PublicFile => mode & !FILE_FORBIDDEN,
            Self::PrivateDir => 0o700,
            Self::ParentDir | Self::TrustedDir => mode & !PARENT_DIR_FORBIDDEN,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::PrivateFile => "a private file",
            Self::PublicFile => "a file kith trusts",
            Self::PrivateDir => "a directory holding private keys",
            Self::ParentDir => "the directory holding a private file",
            Self::TrustedDir => "a directory on the way to a file kith trusts",
        }
    }
}

/// Who may own what kith trusts: this process's user, or root (as ssh allows).
fn owner_ok(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Check the owner, type and mode of an opened file or directory.
fn check(path: &Path, meta: &std::fs::Metadata, kind: Kind) -> Result<(), Error> {
    let ft = meta.file_type();
    if kind.is_dir() {
        if !ft.is_dir() {
            return Err(Error::refused(
                ErrorCode::NotADirectory,
                path,
                format!("is {}, not a directory", type_name(meta)),
                "point kith at a directory".into(),
            ));
        }
    } else if !ft.is_file() {
        return Err(not_regular(path, type_name(meta)));
    }
    if !owner_ok(meta.uid()) {
        return Err(Error::refused(
            ErrorCode::InsecurePermissions,
            path,
            format!(
                "is {}, owned by uid {} (not this user, uid {}, nor root)",
                kind.describe(),
                meta.uid(),
                rustix::process::geteuid().as_raw()
            ),
            format!(
                "check who put it there, then `chown {} {}`",
                rustix::process::geteuid().as_raw(),
                path.display()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    // A sticky directory (like /tmp) lets others create files but never
    // rename or remove this user's: the file kith reads cannot be swapped.
    let sticky_parent = matches!(kind, Kind::ParentDir | Kind::TrustedDir) && mode & 0o1000 != 0;
    if mode & kind.forbidden() != 0 && !sticky_parent {
        let what = if mode & 0o022 != 0 && kind.is_dir() {
            "group or others can write it, and so replace what it holds"
        } else if mode & 0o022 != 0 {
            "group or others can write it"
        } else if kind == Kind::PrivateDir {
            "others can read it"
        } else {
            "group or others can read it"
        };
        return Err(Error::refused(
            ErrorCode::InsecurePermissions,
            path,
            format!("is {} with mode {mode:04o}: {what}", kind.describe()),
            format!(
                "`chmod {:o} {}`",
                kind.fixed_mode(mode) & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

fn type_name(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "of an unknown file type"
    }
}

fn not_regular(path: &Path, what: &str) -> Error {
    Error::refused(
        ErrorCode::NotRegularFile,
        path,
        format!("is {what}, not a regular file"),
        "remove it: kith reads only regular files where it expects a file".into(),
    )
}

/// Open `path` (relative to `dir` when given) read-only, never blocking on
/// a FIFO; `nofollow` refuses a symbolic link at the last component.
fn open(dir: Option<&OwnedFd>, path: &Path, display: &Path, nofollow: bool) -> Result<File, Error> {
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match dir {
        Some(d) => rustix::fs::openat(d.as_fd(), path, flags, Mode::empty()),
        None => rustix::fs::open(path, flags, Mode::empty()),
    };
    match fd {
        Ok(fd) => Ok(File::from(fd)),
        Err(rustix::io::Errno::LOOP) if nofollow => Err(Error::refused(
            ErrorCode::NotRegularFile,
            display,
            "is a symbolic link, not a regular file".into(),
            "remove it: kith reads only regular files where it expects a file".into(),
        )),
        // open(2) of a socket is ENXIO.
        Err(rustix::io::Errno::NXIO) => Err(not_regular(display, "a socket or a device")),
        Err(e) => Err(Error::io("cannot open", display, e.into())),
    }
}

fn metadata(f: &File, path: &Path) -> Result<std::fs::Metadata, Error> {
    f.metadata().map_err(|e| Error::io("cannot stat", path, e))
}

/// Read at most [`MAX_FILE_BYTES`] of an opened, checked file.
fn read_bounded(
    mut f: File,
    meta: &std::fs::Metadata,
    path: &Path,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let too_large = || {
        Error::refused(
            ErrorCode::FileTooLarge,
            path,
            format!("is larger than {MAX_FILE_BYTES} bytes"),
            "it is not a file kith wrote: restore it (or join again)".into(),
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    // Sized from the stat (bounded above) so that the buffer does not
    // reallocate, which would leave an unwiped copy of a key behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    (&mut f)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("cannot read", path, e))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(buf)
}

/// Open and check a data or node directory: a directory, owned by this
/// user or root, that group and others cannot write and others cannot
/// read. The directory itself may be reached through a symbolic link.
fn open_private_dir(dir: &Path) -> Result<OwnedFd, Error> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(dir, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::NOTDIR => Error::refused(
            ErrorCode::NotADirectory,
            dir,
            "is not a directory".into(),
            "point kith at a directory".into(),
        ),
        e => Error::io("cannot open directory", dir, e.into()),
    })?;
    let f = File::from(fd);
    check(dir, &metadata(&f, dir)?, Kind::PrivateDir)?;
    Ok(OwnedFd::from(f))
}

/// Check a data or node directory (see the module docs): an error names
/// the path, the mode found and the `chmod` that fixes it.
pub fn check_private_dir(dir: &Path) -> Result<(), Error> {
    open_private_dir(dir).map(drop)
}

/// Whether `name` is a private file of a node directory (the key).
fn is_private(name: &str) -> bool {
    name == KEY || name.ends_with(&format!("-{KEY}"))
}

/// Read file `name` of node directory `dir`, checking both: the directory
/// as by [`check_private_dir`], the file regular (never a FIFO, device,
/// socket, directory or symbolic link), owned by this user or root, not
/// writable by group or others, and for the key ([`KEY`]) not readable by
/// them either; at most [`MAX_FILE_BYTES`]. The bytes are wiped when dropped.
pub fn read(dir: &Path, name: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    let dirfd = open_private_dir(dir)?;
    let path = dir.join(name);
    let f = open(Some(&dirfd), Path::new(name), &path, true)?;
    let meta = metadata(&f, &path)?;
    let kind = if is_private(name) {
        Kind::PrivateFile
    } else {
        Kind::PublicFile
    };
    check(&path, &meta, kind)?;
    read_bounded(f, &meta, &path)
}

/// Check a whole node directory as [`read`] checks each file: the
/// directory, and every file kith keeps in it that is there (a missing one
/// is left to whatever needs it to say so). For a long-running process to
/// refuse at start what it would otherwise trip over later.
pub fn check_node_dir(dir: &Path) -> Result<(), Error> {
    check_private_dir(dir)?;
    for name in [KEY, CERT, CHAIN, FULLCHAIN, CA, CRL, IDENTITY] {
        match read(dir, name) {
            Err(e) if !e.is_not_found() => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Read a private file given by path, such as a passphrase file: a regular
/// file (a symbolic link to one is followed, and the file it reaches is
/// what is checked), owned by this user or root, that group and others
/// can neither read nor write, in a directory they cannot write (unless it
/// is sticky, like `/tmp`); at most [`MAX_FILE_BYTES`], wiped when dropped.
pub fn read_private_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let f = open(None, path, path, false)?;
    let meta = metadata(&f, path)?;
    check(path, &meta, Kind::PrivateFile)?;
    check_parent(path)?;
    read_bounded(f, &meta, path)
}

/// Check a private file that another library opens by path (the CA
/// database): it must be a regular file, not a symbolic link, owned by this
/// user or root, unreadable and unwritable by group and others. Call it
/// after [`check_private_dir`] on its directory: only the owner can then
/// replace the file between this check and the library's open.
pub fn check_private_file(path: &Path) -> Result<(), Error> {
    let f = open(None, path, path, true)?;
    check(path, &metadata(&f, path)?, Kind::PrivateFile)
}

/// Read a file that decides what kith does, given by path (the
/// configuration file): a regular file (a symbolic link to one is
/// followed, and the file it reaches is what is checked), owned by this
/// user or root, that group and others cannot write; every directory above
/// it, both on the path as given (where a link could be swapped) and on the
/// path the links lead to, owned by this user or root and not writable by
/// group or others unless sticky (like `/tmp`). sshd's `StrictModes`, for
/// a file that can name commands to run. At most [`MAX_FILE_BYTES`], read
/// from the descriptor that was checked.
pub fn read_trusted_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let f = open(None, path, path, false)?;
    let meta = metadata(&f, path)?;
    check(path, &meta, Kind::PublicFile)?;
    let given = std::path::absolute(path).map_err(|e| Error::io("cannot resolve", path, e))?;
    let real = std::fs::canonicalize(path).map_err(|e| Error::io("cannot resolve", path, e))?;
    for file in [given, real] {
        for dir in file.ancestors().skip(1) {
            // Opened following links: a link's own directory is the
            // previous ancestor, checked too.
            let d = File::open(dir).map_err(|e| Error::io("cannot open directory", dir, e))?;
            check(dir, &metadata(&d, dir)?, Kind::TrustedDir)?;
        }
    }
    read_bounded(f, &meta, path)
}

/// The directory that really holds `path` (after links) must not be
/// writable by group or others.
fn check_parent(path: &Path) -> Result<(), Error> {
    let real = std::fs::canonicalize(path).map_err(|e| Error::io("cannot resolve", path, e))?;
    let parent: PathBuf = real
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let d = File::open(&parent).map_err(|e| Error::io("cannot open directory", &parent, e))?;
    check(&parent, &metadata(&d, &parent)?, Kind::ParentDir)
}

/// Bring an existing directory that kith is about to fill with private
/// files to mode 0700, if it is only too readable: `init` into an existing
/// `0755` directory. A directory that group or others can write, or that
/// another user owns, is refused instead: someone else may already have
/// put something in it.
pub fn tighten_private_dir(dir: &Path) -> Result<(), Error> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(dir, flags, Mode::empty())
        .map_err(|e| Error::io("cannot open directory", dir, e.into()))?;
    let f = File::from(fd);
    let meta = metadata(&f, dir)?;
    let mode = meta.permissions().mode() & 0o7777;
    if owner_ok(meta.uid()) && mode & 0o022 == 0 && mode & 0o077 != 0 {
        rustix::fs::fchmod(&f, Mode::from_raw_mode(0o700))
            .map_err(|e| Error::io("cannot chmod 700", dir, e.into()))?;
    }
    check(dir, &metadata(&f, dir)?, Kind::PrivateDir)
}
