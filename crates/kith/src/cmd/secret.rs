//! `kith secret`: put, get, ls, history and rm.

use kith_api::ErrorCode;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{SecretInfo, SecretPutRequest, SecretVersionView};
use serde_json::json;
use zeroize::Zeroizing;

use crate::admin::{node_connect, AdminArgs};
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

#[derive(Subcommand, Debug)]
pub(crate) enum SecretCommand {
    /// Write a new version (value from --from-file or stdin).
    Put(PutArgs),
    /// Read a value (as an operator, or as a node with --dir).
    #[command(disable_version_flag = true)]
    Get(GetArgs),
    /// Secrets: name, versions, size, who may read, updated; never values.
    Ls(AdminArgs),
    /// A secret's versions.
    History(HistoryArgs),
    /// Remove a secret, or one version.
    #[command(disable_version_flag = true)]
    Rm(RmArgs),
}

pub(crate) async fn run(dir: &Path, cmd: SecretCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        SecretCommand::Put(a) => put(dir, a, json).await,
        SecretCommand::Get(a) => get(dir, a, json).await,
        SecretCommand::Ls(a) => ls(dir, a, json).await,
        SecretCommand::History(a) => history(dir, a, json).await,
        SecretCommand::Rm(a) => rm(dir, a, json).await,
    }
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

async fn put(dir: &Path, a: PutArgs, json: bool) -> Result<(), CliError> {
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
    if json {
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
    /// Read as this node (its directory and certificate) instead of as an
    /// operator; a directory issued offline (`kith cert issue`) needs --server.
    #[arg(long, value_name = "NODE_DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminArgs,
}

async fn get(data_dir: &Path, a: GetArgs, json: bool) -> Result<(), CliError> {
    check_name(&a.name)?;
    let (version, value) = match &a.dir {
        Some(node_dir) => {
            // A directory issued offline records no server: --server names it.
            let mut conn = node_connect(node_dir, a.admin.server.as_deref()).await?;
            kith_agent::secrets::fetch_with(&mut conn, &a.name, a.version).await?
        }
        None => {
            let mut conn = a.admin.connect(data_dir).await?;
            kith_agent::secrets::fetch_with(&mut conn, &a.name, a.version).await?
        }
    };
    if json {
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

async fn ls(dir: &Path, a: AdminArgs, json: bool) -> Result<(), CliError> {
    let mut conn = a.connect(dir).await?;
    let all: Vec<SecretInfo> = conn
        .json(Method::GET, "/v1/admin/secrets", None::<&()>)
        .await?;
    if json {
        print_json(&all);
        return Ok(());
    }
    if !all.is_empty() {
        // Column titles, aligned with print_info's rows.
        println!(
            "{:<24} {:<5} {:>14}  {:>11}  {:<32} UPDATED",
            "NAME", "LATEST", "SIZE", "VERSIONS", "ACCESS"
        );
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
}

async fn history(dir: &Path, a: HistoryArgs, json: bool) -> Result<(), CliError> {
    check_name(&a.name)?;
    let mut conn = a.admin.connect(dir).await?;
    let h: Vec<SecretVersionView> = conn
        .json(
            Method::GET,
            &format!("/v1/admin/secrets/{}/history", a.name),
            None::<&()>,
        )
        .await?;
    if json {
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
}

async fn rm(dir: &Path, a: RmArgs, json: bool) -> Result<(), CliError> {
    check_name(&a.name)?;
    let mut conn = a.admin.connect(dir).await?;
    let path = match a.version {
        Some(v) => format!("/v1/admin/secrets/{}?version={v}", a.name),
        None => format!("/v1/admin/secrets/{}", a.name),
    };
    let r: serde_json::Value = conn.json(Method::DELETE, &path, None::<&()>).await?;
    if json {
        print_json(&r);
    } else {
        match a.version {
            Some(v) => println!("removed version {v} of {}", a.name),
            None => println!("removed secret {} and all its versions", a.name),
        }
    }
    Ok(())
}
