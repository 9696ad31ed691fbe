//! `kith ca rotate`: rotate an authority's intermediate on the operator's
//! word (prepare the next one; once it has been published long enough,
//! activate it), and `kith ca rotate status`. Through the server's admin
//! API when one runs (it holds the store), else on the store, unlocked, as
//! `kith settings` and `kith crl` decide. The authority audits each step
//! (the admin's name online, `local-operator` offline).

use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{RotateRequest, RotateResponse, RotationStatus};
use kith_api::ErrorCode;
use kith_authority::{IntermediateStep, Settings, DEFAULT_AUTHORITY, LOCAL_OPERATOR};

use crate::admin::AdminArgs;
use crate::args::PassphraseArg;
use crate::output::{print_json, CliError};
use crate::util::{self, Home};

/// `kith ca rotate ...`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RotateArgs {
    #[command(subcommand)]
    status: Option<RotateCommand>,
    /// The authority to rotate.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Rotate the intermediate (the only rotation built today): prepare
    /// the next one when none is prepared, else make the prepared one
    /// issue once its publish delay has passed.
    #[arg(long)]
    intermediate: bool,
    /// Activate the prepared intermediate before its publish delay has
    /// passed: peers that have not fetched its CRL refuse its leaves
    /// until their agents do.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Subcommand, Debug)]
enum RotateCommand {
    /// Where each authority's intermediates stand: the phase, and when
    /// waiting, until when and why.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
struct StatusArgs {
    /// One authority (default: every one).
    #[arg(long)]
    authority: Option<String>,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(dir: &Home, a: RotateArgs, json: bool) -> Result<(), CliError> {
    if let Some(RotateCommand::Status(s)) = a.status {
        let all = status(dir, &s).await?;
        if json {
            print_json(&all);
        } else {
            for (i, st) in all.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print_status(st);
            }
        }
        return Ok(());
    }
    kith_pki::validate_label("authority", &a.authority)?;
    if !a.intermediate {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "say what to rotate: --intermediate (root rotation is not built yet)",
        ));
    }
    let answer = rotate(dir, &a).await?;
    if json {
        print_json(&answer);
    } else {
        println!(
            "authority {}: generation {} {}",
            answer.status.authority, answer.generation, answer.step
        );
        print_status(&answer.status);
    }
    Ok(())
}

async fn rotate(dir: &Home, a: &RotateArgs) -> Result<RotateResponse, CliError> {
    let body = RotateRequest {
        authority: a.authority.clone(),
        intermediate: true,
        force: a.force,
    };
    if let Some(mut conn) = a.admin.online(dir).await? {
        return Ok(conn
            .json(Method::POST, "/v1/admin/ca/rotate", Some(&body))
            .await?);
    }
    // Offline, the publish delay is the default one (an hour): a server
    // started with another one is found through server.json above.
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let result = async {
        let (step, generation) = match authority
            .rotate_intermediate(&a.authority, LOCAL_OPERATOR, a.force)
            .await?
        {
            IntermediateStep::Prepared(g) => ("prepared", g),
            IntermediateStep::Activated(g) => ("activated", g),
            other => {
                return Err(CliError::new(
                    ErrorCode::Internal,
                    format!("the rotation took no step ({other:?})"),
                ))
            }
        };
        let status = authority
            .intermediate_status(&a.authority)?
            .to_wire(authority.now());
        Ok(RotateResponse {
            step: step.to_string(),
            generation,
            status,
        })
    }
    .await;
    authority.close().await;
    result
}

async fn status(dir: &Home, s: &StatusArgs) -> Result<Vec<RotationStatus>, CliError> {
    if let Some(name) = &s.authority {
        kith_pki::validate_label("authority", name)?;
    }
    if let Some(mut conn) = s.admin.online(dir).await? {
        let path = match &s.authority {
            Some(name) => format!("/v1/admin/ca/rotation?authority={name}"),
            None => "/v1/admin/ca/rotation".to_string(),
        };
        return Ok(conn.json(Method::GET, &path, None::<&()>).await?);
    }
    let authority =
        util::unlock(dir, s.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let result = statuses(&authority, s.authority.as_deref());
    authority.close().await;
    result
}

/// The status of `only`, or of every authority, in name order.
fn statuses(
    authority: &kith_authority::Authority,
    only: Option<&str>,
) -> Result<Vec<RotationStatus>, CliError> {
    let mut names = match only {
        Some(name) => vec![name.to_string()],
        None => authority.authority_names(),
    };
    names.sort();
    let now = authority.now();
    names
        .iter()
        .map(|n| Ok(authority.intermediate_status(n)?.to_wire(now)))
        .collect()
}

fn print_status(s: &RotationStatus) {
    println!("authority {}: {}", s.authority, s.phase);
    println!(
        "  active        generation {}, expires {}, renewed by itself from {}",
        s.generation, s.not_after, s.renew_at
    );
    if let Some(p) = &s.prepared {
        println!(
            "  prepared      generation {}, expires {}, may issue from {}",
            p.generation, p.not_after, p.activate_at
        );
    }
    for p in &s.previous {
        println!(
            "  previous      generation {}, its CRL served until it expires {}",
            p.generation, p.not_after
        );
    }
    println!("  {}", s.detail);
}
