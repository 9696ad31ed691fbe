//! Creating a cluster (`init`), unlocking one (`open`), and adding another
//! CA hierarchy to it (`authority add`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kith_pki::{CaKind, CaSpec, KeyType, PrivateKey, Serial};
use kith_store::Store;
use zeroize::Zeroizing;

use crate::authority::Authority;
use crate::clock::Clock;
use crate::cluster_settings::ClusterSettings;
use crate::error::Error;
use crate::info::load_cluster;
use crate::keyring::{ca_key_aad, key_from, master_aad, unwrap_pending, Keyring};
use crate::keys;
use crate::records::{from_json, to_json, AuthorityRecord, ClusterRecord};
use crate::vault::{self, check_passphrase_strength, SealKey};
use crate::{InitOptions, Settings, DEFAULT_AUTHORITY, INTERMEDIATE_TTL, LOCAL_OPERATOR, ROOT_TTL};

impl Authority {
    /// Create a new cluster in an empty store: master key, the `cluster`
    /// authority (root and intermediate), sealed under `passphrase`.
    pub async fn init(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        opts: InitOptions,
        passphrase: &[u8],
        settings: Settings,
    ) -> Result<Self, Error> {
        kith_pki::validate_cluster_name(&opts.cluster)?;
        opts.kdf.check()?;
        check_passphrase_strength(passphrase)?;
        if let Some(existing) = store.get(keys::CLUSTER_KEY).await? {
            let r: ClusterRecord = from_json(keys::CLUSTER_KEY, &existing.value)?;
            return Err(Error::AlreadyInitialized(r.cluster));
        }
        let mut salt = vec![0u8; 16];
        vault::random_fill(&mut salt)?;
        let kdf = opts.kdf;
        let pass = Zeroizing::new(passphrase.to_vec());
        let salt2 = salt.clone();
        let kek = tokio::task::spawn_blocking(move || kdf.derive(&pass, &salt2))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let kek = SealKey::from_bytes(kek);
        let master = SealKey::random()?;
        let now = clock.now();
        let cluster = ClusterRecord {
            version: 1,
            cluster: opts.cluster.clone(),
            created: kith_pki::second_precision(now),
            kdf,
            salt,
            master_version: 1,
            wrapped_master: kek.seal(&master_aad(&opts.cluster, 1), master.bytes())?,
            pending_master: None,
            settings: ClusterSettings::default(),
            crl_number_floor: 0,
        };
        match store.create(keys::CLUSTER_KEY, to_json(&cluster)?).await {
            Ok(_) => {}
            Err(kith_store::Error::AlreadyExists { .. }) => {
                return Err(Error::AlreadyInitialized(opts.cluster))
            }
            Err(e) => return Err(e.into()),
        }
        let authority = Self::assemble(
            store,
            clock,
            Keyring {
                generation: 0,
                cluster,
                master: Arc::new(master),
                pending: None,
                signers: BTreeMap::new(),
            },
            kek,
            settings,
        );
        authority
            .add_authority(DEFAULT_AUTHORITY, opts.key_type)
            .await?;
        authority.start_keyring_watch().await?;
        authority
            .audit(
                LOCAL_OPERATOR,
                "init",
                &opts.cluster,
                &format!("key type {}", opts.key_type),
            )
            .await?;
        Ok(authority)
    }

    /// Unlock an existing cluster with `passphrase`.
    pub async fn open(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        passphrase: &[u8],
        settings: Settings,
    ) -> Result<Self, Error> {
        let cluster = load_cluster(&*store).await?;
        let kdf = cluster.kdf;
        let pass = Zeroizing::new(passphrase.to_vec());
        let salt = cluster.salt.clone();
        let kek = tokio::task::spawn_blocking(move || kdf.derive(&pass, &salt))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let kek = SealKey::from_bytes(kek);
        let raw = kek
            .open(
                &master_aad(&cluster.cluster, cluster.master_version),
                &cluster.wrapped_master,
            )
            .ok_or(Error::WrongPassphrase)?;
        let master = key_from(&raw)?;
        let pending = match &cluster.pending_master {
            Some(p) => Some((
                p.version,
                Arc::new(unwrap_pending(&kek, &cluster.cluster, p)?),
            )),
            None => None,
        };
        let authority = Self::assemble(
            store,
            clock,
            Keyring {
                generation: 0,
                cluster,
                master: Arc::new(master),
                pending,
                signers: BTreeMap::new(),
            },
            kek,
            settings,
        );
        authority.start_keyring_watch().await?;
        Ok(authority)
    }

