//! Which peers a node accepts ([`PeerPolicy`]), and the one crypto
//! provider every rustls configuration of the agent uses. A leaf: the
//! verifiers (`verify`) and the configurations (`tls`) both build on it.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::CertificateError;

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Which peers to accept beyond "holds a valid, unrevoked certificate of
/// this cluster".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Only this node name (from the certificate's SPIFFE ID).
    pub node: Option<String>,
    /// Only this role (from the certificate's SPIFFE ID).
    pub role: Option<String>,
}

impl PeerPolicy {
    /// Accept any node of the cluster.
    pub fn any() -> Self {
        Self::default()
    }

    pub(crate) fn check(&self, der: &[u8]) -> Result<(), rustls::Error> {
        if self.node.is_none() && self.role.is_none() {
            return Ok(());
        }
        let refused = |why: String| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(PolicyRefusal(why)),
            )))
        };
        let info = match kith_pki::inspect(der) {
            Ok(mut v) if v.len() == 1 => match v.remove(0) {
                kith_pki::Inspected::Certificate(info) => info,
                _ => return Err(refused("not a certificate".into())),
            },
            _ => return Err(refused("unparsable certificate".into())),
        };
        // The node's identity is its SPIFFE ID, spiffe://<cluster>/<role>/<node>:
        // an operator's or a server's certificate (spiffe://<cluster>/kith/...)
        // is never a node, whatever its common name says.
        let id = info.sans.iter().find_map(|s| {
            let path = s.strip_prefix("URI:spiffe://")?.split_once('/')?.1;
            let (role, node) = path.split_once('/')?;
            (role != kith_pki::RESERVED_ROLE && !node.contains('/')).then_some((role, node))
        });
        let Some((role, node)) = id else {
            return Err(refused("the certificate carries no node identity".into()));
        };
        if let Some(n) = &self.node {
            if node != n {
                return Err(refused(format!("peer is node {node:?}, expected {n:?}")));
            }
        }
        if let Some(r) = &self.role {
            if role != r {
                return Err(refused(format!("peer has role {role:?}, expected {r:?}")));
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct PolicyRefusal(String);

impl std::fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer refused by policy: {}", self.0)
    }
}

impl std::error::Error for PolicyRefusal {}
