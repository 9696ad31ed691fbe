use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{self, Oid};
use x509_parser::prelude::FromDer;

use crate::error::{CsrRejection, CsrRejectionKind as K};
use crate::pem_util::looks_like_pem;
use crate::{spiffe_id, Error, PrivateKey, PublicKey, San};

/// CSRs larger than this are refused before parsing (a real one is ~1 KiB;
/// RSA-8192 with many SANs stays well below).
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// What a CSR's key is, as far as policy cares.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "algorithm", rename_all = "lowercase")]
pub enum KeyDescription {
    /// RSA with this modulus size.
    Rsa {
        /// Modulus bits.
        bits: usize,
    },
    /// ECDSA on a named curve.
    Ec {
        /// Curve name (`P-256`, ...), or the OID when unknown.
        curve: String,
        /// Field size in bits (0 when unknown).
        bits: usize,
    },
    /// Ed25519.
    Ed25519,
    /// Anything else, by OID.
    Other {
        /// The algorithm OID.
        oid: String,
    },
}

impl std::fmt::Display for KeyDescription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA {bits}"),
            Self::Ec { curve, .. } => write!(f, "EC {curve}"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Other { oid } => write!(f, "unknown algorithm {oid}"),
        }
    }
}

impl KeyDescription {
    pub(crate) fn of(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Self {
        let alg = &spki.algorithm.algorithm;
        if *alg == oid_registry::OID_PKCS1_RSAENCRYPTION {
            let bits = match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
                _ => 0,
            };
            Self::Rsa { bits }
        } else if *alg == oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok());
            let (name, bits) = match curve {
                Some(c) if c == oid_registry::OID_EC_P256 => ("P-256".to_string(), 256),
                Some(c) if c == oid_registry::OID_NIST_EC_P384 => ("P-384".to_string(), 384),
                Some(c) if c == oid_registry::OID_NIST_EC_P521 => ("P-521".to_string(), 521),
                Some(c) if c.to_id_string() == "1.2.840.10045.3.1.1" => ("P-192".to_string(), 192),
                Some(c) if c.to_id_string() == "1.3.132.0.33" => ("P-224".to_string(), 224),
                Some(c) => (c.to_id_string(), 0),
                None => ("unnamed curve".to_string(), 0),
            };
            Self::Ec { curve: name, bits }
        } else if *alg == oid_registry::OID_SIG_ED25519 {
            Self::Ed25519
        } else {
            Self::Other {
                oid: alg.to_id_string(),
            }
        }
    }
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let m = &modulus[start..];
    match m.first() {
        Some(first) => m.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// A parsed CSR whose signature has been verified with its own key (proof of possession).
#[derive(Clone, Debug)]
pub struct Csr {
    /// The subject's public key.
    pub public_key: PublicKey,
    /// What the key is.
    pub key: KeyDescription,
    /// DNS names asked for in the subjectAltName extension (lowercased).
    pub dns: Vec<String>,
    /// IP addresses asked for.
    pub ips: Vec<IpAddr>,
    /// URIs asked for.
    pub uris: Vec<String>,
    /// Other SAN kinds asked for (email, directory names, ...), as text.
    pub other_names: Vec<String>,
    /// The subject's common name, if any.
    pub common_name: Option<String>,
    /// Whether the CSR asks for basicConstraints CA:TRUE.
    pub asks_for_ca: bool,
}

/// Parse and verify a CSR: PEM `CERTIFICATE REQUEST` or DER. Refuses oversized
/// input, trailing garbage, SHA-1 or unknown signature algorithms and bad signatures.
///
/// x509-parser reads the CSR, not rcgen: rcgen refuses CSRs carrying
/// extensions it does not know (openssl adds subjectKeyIdentifier).
pub fn parse_csr(input: &[u8]) -> Result<Csr, CsrRejection> {
    if input.len() > MAX_CSR_BYTES {
        return Err(CsrRejection::new(
            K::TooLarge,
            format!("{} bytes > {MAX_CSR_BYTES}", input.len()),
        ));
    }
    let der = if looks_like_pem(input) {
        let block = pem::parse_many(input)
            .map_err(|e| CsrRejection::new(K::Malformed, format!("bad PEM: {e}")))?
            .into_iter()
            .find(|p| p.tag() == "CERTIFICATE REQUEST" || p.tag() == "NEW CERTIFICATE REQUEST")
            .ok_or_else(|| {
                CsrRejection::new(K::Malformed, "no CERTIFICATE REQUEST block in PEM")
            })?;
        block.into_contents()
    } else {
        input.to_vec()
    };
    let (rest, req) = X509CertificationRequest::from_der(&der)
        .map_err(|e| CsrRejection::new(K::Malformed, format!("not a DER CSR: {e}")))?;
    if !rest.is_empty() {
        return Err(CsrRejection::new(
            K::Malformed,
            "trailing bytes after the CSR",
        ));
    }

    let info = &req.certification_request_info;
    let key = KeyDescription::of(&info.subject_pki);

    let sig_alg = &req.signature_algorithm.algorithm;
    if is_sha1(sig_alg) {
        return Err(CsrRejection::new(
            K::WeakSignature,
            "SHA-1 signatures are refused",
        ));
    }
    // Structural key problems are reported before the signature check, so a
    // weak key gets `weak-key` rather than a confusing `bad-signature`.
    precheck_key(&key)?;
    verify_signature(&req)?;

    let mut csr = Csr {
        public_key: PublicKey::from_spki_der(info.subject_pki.raw.to_vec()),
        key,
        dns: Vec::new(),
        ips: Vec::new(),
        uris: Vec::new(),
        other_names: Vec::new(),
        common_name: None,
        asks_for_ca: false,
    };
    if let Some(cn) = info.subject.iter_common_name().next() {
        let cn = cn
            .as_str()
            .map_err(|_| CsrRejection::new(K::Malformed, "common name is not a string"))?;
        csr.common_name = Some(cn.to_string());
    }
    if let Some(exts) = req.requested_extensions() {
        for ext in exts {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => csr.dns.push(d.to_ascii_lowercase()),
                            GeneralName::IPAddress(raw) => csr.ips.push(ip_from_bytes(raw)?),
                            GeneralName::URI(u) => csr.uris.push(u.to_string()),
                            other => csr.other_names.push(other.to_string()),
                        }
                    }
                }
                ParsedExtension::BasicConstraints(bc) => csr.asks_for_ca |= bc.ca,
                // Everything else (key usages, SKI, ...) is the CA's choice: ignored.
                _ => {}
            }
        }
    }
    Ok(csr)
}

