//! What anyone with read access to the store may know, no keys needed:
//! the cluster's public facts and the recorded certificates.

use std::collections::BTreeMap;

use kith_pki::{KeyType, Serial};
use kith_store::Store;
use time::OffsetDateTime;

use crate::error::Error;
use crate::keys;
use crate::records::{from_json, AuthorityRecord, CertRecord, ClusterRecord, RevokedRecord};

/// Public facts about one authority.
#[derive(Clone, Debug)]
pub struct AuthorityInfo {
    /// Name.
    pub name: String,
    /// Key type.
    pub key_type: KeyType,
    /// Root certificate, DER.
    pub root_cert: Vec<u8>,
    /// Intermediate certificate, DER: the active one.
    pub intermediate_cert: Vec<u8>,
    /// The prepared intermediate and the replaced ones still alive, by
    /// generation, DER: leaves they signed chain through them.
    pub other_intermediates: Vec<(u32, Vec<u8>)>,
}

/// What anyone with read access to the store may know: no keys needed.
#[derive(Clone, Debug)]
pub struct ClusterInfo {
    /// Cluster name.
    pub cluster: String,
    /// When it was initialised.
    pub created: OffsetDateTime,
    /// Its authorities, by name.
    pub authorities: Vec<AuthorityInfo>,
}

impl ClusterInfo {
    /// Read the cluster's public facts from `store`.
    pub async fn load(store: &dyn Store) -> Result<Self, Error> {
        let cluster = load_cluster(store).await?;
        let mut authorities = Vec::new();
        for e in store.list(keys::AUTHORITY_PREFIX).await? {
            let r: AuthorityRecord = from_json(&e.key, &e.value)?;
            authorities.push(AuthorityInfo {
                other_intermediates: r
                    .other_intermediates()
                    .map(|o| (o.generation, o.cert.clone()))
                    .collect(),
                name: r.name,
                key_type: r.key_type,
                root_cert: r.root_cert,
                intermediate_cert: r.intermediate_cert,
            });
        }
        Ok(Self {
            cluster: cluster.cluster,
            created: cluster.created,
            authorities,
        })
    }

    /// The named authority.
    pub fn authority(&self, name: &str) -> Result<&AuthorityInfo, Error> {
        self.authorities
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::UnknownAuthority(name.to_string()))
    }

    /// Every root, DER.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.authorities
            .iter()
            .map(|a| a.root_cert.clone())
            .collect()
    }

    /// Every intermediate, DER: the active ones, then the prepared and
    /// replaced ones.
    pub fn intermediates(&self) -> Vec<Vec<u8>> {
        let active = self.authorities.iter().map(|a| a.intermediate_cert.clone());
        let others = self
            .authorities
            .iter()
            .flat_map(|a| a.other_intermediates.iter().map(|(_, c)| c.clone()));
        active.chain(others).collect()
    }
}

/// A recorded certificate and its revocation, if any.
pub async fn find_certificate(
    store: &dyn Store,
    serial: &Serial,
) -> Result<(CertRecord, Option<RevokedRecord>), Error> {
    let key = keys::cert_key(&serial.to_hex());
    let e = store
        .get(&key)
        .await?
        .ok_or_else(|| Error::UnknownCertificate(serial.to_hex()))?;
    let cert: CertRecord = from_json(&key, &e.value)?;
    let rkey = keys::revoked_key(&cert.authority, &cert.serial);
    let revoked = match store.get(&rkey).await? {
        Some(r) => Some(from_json(&rkey, &r.value)?),
        None => None,
    };
    Ok((cert, revoked))
}

/// Every recorded certificate with its revocation, if any, in serial order.
pub async fn list_certificates(
    store: &dyn Store,
) -> Result<Vec<(CertRecord, Option<RevokedRecord>)>, Error> {
    let mut revoked = BTreeMap::new();
    for e in store.list(keys::REVOKED_PREFIX).await? {
        let r: RevokedRecord = from_json(&e.key, &e.value)?;
        revoked.insert(r.serial.clone(), r);
    }
    let mut out = Vec::new();
    for e in store.list(keys::CERT_PREFIX).await? {
        let c: CertRecord = from_json(&e.key, &e.value)?;
        let r = revoked.remove(&c.serial);
        out.push((c, r));
    }
    Ok(out)
}

pub(crate) async fn load_cluster(store: &dyn Store) -> Result<ClusterRecord, Error> {
    let e = store
        .get(keys::CLUSTER_KEY)
        .await?
        .ok_or(Error::NotInitialized)?;
    from_json(keys::CLUSTER_KEY, &e.value)
}
