//! The node side of kith.
//!
//! - [`join`]: one token in, a node directory out (key generated here,
//!   server verified against the token's pin before anything is sent);
//! - [`renew`], [`refresh`] and the [`agent`] loop that keeps the directory
//!   fresh forever;
//! - [`TlsWatch`], [`server_config`], [`client_config`]: rustls
//!   configurations for a Rust service, verified against the cluster roots
//!   and CRL, that pick up renewed certificates and new CRLs without a
//!   restart.
//!
//! It speaks to the server only through the wire types of `kith-api`; it
//! never touches the authority or the store.

pub mod agent;
mod client;
mod error;
pub mod metrics;
mod node;
mod policy;
mod revoked;
pub mod secrets;
mod tls;
mod verify;

pub use client::{Connection, ServerAddr, CONNECT_TIMEOUT, DEFAULT_PORT};
pub use error::Error;
pub use kith_nodedir::NodeIdentity;
pub use node::{
    connect, connect_to, default_node_name, interface_addresses, join, profile_files, refresh,
    refresh_roots, renew, JoinOptions,
};
pub use policy::PeerPolicy;
pub use tls::{client_config, server_config, TlsWatch};

/// A client configuration that presents the certificate of node directory
/// `dir` and trusts its roots: for talking to the kith server's API (the
/// operator credential made by `kith init` is such a directory).
pub fn api_client_config(
    dir: &std::path::Path,
) -> Result<std::sync::Arc<rustls::ClientConfig>, Error> {
    tls::server_api_config(dir)
}