/// Proof of possession: the CSR's signature under its own key.
///
/// ECDSA is checked here, with aws-lc, for every curve kith accepts (P-256,
/// P-384, P-521) and every SHA-2 digest: x509-parser 0.18 knows neither
/// P-521 nor ecdsa-with-SHA512, and refused such CSRs as badly signed
/// (openssl signs P-521 requests with SHA-256 by default, rcgen with
/// SHA-512). Everything else goes through x509-parser, also backed by aws-lc.
fn verify_signature(req: &X509CertificationRequest<'_>) -> Result<(), CsrRejection> {
    let info = &req.certification_request_info;
    let sig_alg = &req.signature_algorithm.algorithm;
    let bad = |why: String| {
        CsrRejection::new(
            K::BadSignature,
            format!("signature does not verify with the CSR's own key ({why})"),
        )
    };
    if let Some(digest) = ecdsa_digest_bits(sig_alg) {
        let alg = ecdsa_algorithm(&info.subject_pki, digest).ok_or_else(|| {
            bad(format!(
                "an ECDSA signature needs a P-256, P-384 or P-521 key, not {}",
                KeyDescription::of(&info.subject_pki)
            ))
        })?;
        return aws_lc_rs::signature::UnparsedPublicKey::new(
            alg,
            &info.subject_pki.subject_public_key.data,
        )
        .verify(info.raw, &req.signature_value.data)
        .map_err(|_| bad("ECDSA verification failed".into()));
    }
    req.verify_signature().map_err(|e| match e {
        x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => CsrRejection::new(
            K::WeakSignature,
            format!(
                "signature algorithm {} is not supported",
                sig_alg.to_id_string()
            ),
        ),
        e => bad(e.to_string()),
    })
}

