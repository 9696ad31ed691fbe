//! `kith cert issue` through a running server (it holds the store): each
//! key is made here and never leaves this machine; a CSR proves it to the
//! server, which signs and records the certificate for the identity and
//! SANs named on the command line, as offline.

use hyper::Method;
use kith_agent::Connection;
use kith_api::wire::{CertificateIssueRequest, CertificateIssued};
use kith_api::ErrorCode;
use kith_authority::Issued;
use kith_nodedir as nodedir;
use kith_pki::PrivateKey;
use serde_json::json;
use time::OffsetDateTime;

use super::IssueArgs;
use crate::admin::issued_from_wire;
use crate::node_files::stage_node_files;
use crate::output::{print_json, CliError};
use crate::util::{relative, rfc3339};

pub(super) async fn cert_issue(
    mut conn: Connection,
    a: IssueArgs,
    json: bool,
) -> Result<(), CliError> {
    let key_type = a.key_type;
    let n = a.nodes.len();
    let keys = tokio::task::spawn_blocking(move || {
        use rayon::prelude::*;
        (0..n)
            .into_par_iter()
            .map(|_| PrivateKey::generate(key_type))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| CliError::new(ErrorCode::Internal, e))??;
    let mut issued: Vec<Issued> = Vec::with_capacity(n);
    let mut cluster = String::new();
    for (node, key) in a.nodes.iter().zip(&keys) {
        let csr = crate::admin::csr_pem(key, node)?;
        let body = CertificateIssueRequest {
            node: node.clone(),
            role: a.role.clone(),
            profile: a.profile.as_str().to_string(),
            authority: Some(a.authority.clone()),
            ttl_seconds: a.ttl.map(|d| u64::try_from(d.whole_seconds()).unwrap_or(0)),
            sans: a.sans.clone(),
            csr,
        };
        let r: CertificateIssued = conn
            .json(Method::POST, "/v1/admin/certs", Some(&body))
            .await?;
        let i = issued_from_wire(&r)?;
        if i.record.der.is_empty() || kith_pki::spki_pin(&i.record.der)? != spki(key)? {
            return Err(CliError::new(
                ErrorCode::BadResponse,
                format!("the certificate for {node} is not over the key made for it"),
            ));
        }
        cluster = r.cluster;
        issued.push(i);
    }
    let out = a.out.clone();
    let extra = a.sans.clone();
    let staged = issued.clone();
    tokio::task::spawn_blocking(move || -> Result<(), CliError> {
        nodedir::create_dir(&out)?;
        let batch = nodedir::Batch::new();
        for (key, iss) in keys.iter().zip(&staged) {
            stage_node_files(
                &batch,
                &out.join(&iss.record.node),
                key,
                iss,
                &cluster,
                &extra,
            )?;
        }
        batch.commit()?;
        Ok(())
    })
    .await
    .map_err(|e| CliError::new(ErrorCode::Internal, e))??;

    if let Some(t) = issued.iter().find(|i| i.truncated) {
        eprintln!(
            "warning: the lifetime was cut to the issuing intermediate's expiry ({})",
            rfc3339(t.record.not_after)
        );
    }
    let now = OffsetDateTime::now_utc();
    if json {
        print_json(&json!(issued
            .iter()
            .map(|i| json!({
                "node": i.record.node,
                "serial": i.record.serial,
                "profile": i.record.profile,
                "not_after": rfc3339(i.record.not_after),
                "truncated": i.truncated,
                "dir": a.out.join(&i.record.node),
            }))
            .collect::<Vec<_>>()));
        return Ok(());
    }
    for i in &issued {
        println!(
            "{:<20} serial {}  expires {}  {}",
            i.record.node,
            i.record.serial,
            relative(i.record.not_after, now),
            a.out.join(&i.record.node).display()
        );
    }
    Ok(())
}

/// The SPKI hash of `key`'s public half, as [`kith_pki::spki_pin`] gives a
/// certificate's.
fn spki(key: &PrivateKey) -> Result<[u8; 32], CliError> {
    Ok(kith_pki::sha256(key.public_key().spki_der()))
}
