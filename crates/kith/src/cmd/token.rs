//! `kith token`: join tokens, through the server with the operator credential.

use std::path::Path;

use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{TokenCreateRequest, TokenCreated, TokenView};
use time::Duration;

use crate::admin::AdminArgs;
use crate::output::{print_json, CliError};
use crate::util;

#[derive(Subcommand, Debug)]
pub(crate) enum TokenCommand {
    /// Mint a join token (printed once; only its hash is kept).
    Create(TokenCreateArgs),
    /// List tokens (never their secrets).
    Ls(AdminArgs),
    /// Revoke a token so it can no longer be used.
    Revoke(TokenRevokeArgs),
}

pub(crate) async fn run(dir: &Path, cmd: TokenCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        TokenCommand::Create(a) => token_create(dir, a, json).await,
        TokenCommand::Ls(a) => token_ls(dir, a, json).await,
        TokenCommand::Revoke(a) => token_revoke(dir, a, json).await,
    }
}

#[derive(Args, Debug)]
pub(crate) struct TokenCreateArgs {
    /// Role of the nodes that join with it.
    #[arg(long)]
    role: String,
    /// The only node name it can join as.
    #[arg(long)]
    name: Option<String>,
    /// Lifetime, e.g. 1h, 30m, 2d (at most 30d).
    #[arg(long, value_parser = util::parse_token_ttl, default_value = "1h")]
    ttl: Duration,
    /// How many joins it allows.
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// A DNS name joining nodes may ask for besides their own (repeatable).
    #[arg(long = "allow-san", value_name = "DNS")]
    allow_san: Vec<String>,
    /// Authority that signs its nodes (default cluster).
    #[arg(long)]
    authority: Option<String>,
    /// Lifetime of the certificates its nodes get, at join and at every
    /// renewal, e.g. 5m (at least 1m; default: the server's --leaf-ttl).
    #[arg(long, value_parser = util::parse_cert_ttl)]
    cert_ttl: Option<Duration>,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn token_create(
    dir: &Path,
    a: TokenCreateArgs,
    json: bool,
) -> Result<(), CliError> {
    let mut conn = a.admin.connect(dir).await?;
    let body = TokenCreateRequest {
        role: a.role,
        node: a.name,
        ttl_seconds: Some(u64::try_from(a.ttl.whole_seconds()).unwrap_or(0)),
        uses: Some(a.uses),
        allow_sans: a.allow_san,
        authority: a.authority,
        cert_ttl_seconds: a
            .cert_ttl
            .map(|t| u64::try_from(t.whole_seconds()).unwrap_or(0)),
    };
    let created: TokenCreated = conn
        .json(Method::POST, "/v1/admin/tokens", Some(&body))
        .await?;
    if json {
        print_json(&created);
    } else {
        println!("{}", created.token);
        eprintln!(
            "token {} for role {}{}: {} use(s), expires {}{}",
            created.info.id,
            created.info.role,
            created
                .info
                .node
                .as_ref()
                .map(|n| format!(" (node {n} only)"))
                .unwrap_or_default(),
            created.info.uses,
            created.info.expires,
            created
                .info
                .cert_ttl_seconds
                .map(|s| format!("; its nodes' certificates last {s} s"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub(crate) async fn token_ls(dir: &Path, a: AdminArgs, json: bool) -> Result<(), CliError> {
    let mut conn = a.connect(dir).await?;
    let tokens: Vec<TokenView> = conn
        .json(Method::GET, "/v1/admin/tokens", None::<&()>)
        .await?;
    if json {
        print_json(&tokens);
        return Ok(());
    }
    println!(
        "{:<16}  {:<10}  {:<12}  {:<8}  {:<5}  EXPIRES",
        "ID", "ROLE", "NODE", "STATE", "USES"
    );
    for t in tokens {
        println!(
            "{:<16}  {:<10}  {:<12}  {:<8}  {:>2}/{:<2}  {}",
            t.id,
            t.role,
            t.node.as_deref().unwrap_or("-"),
            t.state,
            t.uses_left,
            t.uses,
            t.expires
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct TokenRevokeArgs {
    /// Token id (16 hex digits, as `kith token ls` shows).
    id: String,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn token_revoke(
    dir: &Path,
    a: TokenRevokeArgs,
    json: bool,
) -> Result<(), CliError> {
    kith_api::TokenId::parse(&a.id).map_err(|e| CliError::new(e.code(), e))?;
    let mut conn = a.admin.connect(dir).await?;
    let t: TokenView = conn
        .json(
            Method::DELETE,
            &format!("/v1/admin/tokens/{}", a.id),
            None::<&()>,
        )
        .await?;
    if json {
        print_json(&t);
    } else {
        println!("token {} is {}", t.id, t.state);
    }
    Ok(())
}