/// The digest size of an ECDSA-with-SHA-2 signature algorithm.
fn ecdsa_digest_bits(oid: &Oid<'_>) -> Option<u16> {
    if *oid == oid_registry::OID_SIG_ECDSA_WITH_SHA256 {
        Some(256)
    } else if *oid == oid_registry::OID_SIG_ECDSA_WITH_SHA384 {
        Some(384)
    } else if *oid == oid_registry::OID_SIG_ECDSA_WITH_SHA512 {
        Some(512)
    } else {
        None
    }
}

/// aws-lc's verifier for an EC key on a NIST curve and a SHA-2 digest.
fn ecdsa_algorithm(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
    digest: u16,
) -> Option<&'static aws_lc_rs::signature::EcdsaVerificationAlgorithm> {
    use aws_lc_rs::signature as sig;
    if spki.algorithm.algorithm != oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY {
        return None;
    }
    let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
    let curve = if curve == oid_registry::OID_EC_P256 {
        256
    } else if curve == oid_registry::OID_NIST_EC_P384 {
        384
    } else if curve == oid_registry::OID_NIST_EC_P521 {
        521
    } else {
        return None;
    };
    Some(match (curve, digest) {
        (256, 256) => &sig::ECDSA_P256_SHA256_ASN1,
        (256, 384) => &sig::ECDSA_P256_SHA384_ASN1,
        (256, _) => &sig::ECDSA_P256_SHA512_ASN1,
        (384, 256) => &sig::ECDSA_P384_SHA256_ASN1,
        (384, 384) => &sig::ECDSA_P384_SHA384_ASN1,
        (384, _) => &sig::ECDSA_P384_SHA512_ASN1,
        (_, 256) => &sig::ECDSA_P521_SHA256_ASN1,
        (_, 384) => &sig::ECDSA_P521_SHA384_ASN1,
        (_, _) => &sig::ECDSA_P521_SHA512_ASN1,
    })
}

fn is_sha1(oid: &Oid<'_>) -> bool {
    *oid == oid_registry::OID_PKCS1_SHA1WITHRSA
        || matches!(
            oid.to_id_string().as_str(),
            "1.2.840.10045.4.1" | "1.3.14.3.2.29" | "1.2.840.10040.4.3"
        )
}

fn precheck_key(key: &KeyDescription) -> Result<(), CsrRejection> {
    match key {
        KeyDescription::Rsa { bits } if *bits > 8192 => Err(CsrRejection::new(
            K::UnsupportedKey,
            format!("RSA {bits} > 8192"),
        )),
        KeyDescription::Rsa { bits } if *bits < 2048 => {
            Err(CsrRejection::new(K::WeakKey, format!("RSA {bits} < 2048")))
        }
        KeyDescription::Ec {
            curve,
            bits: 192 | 224,
        } => Err(CsrRejection::new(K::WeakKey, format!("EC {curve} < P-256"))),
        KeyDescription::Ec { curve, bits: 0 } => Err(CsrRejection::new(
            K::UnsupportedKey,
            format!("EC curve {curve} is not supported"),
        )),
        KeyDescription::Other { oid } => Err(CsrRejection::new(
            K::UnsupportedKey,
            format!("key algorithm {oid} is not supported"),
        )),
        _ => Ok(()),
    }
}

fn ip_from_bytes(raw: &[u8]) -> Result<IpAddr, CsrRejection> {
    match raw.len() {
        4 => {
            let mut b = [0u8; 4];
            b.copy_from_slice(raw);
            Ok(IpAddr::from(b))
        }
        16 => {
            let mut b = [0u8; 16];
            b.copy_from_slice(raw);
            Ok(IpAddr::from(b))
        }
        n => Err(CsrRejection::new(
            K::Malformed,
            format!("IP address SAN of {n} bytes"),
        )),
    }
}

