//! `kith node`: nodes, through the server with the operator credential.

use std::path::Path;

use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{NodeView, RevokeResponse};

use crate::admin::AdminArgs;
use crate::output::{print_json, CliError};
use crate::util;

#[derive(Subcommand, Debug)]
pub(crate) enum NodeCommand {
    /// Nodes: name, role, state, serial, expiry, last renewal.
    Ls(AdminArgs),
    /// Remove a node: revoke its certificates; it can never renew again.
    Rm(NodeRmArgs),
    /// Make a directory made offline (`kith cert issue`) renewable: record
    /// the server in its identity.json and renew it there now.
    Adopt(NodeAdoptArgs),
}

pub(crate) async fn run(dir: &Path, cmd: NodeCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        NodeCommand::Ls(a) => node_ls(dir, a, json).await,
        NodeCommand::Rm(a) => node_rm(dir, a, json).await,
        NodeCommand::Adopt(a) => node_adopt(a, json).await,
    }
}

pub(crate) async fn node_ls(dir: &Path, a: AdminArgs, json: bool) -> Result<(), CliError> {
    let mut conn = a.connect(dir).await?;
    let nodes: Vec<NodeView> = conn
        .json(Method::GET, "/v1/admin/nodes", None::<&()>)
        .await?;
    if json {
        print_json(&nodes);
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    println!(
        "{:<16}  {:<10}  {:<8}  {:<32}  {:<14}  LAST RENEWAL",
        "NAME", "ROLE", "STATE", "SERIAL", "EXPIRES IN"
    );
    for n in nodes {
        let exp = parse(&n.not_after)
            .map(|t| util::relative(t, now))
            .unwrap_or_else(|| n.not_after.clone());
        println!(
            "{:<16}  {:<10}  {:<8}  {:<32}  {:<14}  {}",
            n.name, n.role, n.state, n.serial, exp, n.last_renewal
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct NodeRmArgs {
    /// Node name.
    name: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn node_rm(dir: &Path, a: NodeRmArgs, json: bool) -> Result<(), CliError> {
    kith_pki::validate_label("node name", &a.name)?;
    let mut conn = a.admin.connect(dir).await?;
    let r: RevokeResponse = conn
        .json(
            Method::DELETE,
            &format!("/v1/admin/nodes/{}", a.name),
            None::<&()>,
        )
        .await?;
    if json {
        print_json(&r);
    } else {
        println!(
            "node {} removed; {} certificate(s) revoked",
            a.name,
            r.revoked.iter().filter(|v| v.newly_revoked).count()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct NodeAdoptArgs {
    /// The node directory `kith cert issue` wrote.
    #[arg(long)]
    dir: std::path::PathBuf,
    /// The server that renews it from now on: host[:port] or https://host[:port].
    #[arg(long, env = "KITH_SERVER")]
    server: String,
}

/// Record `--server` in the directory's identity.json and renew there at
/// once, over mutual TLS with the offline certificate (the server checks it
/// against the node record `cert issue` wrote): the renewal proves the
/// server takes the directory. If it fails, identity.json is put back.
pub(crate) async fn node_adopt(a: NodeAdoptArgs, json: bool) -> Result<(), CliError> {
    let server = crate::admin::parse_server(&a.server)?;
    kith_nodedir::check_node_dir(&a.dir)?;
    let before = kith_nodedir::NodeIdentity::load(&a.dir)?;
    let mut adopted = before.clone();
    adopted.server = Some(server);
    let write = |id: &kith_nodedir::NodeIdentity| -> Result<(), CliError> {
        let bytes = id
            .to_json()
            .map_err(|e| CliError::new(kith_api::ErrorCode::Internal, e))?;
        kith_nodedir::write_atomic(
            &a.dir,
            kith_nodedir::IDENTITY,
            &bytes,
            kith_nodedir::PUBLIC_MODE,
        )?;
        Ok(())
    };
    write(&adopted)?;
    match kith_agent::renew(&a.dir).await {
        Ok(id) => {
            crate::node_files::print_identity(&id, &a.dir, "adopted and renewed", json);
            if !json {
                println!("keep it renewed: kith agent --dir {}", a.dir.display());
            }
            Ok(())
        }
        Err(e) => {
            // Leave the directory as it was: nothing renewed it.
            write(&before)?;
            Err(e.into())
        }
    }
}
