//! `kith admin`: operator credentials (certificates of the `admin` profile
//! in the operator name space). `renew` renews the one in use (new key made
//! here), `add` makes another operator's, `ls` lists them, `revoke` takes
//! one away. Through the running server when there is one (as every
//! operator command decides, [`AdminArgs::online`]), else on the store with
//! the passphrase.
//!
//! Renewal is the operator's to schedule: `kith admin renew --if-due` from
//! a daily timer renews two thirds into the lifetime and otherwise does
//! nothing. The server does not renew the credential itself: it would need
//! to hold the operator's key, which lives wherever the operator works (often
//! not on the CA machine), and a server that rewrote `admin/` behind the
//! operator's back could not tell which copies are in use.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{
    CertificateIssued, OperatorRequest, OperatorRevokeRequest, OperatorView, RevokeRequest,
    RevokeResponse, RevokedView,
};
use kith_api::ErrorCode;
use kith_authority::{Issued, Publish, RevokeOutcome, RevokeTarget, Settings, LOCAL_OPERATOR};
use kith_nodedir as nodedir;
use kith_pki::{PrivateKey, RevocationReason, Serial};
use serde_json::json;
use time::OffsetDateTime;

use crate::admin::{csr_pem, issued_from_wire, AdminArgs, Credential};
use crate::args::{reason_parser, PassphraseArg};
use crate::node_files::stage_node_files;
use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, rfc3339};

#[derive(Subcommand, Debug)]
pub(crate) enum AdminCommand {
    /// Renew the operator credential in use (new key made here; the old
    /// certificate is revoked once the new one is on disk).
    Renew(RenewArgs),
    /// Add an operator with its own certificate and write its credential
    /// directory (hand it over by a safe channel).
    Add(AddArgs),
    /// List the operators: state, live certificates, latest expiry.
    Ls(LsArgs),
    /// Revoke every certificate of an operator: the admin API refuses it at
    /// once. The last operator with a live certificate cannot be revoked.
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct RenewArgs {
    /// Renew only when due (two thirds into the lifetime); else say when
    /// and exit 0. For a daily timer.
    #[arg(long)]
    if_due: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args, Debug)]
pub(crate) struct AddArgs {
    /// The new operator's name (a DNS label).
    name: String,
    /// Where to write its credential directory (default ./kith-admin-NAME).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Key type of its key.
    #[arg(long, default_value = "p256", value_parser = crate::args::key_type_parser)]
    key_type: kith_pki::KeyType,
    /// Replace --out if it holds a key already.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args, Debug)]
pub(crate) struct LsArgs {
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Args, Debug)]
pub(crate) struct RevokeArgs {
    /// The operator to revoke.
    name: String,
    /// Reason, as `kith revoke --reason`.
    #[arg(long, default_value = "privilege-withdrawn", value_parser = reason_parser)]
    reason: RevocationReason,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(dir: &Home, cmd: AdminCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        AdminCommand::Renew(a) => renew(dir, a, json).await,
        AdminCommand::Add(a) => add(dir, a, json).await,
        AdminCommand::Ls(a) => ls(dir, a, json).await,
        AdminCommand::Revoke(a) => revoke(dir, a, json).await,
    }
}

/// A new key of `key_type`, made here (off the async threads: RSA is slow).
async fn new_key(key_type: kith_pki::KeyType) -> Result<PrivateKey, CliError> {
    tokio::task::spawn_blocking(move || PrivateKey::generate(key_type))
        .await
        .map_err(|e| CliError::new(ErrorCode::Internal, e))?
        .map_err(CliError::from)
}

/// Write a credential directory: key 0600, certificates, roots, identity,
/// each file atomically (temp file, fsync, rename).
fn write_credential(
    out: &Path,
    key: &PrivateKey,
    issued: &Issued,
    cluster: &str,
) -> Result<(), CliError> {
    let batch = nodedir::Batch::new();
    stage_node_files(&batch, out, key, issued, cluster, &[])?;
    batch.commit()?;
    Ok(())
}