/// Why an IP address never goes into a certificate, if it does not: the
/// unspecified address, multicast and broadcast name no host.
pub fn never_issued_ip(ip: IpAddr) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if ip.is_unspecified() {
        return Some("the unspecified address names no host");
    }
    if ip.is_multicast() {
        return Some("a multicast address names no single host");
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Some("the broadcast address names no single host");
        }
    }
    None
}

/// Which CSRs are acceptable and which names they may carry.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct CsrPolicy {
    /// Minimum RSA modulus size (default 2048).
    pub min_rsa_bits: usize,
    /// Minimum EC field size (default 256: P-256, P-384 and P-521 pass).
    pub min_ec_bits: usize,
    /// Whether Ed25519 keys are accepted (default yes).
    pub allow_ed25519: bool,
    /// Whether IP address SANs are accepted (default yes).
    pub allow_ip: bool,
    /// Whether `localhost` may be asked for (default yes).
    pub allow_localhost: bool,
    /// Whether wildcard DNS names may be asked for (default no; even then each
    /// must also be listed in `allowed_dns`).
    pub allow_wildcards: bool,
    /// DNS names any node may ask for besides its own.
    pub allowed_dns: Vec<String>,
}

impl Default for CsrPolicy {
    fn default() -> Self {
        Self {
            min_rsa_bits: 2048,
            min_ec_bits: 256,
            allow_ed25519: true,
            allow_ip: true,
            allow_localhost: true,
            allow_wildcards: false,
            allowed_dns: Vec::new(),
        }
    }
}

impl Csr {
    /// Check this CSR against `policy` for the identity the CA decided
    /// (`node`, `role` in `cluster`). Returns the SANs to add beyond the two
    /// every leaf carries (`<node>.<cluster>` and the SPIFFE ID).
    ///
    /// A bare `<node>` request is accepted and answered by `<node>.<cluster>`:
    /// single-label names are not put in certificates (see docs/CONFORMANCE.md).
    /// When the CSR has SANs its subject is ignored; a CSR with only a common
    /// name has that name checked like a DNS SAN.
    pub fn approve(
        &self,
        policy: &CsrPolicy,
        cluster: &str,
        role: &str,
        node: &str,
    ) -> Result<Vec<San>, CsrRejection> {
        self.check_key(policy)?;
        if self.asks_for_ca {
            return Err(CsrRejection::new(
                K::CaNotAllowed,
                "the CSR asks for basicConstraints CA:TRUE; kith issues only leaves",
            ));
        }
        if let Some(other) = self.other_names.first() {
            return Err(CsrRejection::new(K::SanNotAllowed, other.clone()));
        }
        let asked = self.dns.len() + self.ips.len() + self.uris.len();
        let asked_bytes: usize = self.dns.iter().map(String::len).sum::<usize>()
            + self.uris.iter().map(String::len).sum::<usize>()
            + self
                .ips
                .iter()
                .map(|ip| if ip.is_ipv4() { 4 } else { 16 })
                .sum::<usize>();
        if asked > crate::MAX_SANS || asked_bytes > crate::MAX_SAN_BYTES {
            return Err(CsrRejection::new(
                K::TooManySans,
                format!(
                    "{asked} names of {asked_bytes} bytes asked for; a leaf carries at most {} names and {} bytes of them",
                    crate::MAX_SANS,
                    crate::MAX_SAN_BYTES
                ),
            ));
        }
        let mut dns: Vec<&str> = self.dns.iter().map(String::as_str).collect();
        let cn_lower = self.common_name.as_ref().map(|c| c.to_ascii_lowercase());
        let no_sans = self.dns.is_empty() && self.ips.is_empty() && self.uris.is_empty();
        if no_sans {
            match &cn_lower {
                Some(cn) => dns.push(cn),
                None => {
                    return Err(CsrRejection::new(
                        K::NoNames,
                        "the CSR asks for no name: add a subjectAltName or common name",
                    ))
                }
            }
        }

        let own_fqdn = format!("{node}.{cluster}");
        let mut extra = Vec::new();
        for d in dns {
            if d.starts_with("*.") || d.contains('*') {
                if !policy.allow_wildcards {
                    return Err(CsrRejection::new(K::WildcardNotAllowed, d));
                }
                if !policy.allowed_dns.iter().any(|a| a.eq_ignore_ascii_case(d)) {
                    return Err(CsrRejection::new(K::SanNotAllowed, d));
                }
                extra.push(San::Dns(d.to_string()));
                continue;
            }
            if San::check_dns_syntax(d).is_err() {
                return Err(CsrRejection::new(
                    K::SanNotAllowed,
                    format!("{d} (not a DNS name)"),
                ));
            }
            if d == node || d == own_fqdn {
                continue; // every leaf carries <node>.<cluster>
            }
            if d == "localhost" {
                if !policy.allow_localhost {
                    return Err(CsrRejection::new(K::SanNotAllowed, d));
                }
                extra.push(San::Dns(d.to_string()));
                continue;
            }
            if policy.allowed_dns.iter().any(|a| a.eq_ignore_ascii_case(d)) {
                extra.push(San::Dns(d.to_string()));
                continue;
            }
            return Err(CsrRejection::new(K::SanNotAllowed, d));
        }
        for ip in &self.ips {
            if !policy.allow_ip {
                return Err(CsrRejection::new(K::IpNotAllowed, ip.to_string()));
            }
            if let Some(why) = never_issued_ip(*ip) {
                return Err(CsrRejection::new(K::IpNotAllowed, format!("{ip} ({why})")));
            }
            extra.push(San::Ip(ip.to_canonical()));
        }
        let own_id = spiffe_id(cluster, role, node);
        for uri in &self.uris {
            if *uri != own_id {
                return Err(CsrRejection::new(K::SanNotAllowed, uri.clone()));
            }
        }
        extra.sort();
        extra.dedup();
        if extra.len() + 2 > crate::MAX_SANS {
            return Err(CsrRejection::new(
                K::TooManySans,
                format!("a leaf carries at most {} names", crate::MAX_SANS),
            ));
        }
        Ok(extra)
    }

