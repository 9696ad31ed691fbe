use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use zeroize::Zeroizing;

use crate::Error;

/// The key algorithms kith generates, for CAs and leaves alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256: the default (fast, universally supported).
    P256,
    /// ECDSA on NIST P-384 with SHA-384.
    P384,
    /// ECDSA on NIST P-521 with SHA-512.
    P521,
    /// Ed25519.
    Ed25519,
    /// RSA 2048, PKCS#1 v1.5 with SHA-256.
    Rsa2048,
    /// RSA 3072, PKCS#1 v1.5 with SHA-256.
    Rsa3072,
    /// RSA 4096, PKCS#1 v1.5 with SHA-256.
    Rsa4096,
}

impl KeyType {
    /// Every key type, in the order the CLI lists them.
    pub const ALL: [KeyType; 7] = [
        KeyType::P256,
        KeyType::P384,
        KeyType::P521,
        KeyType::Ed25519,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
    ];

    /// The CLI/config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::P384 => "p384",
            Self::P521 => "p521",
            Self::Ed25519 => "ed25519",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
        }
    }

    /// Whether this is an RSA key type (RSA leaves also get keyEncipherment).
    pub fn is_rsa(self) -> bool {
        matches!(self, Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096)
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            Self::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Self::P521 => &rcgen::PKCS_ECDSA_P521_SHA512,
            Self::Ed25519 => &rcgen::PKCS_ED25519,
            Self::Rsa2048 | Self::Rsa3072 | Self::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::InvalidName {
                what: "key type",
                value: s.to_string(),
                reason: "expected one of p256, p384, p521, ed25519, rsa2048, rsa3072, rsa4096",
            })
    }
}

/// A private key. Its PKCS#8 bytes are zeroized on drop, and `Debug` never
/// prints them.
pub struct PrivateKey {
    pair: ZeroizingKeyPair,
    key_type: KeyType,
}

/// An rcgen [`KeyPair`] that wipes its PKCS#8 copy when dropped. rcgen's
/// `zeroize` feature implements `Zeroize` but no `Drop`, so without this the
/// bytes would outlive the key; CA keys live inside an rcgen `Issuer`, which
/// is why this wrapper implements rcgen's signing traits by delegation.
pub(crate) struct ZeroizingKeyPair(KeyPair);

impl Drop for ZeroizingKeyPair {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl rcgen::PublicKeyData for ZeroizingKeyPair {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        rcgen::PublicKeyData::algorithm(&self.0)
    }
}

impl rcgen::SigningKey for ZeroizingKeyPair {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}

impl PrivateKey {
    /// Generate a fresh key of the given type.
    pub fn generate(key_type: KeyType) -> Result<Self, Error> {
        let pair = match key_type {
            KeyType::Rsa2048 => {
                KeyPair::generate_rsa_for(key_type.algorithm(), rcgen::RsaKeySize::_2048)
            }
            KeyType::Rsa3072 => {
                KeyPair::generate_rsa_for(key_type.algorithm(), rcgen::RsaKeySize::_3072)
            }
            KeyType::Rsa4096 => {
                KeyPair::generate_rsa_for(key_type.algorithm(), rcgen::RsaKeySize::_4096)
            }
            _ => KeyPair::generate_for(key_type.algorithm()),
        }
        .map_err(|e| Error::Key(format!("cannot generate {key_type} key: {e}")))?;
        Ok(Self {
            pair: ZeroizingKeyPair(pair),
            key_type,
        })
    }

    /// Load a PKCS#8 DER private key of a known type.
    pub fn from_pkcs8_der(key_type: KeyType, der: &[u8]) -> Result<Self, Error> {
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der);
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, key_type.algorithm())
            .map_err(|e| Error::Key(format!("cannot load {key_type} key: {e}")))?;
        Ok(Self {
            pair: ZeroizingKeyPair(pair),
            key_type,
        })
    }

    /// The key's type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// PKCS#8 DER, in memory that is zeroized when dropped.
    pub fn pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.pair.0.serialized_der().to_vec())
    }

    /// PKCS#8 PEM (`PRIVATE KEY`), in memory that is zeroized when dropped.
    pub fn pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.pair.0.serialize_pem())
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            spki_der: self.pair.0.subject_public_key_info(),
        }
    }

    /// PKCS#8 `ENCRYPTED PRIVATE KEY` PEM under `passphrase`: PBES2 with
    /// PBKDF2-HMAC-SHA256 (600,000 iterations) and AES-256-CBC, which
    /// `openssl pkey -passin` reads.
    pub fn to_encrypted_pkcs8_pem(&self, passphrase: &[u8]) -> Result<Zeroizing<String>, Error> {
        use pkcs8::der::pem::LineEnding;
        let mut salt = [0u8; 16];
        let mut iv = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| Error::Key("system RNG failed".into()))?;
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| Error::Key("system RNG failed".into()))?;
        let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(600_000, &salt, &iv)
            .map_err(|e| Error::Key(format!("PBES2 parameters: {e}")))?;
        let mut info = pkcs8::PrivateKeyInfo::try_from(self.pair.0.serialized_der())
            .map_err(|e| Error::Key(format!("PKCS#8: {e}")))?;
        // aws-lc writes Ed25519 keys as PKCS#8 v2 (with the public key), which
        // OpenSSL 3.0 refuses once encrypted; v1 carries all that is needed.
        info.public_key = None;
        let doc = info
            .encrypt_with_params(params, passphrase)
            .map_err(|e| Error::Key(format!("PKCS#8 encryption: {e}")))?;
        let pem = doc
            .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
            .map_err(|e| Error::Key(format!("PEM: {e}")))?;
        Ok(Zeroizing::new(pem.to_string()))
    }

    pub(crate) fn pair(&self) -> &ZeroizingKeyPair {
        &self.pair
    }

    pub(crate) fn into_pair(self) -> ZeroizingKeyPair {
        self.pair
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

/// A public key as a DER SubjectPublicKeyInfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    spki_der: Vec<u8>,
}

impl PublicKey {
    /// Wrap DER SubjectPublicKeyInfo bytes (checked when a certificate is built).
    pub fn from_spki_der(spki_der: Vec<u8>) -> Self {
        Self { spki_der }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Whether this is an RSA key.
    pub fn is_rsa(&self) -> bool {
        use x509_parser::prelude::FromDer;
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&self.spki_der)
            .map(|(_, spki)| {
                spki.algorithm.algorithm == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
            })
            .unwrap_or(false)
    }

    /// Key identifier per RFC 7093 §2 method 1: the leftmost 160 bits of the
    /// SHA-256 of the subjectPublicKey bits (pkilint recognises it; rcgen's
    /// default hashes the whole SPKI, which no RFC names).
    pub(crate) fn key_identifier(&self) -> Vec<u8> {
        use x509_parser::prelude::FromDer;
        let bits = x509_parser::x509::SubjectPublicKeyInfo::from_der(&self.spki_der)
            .map(|(_, spki)| spki.subject_public_key.data.to_vec())
            .unwrap_or_else(|_| self.spki_der.clone());
        crate::sha256(&bits)[..20].to_vec()
    }

    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SubjectPublicKeyInfo, Error> {
        rcgen::SubjectPublicKeyInfo::from_der(&self.spki_der)
            .map_err(|e| Error::build("certificate", format!("unsupported public key: {e}")))
    }
}
