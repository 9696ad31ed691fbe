use std::fmt;

use crate::Error;

/// A certificate serial number: 128 random bits, so that replicas never
/// coordinate to issue (RFC 5280 allows up to 20 octets; CA/B asks for 64+ random bits).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial([u8; 16]);

impl Serial {
    /// A fresh random serial from the system CSPRNG.
    pub fn random() -> Result<Self, Error> {
        let mut bytes = [0u8; 16];
        // Zero is not a valid serial; with 128 random bits this loop runs once.
        while bytes == [0u8; 16] {
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| Error::Key("system RNG failed".into()))?;
        }
        Ok(Self(bytes))
    }

    /// From the 16 raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Lowercase hex, 32 characters: the form used in store keys and the CLI.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse hex (case-insensitive, `:` separators allowed, leading zero
    /// octets as openssl prints them tolerated).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let cleaned: String = s.chars().filter(|c| *c != ':').collect();
        let raw = hex::decode(cleaned.trim()).map_err(|e| Error::parse("serial number", e))?;
        Self::from_der_integer(&raw)
    }

    /// From the big-endian content octets of a DER INTEGER (as x509-parser
    /// gives them): leading zero octets are dropped, and the value must fit 128 bits.
    pub fn from_der_integer(raw: &[u8]) -> Result<Self, Error> {
        let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let digits = &raw[start..];
        if digits.len() > 16 {
            return Err(Error::parse(
                "serial number",
                "longer than 128 bits: not issued by kith",
            ));
        }
        let mut bytes = [0u8; 16];
        bytes[16 - digits.len()..].copy_from_slice(digits);
        Ok(Self(bytes))
    }

    pub(crate) fn to_rcgen(self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_map_to_the_canonical_32_digits() {
        // A high first bit makes DER add a 0x00 sign octet; a low first octet is kept.
        let mut signed = vec![0u8];
        signed.extend_from_slice(&[0xf5; 16]);
        assert_eq!(
            Serial::from_der_integer(&signed).unwrap().to_hex(),
            "f5".repeat(16)
        );
        let short = [0x0e; 15];
        assert_eq!(
            Serial::from_der_integer(&short).unwrap().to_hex(),
            format!("00{}", "0e".repeat(15))
        );
        assert!(Serial::from_der_integer(&[1u8; 17]).is_err());
        assert_eq!(
            Serial::parse("00:F5").unwrap(),
            Serial::parse("f5").unwrap()
        );
    }
}
