//! Secrets on the node: fetched over mutual TLS with the node's own
//! certificate, written to a private directory (0400 files, atomically) or
//! handed to a child process's environment only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use kith_api::wire::SecretValue;
use kith_api::ErrorCode;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::client::Connection;
use crate::Error;

/// Mode of secret files.
pub const SECRET_MODE: u32 = 0o400;

/// Read secret `name` (the latest version unless `version`) with the
/// credential of node directory `dir`.
pub async fn fetch_secret(
    dir: &Path,
    name: &str,
    version: Option<u64>,
) -> Result<(u64, Zeroizing<Vec<u8>>), Error> {
    kith_api::validate_secret_name(name).map_err(Error::Invalid)?;
    // Each known replica in turn while one is out of service.
    let identity = crate::node::NodeIdentity::load(dir)?;
    let servers = identity.servers(dir)?;
    let (value, _) = crate::node::failover(&servers, |server| {
        let identity = &identity;
        async move {
            let mut conn = crate::node::connect_to(dir, identity, &server).await?;
            fetch_with(&mut conn, name, version).await
        }
    })
    .await?;
    Ok(value)
}

/// Read a secret over an open connection.
pub async fn fetch_with(
    conn: &mut Connection,
    name: &str,
    version: Option<u64>,
) -> Result<(u64, Zeroizing<Vec<u8>>), Error> {
    kith_api::validate_secret_name(name).map_err(Error::Invalid)?;
    let path = match version {
        Some(v) => format!("/v1/secrets/{name}?version={v}"),
        None => format!("/v1/secrets/{name}"),
    };
    let s: SecretValue = conn.json(Method::GET, &path, None::<&()>).await?;
    use base64::Engine;
    let value = base64::engine::general_purpose::STANDARD
        .decode(s.value.as_bytes())
        .map_err(|e| Error::BadResponse(format!("secret {name}: value is not base64: {e}")))?;
    Ok((s.version, Zeroizing::new(value)))
}

