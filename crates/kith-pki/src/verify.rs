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
