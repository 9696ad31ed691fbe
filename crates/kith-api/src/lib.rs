//! Wire types of kith, defined once and shared by the server and the agent.
//!
//! So far: the join token, `KITH1-<pin>-<id>.<secret>`, which carries
//! everything a node needs to join: the SHA-256 pin of the cluster root's
//! SubjectPublicKeyInfo (so the node can authenticate the server before
//! sending anything), the token's id (to find its record) and its secret
//! (of which the server keeps only a hash).

mod token;

pub use token::{JoinToken, TokenId, TokenParseError, TOKEN_PREFIX};
