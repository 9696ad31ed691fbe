//! `kith ca rotate`: rotate an authority's intermediate on the operator's
//! word (prepare the next one; once it has been published long enough,
//! activate it), start a root rotation (`--root`) and move it through its
//! phases (`activate`, `finish`, `abort`), and `kith ca rotate status`. Through the server's admin
//! API when one runs (it holds the store), else on the store, unlocked, as
//! `kith settings` and `kith crl` decide. The authority audits each step
//! (the admin's name online, `local-operator` offline).

use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{
    RootAbortRequest, RootRotateResponse, RootRotationView, RootStepRequest, RotateRequest,
    RotateResponse, RotationStatus,
};
use kith_api::ErrorCode;
use kith_authority::{
    IntermediateStep, RootRotationOptions, Settings, DEFAULT_AUTHORITY, LOCAL_OPERATOR,
};
use kith_pki::KeyType;

use crate::admin::AdminArgs;
use crate::args::{key_type_parser, PassphraseArg};
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
    /// Rotate the intermediate: prepare the next one when none is
    /// prepared, else make the prepared one issue once its publish delay
    /// has passed.
    #[arg(long, conflicts_with = "root")]
    intermediate: bool,
    /// Start a root rotation: a new root with a new key, its intermediate
    /// and the cross-signed certificates; both roots are trusted from now
    /// on. The server moves it on (or `activate`, `finish`).
    #[arg(long)]
    root: bool,
    /// Key type of the new root and intermediate (with --root; default:
    /// the current one's).
    #[arg(long, value_parser = key_type_parser, requires = "root")]
    key_type: Option<KeyType>,
    /// The old keys are compromised (with --root): at activation the old
    /// root revokes the old intermediate and every node renews at once.
    #[arg(long, requires = "root")]
    compromised: bool,
    /// How long the old root stays trusted once the rotation finishes
    /// (with --root; default: until the last leaf under it expires). For an
    /// emergency: nodes still on the old root after it are cut off.
    #[arg(long, requires = "root", value_parser = parse_overlap, value_name = "DURATION")]
    overlap: Option<time::Duration>,
    /// Activate the prepared intermediate before its publish delay has
    /// passed: peers that have not fetched its CRL refuse its leaves
    /// until their agents do.
    #[arg(long, conflicts_with = "root")]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Subcommand, Debug)]
enum RotateCommand {
    /// Where each authority's intermediates and root rotation stand: the
    /// phase, the nodes by name, and when waiting, until when and why.
    Status(StatusArgs),
    /// Make the new root's intermediate issue (a prepared root rotation);
    /// refused while a live node does not trust the new root, unless --force.
    Activate(StepArgs),
    /// New tokens pin the new root (an active root rotation); refused while
    /// a live node holds no certificate under it, unless --force.
    Finish(StepArgs),
    /// Return to the old root alone (a root rotation not finished).
    Abort(AbortArgs),
}

