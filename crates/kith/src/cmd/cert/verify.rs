//! `kith cert verify`: chain, validity, revocation and identity.

use kith_api::ErrorCode;
use std::path::PathBuf;

use clap::Args;
use kith_authority::{ClusterInfo, CrlIssuer};
use kith_pki::{Inspected, Profile, Serial};
use serde_json::json;
use time::OffsetDateTime;

use crate::args::profile_parser;
use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, relative, rfc3339};

#[derive(Args, Debug)]
pub(crate) struct VerifyArgs {
    /// The certificate (leaf first; intermediates may follow, as in fullchain.pem).
    pub(super) file: PathBuf,
    /// Require this node name.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Require this role.
    #[arg(long)]
    pub(super) role: Option<String>,
    /// Require the usages of this profile (default: the recorded profile).
    #[arg(long, value_parser = profile_parser)]
    pub(super) profile: Option<Profile>,
    /// On a node: verify against this node directory's bundle, chain and
    /// CRL (ca.pem, chain.pem, crl.pem) instead of a CA's data directory.
    #[arg(long = "dir", value_name = "NODE_DIR")]
    node_dir: Option<PathBuf>,
}

pub(crate) async fn cert_verify(dir: &Home, a: VerifyArgs, json: bool) -> Result<(), CliError> {
    let data = util::read_input(&a.file, 1024 * 1024)?;
    let certs = kith_pki::certs_from_pem_or_der(&data)?;
    let wanted = super::verify_node::Wanted {
        file: a.file.clone(),
        name: a.name.clone(),
        role: a.role.clone(),
        profile: a.profile,
    };
    if let Some(node_dir) = &a.node_dir {
        return super::verify_node::verify_in_node_dir(node_dir, &wanted, &certs, json);
    }
    let leaf = &certs[0];
    let store = util::open_store(dir).await.map_err(|e| {
        if e.code == ErrorCode::NotInitialized.as_str() {
            e.hint("run `kith init --cluster NAME` first, or pass --data-dir; on a node, verify against its directory: `kith cert verify FILE --dir /var/lib/kith`")
        } else {
            e
        }
    })?;
    let info = ClusterInfo::load(&*store).await?;
    let now = OffsetDateTime::now_utc();
    let Some(Inspected::Certificate(c)) = kith_pki::inspect(leaf)?.into_iter().next() else {
        return Err(CliError::new(
            ErrorCode::MalformedInput,
            "not a certificate",
        ));
    };
    let serial = Serial::parse(&c.serial).ok();
    let recorded = match &serial {
        Some(s) => match kith_authority::find_certificate(&*store, s).await {
            Ok(found) => Some(found),
            Err(kith_authority::Error::UnknownCertificate(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let profile = a
        .profile
        .or(recorded.as_ref().map(|(r, _)| r.profile))
        .unwrap_or(if c.extended_key_usage.iter().any(|e| e == "clientAuth") {
            Profile::Client
        } else {
            Profile::Server
        });
    // CRLs that are current are checked by the verifier; the store's own
    // revocation records (always current) are checked below as well.
    let mut crls = Vec::new();
    for auth in &info.authorities {
        let mut issuers = vec![CrlIssuer::Intermediate];
        issuers.extend(
            auth.other_intermediates
                .iter()
                .map(|(g, _)| CrlIssuer::Generation(*g)),
        );
        for issuer in issuers {
            if let Some(crl) = kith_authority::stored_crl_of(&*store, &auth.name, issuer).await? {
                if crl.next_update > now {
                    crls.push(crl.der);
                }
            }
        }
    }
    let mut intermediates = certs[1..].to_vec();
    intermediates.extend(info.intermediates());
    let mut problems: Vec<(ErrorCode, String)> = Vec::new();
    if let Err(e) = kith_pki::verify_chain(leaf, &intermediates, &info.roots(), &crls, now, profile)
    {
        problems.push((e.code(), e.to_string()));
    }
    if let Some((_, Some(rev))) = &recorded {
        if !problems.iter().any(|(c, _)| *c == ErrorCode::Revoked) {
            problems.push((
                ErrorCode::Revoked,
                format!("revoked {} ({})", rfc3339(rev.revoked_at), rev.reason),
            ));
        }
    }
    let cn = c.common_name.as_deref().unwrap_or("");
    let ou = c.organizational_unit.as_deref().unwrap_or("");
    problems.extend(wanted.identity_problems(&c, &info.cluster));
    let revoked = problems.iter().any(|(c, _)| *c == ErrorCode::Revoked);
    if json {
        print_json(&json!({
            "valid": problems.is_empty(),
            "serial": c.serial,
            "node": cn,
            "role": ou,
            "profile": profile,
            "not_after": rfc3339(c.not_after),
            "revoked": revoked,
            "recorded": recorded.is_some(),
            "problems": problems.iter().map(|(code, msg)| json!({"code": code, "message": msg})).collect::<Vec<_>>(),
        }));
    } else if problems.is_empty() {
        println!(
            "OK: {cn} (role {ou}, {profile}) chains to cluster {}, expires {}, not revoked",
            info.cluster,
            relative(c.not_after, now)
        );
    }
    match problems.first() {
        None => Ok(()),
        Some((code, _)) => {
            let all: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
            let mut e = CliError::new(
                *code,
                format!("{} does not verify: {}", a.file.display(), all.join("; ")),
            );
            e.json_printed = json;
            Err(e)
        }
    }
}
