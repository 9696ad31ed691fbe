//! Wire types of kith, defined once and shared by the server and the agent.
//!
//! - the join token, `KITH1-<pin>-<id>.<secret>`, which carries everything a
//!   node needs to join: the SHA-256 pin of the cluster root's
//!   SubjectPublicKeyInfo (so the node can authenticate the server before
//!   sending anything), the token's id (to find its record) and its secret
//!   (of which the server keeps only a hash);
//! - the JSON bodies of the `/v1` HTTP API ([`wire`]).

mod token;
pub mod wire;

pub use token::{JoinToken, TokenId, TokenParseError, TOKEN_PREFIX};

/// Media type of every JSON request and answer.
pub const JSON: &str = "application/json";
/// Media type of a DER CRL.
pub const PKIX_CRL: &str = "application/pkix-crl";
