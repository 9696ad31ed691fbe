//! `kith cert sign`: a certificate for a CSR made elsewhere.

use std::path::PathBuf;

use clap::Args;
use kith_authority::{Identity, Settings, DEFAULT_AUTHORITY, LOCAL_OPERATOR};
use kith_nodedir as nodedir;
use kith_pki::{pem_encode, pem_encode_many, CsrPolicy, Profile};
use serde_json::json;
use time::Duration;

use hyper::Method;
use kith_api::wire::{CertificateIssued, CsrSignRequest};
use kith_api::ErrorCode;

use crate::admin::{issued_from_wire, AdminArgs};
use crate::args::{profile_parser, PassphraseArg};
use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, rfc3339, split_path};

#[derive(Args, Debug)]
pub(crate) struct SignArgs {
    /// The CSR (PEM or DER); `-` reads stdin.
    csr: PathBuf,
    /// Node name to issue to (the CSR's subject is ignored).
    #[arg(long)]
    name: String,
    /// Role.
    #[arg(long)]
    role: String,
    /// Profile: peer, server, client, admin.
    #[arg(long, default_value = "peer", value_parser = profile_parser)]
    profile: Profile,
    /// Lifetime, e.g. 90d.
    #[arg(long, value_parser = util::parse_cert_ttl)]
    ttl: Option<Duration>,
    /// Authority to issue from.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// A DNS name the CSR may ask for besides the node's own. Repeatable.
    #[arg(long = "allow-san", value_name = "DNS")]
    allow_san: Vec<String>,
    /// Allow wildcard names (each must also be given with --allow-san).
    #[arg(long)]
    allow_wildcards: bool,
    /// Refuse IP address SANs.
    #[arg(long)]
    no_ip_sans: bool,
    /// Write the chain PEM (leaf, then intermediate) here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn cert_sign(dir: &Home, a: SignArgs, json: bool) -> Result<(), CliError> {
    kith_pki::validate_label("node name", &a.name)?;
    kith_pki::validate_label("role", &a.role)?;
    // Read a little past the CSR limit so oversized input is named as such.
    let csr = util::read_input(&a.csr, 4 * 1024 * 1024)?;
    // Reject a bad CSR before asking for the passphrase.
    kith_pki::parse_csr(&csr).map_err(kith_authority::Error::from)?;
    let policy = CsrPolicy {
        allow_ip: !a.no_ip_sans,
        allow_wildcards: a.allow_wildcards,
        allowed_dns: a.allow_san.iter().map(|s| s.to_ascii_lowercase()).collect(),
        ..CsrPolicy::default()
    };
    let (issued, sans) = if let Some(mut conn) = a.admin.online(dir).await? {
        // The server holds the store: it signs, under the same policy.
        let body = CsrSignRequest {
            node: a.name.clone(),
            role: a.role.clone(),
            profile: a.profile.as_str().to_string(),
            authority: Some(a.authority.clone()),
            ttl_seconds: a.ttl.map(|d| u64::try_from(d.whole_seconds()).unwrap_or(0)),
            allow_sans: a.allow_san.clone(),
            allow_wildcards: a.allow_wildcards,
            no_ip_sans: a.no_ip_sans,
            csr: match std::str::from_utf8(&csr) {
                Ok(text) if text.contains("-----BEGIN") => text.to_string(),
                _ => pem_encode("CERTIFICATE REQUEST", &csr),
            },
        };
        let r: CertificateIssued = conn
            .json(Method::POST, "/v1/admin/certs/sign", Some(&body))
            .await?;
        let issued = issued_from_wire(&r)?;
        let sans = sans_of(&issued.record.der)?;
        (issued, sans)
    } else {
        let authority =
            util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
        let issued = authority
            .sign_csr(
                &csr,
                Identity {
                    node: a.name.clone(),
                    role: a.role.clone(),
                    profile: a.profile,
                    authority: Some(a.authority.clone()),
                    ttl: a.ttl,
                },
                Some(&policy),
            )
            .await?;
        authority.audit_issued(&issued, LOCAL_OPERATOR).await?;
        let sans = issued.record.sans.iter().map(ToString::to_string).collect();
        (issued, sans)
    };
    let pem = format!(
        "{}{}",
        pem_encode("CERTIFICATE", &issued.record.der),
        pem_encode_many("CERTIFICATE", issued.chain.iter().map(Vec::as_slice))
    );
    if issued.truncated {
        eprintln!(
            "warning: the lifetime was cut to the issuing intermediate's expiry ({})",
            rfc3339(issued.record.not_after)
        );
    }
    if let Some(out) = &a.out {
        let (parent, name) = split_path(out)?;
        nodedir::write_atomic(&parent, &name, pem.as_bytes(), nodedir::PUBLIC_MODE)?;
    }
    if json {
        print_json(&json!({
            "node": issued.record.node,
            "serial": issued.record.serial,
            "not_after": rfc3339(issued.record.not_after),
            "sans": sans,
            "chain_pem": pem,
        }));
    } else if a.out.is_none() {
        print!("{pem}");
    } else {
        eprintln!(
            "issued serial {} to {}",
            issued.record.serial, issued.record.node
        );
    }
    Ok(())
}

/// The SANs of a certificate the server answered, as `cert inspect` shows them.
fn sans_of(der: &[u8]) -> Result<Vec<String>, CliError> {
    match kith_pki::inspect(der)?.into_iter().next() {
        Some(kith_pki::Inspected::Certificate(c)) => Ok(c.sans),
        _ => Err(CliError::new(ErrorCode::BadResponse, "not a certificate")),
    }
}
