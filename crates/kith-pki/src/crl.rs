use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams};
use time::OffsetDateTime;

use crate::ca::second_precision;
use crate::{Error, Serial, SigningCa};

/// Why a certificate was revoked (RFC 5280 §5.3.1), minus the hold states kith does not use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RevocationReason {
    /// No reason given; RFC 5280 says to omit the reasonCode then, and kith does.
    Unspecified,
    /// The private key is known or suspected to be compromised.
    KeyCompromise,
    /// The CA key is compromised.
    CaCompromise,
    /// The subject's affiliation changed.
    AffiliationChanged,
    /// Replaced by a newer certificate.
    Superseded,
    /// The node is gone.
    CessationOfOperation,
    /// Privileges were withdrawn.
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// Every reason, as the CLI lists them.
    pub const ALL: [RevocationReason; 7] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::CaCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key-compromise",
            Self::CaCompromise => "ca-compromise",
            Self::AffiliationChanged => "affiliation-changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation-of-operation",
            Self::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    fn to_rcgen(self) -> Option<rcgen::RevocationReason> {
        use rcgen::RevocationReason as R;
        Some(match self {
            Self::Unspecified => return None,
            Self::KeyCompromise => R::KeyCompromise,
            Self::CaCompromise => R::CaCompromise,
            Self::AffiliationChanged => R::AffiliationChanged,
            Self::Superseded => R::Superseded,
            Self::CessationOfOperation => R::CessationOfOperation,
            Self::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
        })
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevocationReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidName {
                what: "revocation reason",
                value: s.to_string(),
                reason: "expected one of unspecified, key-compromise, ca-compromise, \
                         affiliation-changed, superseded, cessation-of-operation, privilege-withdrawn",
            })
    }
}

/// One CRL entry.
#[derive(Clone, Debug)]
pub struct RevokedEntry {
    /// The revoked certificate's serial.
    pub serial: Serial,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: RevocationReason,
}

/// Parameters of a CRL.
#[derive(Clone, Debug)]
pub struct CrlSpec {
    /// The CRL number: strictly increasing per issuer.
    pub number: u64,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate: when relying parties should fetch a new one.
    pub next_update: OffsetDateTime,
    /// The entries (the caller drops expired certificates).
    pub entries: Vec<RevokedEntry>,
}

impl CrlSpec {
    /// Sign this CRL with `ca`. Returns DER.
    pub fn sign(&self, ca: &SigningCa) -> Result<Vec<u8>, Error> {
        if self.next_update <= self.this_update {
            return Err(Error::build("CRL", "nextUpdate must be after thisUpdate"));
        }
        let params = CertificateRevocationListParams {
            this_update: second_precision(self.this_update),
            next_update: second_precision(self.next_update),
            crl_number: rcgen::SerialNumber::from_slice(&self.number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: self
                .entries
                .iter()
                .map(|e| RevokedCertParams {
                    serial_number: e.serial.to_rcgen(),
                    revocation_time: second_precision(e.revoked_at),
                    reason_code: e.reason.to_rcgen(),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::PreSpecified(ca.ski.clone()),
        };
        let crl = params
            .signed_by(&ca.issuer)
            .map_err(|e| Error::build("CRL", e))?;
        Ok(crl.der().to_vec())
    }
}
