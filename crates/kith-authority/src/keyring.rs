//! The keyring: what an unlocked authority holds in memory (the cluster
//! record, the master key and the next one during a rotation, and a signer
//! per authority), as one immutable snapshot behind a swap.
//!
//! Another process sharing the store can change any of it (`vault rotate`,
//! `authority add`, `passphrase change`), so nothing here is trusted to stay
//! current: a task watches `cluster/` and `authority/` and rebuilds the
//! snapshot when they change, with a periodic re-read as a safety net; every
//! reader takes the snapshot of the moment (`Authority::keyring`). A rebuild
//! reuses what did not change (a master key of the same version, a signer
//! whose record is the same) and unwraps what is new with the key derived
//! from the passphrase, kept for that purpose.
//!
//! This module is the snapshot and how its keys are unsealed; the task that
//! keeps it current is in `refresh`.

use std::collections::BTreeMap;
use std::sync::Arc;

use kith_pki::{CaKind, PrivateKey, SigningCa};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::keys;
use crate::records::{AuthorityRecord, ClusterRecord, PendingMaster};
use crate::vault::SealKey;

/// One authority's records and its unlocked intermediates.
pub(crate) struct Signer {
    pub(crate) record: AuthorityRecord,
    /// The active intermediate: what issues.
    pub(crate) intermediate: SigningCa,
    /// The prepared and the replaced intermediates, by generation: they
    /// sign CRLs only.
    pub(crate) others: BTreeMap<u32, SigningCa>,
}

impl Signer {
    /// The intermediate of `generation`, active or not.
    pub(crate) fn intermediate_of(&self, generation: u32) -> Option<&SigningCa> {
        if generation == self.record.intermediate_generation {
            return Some(&self.intermediate);
        }
        self.others.get(&generation)
    }
}

/// A snapshot of everything unlocked.
pub(crate) struct Keyring {
    /// Counts rebuilds that changed something: cheap change detection for
    /// readers that cache derived state (the server's client verifier).
    pub(crate) generation: u64,
    pub(crate) cluster: ClusterRecord,
    pub(crate) master: Arc<SealKey>,
    /// The next master key while a rotation is unfinished.
    pub(crate) pending: Option<(u32, Arc<SealKey>)>,
    pub(crate) signers: BTreeMap<String, Arc<Signer>>,
}

impl Keyring {
    /// The master key of `version`: the current one, or the pending one of
    /// an unfinished rotation.
    pub(crate) fn master_for(&self, version: u32) -> Result<Arc<SealKey>, Error> {
        if version == self.cluster.master_version {
            return Ok(self.master.clone());
        }
        match &self.pending {
            Some((v, k)) if *v == version => Ok(k.clone()),
            _ => Err(Error::Integrity(format!(
                "a record is sealed by master key version {version}, which this cluster does not hold"
            ))),
        }
    }

    /// The key new records are sealed under, and its version: the next key
    /// while a rotation runs (so the rotation converges), else the current.
    pub(crate) fn sealing(&self) -> (u32, Arc<SealKey>) {
        match &self.pending {
            Some((v, k)) => (*v, k.clone()),
            None => (self.cluster.master_version, self.master.clone()),
        }
    }

    pub(crate) fn signer(&self, name: &str) -> Result<Arc<Signer>, Error> {
        self.signers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownAuthority(name.to_string()))
    }
}

/// Whether two authority records are the same (keys, certificates, slots,
/// rotation): a signer is reused only then.
pub(crate) fn same_authority(a: &AuthorityRecord, b: &AuthorityRecord) -> bool {
    match (serde_json::to_vec(a), serde_json::to_vec(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Unlock an authority record's intermediate with the keys of `ring`.
pub(crate) fn load_signer(
    ring: &Keyring,
    cluster: &str,
    record: AuthorityRecord,
) -> Result<Arc<Signer>, Error> {
    let key = open_ca_key_with(ring, cluster, &record, CaKind::Intermediate)?;
    let intermediate = SigningCa::new(record.intermediate_cert.clone(), key)?;
    let mut others = BTreeMap::new();
    for o in record.other_intermediates() {
        let aad = ca_key_aad(cluster, &record.name, CaKind::Intermediate, o.key_version);
        let der = ring
            .master_for(record.master_version)?
            .open(&aad, &o.key)
            .ok_or_else(|| {
                Error::Integrity(format!(
                    "the key of intermediate generation {} of authority {:?} does not decrypt",
                    o.generation, record.name
                ))
            })?;
        let key = PrivateKey::from_pkcs8_der(o.key_type.unwrap_or(record.key_type), &der)?;
        others.insert(o.generation, SigningCa::new(o.cert.clone(), key)?);
    }
    Ok(Arc::new(Signer {
        record,
        intermediate,
        others,
    }))
}

/// Associated data of the master key of `version`, wrapped under the
/// passphrase-derived key.
pub(crate) fn master_aad(cluster: &str, version: u32) -> String {
    format!("kith:{cluster}:{}:master:v{version}", keys::CLUSTER_KEY)
}

/// Associated data of a CA key sealed under a master key.
pub(crate) fn ca_key_aad(cluster: &str, authority: &str, kind: CaKind, key_version: u32) -> String {
    format!(
        "kith:{cluster}:{}:{}:v{key_version}",
        keys::authority_key(authority),
        kind.as_str()
    )
}

/// Open a CA key of `record` with the master keys of `ring`.
pub(crate) fn open_ca_key_with(
    ring: &Keyring,
    cluster: &str,
    record: &AuthorityRecord,
    kind: CaKind,
) -> Result<PrivateKey, Error> {
    let sealed = match kind {
        CaKind::Root => &record.root_key,
        CaKind::Intermediate => &record.intermediate_key,
    };
    let aad = ca_key_aad(cluster, &record.name, kind, record.key_version);
    let der = ring
        .master_for(record.master_version)?
        .open(&aad, sealed)
        .ok_or_else(|| {
            Error::Integrity(format!(
                "the {} key of authority {:?} does not decrypt: the record was altered or moved",
                kind.as_str(),
                record.name
            ))
        })?;
    Ok(PrivateKey::from_pkcs8_der(record.key_type, &der)?)
}

/// The next master key of an unfinished rotation, unwrapped with the KEK.
pub(crate) fn unwrap_pending(
    kek: &SealKey,
    cluster: &str,
    pending: &PendingMaster,
) -> Result<SealKey, Error> {
    let raw = kek
        .open(&master_aad(cluster, pending.version), &pending.wrapped)
        .ok_or_else(|| Error::Integrity("the pending master key does not decrypt".into()))?;
    key_from(&raw)
}

pub(crate) fn key_from(raw: &[u8]) -> Result<SealKey, Error> {
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| Error::Integrity("master key has the wrong length".into()))?;
    Ok(SealKey::from_bytes(Zeroizing::new(bytes)))
}
