//! Wiring helpers: where the data lives, how the passphrase is obtained,
//! durations, and the one place that names the concrete store backend.

use std::io::{IsTerminal, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kith_api::ErrorCode;
use kith_authority::{Authority, Settings, SystemClock};
use kith_store::Store;
use kith_store_redb::RedbStore;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::output::CliError;
use crate::store_args::StoreArgs;

/// The database file inside the data directory.
pub(crate) const DB_FILE: &str = "kith.redb";

pub(crate) fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(d) = flag {
        return Ok(d);
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("kith"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/kith")),
        None => Err(CliError::new(
            ErrorCode::InvalidArgument,
            "no data directory: pass --data-dir or set KITH_DATA_DIR",
        )),
    }
}

/// The operator credential directory `init` writes inside the data directory.
pub(crate) const ADMIN_DIR: &str = "admin";

/// Where a CA lives for one command: the local data directory and the
/// store options (`--store`). It dereferences to the data directory, which
/// is what most of a command uses (admin/, server.json, ca.pem); only the
/// opening of the store looks at the rest.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    dir: PathBuf,
    store: StoreArgs,
}

impl Home {
    /// The data directory `dir` with the store options of the command line.
    pub(crate) fn new(dir: PathBuf, store: StoreArgs) -> Self {
        Self { dir, store }
    }

    /// The embedded store in `dir`, whatever the command line says
    /// (`serve --dev`, the embedded side of `kith store copy`).
    pub(crate) fn embedded(dir: PathBuf) -> Self {
        Self::new(dir, StoreArgs::default())
    }

    /// The store options.
    pub(crate) fn store_args(&self) -> &StoreArgs {
        &self.store
    }
}

impl std::ops::Deref for Home {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.dir
    }
}

/// Open the store of an initialised CA: the database of the data
/// directory, after checking the directory as ssh checks `~/.ssh` (see
/// [`check_data_dir`]); or, with `--store nats://...`, the NATS bucket, the
/// local data directory checked only if it exists (it holds no record).
pub(crate) async fn open_store(home: &Home) -> Result<Arc<dyn Store>, CliError> {
    let dir: &Path = home;
    if let Some(opts) = home.store.nats()? {
        if dir.symlink_metadata().is_ok() {
            check_local_dir(dir)?;
        }
        return connect_nats(opts).await;
    }
    let db = dir.join(DB_FILE);
    // `symlink_metadata`: a dangling link or a FIFO is there, and refused below.
    if db.symlink_metadata().is_err() {
        return Err(CliError::new(
            ErrorCode::NotInitialized,
            format!("no kith CA in {}", dir.display()),
        )
        .hint("run `kith init --cluster NAME` first, pass --data-dir, or --store nats://... for a CA kept in NATS"));
    }
    check_data_dir(dir)?;
    Ok(Arc::new(RedbStore::open(&db)?))
}

/// Refuse a data directory that could leak or swap the CA's secrets: the
/// directory must be this user's (or root's), not writable by group or
/// others nor readable by others; the database a regular file only its
/// owner can read; the operator credential's key likewise. The database
/// is opened by path afterwards (redb), which is safe because only the
/// owner can replace it in a directory that passed.
pub(crate) fn check_data_dir(dir: &Path) -> Result<(), CliError> {
    kith_nodedir::check_private_dir(dir)?;
    kith_nodedir::check_private_file(&dir.join(DB_FILE))?;
    check_admin_key(dir)
}

/// [`check_data_dir`] for a CA whose records are in NATS: the directory
/// and the operator credential, no database.
fn check_local_dir(dir: &Path) -> Result<(), CliError> {
    kith_nodedir::check_private_dir(dir)?;
    check_admin_key(dir)
}

fn check_admin_key(dir: &Path) -> Result<(), CliError> {
    let admin = dir.join(ADMIN_DIR);
    if admin.symlink_metadata().is_ok() {
        kith_nodedir::read(&admin, kith_nodedir::KEY)?;
    }
    Ok(())
}

/// The data directory of `serve` with a NATS store, which keeps only
/// `server.json` there: created 0700 when missing (once the store opened,
/// so a store that cannot be reached leaves nothing behind), checked as
/// always. The embedded store needs an initialised directory, checked when
/// it opens.
pub(crate) fn prepare_local_dir(home: &Home) -> Result<(), CliError> {
    if home.store.is_nats() && home.symlink_metadata().is_err() {
        kith_nodedir::create_dir(home)?;
        kith_nodedir::check_private_dir(home)?;
    }
    Ok(())
}