#[derive(Args, Debug)]
struct StepArgs {
    /// The authority.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Move on without the nodes that are not ready (listed as left behind).
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args, Debug)]
struct AbortArgs {
    /// The authority.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

/// A root rotation step.
#[derive(Clone, Copy, Debug)]
enum RootStep {
    Prepare(Option<KeyType>, bool, Option<time::Duration>),
    Activate(bool),
    Finish(bool),
    Abort,
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

pub(crate) async fn run(dir: &Home, mut a: RotateArgs, json: bool) -> Result<(), CliError> {
    let (name, step, pass, admin) = match a.status.take() {
        Some(RotateCommand::Status(s)) => {
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
        Some(RotateCommand::Activate(s)) => {
            (s.authority, RootStep::Activate(s.force), s.pass, s.admin)
        }
        Some(RotateCommand::Finish(s)) => (s.authority, RootStep::Finish(s.force), s.pass, s.admin),
        Some(RotateCommand::Abort(s)) => (s.authority, RootStep::Abort, s.pass, s.admin),
        None if a.root => (
            a.authority,
            RootStep::Prepare(a.key_type, a.compromised, a.overlap),
            a.pass,
            a.admin,
        ),
        None => {
            return intermediate(dir, a, json).await;
        }
    };
    kith_pki::validate_label("authority", &name)?;
    let doing = match step {
        RootStep::Prepare(..) => "preparing a new root",
        RootStep::Activate(_) => "activating the new root",
        RootStep::Finish(_) => "finishing the root rotation",
        RootStep::Abort => "aborting the root rotation",
    };
    let spin = spinner(format!("authority {name}: {doing}"), json);
    let answer = root_step(dir, &name, step, &pass, &admin).await;
    spin.finish_and_clear();
    let answer = answer?;
    if json {
        print_json(&answer);
    } else {
        println!("authority {}: root rotation {}", name, answer.step);
        print_status(&answer.status);
    }
    Ok(())
}

/// A spinner while a step runs (unlocking the keys, making new keys and
/// the store's writes, or the server doing the same, take seconds), on a
/// terminal and not with `--json`.
fn spinner(message: String, json: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    util::spinner(message, !json && std::io::stderr().is_terminal())
}

/// One step of a root rotation, through the server or on the store.
async fn root_step(
    dir: &Home,
    name: &str,
    step: RootStep,
    pass: &PassphraseArg,
    admin: &AdminArgs,
) -> Result<RootRotateResponse, CliError> {
    let authority = name.to_string();
    if let Some(mut conn) = admin.online(dir).await? {
        return Ok(match step {
            RootStep::Prepare(key_type, compromised, overlap) => {
                let body = RotateRequest {
                    authority,
                    intermediate: false,
                    force: false,
                    root: true,
                    key_type: key_type.map(|k| k.as_str().to_string()),
                    compromised,
                    overlap_seconds: overlap.map(|d| d.whole_seconds().unsigned_abs()),
                };
                conn.json(Method::POST, "/v1/admin/ca/rotate", Some(&body))
                    .await?
            }
            RootStep::Activate(force) | RootStep::Finish(force) => {
                let path = match step {
                    RootStep::Activate(_) => "/v1/admin/ca/rotate/activate",
                    _ => "/v1/admin/ca/rotate/finish",
                };
                let body = RootStepRequest { authority, force };
                conn.json(Method::POST, path, Some(&body)).await?
            }
            RootStep::Abort => {
                let body = RootAbortRequest { authority };
                conn.json(Method::POST, "/v1/admin/ca/rotate/abort", Some(&body))
                    .await?
            }
        });
    }
    let a = util::unlock(dir, pass.passphrase_file.as_deref(), Settings::default()).await?;
    let result = async {
        let done = match step {
            RootStep::Prepare(key_type, compromised, overlap) => {
                let mut opts = RootRotationOptions::new(key_type, compromised);
                if let Some(o) = overlap {
                    opts = opts.with_overlap(o);
                }
                a.prepare_root_rotation(name, &opts, LOCAL_OPERATOR).await?;
                "prepared"
            }
            RootStep::Activate(force) => {
                a.activate_root_rotation(name, force, LOCAL_OPERATOR)
                    .await?;
                "activated"
            }
            RootStep::Finish(force) => {
                a.finish_root_rotation(name, force, LOCAL_OPERATOR).await?;
                "finished"
            }
            RootStep::Abort => {
                a.abort_root_rotation(name, LOCAL_OPERATOR).await?;
                "aborted"
            }
        };
        Ok(RootRotateResponse {
            step: done.to_string(),
            status: a.rotation_view(name).await?,
        })
    }
    .await;
    a.close().await;
    result
}

async fn intermediate(dir: &Home, a: RotateArgs, json: bool) -> Result<(), CliError> {
    kith_pki::validate_label("authority", &a.authority)?;
    if !a.intermediate {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "say what to rotate: --intermediate or --root (or a step: status, activate, finish, abort)",
        ));
    }
    let spin = spinner(
        format!("authority {}: rotating the intermediate", a.authority),
        json,
    );
    let answer = rotate(dir, &a).await;
    spin.finish_and_clear();
    let answer = answer?;
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
        root: false,
        key_type: None,
        compromised: false,
        overlap_seconds: None,
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
        let status = authority.rotation_view(&a.authority).await?;
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
    let result = statuses(&authority, s.authority.as_deref()).await;
    authority.close().await;
    result
}

/// The status of `only`, or of every authority, in name order.
async fn statuses(
    authority: &kith_authority::Authority,
    only: Option<&str>,
) -> Result<Vec<RotationStatus>, CliError> {
    let mut names = match only {
        Some(name) => vec![name.to_string()],
        None => authority.authority_names(),
    };
    names.sort();
    let mut out = Vec::new();
    for n in &names {
        out.push(authority.rotation_view(n).await?);
    }
    Ok(out)
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
    if let Some(r) = &s.root {
        print_root(r);
    }
}

fn print_root(r: &RootRotationView) {
    println!(
        "  root rotation {}{}{}, since {} (started {})",
        r.phase,
        if r.compromised { ", compromised" } else { "" },
        if r.aborted { ", aborted" } else { "" },
        r.since,
        r.started
    );
    println!("    old root pin  {}", r.old_root_pin);
    println!("    new root pin  {}", r.new_root_pin);
    let names = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("    converged     {}", names(&r.converged));
    println!("    pending       {}", names(&r.pending));
    println!("    offline       {}", names(&r.offline));
    if !r.left_behind.is_empty() {
        println!("    left behind   {}", names(&r.left_behind));
    }
    if let Some(u) = &r.other_root_until {
        println!("    other root in the bundle until {u}");
    }
    match &r.waiting_for {
        Some(w) => println!("    waiting for {w}"),
        None if r.phase != "finished" => {
            println!("    ready: the server's next maintenance tick moves it on")
        }
        None => {}
    }
}

/// `--overlap`: 1s up to the root's lifetime (10 years).
fn parse_overlap(s: &str) -> Result<time::Duration, String> {
    crate::duration::parse_duration_at_most(s, kith_authority::ROOT_TTL)
}
