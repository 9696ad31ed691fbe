//! `kith revoke`: through a running server when one is configured, else offline.

use kith_api::ErrorCode;
use std::path::Path;

use clap::Args;
use hyper::Method;
use kith_api::wire::{RevokeRequest, RevokeResponse};
use kith_authority::{Publish, RevokeOutcome, RevokeTarget, Settings, LOCAL_OPERATOR};
use kith_pki::{RevocationReason, Serial};
use serde_json::json;

use crate::admin::AdminArgs;
use crate::args::{reason_parser, PassphraseArg};
use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, rfc3339};

#[derive(Args, Debug)]
pub(crate) struct RevokeArgs {
    /// Serial number (hex, as `kith cert inspect` or openssl prints it).
    /// Give one of SERIAL, --node NAME or --server-name NAME.
    #[arg(conflicts_with_all = ["node", "server_name"])]
    serial: Option<String>,
    /// Revoke every unexpired certificate of this node instead.
    #[arg(long, conflicts_with = "server_name")]
    node: Option<String>,
    /// Revoke every unexpired certificate of this kith server (one replica,
    /// as `kith server ls` names it) instead; the name is retired: a server
    /// never starts under it again, and a running one stops.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// Reason: unspecified, key-compromise, ca-compromise, affiliation-changed,
    /// superseded, cessation-of-operation, privilege-withdrawn.
    #[arg(long, default_value = "unspecified", value_parser = reason_parser)]
    reason: RevocationReason,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

/// What to say when `kith revoke` is not told what to revoke: every form.
const REVOKE_FORMS: &str = "say what to revoke: `kith revoke SERIAL` (one certificate), `kith revoke --node NAME` (every live certificate of a node) or `kith revoke --server-name NAME` (a kith server, whose name is retired)";

pub(crate) async fn revoke(dir: &Home, a: RevokeArgs, json: bool) -> Result<(), CliError> {
    if a.serial.is_none() && a.node.is_none() && a.server_name.is_none() {
        return Err(CliError::new(ErrorCode::InvalidArgument, REVOKE_FORMS)
            .hint("`kith cert ls` lists serials, `kith node ls` nodes, `kith server ls` servers"));
    }
    let serial = a.serial.as_deref().map(Serial::parse).transpose()?;
    if let Some(n) = &a.node {
        kith_pki::validate_label("node name", n)?;
    }
    if let Some(n) = &a.server_name {
        kith_pki::validate_label("server name", n)?;
    }
    let holder = if a.server_name.is_some() {
        "server"
    } else {
        "node"
    };
    // A running server owns the store: go through it when one is configured.
    if revoke_online(
        dir,
        &a.admin,
        serial.as_ref().map(Serial::to_hex).as_deref(),
        a.node.as_deref(),
        a.server_name.as_deref(),
        a.reason.as_str(),
        json,
    )
    .await?
    .is_some()
    {
        return Ok(());
    }
    // The new CRL's validity is the cluster's (`kith settings`).
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let target = match (serial, &a.node, &a.server_name) {
        (Some(s), _, _) => RevokeTarget::Serial(s),
        (None, Some(n), _) => RevokeTarget::Node(n.clone()),
        (None, None, Some(n)) => RevokeTarget::Server(n.clone()),
        (None, None, None) => return Err(CliError::new(ErrorCode::InvalidArgument, REVOKE_FORMS)),
    };
    let outcomes = authority
        .revoke(target, a.reason, LOCAL_OPERATOR, Publish::Now)
        .await?;
    let mut crl_numbers = Vec::new();
    for o in &outcomes {
        let auth = &o.record().authority;
        if !crl_numbers.iter().any(|(a, _)| a == auth) {
            let crl = authority.crl(auth).await?;
            crl_numbers.push((auth.clone(), crl.number));
        }
    }
    if json {
        print_json(&json!({
            "results": outcomes.iter().map(|o| {
                let r = o.record();
                json!({
                    "serial": r.serial,
                    "node": r.node,
                    "authority": r.authority,
                    "reason": r.reason,
                    "revoked_at": rfc3339(r.revoked_at),
                    "already_revoked": matches!(o, RevokeOutcome::AlreadyRevoked(_)),
                })
            }).collect::<Vec<_>>(),
            "crl_numbers": crl_numbers.iter().map(|(a, n)| json!({"authority": a, "number": n})).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    for o in &outcomes {
        let r = o.record();
        match o {
            RevokeOutcome::Revoked(_) => {
                println!(
                    "revoked {} ({holder} {}, reason {})",
                    r.serial, r.node, r.reason
                )
            }
            RevokeOutcome::AlreadyRevoked(_) => println!(
                "{} ({holder} {}) was already revoked at {} with reason {}; nothing changed",
                r.serial,
                r.node,
                rfc3339(r.revoked_at),
                r.reason
            ),
        }
    }
    if let (Some(n), true) = (&a.server_name, outcomes.is_empty()) {
        println!("server {n} had no live certificate; its name is retired");
    }
    for (auth, number) in crl_numbers {
        println!("CRL of authority {auth} is now number {number}: publish it with `kith crl --authority {auth} --out FILE`");
    }
    Ok(())
}

/// `kith revoke` through a running server, if one is configured. Returns
/// `None` when no server is configured (the caller revokes offline).
pub(crate) async fn revoke_online(
    dir: &Path,
    admin: &AdminArgs,
    serial: Option<&str>,
    node: Option<&str>,
    server_name: Option<&str>,
    reason: &str,
    json_out: bool,
) -> Result<Option<()>, CliError> {
    let holder = if server_name.is_some() {
        "server"
    } else {
        "node"
    };
    let Some(mut conn) = admin.online(dir).await? else {
        return Ok(None);
    };
    let body = RevokeRequest {
        serial: serial.map(str::to_string),
        node: node.map(str::to_string),
        reason: Some(reason.to_string()),
        remove: false,
        server: server_name.map(str::to_string),
    };
    let r: RevokeResponse = conn
        .json(Method::POST, "/v1/admin/revoke", Some(&body))
        .await?;
    if json_out {
        print_json(&r);
        return Ok(Some(()));
    }
    for v in &r.revoked {
        if v.newly_revoked {
            println!(
                "revoked {} ({holder} {}, reason {})",
                v.serial, v.node, v.reason
            );
        } else {
            println!(
                "{} ({holder} {}) was already revoked at {} with reason {}; nothing changed",
                v.serial, v.node, v.revoked_at, v.reason
            );
        }
    }
    if let (Some(n), true) = (server_name, r.revoked.is_empty()) {
        println!("server {n} had no live certificate; its name is retired");
    }
    for (a, n) in &r.crl_numbers {
        println!("CRL of authority {a} is now number {n}; peers see it at their next refresh");
    }
    Ok(Some(()))
}