async fn renew(dir: &Home, a: RenewArgs, json: bool) -> Result<(), CliError> {
    let cred_dir = a.admin.admin_dir(dir);
    let old = Credential::load(&cred_dir)?;
    let now = OffsetDateTime::now_utc();
    if a.if_due && now < old.renew_at() {
        if json {
            print_json(&json!({
                "renewed": false, "name": old.name, "serial": old.serial,
                "not_after": rfc3339(old.not_after), "renew_at": rfc3339(old.renew_at()),
            }));
        } else {
            println!(
                "operator credential {} is not due: renewal from {} (expires {})",
                old.name,
                rfc3339(old.renew_at()),
                rfc3339(old.not_after)
            );
        }
        return Ok(());
    }
    let key = new_key(old.key_type).await?;
    let old_serial = Serial::parse(&old.serial)?;
    let issued = if let Some(mut conn) = a.admin.online(dir).await? {
        let body = OperatorRequest {
            name: None,
            csr: csr_pem(&key, &old.name)?,
        };
        let r: CertificateIssued = conn
            .json(Method::POST, "/v1/admin/operators/renew", Some(&body))
            .await?;
        let issued = checked(&r, &key, &old.name)?;
        write_credential(&cred_dir, &key, &issued, &r.cluster)?;
        // Only now that the new credential is on disk: the old one goes,
        // presented by the new one.
        let retire = RevokeRequest {
            serial: Some(old_serial.to_hex()),
            node: None,
            reason: Some(RevocationReason::Superseded.as_str().to_string()),
            remove: false,
            server: None,
        };
        let revoked = match a.admin.online(dir).await? {
            Some(mut c) => c
                .json::<RevokeResponse>(Method::POST, "/v1/admin/revoke", Some(&retire))
                .await
                .map(|_| ())
                .map_err(CliError::from),
            None => Err(CliError::new(
                ErrorCode::Unreachable,
                "the server went away",
            )),
        };
        if let Err(e) = revoked {
            eprintln!(
                "warning: the new credential is in place, but the old certificate {} is not revoked ({}): `kith revoke {} --reason superseded`",
                old.serial, e.message, old.serial
            );
        }
        issued
    } else {
        let authority =
            util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
        let issued = authority
            .renew_operator(&old.name, key.public_key(), None, LOCAL_OPERATOR)
            .await?;
        write_credential(&cred_dir, &key, &issued, authority.cluster())?;
        authority
            .revoke(
                RevokeTarget::Serial(old_serial),
                RevocationReason::Superseded,
                LOCAL_OPERATOR,
                Publish::Now,
            )
            .await?;
        issued
    };
    let r = &issued.record;
    if json {
        print_json(&json!({
            "renewed": true, "name": r.node, "serial": r.serial,
            "not_after": rfc3339(r.not_after), "replaced": old.serial,
            "dir": cred_dir,
        }));
    } else {
        println!(
            "renewed operator credential {} in {}: certificate {} valid until {} (the old one, {}, is revoked)",
            r.node,
            cred_dir.display(),
            r.serial,
            rfc3339(r.not_after),
            old.serial
        );
    }
    Ok(())
}

/// The server's answer as a record, checked to be for `name` and over `key`.
fn checked(r: &CertificateIssued, key: &PrivateKey, name: &str) -> Result<Issued, CliError> {
    let issued = issued_from_wire(r)?;
    let over_key =
        kith_pki::spki_pin(&issued.record.der)? == kith_pki::sha256(key.public_key().spki_der());
    if !over_key || issued.record.node != name {
        return Err(CliError::new(
            ErrorCode::BadResponse,
            format!(
                "the server answered a certificate for {} that is not over the key made for {name}",
                issued.record.node
            ),
        ));
    }
    Ok(issued)
}

