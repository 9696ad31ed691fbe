//! The operator routes of the CA itself, so that `kith ca show`, `cert ls`,
//! `crl`, `cert issue` and `authority add` work while a server holds the
//! store: the cluster's public facts, the certificate list, issuance for a
//! key made on the operator's machine (a CSR proves it; the key never
//! travels), new authorities, and CRLs. Mounted in the admin table
//! ([`super::admin`]), behind its gate; the views come from the authority.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kith_api::wire::{
    AuthorityAddRequest, CaAuthority, CaInfo, CertificateIssueRequest, CertificateIssued,
    CertificateRevocation, CertificateView, CrlSignRequest, CrlView, CsrSignRequest,
    IssuedCertificate,
};
use kith_api::ErrorCode;
use kith_authority::{CrlIssuer, Identity, IssueRequest, Issued};
use kith_pki::{pem_encode, pem_encode_many, KeyType, Profile, San};

use super::extract::{Admin, Body, Param};
use super::{rfc3339, AppState, St};
use crate::error::ApiError;

/// The cluster, its authorities, their roots and intermediates.
pub(super) async fn show(State(s): St) -> Result<Json<CaInfo>, ApiError> {
    let info = s.authority.cluster_info().await?;
    let mut authorities: Vec<CaAuthority> = info
        .authorities
        .iter()
        .map(|a| CaAuthority {
            name: a.name.clone(),
            key_type: a.key_type.as_str().to_string(),
            root: pem_encode("CERTIFICATE", &a.root_cert),
            intermediate: pem_encode("CERTIFICATE", &a.intermediate_cert),
        })
        .collect();
    authorities.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(CaInfo {
        cluster: info.cluster,
        created: rfc3339(info.created),
        authorities,
    }))
}

/// Every certificate issued here, with its revocation.
pub(super) async fn certificates(State(s): St) -> Result<Json<Vec<CertificateView>>, ApiError> {
    let all = s.authority.certificates().await?;
    Ok(Json(
        all.into_iter()
            .map(|(c, r)| CertificateView {
                serial: c.serial,
                node: c.node,
                role: c.role,
                profile: c.profile.as_str().to_string(),
                authority: c.authority,
                issued_at: rfc3339(c.issued_at),
                not_after: rfc3339(c.not_after),
                fingerprint_sha256: c.fingerprint,
                revoked: r.map(|r| CertificateRevocation {
                    reason: r.reason.as_str().to_string(),
                    at: rfc3339(r.revoked_at),
                }),
            })
            .collect(),
    ))
}

/// What a credential directory needs from an issuance.
pub(super) fn issued_view(cluster: &str, i: &Issued) -> CertificateIssued {
    let r = &i.record;
    CertificateIssued {
        cluster: cluster.to_string(),
        node: r.node.clone(),
        role: r.role.clone(),
        authority: r.authority.clone(),
        certificate: IssuedCertificate {
            profile: r.profile.as_str().to_string(),
            serial: r.serial.clone(),
            not_before: rfc3339(r.not_before),
            not_after: rfc3339(r.not_after),
            certificate: pem_encode("CERTIFICATE", &r.der),
            chain: pem_encode_many("CERTIFICATE", i.chain.iter().map(Vec::as_slice)),
            truncated: i.truncated,
        },
        root: pem_encode("CERTIFICATE", &i.root),
    }
}

/// The public key a CSR proves (its signature checked); nothing else of it
/// is used.
pub(super) fn csr_key(csr: &str) -> Result<kith_pki::PublicKey, ApiError> {
    let parsed = kith_pki::parse_csr(csr.as_bytes()).map_err(kith_authority::Error::from)?;
    Ok(parsed.public_key)
}

/// `kith cert issue` online: a certificate for the key the CSR proves, for
/// the identity and SANs the operator names (as offline).
pub(super) async fn issue(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<CertificateIssueRequest>,
) -> Result<(StatusCode, Json<CertificateIssued>), ApiError> {
    let profile: Profile = body.profile.parse().map_err(kith_authority::Error::from)?;
    if profile == Profile::Admin {
        return Err(ApiError::new(
            ErrorCode::ProfileNotAllowed,
            "operator certificates are made by `kith admin add NAME`",
        ));
    }
    let extra_sans = body
        .sans
        .iter()
        .map(|v| v.parse::<San>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(kith_authority::Error::from)?;
    let ttl = body
        .ttl_seconds
        .map(|secs| time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)));
    let public_key = csr_key(&body.csr)?;
    let issued = s
        .authority
        .issue(IssueRequest {
            identity: Identity {
                node: body.node,
                role: body.role,
                profile,
                authority: body.authority,
                ttl,
            },
            public_key,
            extra_sans,
        })
        .await?;
    s.authority.audit_issued(&issued, &actor).await?;
    s.metrics.issued(
        &issued.record.authority,
        issued.record.profile.as_str(),
        false,
    );
    Ok((
        StatusCode::CREATED,
        Json(issued_view(s.authority.cluster(), &issued)),
    ))
}