/// Connect to the NATS store; a failure names the addresses and bucket.
pub(crate) async fn connect_nats(
    opts: kith_store_nats::NatsOptions,
) -> Result<Arc<dyn Store>, CliError> {
    let place = crate::store_args::describe(&opts);
    match kith_store_nats::NatsStore::connect(opts).await {
        Ok(store) => Ok(Arc::new(store)),
        Err(e) => {
            // The store's own code (store-unavailable when nothing answers).
            let mut err = CliError::from(e);
            err.message = format!("cannot open the NATS store at {place}: {}", err.message);
            if err.code == ErrorCode::StoreUnavailable.as_str() {
                err.hint = Some(
                    "check that nats-server (with JetStream) runs at those addresses and that the --nats-* options match its configuration".into(),
                );
            }
            Err(err)
        }
    }
}

/// Create or open the store for `init`: the directory is created 0700, or
/// an existing one tightened to 0700 (refused if others can write it or
/// another user owns it); the database is created 0600 before redb opens
/// it. With `--store nats://...` the directory is made the same way (it
/// receives admin/ and ca.pem) but holds no database.
pub(crate) async fn create_store(home: &Home) -> Result<Arc<dyn Store>, CliError> {
    // Bad NATS options are refused before anything is created.
    // A NATS store that cannot be reached leaves no directory behind.
    let nats = match home.store.nats()? {
        Some(opts) => Some(connect_nats(opts).await?),
        None => None,
    };
    let dir: &Path = home;
    if dir.symlink_metadata().is_ok() {
        kith_nodedir::tighten_private_dir(dir)?;
    } else {
        kith_nodedir::create_dir(dir)?;
        kith_nodedir::check_private_dir(dir)?;
    }
    if let Some(store) = nats {
        return Ok(store);
    }
    let db = dir.join(DB_FILE);
    if db.symlink_metadata().is_err() {
        // redb creates with 0666 less the umask; an empty file is a new
        // database to it. `create_new` (O_EXCL) never follows a link.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&db)
            .map_err(|e| {
                CliError::new(
                    ErrorCode::IoError,
                    format!("cannot create {}: {e}", db.display()),
                )
            })?;
    }
    kith_nodedir::check_private_file(&db)?;
    Ok(Arc::new(RedbStore::open(&db)?))
}

/// How to ask for a secret on a terminal when no file or variable gives it.
pub(crate) struct Prompt<'a> {
    pub(crate) text: &'a str,
    pub(crate) confirm: bool,
}

/// Where a passphrase comes from: a file, an environment variable, or (if
/// `prompt` is given and stdin is a terminal) a prompt. An unreadable file is
/// an error, never a fall-through to the next source.
pub(crate) fn read_secret(
    file: Option<&Path>,
    env: &str,
    prompt: Option<Prompt<'_>>,
) -> Result<Option<Zeroizing<String>>, CliError> {
    if let Some(f) = file {
        // Owner-only, a regular file, bounded: see kith_nodedir::read_private_file.
        let bytes = kith_nodedir::read_private_file(f)?;
        let s = std::str::from_utf8(&bytes).map_err(|_| {
            CliError::new(
                ErrorCode::InvalidArgument,
                format!("{} is not UTF-8 text", f.display()),
            )
        })?;
        // A trailing newline is the file's, not the passphrase's.
        return Ok(Some(Zeroizing::new(
            s.trim_end_matches(['\n', '\r']).to_string(),
        )));
    }
    if let Ok(v) = std::env::var(env) {
        return Ok(Some(Zeroizing::new(v)));
    }
    let Some(prompt) = prompt.filter(|_| std::io::stdin().is_terminal()) else {
        return Ok(None);
    };
    let ask = |text: &str| {
        rpassword::prompt_password(text)
            .map(Zeroizing::new)
            .map_err(|e| {
                CliError::new(
                    ErrorCode::IoError,
                    format!("cannot read the passphrase: {e}"),
                )
            })
    };
    let first = ask(prompt.text)?;
    if prompt.confirm && *first != *ask("Again: ")? {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "the passphrases differ",
        ));
    }
    Ok(Some(first))
}

/// Unlock the CA of `home`.
pub(crate) async fn unlock(
    home: &Home,
    passphrase_file: Option<&Path>,
    settings: Settings,
) -> Result<Authority, CliError> {
    unlock_wrapped(home, passphrase_file, settings, &|s| s).await
}

/// [`unlock`], with the store passed through `wrap` first (`serve`
/// installs its timing wrapper there: the authority sees only a `Store`).
pub(crate) async fn unlock_wrapped(
    home: &Home,
    passphrase_file: Option<&Path>,
    settings: Settings,
    wrap: &(dyn Fn(Arc<dyn Store>) -> Arc<dyn Store> + Sync),
) -> Result<Authority, CliError> {
    let store = wrap(open_store(home).await?);
    let prompt = Prompt {
        text: "CA passphrase: ",
        confirm: false,
    };
    let pass = read_secret(passphrase_file, "KITH_PASSPHRASE", Some(prompt))?.ok_or_else(|| {
        CliError::new(
            ErrorCode::PassphraseRequired,
            "this command needs the CA passphrase",
        )
        .hint("pass --passphrase-file FILE or set KITH_PASSPHRASE")
    })?;
    Ok(Authority::open(store, Arc::new(SystemClock), pass.as_bytes(), settings).await?)
}

