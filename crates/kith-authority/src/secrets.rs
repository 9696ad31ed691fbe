//! Cluster secrets: envelope-encrypted, versioned, readable only by the
//! nodes a secret's policy names.
//!
//! Each version has its own random 256-bit data key. The value is sealed
//! with AES-256-GCM under it (random 96-bit nonce; stored nonce ‖
//! ciphertext ‖ tag) with associated data binding cluster, name and
//! version; the data key is sealed under the master key with associated
//! data binding the same and the master key's version. A ciphertext copied
//! to another name or version does not open. Records, one key each:
//!
//! - `secret/<name>`: policy, description, the list of live versions
//!   (written with create-only / update-if-revision: the check-and-set);
//! - `secretval/<name>/<version>`: the sealed data key and value
//!   (create-only; readers trust only versions the `secret/` record lists).
//!
//! The invariant, whatever the interleaving: every version the `secret/`
//! record lists has its value record. So a value record is deleted only by
//! whoever removed its version from the list (by compare-and-swap), or by
//! the writer that created it and never got it listed, and only at the
//! revision it saw ([`Store::delete_if`]); and `secret/` itself is deleted
//! only at the revision whose versions were removed, never over a write
//! that landed since.

use kith_store::{chunked, Revision, Store};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keys::{
    self, secret_key as meta_key, secret_value_key as value_key,
    secret_value_prefix as value_prefix,
};
use crate::records::{b64, from_json, to_json};
use crate::vault::{SealKey, SecretBytes};

fn value_aad(cluster: &str, name: &str, version: u64) -> String {
    format!("kith:{cluster}:secret:{name}:v{version}:value")
}

pub(crate) fn dek_aad(cluster: &str, name: &str, version: u64, master_version: u32) -> String {
    format!("kith:{cluster}:secret:{name}:v{version}:data-key:m{master_version}")
}

/// Check a secret name (the rule of [`kith_api::validate_secret_name`]).
pub fn validate_secret_name(name: &str) -> Result<(), Error> {
    kith_api::validate_secret_name(name).map_err(Error::Invalid)
}

/// One kept version of a secret (never its value).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretVersion {
    /// Version number (grows by one per write).
    pub version: u64,
    /// Size of the value in bytes.
    pub size: usize,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Who wrote it.
    pub created_by: String,
}

/// A secret's metadata and policy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretRecord {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Roles whose nodes may read it.
    pub allow_roles: Vec<String>,
    /// Node names that may read it.
    pub allow_nodes: Vec<String>,
    /// Kept versions, oldest first.
    pub versions: Vec<SecretVersion>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Last change (value or policy).
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
}

