use std::fmt;

use zeroize::Zeroizing;

/// The version prefix of every join token.
pub const TOKEN_PREFIX: &str = "KITH1";

const PIN_HEX: usize = 64;
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;
/// `KITH1-` + pin + `-` + id + `.` + secret.
const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 1 + PIN_HEX + 1 + ID_HEX + 1 + SECRET_HEX;

/// A token id: 64 random bits, public (it names the token's record and
/// appears in `token ls`), lowercase hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId([u8; 8]);

impl TokenId {
    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// Lowercase hex, 16 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parse 16 hex digits.
    pub fn parse(s: &str) -> Result<Self, TokenParseError> {
        let mut b = [0u8; 8];
        if s.len() != ID_HEX || hex::decode_to_slice(s, &mut b).is_err() {
            return Err(TokenParseError("the token id must be 16 hex digits"));
        }
        Ok(Self(b))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({})", self.to_hex())
    }
}

/// A join token. The secret is zeroized on drop and never printed by `Debug`.
#[derive(Clone)]
pub struct JoinToken {
    /// SHA-256 of the cluster root's SubjectPublicKeyInfo.
    pub pin: [u8; 32],
    /// The token's id.
    pub id: TokenId,
    /// The secret (256 random bits).
    pub secret: Zeroizing<[u8; 32]>,
}

/// Why a string is not a join token. Deliberately vague about the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed join token: {0}")]
pub struct TokenParseError(&'static str);

impl TokenParseError {
    /// The stable error code.
    pub fn code(&self) -> crate::ErrorCode {
        crate::ErrorCode::MalformedToken
    }
}

impl JoinToken {
    /// Parse `KITH1-<64 hex pin>-<16 hex id>.<64 hex secret>` (surrounding
    /// whitespace allowed, hex case-insensitive).
    pub fn parse(input: &str) -> Result<Self, TokenParseError> {
        let s = input.trim();
        // Byte offsets below are only character boundaries in ASCII.
        if !s.is_ascii() {
            return Err(TokenParseError("only ASCII characters belong in a token"));
        }
        if s.len() != TOKEN_LEN {
            return Err(TokenParseError(
                "wrong length (expected KITH1-<pin>-<id>.<secret>)",
            ));
        }
        let rest = s
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|r| r.strip_prefix('-'))
            .ok_or(TokenParseError("it must start with KITH1-"))?;
        let (pin_hex, rest) = rest.split_at(PIN_HEX);
        let rest = rest
            .strip_prefix('-')
            .ok_or(TokenParseError("expected '-' after the pin"))?;
        let (id_hex, rest) = rest.split_at(ID_HEX);
        let secret_hex = rest
            .strip_prefix('.')
            .ok_or(TokenParseError("expected '.' after the id"))?;
        let mut pin = [0u8; 32];
        hex::decode_to_slice(pin_hex, &mut pin)
            .map_err(|_| TokenParseError("the pin must be 64 hex digits"))?;
        let id = TokenId::parse(&id_hex.to_ascii_lowercase())?;
        let mut secret = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(secret_hex, secret.as_mut())
            .map_err(|_| TokenParseError("the secret must be 64 hex digits"))?;
        Ok(Self { pin, id, secret })
    }

    /// The token as the operator hands it to a node. Zeroized when dropped.
    pub fn encode(&self) -> Zeroizing<String> {
        let secret = Zeroizing::new(hex::encode(self.secret.as_ref()));
        Zeroizing::new(format!(
            "{TOKEN_PREFIX}-{}-{}.{}",
            hex::encode(self.pin),
            self.id.to_hex(),
            secret.as_str()
        ))
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("pin", &hex::encode(self.pin))
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinToken {
        JoinToken {
            pin: [0xab; 32],
            id: TokenId::from_bytes([1, 2, 3, 4, 5, 6, 7, 8]),
            secret: Zeroizing::new([0x5c; 32]),
        }
    }

    #[test]
    fn round_trip_and_redacted_debug() {
        let t = sample();
        let s = t.encode();
        assert!(s.starts_with("KITH1-abab"));
        let back = JoinToken::parse(&format!("  {}\n", s.as_str())).unwrap();
        assert_eq!((back.pin, back.id, *back.secret), (t.pin, t.id, *t.secret));
        let upper = JoinToken::parse(&s.to_ascii_uppercase()).unwrap();
        assert_eq!(upper.id, t.id);
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("5c5c"), "{dbg}");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = sample().encode().to_string();
        let mut cases = vec![
            String::new(),
            "KITH1".into(),
            good.replacen("KITH1", "KITH2", 1),
            good.replacen('.', "-", 1),
            good[..good.len() - 1].to_string(),
            format!("{good}0"),
            good.replacen("abab", "zzzz", 1),
        ];
        let mut bad_secret = good.clone();
        bad_secret.replace_range(good.len() - 2.., "xy");
        cases.push(bad_secret);
        let mut bad_id = good.clone();
        bad_id.replace_range(72..74, "g0");
        cases.push(bad_id);
        // The right length in bytes, with a multi-byte character where the
        // parser splits (found by the fuzzer: it used to panic).
        let mut multibyte = good.clone();
        multibyte.replace_range(69..71, "é");
        assert_eq!(multibyte.len(), good.len());
        cases.push(multibyte);
        for c in cases {
            let e = JoinToken::parse(&c).unwrap_err();
            assert_eq!(e.code(), "malformed-token", "{c:?}");
        }
    }
}