/// `kith cert sign` online: a CSR made elsewhere, its names judged by the
/// policy the operator gives (as offline, [`kith_authority::Authority::sign_csr`]).
pub(super) async fn sign(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<CsrSignRequest>,
) -> Result<(StatusCode, Json<CertificateIssued>), ApiError> {
    let profile: Profile = body.profile.parse().map_err(kith_authority::Error::from)?;
    let policy = kith_pki::CsrPolicy {
        allow_ip: !body.no_ip_sans,
        allow_wildcards: body.allow_wildcards,
        allowed_dns: body
            .allow_sans
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect(),
        ..kith_pki::CsrPolicy::default()
    };
    let ttl = body
        .ttl_seconds
        .map(|secs| time::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX)));
    let issued = s
        .authority
        .sign_csr(
            body.csr.as_bytes(),
            Identity {
                node: body.node,
                role: body.role,
                profile,
                authority: body.authority,
                ttl,
            },
            Some(&policy),
        )
        .await?;
    s.authority.audit_issued(&issued, &actor).await?;
    s.metrics.issued(
        &issued.record.authority,
        issued.record.profile.as_str(),
        false,
    );
    Ok((
        StatusCode::CREATED,
        Json(issued_view(s.authority.cluster(), &issued)),
    ))
}

/// `kith authority add` online.
pub(super) async fn add_authority(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<AuthorityAddRequest>,
) -> Result<(StatusCode, Json<CaAuthority>), ApiError> {
    let key_type: KeyType = body.key_type.parse().map_err(kith_authority::Error::from)?;
    kith_pki::validate_label("authority name", &body.name).map_err(kith_authority::Error::from)?;
    s.authority.add_authority(&body.name, key_type).await?;
    s.authority
        .audit(&actor, "authority-add", &body.name, key_type.as_str())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CaAuthority {
            key_type: key_type.as_str().to_string(),
            root: pem_encode("CERTIFICATE", &s.authority.root_cert(&body.name)?),
            intermediate: pem_encode("CERTIFICATE", &s.authority.intermediate_cert(&body.name)?),
            name: body.name,
        }),
    ))
}

fn crl_view(authority: String, r: &kith_authority::CrlRecord) -> CrlView {
    CrlView {
        authority,
        number: r.number,
        entries: r.entries,
        next_update: rfc3339(r.next_update),
        pem: pem_encode("X509 CRL", &r.der),
    }
}

/// An authority's current CRL (signed anew if stale, as `/v1/crl` does).
pub(super) async fn crl(State(s): St, Param(authority): Param) -> Result<Json<CrlView>, ApiError> {
    current(s, authority, CrlIssuer::Intermediate).await
}

/// An authority's root CRL (of its intermediates), as `/v1/crl/{authority}/root`.
pub(super) async fn root_crl(
    State(s): St,
    Param(authority): Param,
) -> Result<Json<CrlView>, ApiError> {
    current(s, authority, CrlIssuer::Root).await
}

async fn current(
    s: Arc<AppState>,
    authority: String,
    issuer: CrlIssuer,
) -> Result<Json<CrlView>, ApiError> {
    kith_pki::validate_label("authority", &authority).map_err(kith_authority::Error::from)?;
    let rec = s.crls.current(&s.authority, &authority, issuer).await?;
    Ok(Json(crl_view(authority, &rec)))
}

/// `kith crl --force-new`: sign a new CRL now.
pub(super) async fn crl_new(
    State(s): St,
    Admin(_actor): Admin,
    Param(authority): Param,
    Body(CrlSignRequest {}): Body<CrlSignRequest>,
) -> Result<Json<CrlView>, ApiError> {
    sign_crl(s, authority, CrlIssuer::Intermediate).await
}

/// `kith crl --root --force-new`: sign a new root CRL now.
pub(super) async fn root_crl_new(
    State(s): St,
    Admin(_actor): Admin,
    Param(authority): Param,
    Body(CrlSignRequest {}): Body<CrlSignRequest>,
) -> Result<Json<CrlView>, ApiError> {
    sign_crl(s, authority, CrlIssuer::Root).await
}

async fn sign_crl(
    s: Arc<AppState>,
    authority: String,
    issuer: CrlIssuer,
) -> Result<Json<CrlView>, ApiError> {
    kith_pki::validate_label("authority", &authority).map_err(kith_authority::Error::from)?;
    let rec = s.authority.regenerate_crl_of(&authority, issuer).await?;
    Ok(Json(crl_view(authority, &rec)))
}
