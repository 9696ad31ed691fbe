//! `kith server`: the kith servers (replicas) of the cluster, through a
//! running server with the operator credential.

use std::path::Path;

use clap::Subcommand;
use hyper::Method;
use kith_api::wire::ServerView;

use crate::admin::AdminArgs;
use crate::output::{print_json, CliError};
use crate::util;

#[derive(Subcommand, Debug)]
pub(crate) enum ServerCommand {
    /// Servers that hold or held a certificate: name, state, serial, expiry, names.
    Ls(AdminArgs),
}

pub(crate) async fn run(dir: &Path, cmd: ServerCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        ServerCommand::Ls(a) => server_ls(dir, a, json).await,
    }
}

async fn server_ls(dir: &Path, a: AdminArgs, json: bool) -> Result<(), CliError> {
    let mut conn = a.connect(dir).await?;
    let servers: Vec<ServerView> = conn
        .json(Method::GET, "/v1/admin/servers", None::<&()>)
        .await?;
    if json {
        print_json(&servers);
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    println!(
        "{:<28}  {:<8}  {:<32}  {:<14}  NAMES",
        "NAME", "STATE", "SERIAL", "EXPIRES IN"
    );
    for s in servers {
        let exp = parse(&s.not_after)
            .map(|t| util::relative(t, now))
            .unwrap_or_else(|| s.not_after.clone());
        println!(
            "{:<28}  {:<8}  {:<32}  {:<14}  {}",
            s.name,
            s.state,
            s.serial,
            exp,
            s.names.join(",")
        );
    }
    Ok(())
}
