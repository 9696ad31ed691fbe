use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::csr::KeyDescription;
use crate::pem_util::looks_like_pem;
use crate::{fingerprint, sha256, Error};

/// One object found in an inspected file. Private keys show public parts only.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Inspected {
    /// An X.509 certificate.
    Certificate(Box<CertificateInfo>),
    /// A certificate signing request.
    Csr(CsrInfo),
    /// A certificate revocation list.
    Crl(CrlInfo),
    /// A private key (its public parts) or a public key.
    Key(KeyInfo),
}

/// What a certificate says.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CertificateInfo {
    /// Subject DN (RFC 4514 form).
    pub subject: String,
    /// The subject's first commonName (the node name, for kith leaves).
    pub common_name: Option<String>,
    /// The subject's first organizationalUnitName (the role, for kith leaves).
    pub organizational_unit: Option<String>,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lowercase hex.
    pub serial: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Subject alternative names, `DNS:`/`IP:`/`URI:` prefixed.
    pub sans: Vec<String>,
    /// The subject key.
    pub key: KeyDescription,
    /// Signature algorithm OID name.
    pub signature_algorithm: String,
    /// Whether basicConstraints says CA.
    pub is_ca: bool,
    /// Path length constraint, for CAs.
    pub path_len: Option<u32>,
    /// Key usages.
    pub key_usage: Vec<String>,
    /// Extended key usages.
    pub extended_key_usage: Vec<String>,
    /// SHA-256 of the DER.
    pub sha256_fingerprint: String,
    /// SHA-256 of the SubjectPublicKeyInfo (the pin of a root).
    pub spki_sha256: String,
}

/// What a CSR asks for.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CsrInfo {
    /// Subject DN.
    pub subject: String,
    /// The key.
    pub key: KeyDescription,
    /// Requested SANs.
    pub sans: Vec<String>,
    /// Whether its signature verifies with its own key.
    pub signature_valid: bool,
}

/// What a CRL says.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CrlInfo {
    /// Issuer DN.
    pub issuer: String,
    /// CRL number.
    pub number: Option<String>,
    /// thisUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    /// Entries.
    pub revoked: Vec<CrlEntryInfo>,
}

/// One CRL entry.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CrlEntryInfo {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Revocation date.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Reason, if given.
    pub reason: Option<String>,
}

/// A key, public parts only.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyInfo {
    /// Whether the file held a private key (its secret parts are never shown).
    pub private: bool,
    /// Whether the private key is encrypted (then nothing else is known).
    pub encrypted: bool,
    /// The key, when readable.
    pub key: Option<KeyDescription>,
    /// SHA-256 of the SubjectPublicKeyInfo, when readable.
    pub spki_sha256: Option<String>,
}

/// Identify and describe every object in `input` (PEM with any number of
/// blocks, or one DER object).
pub fn inspect(input: &[u8]) -> Result<Vec<Inspected>, Error> {
    if looks_like_pem(input) {
        let blocks = pem::parse_many(input).map_err(|e| Error::parse("PEM", e))?;
        if blocks.is_empty() {
            return Err(Error::parse("PEM", "no PEM block found"));
        }
        blocks
            .iter()
            .map(|b| inspect_block(b.tag(), b.contents()))
            .collect()
    } else {
        for tag in [
            "CERTIFICATE",
            "CERTIFICATE REQUEST",
            "X509 CRL",
            "PRIVATE KEY",
            "PUBLIC KEY",
        ] {
            if let Ok(found) = inspect_block(tag, input) {
                return Ok(vec![found]);
            }
        }
        Err(Error::parse(
            "input",
            "not a certificate, CSR, CRL or key (PEM or DER)",
        ))
    }
}