    fn check_key(&self, policy: &CsrPolicy) -> Result<(), CsrRejection> {
        match &self.key {
            KeyDescription::Rsa { bits } if *bits < policy.min_rsa_bits => Err(CsrRejection::new(
                K::WeakKey,
                format!("RSA {bits} < {}", policy.min_rsa_bits),
            )),
            KeyDescription::Ec { curve, bits } if *bits < policy.min_ec_bits => {
                Err(CsrRejection::new(
                    K::WeakKey,
                    format!("EC {curve} < {} bits", policy.min_ec_bits),
                ))
            }
            KeyDescription::Ed25519 if !policy.allow_ed25519 => Err(CsrRejection::new(
                K::UnsupportedKey,
                "Ed25519 keys are turned off by policy",
            )),
            _ => Ok(()),
        }
    }
}

/// Build a PKCS#10 request (DER) over `key` asking for `sans`, with
/// `common_name` as its subject. The CA ignores the subject and decides the
/// identity itself; the common name only helps a human reading the CSR.
pub fn build_csr(key: &PrivateKey, common_name: &str, sans: &[San]) -> Result<Vec<u8>, Error> {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    for san in sans {
        params.subject_alt_names.push(match san {
            San::Dns(d) => rcgen::SanType::DnsName(
                d.clone()
                    .try_into()
                    .map_err(|e| Error::build("CSR", format!("{d}: {e}")))?,
            ),
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            San::Uri(u) => rcgen::SanType::URI(
                u.clone()
                    .try_into()
                    .map_err(|e| Error::build("CSR", format!("{u}: {e}")))?,
            ),
        });
    }
    let csr = params
        .serialize_request(key.pair())
        .map_err(|e| Error::build("CSR", e))?;
    Ok(csr.der().to_vec())
}
