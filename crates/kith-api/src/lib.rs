//! Wire types of kith, defined once and shared by the server and the agent.
//!
//! - the join token, `KITH1-<pin>-<id>.<secret>`, which carries everything a
//!   node needs to join: the SHA-256 pin of the cluster root's
//!   SubjectPublicKeyInfo (so the node can authenticate the server before
//!   sending anything), the token's id (to find its record) and its secret
//!   (of which the server keeps only a hash);
//! - the JSON bodies of the `/v1` HTTP API ([`wire`]);
//! - every stable error code ([`ErrorCode`]), with what it means.
//! - the TLS server names by which a node asks for its authority's chain
//!   ([`authority_sni`], [`pin_sni`], [`parse_sni`]).
//! - the roots a node reports it trusts ([`trusts_query`], [`parse_trusts`]).

mod code;
mod sni;
mod token;
mod trust;
pub mod wire;

pub use code::{ErrorCode, UnknownErrorCode, WireCode};
pub use sni::{
    authority_sni, parse_sni, pin_sni, SniSelector, AUTHORITY_SNI_SUFFIX, PIN_SNI_HEX,
    PIN_SNI_SUFFIX,
};
pub use token::{JoinToken, TokenId, TokenParseError, TOKEN_PREFIX};
pub use trust::{parse_trusts, trusts_query, MAX_TRUSTS, TRUSTS_PARAM};

/// Media type of every JSON request and answer.
pub const JSON: &str = "application/json";
/// Media type of a DER CRL.
pub const PKIX_CRL: &str = "application/pkix-crl";

/// Longest secret name.
pub const MAX_SECRET_NAME: usize = 128;

/// Check a secret name: 1–128 of `[A-Za-z0-9_-]`, starting with a letter or
/// digit. The same rule on both sides of the wire; it also makes a name
/// safe as a file name in the agent's secrets directory.
pub fn validate_secret_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid secret name {name:?}: use 1 to {MAX_SECRET_NAME} letters, digits, '-' or '_', starting with a letter or digit"
        ))
    }
}
