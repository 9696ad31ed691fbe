//! What every command that writes or describes a node directory shares:
//! the trust bundle, the staged files of an issued certificate, and the
//! one-line summary of a node identity.

use kith_api::ErrorCode;
use std::path::Path;

use kith_authority::{Authority, Issued};
use kith_nodedir as nodedir;
use kith_nodedir::{NodeIdentity, ServerAddr};
use kith_pki::{pem_encode, pem_encode_many, PrivateKey};
use serde_json::json;

use crate::output::{print_json, CliError};
use crate::util;

/// `<data-dir>/ca.pem`: every authority's root.
pub(crate) fn write_bundle(dir: &Path, authority: &Authority) -> Result<(), CliError> {
    let pem = pem_encode_many("CERTIFICATE", authority.roots().iter().map(Vec::as_slice));
    nodedir::write_atomic(dir, nodedir::CA, pem.as_bytes(), nodedir::PUBLIC_MODE)?;
    Ok(())
}

/// Stage the files of a node directory made offline (`cert issue`, the
/// operator credential of `init`): key, certificates, roots and an
/// `identity.json` that records no server, since no server renews it.
/// `extra_sans` are the SANs asked for besides the node's own.
pub(crate) fn stage_node_files(
    batch: &nodedir::Batch,
    dir: &Path,
    key: &PrivateKey,
    issued: &Issued,
    cluster: &str,
    extra_sans: &[String],
) -> Result<(), CliError> {
    let cert = pem_encode("CERTIFICATE", &issued.record.der);
    let chain = pem_encode_many("CERTIFICATE", issued.chain.iter().map(Vec::as_slice));
    let full = format!("{cert}{chain}");
    let ca = pem_encode("CERTIFICATE", &issued.root);
    let r = &issued.record;
    let identity = NodeIdentity {
        cluster: cluster.to_string(),
        node: r.node.clone(),
        role: r.role.clone(),
        authority: r.authority.clone(),
        server: None,
        profiles: vec![r.profile],
        serial: r.serial.clone(),
        not_before: r.not_before,
        not_after: r.not_after,
        key_type: key.key_type(),
        sans: extra_sans.to_vec(),
        // Where the server publishes this authority's CRL (as a join records it).
        crl_path: format!("/v1/crl/{}", r.authority),
        interface_ips: false,
        replicas: Vec::new(),
    };
    let identity = identity
        .to_json()
        .map_err(|e| CliError::new(ErrorCode::Internal, e))?;
    let key = key.pkcs8_pem();
    batch.stage_dir(
        dir,
        &[
            (nodedir::KEY, key.as_bytes(), nodedir::KEY_MODE),
            (nodedir::CERT, cert.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::CHAIN, chain.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::FULLCHAIN, full.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::CA, ca.as_bytes(), nodedir::PUBLIC_MODE),
            (nodedir::IDENTITY, &identity, nodedir::PUBLIC_MODE),
        ],
    )?;
    Ok(())
}

pub(crate) fn print_identity(
    id: &kith_agent::NodeIdentity,
    dir: &Path,
    verb: &str,
    json_out: bool,
) {
    if json_out {
        print_json(&json!({
            "node": id.node, "role": id.role, "cluster": id.cluster, "serial": id.serial,
            "not_after": util::rfc3339(id.not_after), "dir": dir, "server": id.server.as_ref().map(ServerAddr::url),
            "profiles": id.profiles,
        }));
    } else {
        println!(
            "{verb} {} as {} (role {}), certificate {} valid until {}; files in {}",
            id.cluster,
            id.node,
            id.role,
            id.serial,
            util::rfc3339(id.not_after),
            dir.display()
        );
    }
}

/// The way forward for a node directory issued offline (`no-server`),
/// which no server renews.
pub(crate) fn offline_hint(e: impl Into<CliError>) -> CliError {
    let e = e.into();
    if e.code == "no-server" {
        e.hint("make it renewable with `kith node adopt --dir DIR --server URL` (then renew), issue it again (`kith cert issue NODE --force`), or join with a token (`kith join`)")
    } else {
        e
    }
}
