//! Changing the passphrase (rewraps the master key only) and rotating the
//! master key (rewraps every CA key and every secret's data key).
//!
//! Rotation never needs a transaction across keys: the next master key is
//! first stored beside the current one (`pending_master` in the cluster
//! record), then each record is resealed on its own (compare-and-swap),
//! recording which master version sealed it, and finally the cluster record
//! swaps the keys. A crash anywhere leaves every record readable (each says
//! which of the two keys sealed it) and `vault rotate` resumes.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keyring::{ca_key_aad, master_aad, unwrap_pending};
use crate::keys;
use crate::records::{from_json, to_json, AuthorityRecord, ClusterRecord, PendingMaster};
use crate::secrets::SecretValueRecord;
use crate::vault::{self, check_passphrase_strength, KdfParams, SealKey};

/// What a rotation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// The new master key version.
    pub master_version: u32,
    /// CA key records resealed.
    pub authorities: usize,
    /// Secret versions whose data key was rewrapped.
    pub secret_versions: usize,
}

/// Most passes over the sealed records before a rotation gives up.
const MAX_PASSES: usize = 50;
/// How long a rotation waits, after a pass found nothing left under the old
/// key, for other processes to see the next key (their keyring watch).
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

fn kek_for(kdf: KdfParams, passphrase: &[u8], salt: &[u8]) -> Result<SealKey, Error> {
    Ok(SealKey::from_bytes(kdf.derive(passphrase, salt)?))
}

