//! `kith backup` and `kith restore`: every record of a CA's store in one
//! file (still sealed: the passphrase is needed to use it), and back into
//! an empty store. The format and its checks are in kith-authority
//! (`take_backup`, `read_backup`, `restore_backup`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use clap::Args;
use kith_api::ErrorCode;
use kith_nodedir as nodedir;
use serde_json::json;
use time::OffsetDateTime;

use crate::admin::AdminArgs;
use crate::output::{print_json, CliError};
use crate::util::{self, split_path, Home};

/// The largest backup read or downloaded (a bound, not a target: a store
/// of a million nodes is a few GiB).
const MAX_BACKUP: usize = 8 << 30;

/// How long a backup may take to arrive from the server.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Args, Debug)]
#[command(after_help = BACKUP_HELP)]
pub(crate) struct BackupArgs {
    /// Where to write the backup (created 0600, atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    admin: AdminArgs,
}

const BACKUP_HELP: &str = "Through the running server when one is configured (--server, KITH_SERVER, \
or the server.json that `kith serve` writes; the operator credential is needed), else directly on the \
store (--data-dir or --store), which an embedded store's lock reserves to one process. The file holds \
every record of the store as it is stored: CA keys and secrets stay sealed by the master key, so the \
passphrase is needed to use it; keep it as you keep the passphrase's hints, apart from it. On the \
embedded store the records are read in one read transaction (one consistent moment); on NATS, each \
record is whole but records may be read a moment apart. The operator credential (admin/) is a file, \
not a record: keep it too.";

#[derive(Args, Debug)]
#[command(after_help = RESTORE_HELP)]
pub(crate) struct RestoreArgs {
    /// The backup to restore (every checksum is verified before anything is written).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
}

const RESTORE_HELP: &str = "Restores into --data-dir (its embedded database, created if missing) or \
--store (an empty NATS bucket); the target must hold no record. Every CRL number moves 2^32 past the \
backup's, so the restored CA never signs a CRL with a number the old one may have published after the \
backup; the first server started on it signs each CRL anew. Revocations, nodes, tokens and secrets \
made after the backup are not in it: revoke again what was revoked since, and expect nodes that \
joined since to join again. Start `kith serve` with the CA's passphrase afterwards.";

pub(crate) async fn backup(dir: &Home, a: BackupArgs, json: bool) -> Result<(), CliError> {
    if !a.force && a.out.symlink_metadata().is_ok() {
        return Err(
            CliError::new(ErrorCode::Exists, format!("{} exists", a.out.display()))
                .hint("pass --force to replace it"),
        );
    }
    let (parent, name) = split_path(&a.out)?;
    let visible = !json && std::io::stderr().is_terminal();
    let (bytes, via) = if let Some(mut conn) = a.admin.online(dir).await? {
        let spinner = util::spinner("downloading the backup", visible);
        let bytes = conn
            .download("/v1/admin/backup", MAX_BACKUP, DOWNLOAD_TIMEOUT)
            .await?;
        spinner.finish_and_clear();
        (Vec::from(bytes), "server")
    } else {
        let store = util::open_store(dir).await?;
        let bar = util::progress_bar(0, visible);
        bar.set_message("reading records");
        let progress = |done: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(done);
        };
        let bytes =
            kith_authority::take_backup(&*store, OffsetDateTime::now_utc(), &progress).await?;
        bar.finish_and_clear();
        (bytes, "store")
    };
    // Check what arrived as a restore would, before anyone relies on it.
    let checked = kith_authority::read_backup(&bytes)?;
    nodedir::write_atomic(&parent, &name, &bytes, nodedir::KEY_MODE)?;
    let m = &checked.manifest;
    if json {
        print_json(&json!({
            "out": a.out.display().to_string(),
            "via": via,
            "cluster": m.cluster,
            "created": util::rfc3339(m.created),
            "records": m.records,
            "bytes": bytes.len(),
            "sha256": m.sha256,
        }));
    } else {
        println!(
            "Wrote {} records of cluster {} ({} bytes, read {}) to {} (mode 0600).",
            m.records,
            m.cluster,
            bytes.len(),
            if via == "server" {
                "through the server"
            } else {
                "from the store"
            },
            a.out.display()
        );
        println!(
            "  Restore with: kith restore --from {} --data-dir NEW_DIR",
            a.out.display()
        );
    }
    Ok(())
}

pub(crate) async fn restore(dir: &Home, a: RestoreArgs, json: bool) -> Result<(), CliError> {
    let bytes = read_bounded(&a.from)?;
    // Every checksum first: a damaged file creates nothing.
    let backup = kith_authority::read_backup(&bytes)
        .map_err(|e| CliError::from(e).hint("nothing was written"))?;
    drop(bytes);
    let store = util::create_store(dir).await?;
    let visible = !json && std::io::stderr().is_terminal();
    let bar = util::progress_bar(backup.len() as u64, visible);
    bar.set_message("restoring records");
    let progress = |done: u64, _total: u64| bar.set_position(done);
    let restored =
        kith_authority::restore_backup(&*store, &backup, SystemTime::now(), &progress).await;
    bar.finish_and_clear();
    let restored = restored.map_err(|e| {
        let err = CliError::from(e);
        if err.code == ErrorCode::AlreadyInitialized.as_str() {
            err.hint("restore into a new --data-dir, or an empty bucket (--store-bucket); nothing was written")
        } else {
            err.hint("the target may hold part of the backup (no cluster record yet, so no server serves it): empty it before restoring again")
        }
    })?;
    drop(store);
    let m = &backup.manifest;
    if json {
        print_json(&json!({
            "from": a.from.display().to_string(),
            "cluster": m.cluster,
            "backup_created": util::rfc3339(m.created),
            "records": restored.records,
            "skipped": restored.skipped,
            "crls_due": restored.crls_due,
            "crl_number_floor": restored.crl_number_floor,
        }));
    } else {
        println!(
            "Restored {} records of cluster {} (backup of {}).",
            restored.records,
            m.cluster,
            util::rfc3339(m.created)
        );
        println!(
            "  Every CRL from now on is numbered past {} (the backup's highest + 2^32); the first server signs each anew.",
            restored.crl_number_floor
        );
        println!("  Next: kith serve (with the CA's passphrase). Anything revoked after the backup must be revoked again.");
    }
    Ok(())
}

/// The whole of a regular file, refused past [`MAX_BACKUP`] (read from the
/// opened handle, so neither a device nor a file growing meanwhile can
/// make it read without end).
fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let io = |e: std::io::Error| {
        CliError::new(
            ErrorCode::IoError,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let file = std::fs::File::open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_BACKUP as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > MAX_BACKUP {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            format!("{} is larger than any kith backup", path.display()),
        ));
    }
    Ok(bytes)
}
