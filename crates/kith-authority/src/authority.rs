//! The [`Authority`] handle: what an unlocked authority holds (the store,
//! the clock, the keyring snapshot, the passphrase-derived key, the refusal
//! counters, the settings) and the questions answered from it alone. Every
//! operation is an `impl Authority` block in the module of its concern.

use std::sync::Arc;

use kith_pki::{CaKind, PrivateKey};
use kith_store::Store;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::error::Error;
use crate::keyring::{open_ca_key_with, Keyring, Signer};
use crate::records::AuthorityRecord;
use crate::refusals::RefusalLimiter;
use crate::vault::{check_passphrase_strength, SealKey};
use crate::Settings;

/// What every clone of an [`Authority`] shares.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The cluster's name: fixed at `init`.
    pub(crate) cluster_name: String,
    /// The passphrase-derived key, to unwrap master keys another process
    /// rotates in (replaced by a passphrase change made here).
    pub(crate) kek: std::sync::Mutex<SealKey>,
    /// Everything unlocked, rebuilt when the store says it changed.
    pub(crate) keyring: std::sync::RwLock<Arc<Keyring>>,
    /// One keyring rebuild at a time.
    pub(crate) refreshing: tokio::sync::Mutex<()>,
    /// The task that keeps the keyring current, and the signal that stops
    /// it between two reloads (see `Authority::close`).
    pub(crate) keyring_task:
        std::sync::Mutex<Option<(tokio::task::JoinHandle<()>, Arc<tokio::sync::Notify>)>>,
    /// Set while the store holds a master key this process cannot unwrap:
    /// it must not seal anything until it is restarted with the passphrase.
    pub(crate) keyring_behind: std::sync::atomic::AtomicBool,
    /// Refusals per identity, so that they cannot flood the audit trail.
    pub(crate) refusals: RefusalLimiter,
    pub(crate) settings: Settings,
    /// This process's audit chain.
    pub(crate) audit: crate::audit_state::AuditState,
}

/// An unlocked certificate authority. Cheap to clone; share it across tasks.
#[derive(Clone)]
pub struct Authority {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("cluster", &self.inner.cluster_name)
            .finish_non_exhaustive()
    }
}

impl Authority {
    pub(crate) fn assemble(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ring: Keyring,
        kek: SealKey,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                cluster_name: ring.cluster.cluster.clone(),
                kek: std::sync::Mutex::new(kek),
                keyring: std::sync::RwLock::new(Arc::new(ring)),
                refreshing: tokio::sync::Mutex::new(()),
                keyring_task: std::sync::Mutex::new(None),
                keyring_behind: std::sync::atomic::AtomicBool::new(false),
                refusals: RefusalLimiter::new(settings.audit_limits.clone()),
                audit: crate::audit_state::AuditState::new(settings.audit_writer.as_deref()),
                settings,
            }),
        }
    }

    /// Counts keyring changes (an authority added, the master key rotated):
    /// for callers that cache what they derive from [`Authority::roots`].
    pub fn keyring_generation(&self) -> u64 {
        self.keyring().generation
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster_name
    }

    /// The store this authority writes to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The current time of the injected clock.
    pub fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn inner_master_version(&self) -> u32 {
        self.keyring().cluster.master_version
    }

    /// The master key of `version`: the current one, or the pending one of
    /// an unfinished rotation.
    pub(crate) fn master_for(&self, version: u32) -> Result<Arc<SealKey>, Error> {
        self.keyring().master_for(version)
    }

    pub(crate) fn open_ca_key(
        &self,
        record: &AuthorityRecord,
        kind: CaKind,
    ) -> Result<PrivateKey, Error> {
        open_ca_key_with(&self.keyring(), self.cluster(), record, kind)
    }

    /// The key of the other root of a root rotation of `record`.
    pub(crate) fn open_other_root_key(
        &self,
        record: &AuthorityRecord,
        other: &crate::records::OtherRoot,
    ) -> Result<PrivateKey, Error> {
        let aad = crate::keyring::ca_key_aad(
            self.cluster(),
            &record.name,
            CaKind::Root,
            other.key_version,
        );
        let der = self
            .master_for(record.master_version)?
            .open(&aad, &other.key)
            .ok_or_else(|| {
                Error::Integrity(format!(
                    "the other root key of authority {:?} does not decrypt",
                    record.name
                ))
            })?;
        Ok(PrivateKey::from_pkcs8_der(
            other.key_type.unwrap_or(record.key_type),
            &der,
        )?)
    }

    /// The authority record of `authority` as stored, and its revision.
    pub(crate) async fn authority_record(
        &self,
        authority: &str,
    ) -> Result<(AuthorityRecord, u64), Error> {
        let key = crate::keys::authority_key(authority);
        let e = self
            .store()
            .get(&key)
            .await?
            .ok_or_else(|| Error::UnknownAuthority(authority.to_string()))?;
        Ok((crate::records::from_json(&key, &e.value)?, e.revision))
    }

    /// Write `record` if `key` is still at `revision`; false on a conflict.
    pub(crate) async fn write_authority(
        &self,
        key: &str,
        record: &AuthorityRecord,
        revision: u64,
    ) -> Result<bool, Error> {
        Ok(crate::cas::written(
            self.store()
                .update(key, crate::records::to_json(record)?, revision)
                .await,
        )?
        .is_some())
    }

    pub(crate) fn signer(&self, name: &str) -> Result<Arc<Signer>, Error> {
        self.keyring().signer(name)
    }

    /// Every authority's roots, DER, in name order (the active one of each
    /// first; both during a root rotation): the trust bundle.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.keyring()
            .signers
            .values()
            .flat_map(|s| s.record.bundle_roots())
            .collect()
    }

    /// Names of the authorities.
    pub fn authority_names(&self) -> Vec<String> {
        self.keyring().signers.keys().cloned().collect()
    }

    /// Root certificate (DER) of `authority`.
    pub fn root_cert(&self, authority: &str) -> Result<Vec<u8>, Error> {
        Ok(self.signer(authority)?.record.root_cert.clone())
    }

    /// Intermediate certificate (DER) of `authority`.
    pub fn intermediate_cert(&self, authority: &str) -> Result<Vec<u8>, Error> {
        Ok(self.signer(authority)?.record.intermediate_cert.clone())
    }

    /// The private key of a CA as PKCS#8 `ENCRYPTED PRIVATE KEY` PEM under
    /// `export_passphrase` (which openssl reads), for operators who keep the root offline.
    pub async fn export_key(
        &self,
        authority: &str,
        which: CaKind,
        export_passphrase: &[u8],
        actor: &str,
    ) -> Result<Zeroizing<String>, Error> {
        check_passphrase_strength(export_passphrase)?;
        let signer = self.signer(authority)?;
        let key = self.open_ca_key(&signer.record, which)?;
        let pass = Zeroizing::new(export_passphrase.to_vec());
        let pem = tokio::task::spawn_blocking(move || key.to_encrypted_pkcs8_pem(&pass))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        self.audit(actor, "export-key", authority, which.as_str())
            .await?;
        Ok(pem)
    }
}
