//! CA certificates revoked by a root: the check rustls-webpki leaves out
//! when it judges only the end entity's revocation.
//!
//! kith's peers check leaves against `crl.pem` with webpki's
//! `only_check_end_entity_revocation` (an intermediate has no CRL of its
//! own to be judged by otherwise). A compromised root rotation revokes the
//! old intermediate in the old root's CRL, so a chain through it must be
//! refused as well: [`RevokedCas`] answers that, for CRLs whose signature a
//! trusted root verifies.

use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

/// The (issuer name, serial) pairs that CRLs signed by trusted roots list,
/// both as their DER encodings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevokedCas {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RevokedCas {
    /// Collect the entries of every CRL in `crls` (DER) that a root in
    /// `roots` (DER) issued: same name, and the root's key verifies the
    /// CRL's signature. Other CRLs (an intermediate's, one nobody trusted
    /// signed) and unreadable ones add nothing. An expired CRL still counts:
    /// a revocation is never undone.
    pub fn from_root_crls<R: AsRef<[u8]>, C: AsRef<[u8]>>(roots: &[R], crls: &[C]) -> Self {
        let roots: Vec<X509Certificate<'_>> = roots
            .iter()
            .filter_map(|r| X509Certificate::from_der(r.as_ref()).ok().map(|(_, c)| c))
            .collect();
        let mut entries = Vec::new();
        for crl in crls {
            let Ok((_, crl)) = CertificateRevocationList::from_der(crl.as_ref()) else {
                continue;
            };
            let issuer = crl.issuer().as_raw();
            let signed_by_root = roots.iter().any(|r| {
                r.subject().as_raw() == issuer && crl.verify_signature(r.public_key()).is_ok()
            });
            if signed_by_root {
                entries.extend(
                    crl.iter_revoked_certificates()
                        .map(|e| (issuer.to_vec(), e.raw_serial().to_vec())),
                );
            }
        }
        Self { entries }
    }

    /// Whether no trusted root revoked anything.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether certificate `der` is listed (by its issuer's name and its
    /// serial). An unreadable certificate is not: what verifies a chain
    /// judges it.
    pub fn is_revoked(&self, der: &[u8]) -> bool {
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return false;
        };
        let (issuer, serial) = (cert.issuer().as_raw(), cert.raw_serial());
        self.entries
            .iter()
            .any(|(i, s)| i.as_slice() == issuer && s.as_slice() == serial)
    }
}
