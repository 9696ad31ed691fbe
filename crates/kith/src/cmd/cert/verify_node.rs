//! `kith cert verify --dir NODE_DIR`: on a node, which has no CA data
//! directory, verify against what the node trusts: its `ca.pem`, the
//! intermediates of its `chain.pem` and its `crl.pem` (every CRL in it).

use std::path::Path;

use kith_api::ErrorCode;
use kith_pki::{CertificateInfo, Inspected, Profile};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use serde_json::json;
use time::OffsetDateTime;

use crate::output::{print_json, CliError};
use crate::util::{relative, rfc3339};

/// What `kith cert verify` asks of the certificate.
pub(super) struct Wanted {
    /// Where it was read from (for messages).
    pub(super) file: std::path::PathBuf,
    /// Require this node name.
    pub(super) name: Option<String>,
    /// Require this role.
    pub(super) role: Option<String>,
    /// Require the usages of this profile (default: the recorded profile).
    pub(super) profile: Option<kith_pki::Profile>,
}

impl Wanted {
    /// Where the certificate `c` (of cluster `cluster`) is not the node
    /// name and role asked for.
    pub(super) fn identity_problems(
        &self,
        c: &CertificateInfo,
        cluster: &str,
    ) -> Vec<(ErrorCode, String)> {
        let cn = c.common_name.as_deref().unwrap_or("");
        let ou = c.organizational_unit.as_deref().unwrap_or("");
        let mut problems = Vec::new();
        if let Some(want) = &self.name {
            let fqdn = format!("DNS:{want}.{cluster}");
            if cn != want || !c.sans.contains(&fqdn) {
                problems.push((
                    ErrorCode::IdentityMismatch,
                    format!("certificate is for {cn:?}, not {want:?}"),
                ));
            }
        }
        if let Some(want) = &self.role {
            if ou != want {
                problems.push((
                    ErrorCode::IdentityMismatch,
                    format!("certificate has role {ou:?}, not {want:?}"),
                ));
            }
        }
        problems
    }
}

/// Verify `certs` (leaf first) as the node in `node_dir` would see them.
pub(super) fn verify_in_node_dir(
    node_dir: &Path,
    a: &Wanted,
    certs: &[Vec<u8>],
    json: bool,
) -> Result<(), CliError> {
    let identity = kith_nodedir::NodeIdentity::load(node_dir)?;
    let roots = kith_pki::certs_from_pem_or_der(&kith_nodedir::read(node_dir, kith_nodedir::CA)?)?;
    let mut intermediates = certs[1..].to_vec();
    if let Ok(chain) = kith_nodedir::read(node_dir, kith_nodedir::CHAIN) {
        intermediates.extend(kith_pki::certs_from_pem_or_der(&chain)?);
    }
    let crls: Vec<Vec<u8>> = if node_dir.join(kith_nodedir::CRL).exists() {
        let pem = kith_nodedir::read(node_dir, kith_nodedir::CRL)?;
        CertificateRevocationListDer::pem_slice_iter(&pem)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| {
                CliError::new(
                    ErrorCode::MalformedInput,
                    format!("{}: {e}", node_dir.join(kith_nodedir::CRL).display()),
                )
            })?
    } else {
        Vec::new()
    };
    let leaf = &certs[0];
    let Some(Inspected::Certificate(c)) = kith_pki::inspect(leaf)?.into_iter().next() else {
        return Err(CliError::new(
            ErrorCode::MalformedInput,
            "not a certificate",
        ));
    };
    let profile = a
        .profile
        .unwrap_or(if c.extended_key_usage.iter().any(|e| e == "clientAuth") {
            Profile::Client
        } else {
            Profile::Server
        });
    let now = OffsetDateTime::now_utc();
    let mut problems: Vec<(ErrorCode, String)> = Vec::new();
    if let Err(e) = kith_pki::verify_chain(leaf, &intermediates, &roots, &crls, now, profile) {
        problems.push((e.code(), e.to_string()));
    }
    let cn = c.common_name.as_deref().unwrap_or("");
    let ou = c.organizational_unit.as_deref().unwrap_or("");
    problems.extend(a.identity_problems(&c, &identity.cluster));
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
            "crl_checked": !crls.is_empty(),
            "problems": problems.iter().map(|(code, msg)| json!({"code": code, "message": msg})).collect::<Vec<_>>(),
        }));
    } else if problems.is_empty() {
        println!(
            "OK: {cn} (role {ou}, {profile}) chains to {}'s bundle in {}, expires {}, {}",
            identity.cluster,
            node_dir.display(),
            relative(c.not_after, now),
            if crls.is_empty() {
                "no crl.pem to check revocation against"
            } else {
                "not revoked"
            }
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