    /// Create another CA hierarchy (`api`, ...) with its own root and intermediate.
    pub async fn add_authority(&self, name: &str, key_type: KeyType) -> Result<(), Error> {
        kith_pki::validate_label("authority name", name)?;
        let now = self.now();
        let cluster = self.cluster().to_string();
        let name_owned = name.to_string();
        // RSA-4096 generation takes seconds: keep it off the async workers.
        let (root, intermediate) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let root = CaSpec {
                cluster: cluster.clone(),
                authority: name_owned.clone(),
                generation: 1,
                kind: CaKind::Root,
                not_before: now - kith_pki::DEFAULT_BACKDATE,
                not_after: now + ROOT_TTL,
                serial: Serial::random()?,
            }
            .self_signed(PrivateKey::generate(key_type)?)?;
            let root_der = root.cert_der.clone();
            let root_key = root.key.pkcs8_der();
            let root_signer = root.into_signer()?;
            let inter = CaSpec {
                cluster,
                authority: name_owned,
                generation: 1,
                kind: CaKind::Intermediate,
                not_before: now - kith_pki::DEFAULT_BACKDATE,
                not_after: now + INTERMEDIATE_TTL,
                serial: Serial::random()?,
            }
            .signed_by(PrivateKey::generate(key_type)?, &root_signer)?;
            Ok((
                (root_der, root_key),
                (inter.cert_der.clone(), inter.key.pkcs8_der()),
            ))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
        let key_version = 1;
        let seal = |master_version: u32,
                    master: &crate::vault::SealKey|
         -> Result<AuthorityRecord, Error> {
            Ok(AuthorityRecord {
                version: 1,
                name: name.to_string(),
                key_type,
                root_key: master.seal(
                    &ca_key_aad(self.cluster(), name, CaKind::Root, key_version),
                    &root.1,
                )?,
                root_cert: root.0.clone(),
                intermediate_key: master.seal(
                    &ca_key_aad(self.cluster(), name, CaKind::Intermediate, key_version),
                    &intermediate.1,
                )?,
                intermediate_cert: intermediate.0.clone(),
                master_version,
                key_version,
                created: now,
                intermediate_generation: 1,
                prepared_intermediate: None,
                previous_intermediates: Vec::new(),
                root_generation: 1,
                root_rotation: None,
                last_root_generation: 0,
                last_key_version: 0,
                last_intermediate_generation: 0,
            })
        };
        let key = keys::authority_key(name);
        // A master-key rotation that moved on while the keys were sealed
        // and written (see `put_secret`): withdraw the record and seal the
        // keys again under the key of the moment, unless the rotation
        // resealed the record itself (then the withdrawal misses).
        let mut attempts = 0;
        let record = loop {
            let (master_version, master) = self.sealing()?;
            let record = seal(master_version, &master)?;
            let revision = match self.inner.store.create(&key, to_json(&record)?).await {
                Ok(r) => r,
                Err(kith_store::Error::AlreadyExists { .. }) => {
                    return Err(Error::AuthorityExists(name.to_string()))
                }
                Err(e) => return Err(e.into()),
            };
            if self.sealing_is_current(master_version).await? {
                break record;
            }
            attempts += 1;
            if attempts == crate::cas::ATTEMPTS {
                return Err(Error::Contended(key));
            }
            match self.inner.store.delete_if(&key, revision).await {
                Ok(()) => self.refresh_keyring().await.map(|_| ())?,
                Err(kith_store::Error::RevisionMismatch { .. }) => break record,
                Err(e) => return Err(e.into()),
            }
        };
        drop(record);
        self.refresh_keyring().await?;
        if name != DEFAULT_AUTHORITY {
            self.audit(
                LOCAL_OPERATOR,
                "authority-add",
                name,
                &format!("key type {key_type}"),
            )
            .await?;
        }
        Ok(())
    }
}
