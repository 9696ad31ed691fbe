//! `kith secret …`, `kith exec`, `kith passphrase change`, `kith vault rotate`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use clap::Args;
use hyper::Method;
use kith_api::wire::{SecretInfo, SecretPutRequest, SecretVersionView};
use kith_api::ErrorCode;
use kith_authority::{KdfParams, Settings};
use serde_json::json;
use zeroize::Zeroizing;

use crate::online::{AdminArgs, AdminJsonArgs};
use crate::output::{print_json, CliError};
use crate::util;

/// Largest value read from a file or stdin; the server has its own limit.
const READ_LIMIT: usize = 64 << 20;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn check_name(name: &str) -> Result<(), CliError> {
    kith_api::validate_secret_name(name).map_err(|m| CliError::new(ErrorCode::InvalidArgument, m))
}

#[derive(Args, Debug)]
pub(crate) struct PutArgs {
    /// Secret name.
    name: String,
    /// Read the value from this file (else from stdin, byte for byte).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    /// A role whose nodes may read it (repeatable; replaces the list).
    #[arg(long = "allow-role", value_name = "ROLE")]
    allow_role: Vec<String>,
    /// A node that may read it (repeatable; replaces the list).
    #[arg(long = "allow-node", value_name = "NODE")]
    allow_node: Vec<String>,
    /// Make it admin-only again (clears the allowed roles and nodes).
    #[arg(long, conflicts_with_all = ["allow_role", "allow_node"])]
    admin_only: bool,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Check-and-set: write only if the latest version is N (0: only if new).
    #[arg(long, value_name = "N")]
    if_version: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

fn print_info(i: &SecretInfo) {
    let who = if i.allow_roles.is_empty() && i.allow_nodes.is_empty() {
        "admin only".to_string()
    } else {
        format!(
            "roles [{}] nodes [{}]",
            i.allow_roles.join(","),
            i.allow_nodes.join(",")
        )
    };
    println!(
        "{:<24} v{:<4} {:>8} bytes  {:>2} versions  {:<32} {}",
        i.name, i.latest, i.size, i.versions, who, i.updated
    );
}

pub(crate) async fn put(dir: &Path, a: PutArgs) -> Result<(), CliError> {
    check_name(&a.name)?;
    let value = Zeroizing::new(match &a.from_file {
        Some(f) => util::read_input(f, READ_LIMIT)?,
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("reading the value from stdin; end with Ctrl-D");
            }
            util::read_input(Path::new("-"), READ_LIMIT)?
        }
    });
    let (roles, nodes) = if a.admin_only {
        (Some(Vec::new()), Some(Vec::new()))
    } else {
        (
            (!a.allow_role.is_empty()).then_some(a.allow_role),
            (!a.allow_node.is_empty()).then_some(a.allow_node),
        )
    };
    let body = SecretPutRequest {
        value: b64().encode(value.as_slice()),
        description: a.description,
        allow_roles: roles,
        allow_nodes: nodes,
        if_version: a.if_version,
    };
    let mut conn = a.admin.connect(dir).await?;
    let info: SecretInfo = conn
        .json(
            Method::PUT,
            &format!("/v1/admin/secrets/{}", a.name),
            Some(&body),
        )
        .await?;
    if a.json {
        print_json(&info);
    } else {
        println!(
            "secret {} is at version {} ({} bytes)",
            info.name, info.latest, info.size
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct GetArgs {
    /// Secret name.
    name: String,
    /// A version other than the latest.
    #[arg(long)]
    version: Option<u64>,
    /// Write the value to this file (0600, atomically) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Read as this node (its directory and certificate) instead of as an operator.
    #[arg(long, value_name = "NODE_DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON (the value base64-encoded) instead of the raw value.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn get(data_dir: &Path, a: GetArgs) -> Result<(), CliError> {
    check_name(&a.name)?;
    let (version, value) = match &a.dir {
        Some(node_dir) => kith_agent::secrets::fetch_secret(node_dir, &a.name, a.version).await?,
        None => {
            let mut conn = a.admin.connect(data_dir).await?;
            kith_agent::secrets::fetch_with(&mut conn, &a.name, a.version).await?
        }
    };
    if a.json {
        let encoded = Zeroizing::new(b64().encode(value.as_slice()));
        print_json(&json!({ "name": a.name, "version": version, "value": encoded.as_str() }));
        return Ok(());
    }
    match &a.out {
        Some(path) => {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let file = path.file_name().and_then(|f| f.to_str()).ok_or_else(|| {
                CliError::new(
                    ErrorCode::InvalidArgument,
                    format!("--out {}: not a file name", path.display()),
                )
            })?;
            kith_nodedir::write_atomic(parent, file, &value, 0o600)?;
            eprintln!(
                "wrote version {version} of {} to {}",
                a.name,
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&value)
                .and_then(|_| out.flush())
                .map_err(|e| CliError::new(ErrorCode::IoError, format!("stdout: {e}")))?;
        }
    }
    Ok(())
}

pub(crate) async fn ls(dir: &Path, a: AdminJsonArgs) -> Result<(), CliError> {
    let mut conn = a.admin.connect(dir).await?;
    let all: Vec<SecretInfo> = conn
        .json(Method::GET, "/v1/admin/secrets", None::<&()>)
        .await?;
    if a.json {
        print_json(&all);
        return Ok(());
    }
    for i in &all {
        print_info(i);
    }
    if all.is_empty() {
        eprintln!("no secrets yet: kith secret put NAME --allow-role ROLE < value");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct HistoryArgs {
    /// Secret name.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn history(dir: &Path, a: HistoryArgs) -> Result<(), CliError> {
    check_name(&a.name)?;
    let mut conn = a.admin.connect(dir).await?;
    let h: Vec<SecretVersionView> = conn
        .json(
            Method::GET,
            &format!("/v1/admin/secrets/{}/history", a.name),
            None::<&()>,
        )
        .await?;
    if a.json {
        print_json(&h);
        return Ok(());
    }
    for v in &h {
        println!(
            "v{:<5} {:>8} bytes  {}  by {}",
            v.version, v.size, v.created, v.created_by
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct RmArgs {
    /// Secret name.
    name: String,
    /// Remove only this version.
    #[arg(long)]
    version: Option<u64>,
    #[command(flatten)]
    admin: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn rm(dir: &Path, a: RmArgs) -> Result<(), CliError> {
    check_name(&a.name)?;
    let mut conn = a.admin.connect(dir).await?;
    let path = match a.version {
        Some(v) => format!("/v1/admin/secrets/{}?version={v}", a.name),
        None => format!("/v1/admin/secrets/{}", a.name),
    };
    let r: serde_json::Value = conn.json(Method::DELETE, &path, None::<&()>).await?;
    if a.json {
        print_json(&r);
    } else {
        match a.version {
            Some(v) => println!("removed version {v} of {}", a.name),
            None => println!("removed secret {} and all its versions", a.name),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- exec

#[derive(Args, Debug)]
pub(crate) struct ExecArgs {
    /// Node directory whose certificate reads the secrets.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// VAR=secret-name: put the secret in the child's environment as VAR (repeatable).
    #[arg(long = "env", value_name = "VAR=SECRET", required = true)]
    env: Vec<String>,
    /// The command and its arguments (after --).
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub(crate) async fn exec(a: ExecArgs) -> Result<(), CliError> {
    use std::os::unix::ffi::OsStringExt;
    use std::os::unix::process::CommandExt;
    let mut pairs = Vec::new();
    for e in &a.env {
        let (var, name) = e.split_once('=').ok_or_else(|| {
            CliError::new(
                ErrorCode::InvalidArgument,
                format!("--env {e:?}: expected VAR=secret-name"),
            )
        })?;
        let var_ok = !var.is_empty()
            && !var.as_bytes()[0].is_ascii_digit()
            && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !var_ok {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!("--env {e:?}: {var:?} is not a variable name"),
            ));
        }
        check_name(name)?;
        pairs.push((var.to_string(), name.to_string()));
    }
    let (_, mut conn) = kith_agent::connect(&a.dir).await?;
    let mut cmd = std::process::Command::new(&a.command[0]);
    cmd.args(&a.command[1..]);
    for (var, name) in &pairs {
        let (_, value) = kith_agent::secrets::fetch_with(&mut conn, name, None).await?;
        if value.contains(&0) {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "secret {name} holds a NUL byte and cannot go into an environment variable"
                ),
            ));
        }
        cmd.env(var, std::ffi::OsString::from_vec(value.to_vec()));
    }
    // Replaces this process: the values live only in the child's environment.
    let err = cmd.exec();
    Err(CliError::new(
        ErrorCode::ExecFailed,
        format!("{}: {err}", a.command[0]),
    ))
}

// ---------------------------------------------------------------- vault

#[derive(Args, Debug)]
pub(crate) struct PassphraseChangeArgs {
    /// File holding the current passphrase (else KITH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// File holding the new passphrase (else KITH_NEW_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
    /// Argon2id memory cost for the new passphrase, in MiB (19 at least).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    kdf_memory_mib: u32,
}

pub(crate) async fn passphrase_change(dir: &Path, a: PassphraseChangeArgs) -> Result<(), CliError> {
    let authority = util::unlock(dir, a.passphrase_file.as_deref(), Settings::default()).await?;
    let new = util::read_secret(
        a.new_passphrase_file.as_deref(),
        "KITH_NEW_PASSPHRASE",
        Some(util::Prompt {
            text: "New CA passphrase: ",
            confirm: true,
        }),
    )?
    .ok_or_else(|| {
        CliError::new(ErrorCode::PassphraseRequired, "no new passphrase given")
            .hint("pass --new-passphrase-file FILE or set KITH_NEW_PASSPHRASE")
    })?;
    let kdf = KdfParams {
        m_kib: a.kdf_memory_mib.saturating_mul(1024),
        ..KdfParams::default()
    };
    authority.change_passphrase(new.as_bytes(), kdf).await?;
    println!("passphrase changed: the master key is wrapped under the new one; the old one opens nothing");
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct RotateArgs {
    /// File holding the passphrase (else KITH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) async fn vault_rotate(dir: &Path, a: RotateArgs) -> Result<(), CliError> {
    let pass = util::read_secret(
        a.passphrase_file.as_deref(),
        "KITH_PASSPHRASE",
        Some(util::Prompt {
            text: "CA passphrase: ",
            confirm: false,
        }),
    )?
    .ok_or_else(|| {
        CliError::new(
            ErrorCode::PassphraseRequired,
            "this command needs the CA passphrase",
        )
        .hint("pass --passphrase-file FILE or set KITH_PASSPHRASE")
    })?;
    let store = util::open_store(dir)?;
    let authority = kith_authority::Authority::open(
        store,
        Arc::new(kith_authority::SystemClock),
        pass.as_bytes(),
        Settings::default(),
    )
    .await?;
    let bar = Arc::new(crate::commands::progress_bar(
        0,
        !a.json && std::io::stderr().is_terminal(),
    ));
    bar.set_message("resealing");
    let b2 = bar.clone();
    let report = authority
        .rotate_master(
            pass.as_bytes(),
            Arc::new(move |done, total| {
                b2.set_length(total as u64);
                b2.set_position(done as u64);
            }),
        )
        .await?;
    bar.finish_and_clear();
    if a.json {
        print_json(&json!({
            "master_version": report.master_version,
            "authorities": report.authorities,
            "secret_versions": report.secret_versions,
        }));
    } else {
        println!(
            "master key rotated to version {}: {} authorities and {} secret versions resealed; the old key is gone",
            report.master_version, report.authorities, report.secret_versions
        );
    }
    Ok(())
}