impl SecretRecord {
    /// The newest version number (0 if none).
    pub fn latest(&self) -> u64 {
        self.versions.last().map_or(0, |v| v.version)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SecretValueRecord {
    /// Master key version that sealed `data_key`.
    pub(crate) master_version: u32,
    #[serde(with = "b64")]
    pub(crate) data_key: Vec<u8>,
    #[serde(with = "b64")]
    pub(crate) value: Vec<u8>,
}

/// What a write changes besides the value.
#[derive(Clone, Debug, Default)]
pub struct SecretUpdate {
    /// New description (kept if `None`).
    pub description: Option<String>,
    /// New allowed roles (kept if `None`).
    pub allow_roles: Option<Vec<String>>,
    /// New allowed node names (kept if `None`).
    pub allow_nodes: Option<Vec<String>>,
    /// Check-and-set: refuse unless the latest version is this one (0: the
    /// secret must not exist yet).
    pub if_version: Option<u64>,
}

/// Who reads a secret.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Reader<'a> {
    /// An operator (admin certificate or the CA machine): reads everything.
    Admin(&'a str),
    /// A node, by name and role (from its certificate's record).
    Node {
        /// Node name.
        name: &'a str,
        /// Node role.
        role: &'a str,
    },
}

impl Reader<'_> {
    fn actor(&self) -> String {
        match self {
            Reader::Admin(a) => a.to_string(),
            Reader::Node { name, .. } => format!("node:{name}"),
        }
    }
}

/// Every secret's metadata, in name order (never values).
pub async fn list_secrets(store: &dyn Store) -> Result<Vec<SecretRecord>, Error> {
    store
        .list(keys::SECRET_PREFIX)
        .await?
        .iter()
        .map(|e| from_json(&e.key, &e.value))
        .collect()
}

async fn load_meta(
    store: &dyn Store,
    name: &str,
) -> Result<Option<(SecretRecord, Revision)>, Error> {
    let key = meta_key(name);
    match store.get(&key).await? {
        Some(e) => Ok(Some((from_json(&key, &e.value)?, e.revision))),
        None => Ok(None),
    }
}

impl Authority {
    /// Write a new version of secret `name` (creating it if needed). The
    /// value is sealed before anything is stored; `update` may change the
    /// policy and description and ask for check-and-set.
    pub async fn put_secret(
        &self,
        name: &str,
        value: &[u8],
        update: SecretUpdate,
        actor: &str,
    ) -> Result<SecretRecord, Error> {
        validate_secret_name(name)?;
        let max = self.cluster_settings().secret_max_bytes;
        if value.len() > max {
            return Err(Error::SecretTooLarge {
                size: value.len(),
                max,
            });
        }
        for r in update.allow_roles.iter().flatten() {
            kith_pki::validate_label("role", r)?;
        }
        for n in update.allow_nodes.iter().flatten() {
            kith_pki::validate_label("node name", n)?;
        }
        let store = self.store();
        cas::retry!(&meta_key(name), 32, async |_| {
            let current = load_meta(&**store, name).await?;
            let latest = current.as_ref().map_or(0, |(m, _)| m.latest());
            if let Some(expected) = update.if_version {
                if expected != latest {
                    return Err(Error::SecretConflict {
                        name: name.into(),
                        expected,
                        current: latest,
                    });
                }
            }
            // Numbers past every value record, even an orphan of a crashed write.
            let highest_stored = store
                .list(&value_prefix(name))
                .await?
                .iter()
                .filter_map(|e| e.key.rsplit('/').next()?.parse::<u64>().ok())
                .max()
                .unwrap_or(0);
            let version = latest.max(highest_stored) + 1;
            let sealed = self.seal_secret(name, version, value)?;
            // Split over chunks when larger than one store value.
            let value_head = match chunked::create(
                &**store,
                &value_key(name, version),
                &to_json(&sealed)?,
                self.chunk_time(),
            )
            .await
            {
                Ok(head) => head,
                // A racing write took that number.
                Err(kith_store::Error::AlreadyExists { .. }) => return Ok(Attempt::Conflict),
                Err(e) => return Err(e.into()),
            };
            // A master-key rotation may have moved on while this value was
            // sealed and written (a keyring that lagged, a write retried
            // through a store election): withdraw it and seal again, or it
            // could be lost with the retired key. Resealed meanwhile by the
            // rotation itself (the delete's revision no longer matches): kept.
            if !self.sealing_is_current(sealed.master_version).await? {
                match chunked::delete_if(&**store, &value_head).await {
                    Ok(()) => {
                        self.refresh_keyring().await?;
                        return Ok(Attempt::Conflict);
                    }
                    Err(kith_store::Error::RevisionMismatch { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let now = kith_pki::second_precision(self.now());
            let mut meta = match &current {
                Some((m, _)) => m.clone(),
                None => SecretRecord {
                    name: name.to_string(),
                    description: String::new(),
                    allow_roles: Vec::new(),
                    allow_nodes: Vec::new(),
                    versions: Vec::new(),
                    created: now,
                    updated: now,
                },
            };
            if let Some(d) = &update.description {
                meta.description = d.clone();
            }
            if let Some(r) = &update.allow_roles {
                meta.allow_roles = r.clone();
            }
            if let Some(n) = &update.allow_nodes {
                meta.allow_nodes = n.clone();
            }
            meta.versions.push(SecretVersion {
                version,
                size: value.len(),
                created: now,
                created_by: actor.to_string(),
            });
            meta.updated = now;
            let keep = self.cluster_settings().keep_versions.max(1);
            let dropped: Vec<u64> = if meta.versions.len() > keep {
                let n = meta.versions.len() - keep;
                meta.versions.drain(..n).map(|v| v.version).collect()
            } else {
                Vec::new()
            };
            // The metadata is one store value, never split: a policy too
            // long for it is refused, and our value record withdrawn.
            let meta_json = to_json(&meta)?;
            let meta_max = store.limits().max_value;
            if meta_json.len() > meta_max {
                match chunked::delete_if(&**store, &value_head).await {
                    Ok(()) | Err(kith_store::Error::RevisionMismatch { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                return Err(Error::Invalid(format!(
                    "secret {name:?}: its description, allowed roles and nodes and kept versions \
                     take {} bytes, more than the {meta_max} one record may hold; shorten them",
                    meta_json.len()
                )));
            }
            let written = match &current {
                None => store.create(&meta_key(name), meta_json).await,
                Some((_, rev)) => store.update(&meta_key(name), meta_json, *rev).await,
            };
            match written {
                Ok(_) => {}
                Err(kith_store::Error::AlreadyExists { .. })
                | Err(kith_store::Error::RevisionMismatch { .. }) => {
                    // Another writer got there first: withdraw our value record
                    // (still unlisted, so nobody else deletes or rewrites it).
                    match chunked::delete_if(&**store, &value_head).await {
                        Ok(()) | Err(kith_store::Error::RevisionMismatch { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                    if let Some(expected) = update.if_version {
                        let now_latest = load_meta(&**store, name)
                            .await?
                            .map_or(0, |(m, _)| m.latest());
                        return Err(Error::SecretConflict {
                            name: name.into(),
                            expected,
                            current: now_latest,
                        });
                    }
                    return Ok(Attempt::Conflict);
                }
                Err(e) => return Err(e.into()),
            }
            remove_values(&**store, name, &dropped).await?;
            self.audit(
                actor,
                "secret-put",
                name,
                &format!("version {version}, {} bytes", value.len()),
            )
            .await?;
            Ok(Attempt::Done(meta))
        })
        .await
    }

    fn seal_secret(
        &self,
        name: &str,
        version: u64,
        value: &[u8],
    ) -> Result<SecretValueRecord, Error> {
        let cluster = self.cluster();
        let data_key = SealKey::random()?;
        let value = data_key.seal(&value_aad(cluster, name, version), value)?;
        // Under the next master key while a rotation runs, so it converges.
        let (mv, master) = self.sealing()?;
        let data_key = master.seal(&dek_aad(cluster, name, version, mv), data_key.bytes())?;
        Ok(SecretValueRecord {
            master_version: mv,
            data_key,
            value,
        })
    }

    /// Open a stored value record of `name`/`version` (the names come from
    /// the key asked for, so a record moved elsewhere fails).
    pub(crate) fn open_secret(
        &self,
        name: &str,
        version: u64,
        rec: SecretValueRecord,
    ) -> Result<SecretBytes, Error> {
        let cluster = self.cluster();
        let broken = || {
            Error::Integrity(format!(
                "secret {name:?} version {version} does not decrypt: the stored record was altered or moved"
            ))
        };
        let raw = self
            .master_for(rec.master_version)?
            .open(
                &dek_aad(cluster, name, version, rec.master_version),
                &rec.data_key,
            )
            .ok_or_else(broken)?;
        let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| broken())?;
        let data_key = SealKey::from_bytes(Zeroizing::new(bytes));
        data_key
            .open_owned(&value_aad(cluster, name, version), rec.value)
            .ok_or_else(broken)
    }

    /// Read a secret (the latest version unless one is named). Nodes may
    /// read only secrets whose policy names their role or name; a refusal is
    /// recorded, and a node cannot tell a missing secret from a forbidden one.
    pub async fn get_secret(
        &self,
        name: &str,
        version: Option<u64>,
        reader: Reader<'_>,
    ) -> Result<(u64, SecretBytes), Error> {
        validate_secret_name(name)?;
        let store = self.store();
        let meta = load_meta(&**store, name).await?;
        if let Reader::Node { name: node, role } = reader {
            let allowed = meta.as_ref().is_some_and(|(m, _)| {
                m.allow_roles.iter().any(|r| r == role) || m.allow_nodes.iter().any(|n| n == node)
            });
            if !allowed {
                // Counted per node, so that hammering cannot fill the disk.
                self.audit_refused(
                    kith_api::ErrorCode::SecretForbidden,
                    &reader.actor(),
                    "secret-denied",
                    name,
                )
                .await?;
                return Err(Error::SecretForbidden {
                    reader: format!("node {node} (role {role})"),
                    name: name.to_string(),
                });
            }
        }
        let mut meta = meta.map(|(m, _)| m);
        // A version removed (by `rm`, or dropped by a newer write) between reading
        // the list and its value is gone, not corrupt: read the list again.
        let (v, entry) = cas::retry!(&meta_key(name), 32, async |_| {
            let m = meta
                .as_ref()
                .ok_or_else(|| Error::UnknownSecret(name.to_string()))?;
            let v = version.unwrap_or_else(|| m.latest());
            if !m.versions.iter().any(|x| x.version == v) {
                return Err(Error::UnknownSecretVersion {
                    name: name.to_string(),
                    version: v,
                });
            }
            let key = value_key(name, v);
            if let Some(entry) = chunked::get(&**store, &key).await? {
                return Ok(Attempt::Done((v, entry)));
            }
            let again = load_meta(&**store, name).await?.map(|(m, _)| m);
            if again.as_ref().is_some_and(|a| a.versions == m.versions) {
                return Err(Error::Integrity(format!("{key} is listed but missing")));
            }
            meta = again;
            Ok(Attempt::Conflict)
        })
        .await?;
        let key = value_key(name, v);
        let rec: SecretValueRecord = from_json(&key, &entry.value)?;
        let plain = self.open_secret(name, v, rec)?;
        self.audit_repeatable(
            &reader.actor(),
            "secret-read",
            name,
            &format!("version {v}"),
        )
        .await?;
        Ok((v, plain))
    }

    /// A secret's metadata (operators).
    pub async fn secret_info(&self, name: &str) -> Result<SecretRecord, Error> {
        validate_secret_name(name)?;
        load_meta(&**self.store(), name)
            .await?
            .map(|(m, _)| m)
            .ok_or_else(|| Error::UnknownSecret(name.to_string()))
    }

    /// Delete a secret, or one of its versions. Deleting the last version
    /// deletes the secret.
    pub async fn delete_secret(
        &self,
        name: &str,
        version: Option<u64>,
        actor: &str,
    ) -> Result<(), Error> {
        validate_secret_name(name)?;
        let store = self.store();
        cas::retry!(&meta_key(name), 32, async |_| {
            let (mut meta, rev) = load_meta(&**store, name)
                .await?
                .ok_or_else(|| Error::UnknownSecret(name.to_string()))?;
            let removed: Vec<u64> = match version {
                None => meta.versions.iter().map(|v| v.version).collect(),
                Some(v) => {
                    if !meta.versions.iter().any(|x| x.version == v) {
                        return Err(Error::UnknownSecretVersion {
                            name: name.to_string(),
                            version: v,
                        });
                    }
                    vec![v]
                }
            };
            meta.versions.retain(|v| !removed.contains(&v.version));
            // The check-and-set, at the revision whose versions we remove: an
            // emptied secret goes, else the list shrinks. A write that landed
            // since makes it fail, and we look again.
            let written = if meta.versions.is_empty() {
                store.delete_if(&meta_key(name), rev).await
            } else {
                store
                    .update(&meta_key(name), to_json(&meta)?, rev)
                    .await
                    .map(|_| ())
            };
            match written {
                Ok(()) => {}
                Err(kith_store::Error::RevisionMismatch { .. }) => return Ok(Attempt::Conflict),
                Err(e) => return Err(e.into()),
            }
            // Only the values of the versions we took off the list: a value record of
            // a write in flight is not ours to delete (that write may list it next).
            remove_values(&**store, name, &removed).await?;
            let listed = removed
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let what = match version {
                Some(v) => format!("version {v}"),
                None => format!("all versions ({listed})"),
            };
            self.audit(actor, "secret-delete", name, &what).await?;
            Ok(Attempt::Done(()))
        })
        .await
    }
}

/// Delete the value records of `versions` of `name`, which the caller has just
/// taken off the `secret/` list by compare-and-swap. Each is deleted at the
/// revision read here, so a record rewritten meanwhile (a master key rotation
/// resealing it) is read again, and nothing written by anyone else is lost.
async fn remove_values(store: &dyn Store, name: &str, versions: &[u64]) -> Result<(), Error> {
    for &v in versions {
        let key = value_key(name, v);
        let removed = cas::retry!(&key, 32, async |_| {
            let Some(e) = store.get(&key).await? else {
                return Ok(Attempt::Done(()));
            };
            // With the chunks its head names, if it was split.
            let deleted = chunked::delete_if(store, &chunked::Head::of(&e)).await;
            Ok(match cas::written(deleted)? {
                Some(()) => Attempt::Done(()),
                None => Attempt::Conflict,
            })
        })
        .await;
        match removed {
            // Still being rewritten: the value is off the list, so it is an
            // unlisted orphan that nobody reads, and the next write of this
            // secret numbers past it.
            Ok(()) | Err(Error::Contended(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A sealed value outside the store, for the benchmark.
#[doc(hidden)]
#[derive(Debug)]
pub struct SealedForBench(SecretValueRecord);

impl Authority {
    /// Seal as `put_secret` does (fresh data key, value sealed, data key
    /// wrapped), without the store. For `benches/secrets.rs`.
    #[doc(hidden)]
    pub fn seal_for_bench(
        &self,
        name: &str,
        version: u64,
        value: &[u8],
    ) -> Result<SealedForBench, Error> {
        self.seal_secret(name, version, value).map(SealedForBench)
    }

    /// Open as `get_secret` does, without the store. For
    /// `benches/secrets.rs`; the copy of the record stands for the one
    /// `get_secret` decodes from the store.
    #[doc(hidden)]
    pub fn open_for_bench(
        &self,
        name: &str,
        version: u64,
        sealed: &SealedForBench,
    ) -> Result<SecretBytes, Error> {
        self.open_secret(name, version, sealed.0.clone())
    }
}