/// Make sure `dir` is fit to hold secrets: created 0700 if missing;
/// refused if group or others can read or enter it. Returns whether it is
/// on tmpfs (memory only), which is what it should be.
pub fn prepare_secrets_dir(dir: &Path) -> Result<bool, Error> {
    if !dir.exists() {
        kith_nodedir::create_dir(dir)?;
    }
    let meta =
        std::fs::metadata(dir).map_err(|e| Error::NodeDir(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(Error::NodeDir(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::NodeDir(format!(
            "{} has mode {mode:o}: group or others can reach the secrets in it; chmod 700 it",
            dir.display()
        )));
    }
    // TMPFS_MAGIC; f_type's integer type differs between platforms.
    #[allow(clippy::unnecessary_cast)]
    let tmpfs = rustix::fs::statfs(dir)
        .map(|s| s.f_type as i64 == 0x0102_1994)
        .unwrap_or(false);
    Ok(tmpfs)
}

/// The secrets the agent keeps as files, and what it last learned of each.
///
/// A secret the server refuses (`secret-forbidden`: it does not exist or this
/// node may not read it; the server answers both alike) is reported, its file
/// removed if one was there (access withdrawn), and asked for again with
/// backoff; the others keep being refreshed. Nothing here stops the agent
/// except an error that only a new token can fix.
#[derive(Debug)]
pub(crate) struct SecretFiles {
    dir: PathBuf,
    entries: Vec<Entry>,
    /// Files written with a new value since [`SecretFiles::take_delivered`].
    delivered: u64,
}

#[derive(Debug)]
struct Entry {
    name: String,
    /// Refused at the last attempt: asked for again at `retry_at` only.
    refused: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

/// Which secrets one pass asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// The periodic refresh: every secret except refused ones not yet due.
    Refresh,
    /// Only refused secrets whose retry is due.
    Retry,
}

/// Whether the server's refusal means this node has no access to the secret
/// now (never created, removed, or not allowed): nothing else does.
fn is_refusal(e: &Error) -> bool {
    matches!(
        e.error_code(),
        Some(ErrorCode::SecretForbidden | ErrorCode::UnknownSecret)
    )
}

impl SecretFiles {
    /// Secrets `names` kept in `dir` (already checked by [`prepare_secrets_dir`]).
    pub(crate) fn new(dir: PathBuf, names: &[String]) -> Self {
        Self {
            dir,
            entries: names
                .iter()
                .map(|n| Entry {
                    name: n.clone(),
                    refused: false,
                    failures: 0,
                    retry_at: None,
                })
                .collect(),
            delivered: 0,
        }
    }

    /// How many files were written with a new value since the last call.
    pub(crate) fn take_delivered(&mut self) -> u64 {
        std::mem::take(&mut self.delivered)
    }

    /// When the earliest retry of a refused secret is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.entries.iter().filter_map(|e| e.retry_at).min()
    }

    /// Move every due retry `backoff(failures)` later: the server could not
    /// be asked, and waking again at once would spin.
    pub(crate) fn postpone(&mut self, backoff: impl Fn(u32) -> Duration) {
        let now = Instant::now();
        for e in self.entries.iter_mut() {
            if e.retry_at.is_some_and(|t| t <= now) {
                e.retry_at = Some(now + backoff(e.failures));
                e.failures = e.failures.saturating_add(1);
            }
        }
    }

    /// Ask for the secrets of `pass` over `conn`; write those whose content
    /// changed (0400, atomically), remove the files of refused ones, and
    /// schedule retries with `backoff(failures)`. Returns whether a file
    /// changed. Every other failure is logged and retried: only an error
    /// that needs a new token is returned.
    pub(crate) async fn sync(
        &mut self,
        conn: &mut Connection,
        pass: Pass,
        backoff: impl Fn(u32) -> Duration,
    ) -> Result<bool, Error> {
        let mut changed = false;
        let now = Instant::now();
        for entry in &mut self.entries {
            let due = entry.retry_at.is_some_and(|t| t <= now);
            let ask = match pass {
                Pass::Refresh => !entry.refused || due,
                Pass::Retry => due,
            };
            if !ask {
                continue;
            }
            match fetch_with(conn, &entry.name, None).await {
                Ok((version, value)) => {
                    if entry.refused {
                        tracing::info!(secret = %entry.name, version, "secret available now");
                    }
                    entry.refused = false;
                    entry.failures = 0;
                    entry.retry_at = None;
                    match write_if_changed(&self.dir, &entry.name, &value) {
                        Ok(true) => {
                            tracing::info!(secret = %entry.name, version, "secret written");
                            changed = true;
                            self.delivered += 1;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(secret = %entry.name, error = %e, "cannot write the secret file; will retry")
                        }
                    }
                }
                Err(e) if e.needs_new_token() => return Err(e),
                Err(e) => changed |= entry.failed(&self.dir, &e, &backoff),
            }
        }
        Ok(changed)
    }
}

impl Entry {
    /// Note a failed fetch; whether a file changed (removed: access withdrawn).
    fn failed(&mut self, dir: &Path, e: &Error, backoff: impl Fn(u32) -> Duration) -> bool {
        let refusal = is_refusal(e);
        let delay = backoff(self.failures);
        self.failures = self.failures.saturating_add(1);
        if !refusal {
            // A transient failure: a refused secret keeps its backoff, a
            // readable one waits for the next refresh as the CRL does.
            if self.refused {
                self.retry_at = Some(Instant::now() + delay);
            }
            tracing::warn!(secret = %self.name, error = %e, "secret refresh failed; will retry");
            return false;
        }
        self.refused = true;
        self.retry_at = Some(Instant::now() + delay);
        match remove_file(dir, &self.name) {
            Ok(true) => {
                tracing::warn!(
                    secret = %self.name, retry_in = ?delay,
                    "access to the secret was withdrawn (removed, or no longer allowed for this node): its file is removed; will retry"
                );
                true
            }
            Ok(false) => {
                tracing::warn!(
                    secret = %self.name, error = %e, retry_in = ?delay,
                    "secret not available to this node (it does not exist or its policy does not list this node or its role); will retry"
                );
                false
            }
            Err(re) => {
                tracing::error!(
                    secret = %self.name, error = %re,
                    "access to the secret was withdrawn but its file cannot be removed; will retry"
                );
                false
            }
        }
    }
}

/// Write `dir/name` if its content differs; whether it did.
fn write_if_changed(dir: &Path, name: &str, value: &[u8]) -> Result<bool, Error> {
    let current = std::fs::read(dir.join(name)).ok().map(Zeroizing::new);
    if current.as_deref().map(Vec::as_slice) == Some(value) {
        return Ok(false);
    }
    kith_nodedir::write_atomic(dir, name, value, SECRET_MODE)?;
    Ok(true)
}

/// Remove `dir/name` durably; whether there was one.
fn remove_file(dir: &Path, name: &str) -> Result<bool, Error> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(Error::NodeDir(format!(
                "cannot remove {}: {e}",
                path.display()
            )))
        }
    }
    // The removal must survive a crash, as a write does.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::NodeDir(format!("cannot sync {}: {e}", dir.display())))?;
    Ok(true)
}
