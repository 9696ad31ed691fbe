use rcgen::{CertificateParams, DistinguishedName, DnType, SanType};
use time::{Duration, OffsetDateTime};

use crate::ca::second_precision;
use crate::{fingerprint, Error, Namespace, Profile, PublicKey, San, Serial, SigningCa};

/// How far into the past a leaf's validity starts, for peers whose clocks lag.
pub const DEFAULT_BACKDATE: Duration = Duration::minutes(5);
/// Most SANs in one leaf, the two every leaf carries included.
pub const MAX_SANS: usize = 64;
/// Most bytes of SAN values in one leaf (the sum of each name's length).
pub const MAX_SAN_BYTES: usize = 8 * 1024;

/// The length of a SAN's value as it is encoded (an IP is 4 or 16 bytes).
pub(crate) fn san_len(san: &San) -> usize {
    match san {
        San::Dns(d) => d.len(),
        San::Uri(u) => u.len(),
        San::Ip(std::net::IpAddr::V4(_)) => 4,
        San::Ip(std::net::IpAddr::V6(_)) => 16,
    }
}

/// Everything the CA decides about a leaf. The subject is always
/// `O=<cluster>, OU=<role>, CN=<node>`, with the SANs `<node>.<cluster>` and
/// the SPIFFE ID of the holder's name space (`spiffe://<cluster>/<role>/<node>`
/// for nodes), plus `extra_sans` that policy approved.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    /// Cluster (trust domain) name.
    pub cluster: String,
    /// Whose name space the holder is in (node, operator, server).
    pub namespace: Namespace,
    /// Node name (a DNS label).
    pub node: String,
    /// Role (a DNS label).
    pub role: String,
    /// Profile.
    pub profile: Profile,
    /// Additional SANs, already approved.
    pub extra_sans: Vec<San>,
    /// Requested lifetime, counted from `now`.
    pub ttl: Duration,
    /// Serial number.
    pub serial: Serial,
    /// CRL distribution point URLs to embed (none for offline issuance).
    pub crl_urls: Vec<String>,
}

/// A signed leaf and the facts a caller records about it.
#[derive(Clone, Debug)]
pub struct IssuedLeaf {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial number.
    pub serial: Serial,
    /// Start of validity (backdated).
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// True when the requested lifetime was cut to the issuer's expiry.
    pub truncated: bool,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    /// Every SAN in the certificate.
    pub sans: Vec<San>,
}

impl LeafSpec {
    /// The SANs every leaf carries, then the approved extras, without duplicates.
    pub fn all_sans(&self) -> Vec<San> {
        let mut sans = vec![
            San::Dns(format!("{}.{}", self.node, self.cluster)),
            San::Uri(
                self.namespace
                    .spiffe_id(&self.cluster, &self.role, &self.node),
            ),
        ];
        for san in &self.extra_sans {
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        sans
    }

    /// Sign a leaf for `public_key` with `ca` at time `now`.
    pub fn sign(
        &self,
        public_key: &PublicKey,
        ca: &SigningCa,
        now: OffsetDateTime,
    ) -> Result<IssuedLeaf, Error> {
        crate::validate_holder(self.namespace, &self.node, &self.role)?;
        if self.ttl <= Duration::ZERO {
            return Err(Error::build("certificate", "lifetime must be positive"));
        }
        let subject_key = public_key.to_rcgen()?;
        let rsa = public_key.is_rsa();

        // Backdated for clock skew, but by at most a fifth of a short
        // lifetime: a one-minute leaf backdated five minutes would be past
        // two thirds of its validity (when agents renew) the moment it is
        // issued.
        let not_before = second_precision(now - DEFAULT_BACKDATE.min(self.ttl / 5));
        // A lifetime past what a date can hold is past the CA's too: truncated.
        let (not_after, truncated) = match now.checked_add(self.ttl).map(second_precision) {
            Some(wanted) if wanted <= ca.not_after => (wanted, false),
            _ => (ca.not_after, true),
        };
        if not_after <= now {
            return Err(Error::build("certificate", "the issuing CA has expired"));
        }

        // The CA chooses the one URI a leaf carries; policy never approves others.
        if self.extra_sans.iter().any(|s| matches!(s, San::Uri(_))) {
            return Err(Error::build(
                "certificate",
                "URI SANs are chosen by the CA, not asked for",
            ));
        }
        let sans = self.all_sans();
        let bytes: usize = sans.iter().map(san_len).sum();
        if sans.len() > MAX_SANS || bytes > MAX_SAN_BYTES {
            return Err(Error::build(
                "certificate",
                format!(
                    "{} SANs of {bytes} bytes: at most {MAX_SANS} SANs and {MAX_SAN_BYTES} bytes",
                    sans.len()
                ),
            ));
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.cluster.as_str());
        dn.push(DnType::OrganizationalUnitName, self.role.as_str());
        dn.push(DnType::CommonName, self.node.as_str());
        params.distinguished_name = dn;
        params.serial_number = Some(self.serial.to_rcgen());
        params.not_before = not_before;
        params.not_after = not_after;
        params.subject_alt_names = sans.iter().map(to_rcgen_san).collect::<Result<_, _>>()?;
        params.key_usages = self.profile.key_usages(rsa);
        params.extended_key_usages = self.profile.extended_key_usages();
        params.use_authority_key_identifier_extension = true;
        // ExplicitNoCa makes rcgen write basicConstraints CA:FALSE and a
        // subjectKeyIdentifier (RFC 5280 §4.2.1.2 SHOULD for end entities).
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_identifier_method =
            rcgen::KeyIdMethod::PreSpecified(public_key.key_identifier());
        params.crl_distribution_points = if self.crl_urls.is_empty() {
            Vec::new()
        } else {
            vec![rcgen::CrlDistributionPoint {
                uris: self.crl_urls.clone(),
            }]
        };
        let cert = params
            .signed_by(&subject_key, &ca.issuer)
            .map_err(|e| Error::build("certificate", e))?;
        let der = cert.der().to_vec();
        Ok(IssuedLeaf {
            fingerprint: fingerprint(&der),
            der,
            serial: self.serial,
            not_before,
            not_after,
            truncated,
            sans,
        })
    }
}

fn to_rcgen_san(san: &San) -> Result<SanType, Error> {
    let ia5 = |s: &str| {
        s.to_string().try_into().map_err(|_| Error::InvalidName {
            what: "SAN",
            value: s.to_string(),
            reason: "not an IA5 (ASCII) string",
        })
    };
    Ok(match san {
        San::Dns(d) => SanType::DnsName(ia5(d)?),
        San::Ip(ip) => SanType::IpAddress(*ip),
        San::Uri(u) => SanType::URI(ia5(u)?),
    })
}
