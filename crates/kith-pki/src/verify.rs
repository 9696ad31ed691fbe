use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use webpki::{aws_lc_rs as algs, EndEntityCert, KeyUsage};

use crate::{Error, Profile};

/// Signature algorithms kith issues with, and accepts on chains.
static ALGS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    algs::ECDSA_P256_SHA256,
    algs::ECDSA_P256_SHA384,
    algs::ECDSA_P384_SHA256,
    algs::ECDSA_P384_SHA384,
    algs::ECDSA_P521_SHA512,
    algs::ED25519,
    algs::RSA_PKCS1_2048_8192_SHA256,
    algs::RSA_PKCS1_2048_8192_SHA384,
    algs::RSA_PKCS1_2048_8192_SHA512,
];

/// What a successful verification established.
#[derive(Clone, Debug)]
pub struct VerifiedChain {
    /// How many certificates the path has, leaf and root included.
    pub path_len: usize,
}

/// Verify `leaf` up to one of `roots` through `intermediates`, at time `now`,
/// for the usages of `profile` (server and/or client authentication), with
/// revocation checked against `crls` when any are given (end-entity only:
/// kith's CRLs are signed by the intermediate that issued the leaf).
///
/// This is rustls-webpki, the verifier rustls itself uses.
pub fn verify_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    crls: &[Vec<u8>],
    now: OffsetDateTime,
    profile: Profile,
) -> Result<VerifiedChain, Error> {
    let leaf_der = CertificateDer::from(leaf);
    let ee = EndEntityCert::try_from(&leaf_der).map_err(|e| Error::Verify(format!("leaf: {e}")))?;
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors = root_ders
        .iter()
        .map(|r| {
            webpki::anchor_from_trusted_cert(r).map_err(|e| Error::Verify(format!("root: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inter: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let parsed_crls = crls
        .iter()
        .map(|c| {
            webpki::OwnedCertRevocationList::from_der(c)
                .map(webpki::CertRevocationList::from)
                .map_err(|e| Error::Verify(format!("CRL: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = parsed_crls.iter().collect();
    let revocation = if crl_refs.is_empty() {
        None
    } else {
        Some(
            webpki::RevocationOptionsBuilder::new(&crl_refs)
                .map_err(|_| Error::Verify("no CRL".into()))?
                .with_depth(webpki::RevocationCheckDepth::EndEntity)
                .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
                .build(),
        )
    };
    let secs = u64::try_from(now.unix_timestamp())
        .map_err(|_| Error::Verify("time before 1970".into()))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
    let usages: Vec<KeyUsage> = [
        profile.server_auth().then(KeyUsage::server_auth),
        profile.client_auth().then(KeyUsage::client_auth),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut path_len = 0;
    for usage in usages {
        let path = ee
            .verify_for_usage(ALGS, &anchors, &inter, time, usage, revocation, None)
            .map_err(|e| match e {
                webpki::Error::CertRevoked => Error::Revoked,
                other => Error::Verify(describe(&other)),
            })?;
        path_len = path.intermediate_certificates().count() + 2;
    }
    Ok(VerifiedChain { path_len })
}

fn describe(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { .. } => "certificate has expired".into(),
        webpki::Error::CertNotValidYet { .. } => "certificate is not valid yet".into(),
        webpki::Error::UnknownIssuer => "does not chain to the cluster bundle".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "certificate lacks the extended key usage this profile needs".into()
        }
        webpki::Error::CrlExpired { .. } => "the CRL is stale (past its nextUpdate)".into(),
        webpki::Error::UnknownRevocationStatus => "no CRL covers this certificate".into(),
        other => format!("{other:?}"),
    }
}

/// The kith server identity a certificate carries, as (cluster, server
/// name): its URI SAN `spiffe://<cluster>/kith/server/<name>` (of `cluster`
/// only, when given). `None` for every other certificate, nodes' and
/// operators' included: the CA never issues that URI to anyone else, so
/// this, on a chain that verified, tells the CA server from a member.
pub fn server_identity(
    cert_der: &[u8],
    cluster: Option<&str>,
) -> Result<Option<(String, String)>, Error> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| Error::parse("certificate", e))?;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Ok(None);
    };
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some((domain, server)) = crate::parse_server_id(uri, cluster) {
                return Ok(Some((domain.to_string(), server.to_string())));
            }
        }
    }
    Ok(None)
}

/// The SPIFFE trust domain of a certificate kith issued (from its
/// `spiffe://<domain>/...` URI SAN): the cluster it belongs to.
pub fn trust_domain(cert_der: &[u8]) -> Result<Option<String>, Error> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| Error::parse("certificate", e))?;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Ok(None);
    };
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some((domain, _)) = uri
                .strip_prefix("spiffe://")
                .and_then(|r| r.split_once('/'))
            {
                return Ok(Some(domain.to_string()));
            }
        }
    }
    Ok(None)
}

fn parse_cert(der: &[u8]) -> Result<x509_parser::prelude::X509Certificate<'_>, Error> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| c)
        .map_err(|e| Error::parse("certificate", e))
}

/// Decide a trust bundle update: the roots a node trusts now, the roots a
/// (verified) CA server offers, and the cross-signed certificates it offers
/// with them. Accepted only if every offered root is trusted already or
/// vouched for by a trusted root, that is, one of `cross_signed` carries the
/// new root's subject and key and is signed by a trusted root (what a root
/// rotation publishes); and if the update keeps at least one trusted root.
/// Returns the new bundle (the offered roots); refuses with the reason.
pub fn accept_bundle(
    trusted: &[Vec<u8>],
    offered: &[Vec<u8>],
    cross_signed: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, Error> {
    if offered.is_empty() {
        return Err(Error::Verify("the offered bundle holds no root".into()));
    }
    let trusted_certs = trusted
        .iter()
        .map(|d| parse_cert(d))
        .collect::<Result<Vec<_>, _>>()?;
    // A root re-issued with the same name and key is the same anchor.
    let is_trusted = |der: &[u8]| -> Result<bool, Error> {
        if trusted.iter().any(|t| t == der) {
            return Ok(true);
        }
        let c = parse_cert(der)?;
        Ok(trusted_certs
            .iter()
            .any(|t| t.subject() == c.subject() && t.public_key().raw == c.public_key().raw))
    };
    let mut keeps_one = false;
    for r in offered {
        keeps_one |= is_trusted(r)?;
    }
    if !keeps_one {
        return Err(Error::Verify(
            "the offered bundle drops every root this node trusts".into(),
        ));
    }
    for root in offered {
        if is_trusted(root)? {
            continue;
        }
        let new = parse_cert(root)?;
        let vouched = cross_signed.iter().any(|c| {
            let Ok(cross) = parse_cert(c) else {
                return false;
            };
            cross.subject() == new.subject()
                && cross.public_key().raw == new.public_key().raw
                && cross.is_ca()
                && trusted_certs.iter().any(|t| {
                    cross.issuer() == t.subject()
                        && cross.verify_signature(Some(t.public_key())).is_ok()
                })
        });
        if !vouched {
            return Err(Error::Verify(format!(
                "the offered bundle adds root {:?}, which no root this node trusts vouches for",
                new.subject().to_string()
            )));
        }
    }
    Ok(offered.to_vec())
}
