use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
};
use time::OffsetDateTime;

use crate::{Error, KeyType, PrivateKey, Serial};

/// Which certificate of an authority's hierarchy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaKind {
    /// Self-signed, long-lived, used only to sign intermediates.
    Root,
    /// Signed by the root (path length 0); signs leaves and CRLs.
    Intermediate,
}

impl CaKind {
    /// `root` or `intermediate`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Intermediate => "intermediate",
        }
    }
}

/// Parameters of a CA certificate.
#[derive(Clone, Debug)]
pub struct CaSpec {
    /// The cluster (trust domain) name: the subject's O.
    pub cluster: String,
    /// The authority's name inside the cluster (`cluster`, `api`, ...).
    pub authority: String,
    /// Root or intermediate.
    pub kind: CaKind,
    /// Which one of its kind in the authority's life: 1 for the first, one
    /// more at each rotation. From 2 on the subject's CN says `G<n>`, so
    /// that two intermediates alive at once differ by name (CRLs are
    /// matched to their issuer by name) and a new root never looks like
    /// the old one re-issued.
    pub generation: u32,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Serial number.
    pub serial: Serial,
}

impl CaSpec {
    fn params(&self, key: &PrivateKey) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.key_identifier_method =
            rcgen::KeyIdMethod::PreSpecified(key.public_key().key_identifier());
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.cluster.as_str());
        let generation = match self.generation {
            0 | 1 => String::new(),
            n => format!(" G{n}"),
        };
        dn.push(
            DnType::CommonName,
            format!(
                "{} {} {} CA{generation}",
                self.cluster,
                self.authority,
                self.kind.as_str()
            ),
        );
        params.distinguished_name = dn;
        params.serial_number = Some(self.serial.to_rcgen());
        params.not_before = second_precision(self.not_before);
        params.not_after = second_precision(self.not_after);
        params.is_ca = match self.kind {
            CaKind::Root => IsCa::Ca(BasicConstraints::Unconstrained),
            CaKind::Intermediate => IsCa::Ca(BasicConstraints::Constrained(0)),
        };
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.use_authority_key_identifier_extension = self.kind == CaKind::Intermediate;
        params
    }

    /// Build a self-signed root with `key`.
    pub fn self_signed(&self, key: PrivateKey) -> Result<CaCertificate, Error> {
        if self.kind != CaKind::Root {
            return Err(Error::build("root CA", "only a root is self-signed"));
        }
        let cert = self
            .params(&key)
            .self_signed(key.pair())
            .map_err(|e| Error::build("root CA", e))?;
        CaCertificate::new(cert.der().to_vec(), key)
    }

    /// Build an intermediate for `key`, signed by `parent`.
    pub fn signed_by(&self, key: PrivateKey, parent: &SigningCa) -> Result<CaCertificate, Error> {
        if self.kind != CaKind::Intermediate {
            return Err(Error::build("intermediate CA", "a root is self-signed"));
        }
        let cert = self
            .params(&key)
            .signed_by(key.pair(), &parent.issuer)
            .map_err(|e| Error::build("intermediate CA", e))?;
        CaCertificate::new(cert.der().to_vec(), key)
    }

    /// The root this spec describes, over `key`, signed by another root
    /// (`parent`) instead of by itself: the cross-signed certificate through
    /// which a trusted root vouches for a new one in a root rotation (see
    /// [`crate::accept_bundle`]). DER.
    pub fn cross_signed_by(&self, key: &PrivateKey, parent: &SigningCa) -> Result<Vec<u8>, Error> {
        if self.kind != CaKind::Root {
            return Err(Error::build(
                "cross-signed root",
                "only a root is cross-signed",
            ));
        }
        let mut params = self.params(key);
        // Not self-signed, so RFC 5280 (4.2.1.1) wants the signer's key
        // identifier in it; path builders match it to the trusted root.
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(key.pair(), &parent.issuer)
            .map_err(|e| Error::build("cross-signed root", e))?;
        Ok(cert.der().to_vec())
    }
}

/// A freshly built CA certificate together with its private key.
#[derive(Debug)]
pub struct CaCertificate {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key.
    pub key: PrivateKey,
}

impl CaCertificate {
    fn new(cert_der: Vec<u8>, key: PrivateKey) -> Result<Self, Error> {
        Ok(Self { cert_der, key })
    }

    /// Turn this into a signer.
    pub fn into_signer(self) -> Result<SigningCa, Error> {
        SigningCa::new(self.cert_der, self.key)
    }
}

/// A CA certificate and its private key, ready to sign certificates and CRLs.
pub struct SigningCa {
    pub(crate) issuer: Issuer<'static, crate::key::ZeroizingKeyPair>,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) not_after: OffsetDateTime,
    pub(crate) key_type: KeyType,
    /// The subjectKeyIdentifier: a CRL's authorityKeyIdentifier must equal it.
    pub(crate) ski: Vec<u8>,
}

impl SigningCa {
    /// Pair a CA certificate with its key. The issuer name and key identifier
    /// are read from the certificate, so leaves chain to it byte for byte.
    pub fn new(cert_der: Vec<u8>, key: PrivateKey) -> Result<Self, Error> {
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| Error::parse("CA certificate", e))?;
        if parsed.tbs_certificate.subject_pki.raw != key.public_key().spki_der() {
            return Err(Error::Key(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let not_after = parsed.validity().not_after.to_datetime();
        let ski = parsed
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => {
                    Some(ski.0.to_vec())
                }
                _ => None,
            })
            .ok_or_else(|| Error::parse("CA certificate", "no subjectKeyIdentifier"))?;
        let key_type = key.key_type();
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key.into_pair())
            .map_err(|e| Error::parse("CA certificate", e))?;
        Ok(Self {
            issuer,
            cert_der,
            not_after,
            key_type,
            ski,
        })
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// When the CA certificate expires; nothing it signs may outlive it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The CA key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }
}

impl std::fmt::Debug for SigningCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCa")
            .field("not_after", &self.not_after)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

/// X.509 times have whole seconds; drop the rest so what is recorded equals what is signed.
pub fn second_precision(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}
