//! Pure X.509 for kith.
//!
//! This crate builds and checks every artefact kith hands out: key pairs, CA
//! certificates, leaf certificates, CRLs, and the policy that decides which
//! certificate signing requests are acceptable. It performs no I/O and never
//! reads the clock: callers pass the time in, so expiry is testable.
//!
//! The style follows rcgen: a parameter value (a [`LeafSpec`], a [`CrlSpec`])
//! goes in, an artefact (DER bytes plus the facts a caller needs to record)
//! comes out. The CA chooses every subject and extension; nothing is copied
//! from a CSR except its public key and, after policy checks, the names it asks for.

mod ca;
mod crl;
mod csr;
mod error;
mod inspect;
mod key;
mod leaf;
mod names;
mod pem_util;
mod profile;
mod revoked_cas;
mod serial;
mod verify;

pub use ca::{second_precision, CaCertificate, CaKind, CaSpec, SigningCa};
pub use crl::{CrlSpec, RevocationReason, RevokedEntry};
pub use csr::{
    build_csr, never_issued_ip, parse_csr, Csr, CsrPolicy, KeyDescription, MAX_CSR_BYTES,
};
pub use error::{CsrRejection, CsrRejectionKind, Error};
pub use inspect::{inspect, CertificateInfo, CrlEntryInfo, CrlInfo, CsrInfo, Inspected, KeyInfo};
pub use key::{KeyType, PrivateKey, PublicKey};
pub use leaf::{IssuedLeaf, LeafSpec, DEFAULT_BACKDATE, MAX_SANS, MAX_SAN_BYTES};
pub use names::{
    is_reserved_node_name, parse_server_id, spiffe_id, validate_cluster_name, validate_holder,
    validate_label, validate_new_node, validate_node_name, validate_node_role,
    validate_server_name, Namespace, San, DEFAULT_SERVER_NAME, RESERVED_ROLE,
};
pub use pem_util::{certs_from_pem_or_der, pem_encode, pem_encode_many};
pub use profile::Profile;
pub use revoked_cas::RevokedCas;
pub use serial::Serial;
pub use verify::{accept_bundle, server_identity, trust_domain, verify_chain, VerifiedChain};

/// The SHA-256 hash of a certificate's SubjectPublicKeyInfo: the pin a join
/// token carries. It survives re-issuing a root with the same key.
pub fn spki_pin(cert_der: &[u8]) -> Result<[u8; 32], Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| Error::parse("certificate", e))?;
    Ok(sha256(cert.tbs_certificate.subject_pki.raw))
}

/// The serial number of a DER certificate.
pub fn certificate_serial(cert_der: &[u8]) -> Result<Serial, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| Error::parse("certificate", e))?;
    Serial::from_der_integer(cert.raw_serial())
}

/// The validity (notBefore, notAfter) of a DER certificate.
pub fn certificate_validity(
    cert_der: &[u8],
) -> Result<(time::OffsetDateTime, time::OffsetDateTime), Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| Error::parse("certificate", e))?;
    let v = cert.validity();
    Ok((v.not_before.to_datetime(), v.not_after.to_datetime()))
}

/// Whether DER certificate `cert` was signed by the CA of DER certificate
/// `ca`: its issuer is the CA's subject and the CA's key verifies it.
pub fn issued_by(cert: &[u8], ca: &[u8]) -> Result<bool, Error> {
    let (_, c) =
        x509_parser::parse_x509_certificate(cert).map_err(|e| Error::parse("certificate", e))?;
    let (_, issuer) =
        x509_parser::parse_x509_certificate(ca).map_err(|e| Error::parse("CA certificate", e))?;
    Ok(c.issuer().as_raw() == issuer.subject().as_raw()
        && c.verify_signature(Some(issuer.public_key())).is_ok())
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Colon-free lowercase hex SHA-256 fingerprint of DER bytes.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(sha256(der))
}