async fn add(dir: &Home, a: AddArgs, json: bool) -> Result<(), CliError> {
    kith_pki::validate_label("operator name", &a.name)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("kith-admin-{}", a.name)));
    if out.join(nodedir::KEY).exists() && !a.force {
        return Err(CliError::new(
            ErrorCode::Exists,
            format!("{} already holds a key", out.display()),
        )
        .hint("choose another --out, or pass --force to replace it"));
    }
    let key = new_key(a.key_type).await?;
    let (issued, cluster) = if let Some(mut conn) = a.admin.online(dir).await? {
        let body = OperatorRequest {
            name: Some(a.name.clone()),
            csr: csr_pem(&key, &a.name)?,
        };
        let r: CertificateIssued = conn
            .json(Method::POST, "/v1/admin/operators", Some(&body))
            .await?;
        (checked(&r, &key, &a.name)?, r.cluster)
    } else {
        let authority =
            util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
        let issued = authority
            .add_operator(&a.name, key.public_key(), None, LOCAL_OPERATOR)
            .await?;
        (issued, authority.cluster().to_string())
    };
    nodedir::create_dir(
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )?;
    write_credential(&out, &key, &issued, &cluster)?;
    let r = &issued.record;
    if json {
        print_json(&json!({
            "name": r.node, "serial": r.serial, "not_after": rfc3339(r.not_after), "dir": out,
        }));
    } else {
        println!(
            "added operator {}: certificate {} valid until {}, credential in {}",
            r.node,
            r.serial,
            rfc3339(r.not_after),
            out.display()
        );
        println!(
            "hand that directory over by a safe channel (it holds the private key); it is used with --admin-dir {} or KITH_ADMIN_DIR",
            out.display()
        );
    }
    Ok(())
}

async fn ls(dir: &Home, a: LsArgs, json: bool) -> Result<(), CliError> {
    let views: Vec<OperatorView> = if let Some(mut conn) = a.admin.online(dir).await? {
        conn.json(Method::GET, "/v1/admin/operators", None::<&()>)
            .await?
    } else {
        // Public facts: no passphrase needed.
        let store = util::open_store(dir).await?;
        kith_authority::list_operators(&*store, OffsetDateTime::now_utc())
            .await?
            .into_iter()
            .map(|v| OperatorView {
                state: v.state.as_str().to_string(),
                serial: v.serial,
                issued_at: rfc3339(v.issued_at),
                not_after: rfc3339(v.not_after),
                live: v.live,
                name: v.name,
            })
            .collect()
    };
    if json {
        print_json(&views);
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:>4}  {:<32}  expires",
        "NAME", "STATE", "LIVE", "LATEST SERIAL"
    );
    for v in &views {
        println!(
            "{:<20} {:<8} {:>4}  {:<32}  {}",
            v.name, v.state, v.live, v.serial, v.not_after
        );
    }
    Ok(())
}

async fn revoke(dir: &Home, a: RevokeArgs, json: bool) -> Result<(), CliError> {
    kith_pki::validate_label("operator name", &a.name)?;
    let r: RevokeResponse = if let Some(mut conn) = a.admin.online(dir).await? {
        let body = OperatorRevokeRequest {
            reason: Some(a.reason.as_str().to_string()),
        };
        let path = format!("/v1/admin/operators/{}/revoke", a.name);
        conn.json(Method::POST, &path, Some(&body)).await?
    } else {
        let authority =
            util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
        let outcomes = authority
            .revoke_operator(&a.name, a.reason, LOCAL_OPERATOR, Publish::Now)
            .await?;
        let mut names: Vec<&str> = outcomes
            .iter()
            .map(|o| o.record().authority.as_str())
            .collect();
        names.dedup();
        RevokeResponse {
            revoked: outcomes
                .iter()
                .map(|o| {
                    let r = o.record();
                    RevokedView {
                        serial: r.serial.clone(),
                        node: r.node.clone(),
                        reason: r.reason.as_str().to_string(),
                        revoked_at: rfc3339(r.revoked_at),
                        newly_revoked: matches!(o, RevokeOutcome::Revoked(_)),
                    }
                })
                .collect(),
            crl_numbers: authority.crl_numbers(&names).await,
        }
    };
    if json {
        print_json(&r);
        return Ok(());
    }
    for v in &r.revoked {
        println!(
            "revoked {} (operator {}, reason {})",
            v.serial, v.node, v.reason
        );
    }
    println!(
        "operator {} is refused by the admin API from now on",
        a.name
    );
    Ok(())
}
