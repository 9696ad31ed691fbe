//! Whether the node's own certificate is on the CRL it keeps.
//!
//! The server refuses a revoked node's renewal, but renewal comes weeks
//! after a revocation; the CRL the agent fetches says it within one refresh.

use std::path::Path;

use kith_nodedir as nodedir;
use kith_pki::Inspected;

use crate::node::{profile_files, NodeIdentity};
use crate::Error;

/// The [`Error::Revoked`] for the first of the node's certificates (one per
/// profile) that a CRL in `crl.pem` lists, if any. A CRL entry counts only
/// from a CRL whose issuer issued that certificate (serials are unique per
/// issuer). A missing or unreadable `crl.pem` or certificate says nothing.
pub(crate) fn check_own_revocation(dir: &Path, identity: &NodeIdentity) -> Option<Error> {
    let crls: Vec<kith_pki::CrlInfo> = nodedir::read(dir, nodedir::CRL)
        .ok()
        .and_then(|b| kith_pki::inspect(&b).ok())?
        .into_iter()
        .filter_map(|i| match i {
            Inspected::Crl(c) => Some(c),
            _ => None,
        })
        .collect();
    for profile in &identity.profiles {
        let (cert_file, _) = profile_files(&identity.profiles, *profile);
        let Some(cert) = nodedir::read(dir, &cert_file)
            .ok()
            .and_then(|b| kith_pki::inspect(&b).ok())
            .and_then(|v| match v.into_iter().next() {
                Some(Inspected::Certificate(c)) => Some(c),
                _ => None,
            })
        else {
            continue;
        };
        for crl in crls.iter().filter(|c| c.issuer == cert.issuer) {
            if let Some(entry) = crl.revoked.iter().find(|e| e.serial == cert.serial) {
                return Some(Error::Revoked {
                    node: identity.node.clone(),
                    serial: cert.serial.clone(),
                    revoked_at: entry
                        .revoked_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_else(|_| entry.revoked_at.to_string()),
                    reason: entry.reason.clone(),
                });
            }
        }
    }
    None
}