fn inspect_block(tag: &str, der: &[u8]) -> Result<Inspected, Error> {
    match tag {
        "CERTIFICATE" => {
            let (rest, cert) =
                X509Certificate::from_der(der).map_err(|e| Error::parse("certificate", e))?;
            trailing(rest, "certificate")?;
            Ok(Inspected::Certificate(Box::new(cert_info(&cert, der))))
        }
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
            let (rest, req) =
                x509_parser::certification_request::X509CertificationRequest::from_der(der)
                    .map_err(|e| Error::parse("CSR", e))?;
            trailing(rest, "CSR")?;
            let mut sans = Vec::new();
            if let Some(exts) = req.requested_extensions() {
                for ext in exts {
                    if let ParsedExtension::SubjectAlternativeName(san) = ext {
                        sans.extend(san.general_names.iter().map(general_name));
                    }
                }
            }
            Ok(Inspected::Csr(CsrInfo {
                subject: req.certification_request_info.subject.to_string(),
                key: KeyDescription::of(&req.certification_request_info.subject_pki),
                sans,
                signature_valid: req.verify_signature().is_ok(),
            }))
        }
        "X509 CRL" => {
            let (rest, crl) =
                CertificateRevocationList::from_der(der).map_err(|e| Error::parse("CRL", e))?;
            trailing(rest, "CRL")?;
            Ok(Inspected::Crl(CrlInfo {
                issuer: crl.issuer().to_string(),
                number: crl.crl_number().map(|n| n.to_str_radix(16)),
                this_update: crl.last_update().to_datetime(),
                next_update: crl.next_update().map(|t| t.to_datetime()),
                revoked: crl
                    .iter_revoked_certificates()
                    .map(|r| CrlEntryInfo {
                        serial: serial_hex(r.raw_serial()),
                        revoked_at: r.revocation_date.to_datetime(),
                        reason: r.reason_code().map(|(_, rc)| format!("{rc}")),
                    })
                    .collect(),
            }))
        }
        "PUBLIC KEY" => {
            let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
                .map_err(|e| Error::parse("public key", e))?;
            trailing(rest, "public key")?;
            Ok(Inspected::Key(KeyInfo {
                private: false,
                encrypted: false,
                key: Some(KeyDescription::of(&spki)),
                spki_sha256: Some(hex::encode(sha256(spki.raw))),
            }))
        }
        "ENCRYPTED PRIVATE KEY" => Ok(Inspected::Key(KeyInfo {
            private: true,
            encrypted: true,
            key: None,
            spki_sha256: None,
        })),
        "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
            // Derive the public key; the secret bytes never leave this function.
            let pair = rcgen::KeyPair::try_from(der).map_err(|e| Error::parse("private key", e))?;
            let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
            let (_, parsed) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
                .map_err(|e| Error::parse("private key", e))?;
            Ok(Inspected::Key(KeyInfo {
                private: true,
                encrypted: false,
                key: Some(KeyDescription::of(&parsed)),
                spki_sha256: Some(hex::encode(sha256(&spki))),
            }))
        }
        other => Err(Error::parse("PEM", format!("unsupported block {other:?}"))),
    }
}

fn trailing(rest: &[u8], what: &'static str) -> Result<(), Error> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(Error::parse(what, "trailing bytes"))
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::IPAddress(raw) => match raw.len() {
            4 => format!(
                "IP:{}",
                std::net::Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3])
            ),
            16 => {
                let mut b = [0u8; 16];
                b.copy_from_slice(raw);
                format!("IP:{}", std::net::Ipv6Addr::from(b))
            }
            _ => format!("IP:<{} bytes>", raw.len()),
        },
        other => other.to_string(),
    }
}

/// A serial as kith writes it everywhere (32 hex digits, as in `cert ls`);
/// serials longer than 128 bits, from other CAs, as their raw hex.
fn serial_hex(raw: &[u8]) -> String {
    crate::Serial::from_der_integer(raw)
        .map(|s| s.to_hex())
        .unwrap_or_else(|_| hex::encode(raw))
}

fn first_attr<'a>(
    mut attrs: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
) -> Option<String> {
    attrs
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
}

fn cert_info(cert: &X509Certificate<'_>, der: &[u8]) -> CertificateInfo {
    let mut info = CertificateInfo {
        subject: cert.subject().to_string(),
        common_name: first_attr(cert.subject().iter_common_name()),
        organizational_unit: first_attr(cert.subject().iter_organizational_unit()),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sans: Vec::new(),
        key: KeyDescription::of(cert.public_key()),
        signature_algorithm: x509_parser::oid_registry::OidRegistry::default()
            .with_crypto()
            .get(&cert.signature_algorithm.algorithm)
            .map(|e| e.sn().to_string())
            .unwrap_or_else(|| cert.signature_algorithm.algorithm.to_id_string()),
        is_ca: false,
        path_len: None,
        key_usage: Vec::new(),
        extended_key_usage: Vec::new(),
        sha256_fingerprint: fingerprint(der),
        spki_sha256: hex::encode(sha256(cert.public_key().raw)),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                info.sans.extend(san.general_names.iter().map(general_name));
            }
            ParsedExtension::BasicConstraints(bc) => {
                info.is_ca = bc.ca;
                info.path_len = bc.path_len_constraint;
            }
            ParsedExtension::KeyUsage(ku) => {
                info.key_usage = ku.to_string().split(", ").map(str::to_string).collect();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let mut v = Vec::new();
                if eku.server_auth {
                    v.push("serverAuth".to_string());
                }
                if eku.client_auth {
                    v.push("clientAuth".to_string());
                }
                v.extend(eku.other.iter().map(|o| o.to_id_string()));
                info.extended_key_usage = v;
            }
            _ => {}
        }
    }
    info
}
