//! Secrets on the node: fetched over mutual TLS with the node's own
//! certificate, written to a private directory (0400 files, atomically) or
//! handed to a child process's environment only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use hyper::Method;
use kith_api::wire::SecretValue;
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
    let (_, mut conn) = crate::node::connect(dir).await?;
    fetch_with(&mut conn, name, version).await
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

/// Fetch each secret and write those whose content changed to
/// `secrets_dir/<name>` (0400, atomically). Returns the names written.
pub async fn sync_secrets(
    node_dir: &Path,
    names: &[String],
    secrets_dir: &Path,
) -> Result<Vec<String>, Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let (_, mut conn) = crate::node::connect(node_dir).await?;
    sync_secrets_with(&mut conn, names, secrets_dir).await
}

/// [`sync_secrets`] over an open connection.
pub(crate) async fn sync_secrets_with(
    conn: &mut Connection,
    names: &[String],
    secrets_dir: &Path,
) -> Result<Vec<String>, Error> {
    let mut written = Vec::new();
    for name in names {
        let (version, value) = fetch_with(conn, name, None).await?;
        let path = secrets_dir.join(name);
        let current = std::fs::read(&path).ok().map(Zeroizing::new);
        if current.as_deref().map(Vec::as_slice) != Some(value.as_slice()) {
            kith_nodedir::write_atomic(secrets_dir, name, &value, SECRET_MODE)?;
            tracing::info!(secret = %name, version, "secret written");
            written.push(name.clone());
        }
    }
    Ok(written)
}