async fn derive(kdf: KdfParams, passphrase: &[u8], salt: Vec<u8>) -> Result<SealKey, Error> {
    let pass = Zeroizing::new(passphrase.to_vec());
    tokio::task::spawn_blocking(move || kek_for(kdf, &pass, &salt))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

impl Authority {
    async fn cluster_record(&self) -> Result<(ClusterRecord, u64), Error> {
        let e = self
            .store()
            .get(keys::CLUSTER_KEY)
            .await?
            .ok_or(Error::NotInitialized)?;
        Ok((from_json(keys::CLUSTER_KEY, &e.value)?, e.revision))
    }

    /// Wrap the master key under a new passphrase (new salt; Argon2id
    /// parameters `kdf`). Nothing else changes.
    pub async fn change_passphrase(
        &self,
        new_passphrase: &[u8],
        kdf: KdfParams,
    ) -> Result<(), Error> {
        check_passphrase_strength(new_passphrase)?;
        kdf.check()?;
        let (mut cluster, rev) = self.cluster_record().await?;
        let read = cluster.clone();
        if cluster.pending_master.is_some() {
            return Err(Error::Invalid(
                "a master key rotation is unfinished: run `kith vault rotate` first".into(),
            ));
        }
        if cluster.master_version != self.inner_master_version() {
            return Err(Error::Invalid(
                "the master key changed since this process opened the cluster; reopen and retry"
                    .into(),
            ));
        }
        let mut salt = vec![0u8; 16];
        vault::random_fill(&mut salt)?;
        let kek = derive(kdf, new_passphrase, salt.clone()).await?;
        cluster.kdf = kdf;
        cluster.salt = salt;
        cluster.wrapped_master = kek.seal(
            &master_aad(&cluster.cluster, cluster.master_version),
            self.master_for(cluster.master_version)?.bytes(),
        )?;
        self.write_cluster(&read, cluster.clone(), rev).await?;
        // Master keys rotated in from now on are wrapped under the new key.
        *self.inner.kek.lock().unwrap_or_else(|p| p.into_inner()) = kek;
        self.refresh_keyring().await?;
        self.audit(
            crate::LOCAL_OPERATOR,
            "passphrase-change",
            &cluster.cluster,
            "",
        )
        .await
    }

    /// Make pending key `new_version` the master. `None` if another process
    /// swapped it in already. A pending key of another version is a later
    /// rotation's: promoting it would drop the key every record is sealed
    /// under before that rotation has resealed them, so it is refused.
    async fn promote_pending(&self, new_version: u32) -> Result<Option<ClusterRecord>, Error> {
        let (mut cluster, rev) = self.cluster_record().await?;
        let read = cluster.clone();
        if cluster.master_version == new_version {
            return Ok(None);
        }
        let pending = cluster
            .pending_master
            .take()
            .filter(|p| p.version == new_version)
            .ok_or_else(|| {
                Error::Contended(format!(
                    "another master key rotation replaced pending key v{new_version}; \
                     run `kith vault rotate` again"
                ))
            })?;
        cluster.master_version = pending.version;
        cluster.wrapped_master = pending.wrapped;
        self.write_cluster(&read, cluster.clone(), rev).await?;
        Ok(Some(cluster))
    }

    /// Replace the master key: a new random key, every CA key and every
    /// secret data key resealed under it, the old key dropped. `passphrase`
    /// (the current one) wraps the new key. `progress(done, total)` is
    /// called per record. Resumes an interrupted rotation.
    pub async fn rotate_master(
        &self,
        passphrase: &[u8],
        progress: Arc<dyn Fn(usize, usize) + Send + Sync>,
    ) -> Result<RotationReport, Error> {
        let (mut cluster, rev) = self.cluster_record().await?;
        let read = cluster.clone();
        let kek = derive(cluster.kdf, passphrase, cluster.salt.clone()).await?;
        // The passphrase must open the current key, or it is the wrong one.
        kek.open(
            &master_aad(&cluster.cluster, cluster.master_version),
            &cluster.wrapped_master,
        )
        .ok_or(Error::WrongPassphrase)?;
        let old_version = cluster.master_version;
        let (new_version, new_key) = match &cluster.pending_master {
            Some(p) => (p.version, unwrap_pending(&kek, &cluster.cluster, p)?),
            None => {
                let key = SealKey::random()?;
                let version = old_version + 1;
                cluster.pending_master = Some(PendingMaster {
                    version,
                    wrapped: kek.seal(&master_aad(&cluster.cluster, version), key.bytes())?,
                });
                self.write_cluster(&read, cluster.clone(), rev).await?;
                (version, key)
            }
        };
        // From here on this process seals new records under the next key;
        // other processes sharing the store do once their keyring reloads.
        self.refresh_keyring().await?;
        let old_key = self.master_for(old_version)?;
        let mut report = RotationReport {
            master_version: new_version,
            ..Default::default()
        };
        // Reseal until a whole pass finds nothing under the old key, then
        // once more after other processes had time to see the next key: a
        // writer whose keyring was stale may have sealed under the old one.
        let mut clean_passes = 0;
        for pass in 0..MAX_PASSES {
            let (resealed, conflicts) = self
                .reseal_pass(
                    (old_version, &old_key),
                    (new_version, &new_key),
                    &mut report,
                    // Progress is the first pass; later ones only check.
                    (pass == 0).then_some(&progress),
                )
                .await?;
            if resealed == 0 && conflicts == 0 {
                clean_passes += 1;
                if clean_passes == 2 {
                    break;
                }
                tokio::time::sleep(SETTLE).await;
            } else {
                clean_passes = 0;
            }
            if pass + 1 == MAX_PASSES {
                return Err(Error::Contended(
                    "records kept changing during the master key rotation; run `kith vault rotate` again".into(),
                ));
            }
        }
        // Swap: the pending key becomes the master; the old one is gone.
        let Some(cluster) = self.promote_pending(new_version).await? else {
            // A rotation run concurrently elsewhere swapped first: done.
            self.refresh_keyring().await?;
            return Ok(report);
        };
        self.refresh_keyring().await?;
        self.audit(
            crate::LOCAL_OPERATOR,
            "vault-rotate",
            &cluster.cluster,
            &format!(
                "master v{old_version} -> v{new_version}: {} authorities, {} secret versions",
                report.authorities, report.secret_versions
            ),
        )
        .await?;
        Ok(report)
    }

    /// One pass over every sealed record: reseal what the old key sealed.
    /// Returns (records resealed, records that changed under us).
    async fn reseal_pass(
        &self,
        (old_version, old_key): (u32, &SealKey),
        (new_version, new_key): (u32, &SealKey),
        report: &mut RotationReport,
        progress: Option<&Arc<dyn Fn(usize, usize) + Send + Sync>>,
    ) -> Result<(usize, usize), Error> {
        let store = self.store().clone();
        let authorities = store.list(keys::AUTHORITY_PREFIX).await?;
        let values = store.list(keys::SECRET_VALUE_PREFIX).await?;
        let total = authorities.len() + values.len();
        let (mut done, mut resealed, mut conflicts) = (0, 0, 0);
        for e in authorities {
            let mut r: AuthorityRecord = from_json(&e.key, &e.value)?;
            if r.master_version == old_version {
                let (cluster, name) = (self.cluster().to_string(), r.name.clone());
                for (kind, key_version, field) in r.sealed_keys_mut() {
                    let aad = ca_key_aad(&cluster, &name, kind, key_version);
                    let plain = old_key.open(&aad, field).ok_or_else(|| {
                        Error::Integrity(format!("{}: a CA key does not decrypt", e.key))
                    })?;
                    *field = new_key.seal(&aad, &plain)?;
                }
                r.master_version = new_version;
                if self.reseal_write(&e.key, to_json(&r)?, e.revision).await? {
                    report.authorities += 1;
                    resealed += 1;
                } else {
                    conflicts += 1;
                }
            }
            done += 1;
            if let Some(p) = progress {
                p(done, total);
            }
        }
        for e in values {
            // Read whole if split over chunks; `None`: deleted meanwhile.
            let Some(whole) = kith_store::chunked::resolve(&*store, e).await? else {
                done += 1;
                continue;
            };
            let e = &whole.head;
            let mut r: SecretValueRecord = from_json(&e.key, &whole.value)?;
            if r.master_version == old_version {
                let (name, version) = parse_value_key(&e.key)?;
                let plain = old_key
                    .open(
                        &crate::secrets::dek_aad(self.cluster(), name, version, r.master_version),
                        &r.data_key,
                    )
                    .ok_or_else(|| {
                        Error::Integrity(format!("{}: the data key does not decrypt", e.key))
                    })?;
                r.data_key = new_key.seal(
                    &crate::secrets::dek_aad(self.cluster(), name, version, new_version),
                    &plain,
                )?;
                r.master_version = new_version;
                if self.reseal_value(e, to_json(&r)?).await? {
                    report.secret_versions += 1;
                    resealed += 1;
                } else {
                    conflicts += 1;
                }
            }
            done += 1;
            if let Some(p) = progress {
                p(done, total);
            }
        }
        let (seed, seed_conflicts) = self
            .reseal_audit_seed((old_version, old_key), (new_version, new_key))
            .await?;
        Ok((resealed + seed, conflicts + seed_conflicts))
    }

    /// Replace the cluster record `read` at `rev` with `cluster` if nobody
    /// changed it since; a change of the shared settings alone is kept and
    /// the write retried (it touches nothing a key change depends on).
    async fn write_cluster(
        &self,
        read: &ClusterRecord,
        cluster: ClusterRecord,
        rev: u64,
    ) -> Result<(), Error> {
        let key = keys::CLUSTER_KEY;
        let mut next = (cluster, rev);
        cas::retry!(key, 16, async |_| {
            let (cluster, rev) = &next;
            let write = self.store().update(key, to_json(cluster)?, *rev).await;
            if cas::written(write)?.is_some() {
                return Ok(Attempt::Done(()));
            }
            let (now, now_rev) = self.cluster_record().await?;
            if !crate::settings::same_but_settings(read, &now) {
                return Err(Error::Contended(key.into()));
            }
            let mut cluster = cluster.clone();
            cluster.settings = now.settings;
            next = (cluster, now_rev);
            Ok(Attempt::Conflict)
        })
        .await
    }

    /// Write a resealed record if nobody changed it meanwhile; `false` when
    /// someone did (or deleted it): the next pass looks at it again.
    async fn reseal_value(
        &self,
        head: &kith_store::chunked::Head,
        value: Vec<u8>,
    ) -> Result<bool, Error> {
        // A secret value may be split over chunks: replaced the same way.
        match kith_store::chunked::update(&**self.store(), head, &value, self.chunk_time()).await {
            Ok(_) => Ok(true),
            Err(kith_store::Error::RevisionMismatch { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Write a resealed record if nobody changed it meanwhile; `false` when
    /// someone did (or deleted it): the next pass looks at it again.
    async fn reseal_write(&self, key: &str, value: Vec<u8>, rev: u64) -> Result<bool, Error> {
        match self.store().update(key, value, rev).await {
            Ok(_) => Ok(true),
            Err(kith_store::Error::RevisionMismatch { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

fn parse_value_key(key: &str) -> Result<(&str, u64), Error> {
    let rest = key
        .strip_prefix(keys::SECRET_VALUE_PREFIX)
        .ok_or_else(|| Error::Integrity(format!("{key}: not a secret value")))?;
    let (name, v) = rest
        .rsplit_once('/')
        .ok_or_else(|| Error::Integrity(format!("{key}: no version")))?;
    let v = v
        .parse()
        .map_err(|_| Error::Integrity(format!("{key}: bad version")))?;
    Ok((name, v))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{InitOptions, ManualClock, SecretUpdate, Settings};
    use kith_pki::CaKind;

    async fn init(store: Arc<dyn kith_store::Store>, pass: &[u8]) -> Authority {
        Authority::init(
            store,
            Arc::new(ManualClock::new(time::OffsetDateTime::now_utc())),
            InitOptions {
                cluster: "test.example".into(),
                key_type: kith_pki::KeyType::P256,
                kdf: KdfParams::MINIMUM,
            },
            pass,
            Settings::default(),
        )
        .await
        .expect("init")
    }

    /// After a rotation, the old key's bytes open no sealed field of any
    /// record, under any master version's associated data.
    #[tokio::test]
    async fn the_old_master_key_opens_nothing_after_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn kith_store::Store> = Arc::new(
            kith_store_redb::RedbStore::open(&dir.path().join("kith.redb")).expect("open"),
        );
        let pass = b"a passphrase for tests";
        let a = init(store.clone(), pass).await;
        for i in 0..3 {
            a.put_secret(&format!("s{i}"), b"v", SecretUpdate::default(), "t")
                .await
                .expect("put");
        }
        let old = SealKey::from_bytes(Zeroizing::new(*a.keyring().master.bytes()));
        a.rotate_master(pass, Arc::new(|_, _| {}))
            .await
            .expect("rotate");
        let cluster = a.cluster().to_string();
        let mut tried = 0;
        for e in store.list(keys::AUTHORITY_PREFIX).await.expect("list") {
            let r: AuthorityRecord = from_json(&e.key, &e.value).expect("record");
            for (kind, field) in [
                (CaKind::Root, &r.root_key),
                (CaKind::Intermediate, &r.intermediate_key),
            ] {
                let aad = ca_key_aad(&cluster, &r.name, kind, r.key_version);
                assert!(old.open(&aad, field).is_none(), "old key opens {}", e.key);
                tried += 1;
            }
        }
        for e in store.list(keys::SECRET_VALUE_PREFIX).await.expect("list") {
            let r: SecretValueRecord = from_json(&e.key, &e.value).expect("record");
            let (name, version) = parse_value_key(&e.key).expect("key");
            for mv in [1, 2] {
                let aad = crate::secrets::dek_aad(&cluster, name, version, mv);
                assert!(
                    old.open(&aad, &r.data_key).is_none(),
                    "old key opens {}",
                    e.key
                );
            }
            tried += 1;
        }
        let (c, _) = a.cluster_record().await.expect("cluster");
        assert!(c.pending_master.is_none());
        assert_eq!(c.master_version, 2);
        assert_eq!(tried, 2 + 3);
    }

    /// Two rotations ran together on pending v2; one swapped, then a third
    /// wrote pending v3. The slower second must not promote v3: every
    /// record is still sealed under v2 until the third has resealed them.
    #[tokio::test]
    async fn a_late_swap_does_not_promote_a_later_rotations_key() {
        let store: Arc<dyn kith_store::Store> = Arc::new(kith_store::MemStore::new());
        let pass = b"a passphrase for tests";
        let a = init(store.clone(), pass).await;
        a.rotate_master(pass, Arc::new(|_, _| {}))
            .await
            .expect("rotate to v2");
        let (mut cluster, rev) = a.cluster_record().await.expect("record");
        assert_eq!(cluster.master_version, 2);
        let read = cluster.clone();
        cluster.pending_master = Some(PendingMaster {
            version: 3,
            wrapped: cluster.wrapped_master.clone(),
        });
        a.write_cluster(&read, cluster, rev)
            .await
            .expect("a third rotation begins");
        assert!(a
            .promote_pending(2)
            .await
            .expect("already swapped")
            .is_none());
        let (after, _) = a.cluster_record().await.expect("record");
        assert_eq!(after.master_version, 2, "v2 stays the master");
        assert_eq!(after.pending_master.map(|p| p.version), Some(3));
        // A rotation whose pending key was replaced is told so.
        assert!(matches!(
            a.promote_pending(4).await,
            Err(Error::Contended(_))
        ));
    }
}
