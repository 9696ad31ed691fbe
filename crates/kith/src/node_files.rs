//! What every command that writes or describes a node directory shares:
//! the trust bundle, the staged files of an issued certificate, and the
//! one-line summary of a node identity.

use std::path::Path;

use kith_authority::{Authority, Issued};
use kith_nodedir as nodedir;
use kith_pki::{pem_encode, pem_encode_many, PrivateKey};
use serde_json::json;

use crate::output::{print_json, CliError};
use crate::util::{self, rfc3339};

/// `<data-dir>/ca.pem`: every authority's root.
pub(crate) fn write_bundle(dir: &Path, authority: &Authority) -> Result<(), CliError> {
    let pem = pem_encode_many("CERTIFICATE", authority.roots().iter().map(Vec::as_slice));
    nodedir::write_atomic(dir, nodedir::CA, pem.as_bytes(), nodedir::PUBLIC_MODE)?;
    Ok(())
}

pub(crate) fn stage_node_files(
    batch: &nodedir::Batch,
    dir: &Path,
    key: &PrivateKey,
    issued: &Issued,
    cluster: &str,
) -> Result<(), CliError> {
    let cert = pem_encode("CERTIFICATE", &issued.record.der);
    let chain = pem_encode_many("CERTIFICATE", issued.chain.iter().map(Vec::as_slice));
    let full = format!("{cert}{chain}");
    let ca = pem_encode("CERTIFICATE", &issued.root);
    let identity = json!({
        "cluster": cluster,
        "node": issued.record.node,
        "role": issued.record.role,
        "profile": issued.record.profile,
        "authority": issued.record.authority,
        "serial": issued.record.serial,
        "not_after": rfc3339(issued.record.not_after),
        "server": null,
    });
    let identity =
        serde_json::to_vec_pretty(&identity).map_err(|e| CliError::new("internal", e))?;
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
            "not_after": util::rfc3339(id.not_after), "dir": dir, "server": id.server.url(),
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