/// A fresh passphrase: 160 random bits as 8 groups of 5 base32 characters.
pub(crate) fn generate_passphrase() -> Result<Zeroizing<String>, CliError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut raw = Zeroizing::new([0u8; 40]);
    aws_lc_rs::rand::fill(raw.as_mut())
        .map_err(|_| CliError::new(ErrorCode::Internal, "the system RNG failed"))?;
    let mut out = Zeroizing::new(String::with_capacity(47));
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        out.push(ALPHABET[(*b & 31) as usize] as char);
    }
    Ok(out)
}

pub(crate) use crate::duration::{parse_duration_at_most, MAX_DURATION};

/// Parse `90d`, `12h`, `30m`, `45s`, `2w`: positive, at most [`MAX_DURATION`].
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, MAX_DURATION)
}

/// `--ttl` of a join token: at most [`kith_authority::MAX_TOKEN_TTL`].
pub(crate) fn parse_token_ttl(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, kith_authority::MAX_TOKEN_TTL)
}

/// `serve --leaf-ttl`: [`kith_authority::MIN_CERT_TTL`] to
/// [`kith_authority::MAX_CERT_TTL`], checked by the authority's own rule.
pub(crate) fn parse_leaf_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration_at_most(s, kith_authority::MAX_CERT_TTL)?;
    kith_authority::check_cert_ttl(d).map_err(|e| e.to_string())?;
    Ok(d)
}

/// `--ttl` of a certificate: at most [`kith_authority::MAX_CERT_TTL`].
pub(crate) fn parse_cert_ttl(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, kith_authority::MAX_CERT_TTL)
}

/// `--renew-grace`: at most [`kith_authority::MAX_RENEW_GRACE`].
pub(crate) fn parse_renew_grace(s: &str) -> Result<Duration, String> {
    parse_duration_at_most(s, kith_authority::MAX_RENEW_GRACE)
}

/// A CRL's validity: [`kith_authority::MIN_CRL_VALIDITY`] to
/// [`kith_authority::MAX_CRL_VALIDITY`].
pub(crate) fn parse_crl_validity(s: &str) -> Result<Duration, String> {
    let d = parse_duration_at_most(s, kith_authority::MAX_CRL_VALIDITY)?;
    if d < kith_authority::MIN_CRL_VALIDITY {
        return Err(format!(
            "{s:?}: a CRL validity must be at least {} hour",
            kith_authority::MIN_CRL_VALIDITY.whole_hours()
        ));
    }
    Ok(d)
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `in 89 days`, `in 5 hours`, `expired 3 days ago`.
pub(crate) fn relative(t: OffsetDateTime, now: OffsetDateTime) -> String {
    let d = t - now;
    let (abs, future) = if d.is_negative() {
        (-d, false)
    } else {
        (d, true)
    };
    let text = if abs.whole_days() >= 2 {
        format!("{} days", abs.whole_days())
    } else if abs.whole_hours() >= 2 {
        format!("{} hours", abs.whole_hours())
    } else {
        format!("{} minutes", abs.whole_minutes())
    };
    if future {
        format!("in {text}")
    } else {
        format!("expired {text} ago")
    }
}

/// Read an input file with a size cap, `-` meaning stdin.
pub(crate) fn read_input(path: &Path, max: usize) -> Result<Vec<u8>, CliError> {
    let mut buf = Vec::new();
    let limit = max as u64 + 1;
    let res = if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut buf)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut buf))
    };
    res.map_err(|e| {
        CliError::new(
            ErrorCode::IoError,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    if buf.len() > max {
        return Err(CliError::new(
            ErrorCode::InputTooLarge,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}

pub(crate) fn split_path(p: &Path) -> Result<(PathBuf, String), CliError> {
    let name = p
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            CliError::new(
                ErrorCode::InvalidArgument,
                format!("{} is not a file path", p.display()),
            )
        })?
        .to_string();
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

pub(crate) fn progress_bar(len: u64, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} {msg:24} [{bar:30}] {percent:>3}% {elapsed}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A spinner on stderr for work of unknown length (a rotation step, a
/// download), when `visible` (a terminal, not `--json`); cleared when done.
pub(crate) fn spinner(
    message: impl Into<std::borrow::Cow<'static, str>>,
    visible: bool,
) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}
