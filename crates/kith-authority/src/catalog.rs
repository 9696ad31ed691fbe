//! Read-only questions an operator asks: node listings, status totals,
//! tokens and secrets. The views are built here, as plain structs, so that
//! the server and the CLI only format them and never walk the store.

use std::collections::BTreeMap;

use kith_pki::Profile;
use time::OffsetDateTime;

use crate::{
    list_certificates, list_nodes, list_secrets, list_tokens, stored_crl, Authority, CertRecord,
    ClusterInfo, Error, NodeState, RevokedRecord, SecretRecord, TokenRecord,
};

/// One node as an operator lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeView {
    /// Name (DNS label).
    pub name: String,
    /// Role.
    pub role: String,
    /// Where it stands now.
    pub state: NodeState,
    /// Serial of the certificate of its first profile (the node's
    /// `cert.pem`); empty if it holds none.
    pub serial: String,
    /// Profiles granted at join.
    pub profiles: Vec<Profile>,
    /// Expiry of its current certificates.
    pub not_after: OffsetDateTime,
    /// When it joined.
    pub joined: OffsetDateTime,
    /// Its last join or renewal.
    pub last_renewal: OffsetDateTime,
}

/// One authority (CA hierarchy) in the status view.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthorityStatusView {
    /// Authority name.
    pub name: String,
    /// Expiry of its root.
    pub root_not_after: OffsetDateTime,
    /// Expiry of its intermediate.
    pub intermediate_not_after: OffsetDateTime,
    /// Number of its stored CRL (0: none signed yet).
    pub crl_number: u64,
    /// Entries in its stored CRL.
    pub crl_entries: usize,
}

/// The cluster at a glance.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatusView {
    /// Cluster name.
    pub cluster: String,
    /// The time every state below was judged at.
    pub now: OffsetDateTime,
    /// Each authority, in name order.
    pub authorities: Vec<AuthorityStatusView>,
    /// Nodes per state (`active`, `expired`, ...), in state-name order.
    pub nodes: BTreeMap<&'static str, usize>,
    /// Tokens per state (`active`, `used-up`, ...), in state-name order.
    pub tokens: BTreeMap<&'static str, usize>,
}

impl Authority {
    /// Every node with its state as of now, in name order.
    pub async fn node_views(&self) -> Result<Vec<NodeView>, Error> {
        let nodes = list_nodes(&**self.store(), self.now()).await?;
        Ok(nodes
            .into_iter()
            .map(|(n, state)| NodeView {
                serial: n
                    .profiles
                    .first()
                    .and_then(|p| n.serials.get(p))
                    .cloned()
                    .unwrap_or_default(),
                name: n.name,
                role: n.role,
                state,
                profiles: n.profiles,
                not_after: n.not_after,
                joined: n.joined,
                last_renewal: n.last_renewal,
            })
            .collect())
    }

    /// The authorities' expiry dates and CRLs, and nodes and tokens counted
    /// by state, all as of one instant.
    pub async fn status_view(&self) -> Result<StatusView, Error> {
        let store = &**self.store();
        let now = self.now();
        let mut authorities = Vec::new();
        for name in self.authority_names() {
            let (_, root_not_after) = kith_pki::certificate_validity(&self.root_cert(&name)?)?;
            let (_, intermediate_not_after) =
                kith_pki::certificate_validity(&self.intermediate_cert(&name)?)?;
            let crl = stored_crl(store, &name).await?;
            authorities.push(AuthorityStatusView {
                root_not_after,
                intermediate_not_after,
                crl_number: crl.as_ref().map_or(0, |c| c.number),
                crl_entries: crl.as_ref().map_or(0, |c| c.entries),
                name,
            });
        }
        let mut nodes = BTreeMap::new();
        for (_, state) in list_nodes(store, now).await? {
            *nodes.entry(state.as_str()).or_default() += 1;
        }
        let mut tokens = BTreeMap::new();
        for t in list_tokens(store).await? {
            *tokens.entry(t.state(now)).or_default() += 1;
        }
        Ok(StatusView {
            cluster: self.cluster().to_string(),
            now,
            authorities,
            nodes,
            tokens,
        })
    }

    /// The cluster's public facts (`kith ca show`).
    pub async fn cluster_info(&self) -> Result<ClusterInfo, Error> {
        ClusterInfo::load(&**self.store()).await
    }

    /// Every recorded certificate with its revocation, if any, in serial
    /// order (`kith cert ls`).
    pub async fn certificates(&self) -> Result<Vec<(CertRecord, Option<RevokedRecord>)>, Error> {
        list_certificates(&**self.store()).await
    }

    /// Every token, in id order (no secrets: only their hashes are stored).
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        list_tokens(&**self.store()).await
    }

    /// Every secret's metadata (no values), in name order.
    pub async fn secrets(&self) -> Result<Vec<SecretRecord>, Error> {
        list_secrets(&**self.store()).await
    }

    /// The number of each named authority's stored CRL, for those that
    /// have one; the names are sorted and deduplicated first.
    pub async fn crl_numbers(&self, names: &[&str]) -> Vec<(String, u64)> {
        let mut names: Vec<&str> = names.to_vec();
        names.sort_unstable();
        names.dedup();
        let mut out = Vec::new();
        for n in names {
            if let Ok(Some(c)) = stored_crl(&**self.store(), n).await {
                out.push((n.to_string(), c.number));
            }
        }
        out
    }
}
