//! The kith certificate authority engine.
//!
//! [`Authority`] holds the unlocked CA keys of one cluster and does everything
//! that needs them: issue leaves (from a public key or a CSR), revoke, sign
//! CRLs, export keys. It knows the [`kith_store::Store`] trait and nothing
//! about concrete backends, HTTP or files; the time comes from an injected
//! [`Clock`]. Every operation that changes state writes single-key records
//! (see `records`), never relying on a transaction across keys.
//!
//! Read-only questions that need no passphrase (which authorities exist, the
//! trust bundle, recorded certificates) are answered by [`ClusterInfo`].

mod audit;
mod catalog;
mod chunks;
mod claims;
mod clock;
mod crl;
mod error;
mod issue;
mod keyring;
mod limits;
mod names;
mod nodes;
mod records;
mod rekey;
mod revoke;
mod secrets;
mod tokens;
mod vault;

use std::collections::BTreeMap;
use std::sync::Arc;

use kith_pki::{CaKind, CaSpec, CsrPolicy, KeyType, PrivateKey, Profile, PublicKey, San, Serial};
use kith_store::Store;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

pub use audit::AuditLimits;
pub use catalog::{AuthorityStatusView, NodeView, StatusView};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use limits::{MAX_CERT_TTL, MAX_CRL_VALIDITY, MAX_RENEW_GRACE};
pub use nodes::{list_nodes, NodeRecord, NodeState, DEFAULT_RENEW_GRACE, MAX_CSRS, RETRY_WINDOW};
pub use records::{
    AuditRecord, AuthorityRecord, CertRecord, ClusterRecord, CrlRecord, PendingMaster,
    RevokedRecord,
};
pub use rekey::RotationReport;
pub use secrets::{
    list_secrets, validate_secret_name, Reader, SecretRecord, SecretUpdate, SecretVersion,
    DEFAULT_KEEP_VERSIONS, DEFAULT_SECRET_MAX_BYTES,
};
pub use tokens::{list_tokens, TokenRecord, TokenSpec, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
pub use vault::{KdfParams, SecretBytes};

use keyring::{Keyring, Signer};
use records::{from_json, to_json};
use vault::SealKey;

/// The authority every cluster starts with.
pub const DEFAULT_AUTHORITY: &str = "cluster";
/// Root lifetime.
pub const ROOT_TTL: Duration = Duration::days(3650);
/// Intermediate lifetime.
pub const INTERMEDIATE_TTL: Duration = Duration::days(1825);
/// Default CRL validity (nextUpdate − thisUpdate).
pub const DEFAULT_CRL_VALIDITY: Duration = Duration::days(7);
/// Actor name recorded for commands run on the CA machine itself.
pub const LOCAL_OPERATOR: &str = "local-operator";

/// What `init` needs.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Cluster name (a DNS name of two labels or more).
    pub cluster: String,
    /// CA key type.
    pub key_type: KeyType,
    /// Argon2id parameters for the passphrase.
    pub kdf: KdfParams,
}

/// Tunables that are not part of the stored cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// CRL validity.
    pub crl_validity: Duration,
    /// Default CSR policy.
    pub policy: CsrPolicy,
    /// Largest secret value accepted, in bytes.
    pub secret_max_bytes: usize,
    /// Versions kept per secret; older ones are deleted.
    pub keep_versions: usize,
    /// What one identity can make the CA record: refusals and reads
    /// summarised per window, refusals and renewals limited.
    pub audit_limits: AuditLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            crl_validity: DEFAULT_CRL_VALIDITY,
            policy: CsrPolicy::default(),
            secret_max_bytes: DEFAULT_SECRET_MAX_BYTES,
            keep_versions: DEFAULT_KEEP_VERSIONS,
            audit_limits: AuditLimits::default(),
        }
    }
}

/// A request to issue a leaf for a public key the caller holds the private key of.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// Who the certificate is for.
    pub identity: Identity,
    /// The subject's public key.
    pub public_key: PublicKey,
    /// SANs beyond `<node>.<cluster>` and the SPIFFE ID (already approved by the caller).
    pub extra_sans: Vec<San>,
}

/// Who a certificate is for: decided by the caller, never read from a CSR.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Node name (DNS label).
    pub node: String,
    /// Role (DNS label).
    pub role: String,
    /// Profile.
    pub profile: Profile,
    /// Authority; `None` means [`DEFAULT_AUTHORITY`].
    pub authority: Option<String>,
    /// Lifetime; `None` means the profile's default.
    pub ttl: Option<Duration>,
}

/// An issued leaf: its record and the chain to present with it.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The durable record (includes the DER).
    pub record: CertRecord,
    /// Intermediates, leaf's issuer first.
    pub chain: Vec<Vec<u8>>,
    /// The root of the issuing authority.
    pub root: Vec<u8>,
    /// True when the lifetime was cut to the issuer's expiry.
    pub truncated: bool,
}

/// Result of a revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Newly revoked.
    Revoked(RevokedRecord),
    /// Was revoked already; the first record (and its reason) stands.
    AlreadyRevoked(RevokedRecord),
}

impl RevokeOutcome {
    /// The revocation record either way.
    pub fn record(&self) -> &RevokedRecord {
        match self {
            Self::Revoked(r) | Self::AlreadyRevoked(r) => r,
        }
    }
}

/// Public facts about one authority.
#[derive(Clone, Debug)]
pub struct AuthorityInfo {
    /// Name.
    pub name: String,
    /// Key type.
    pub key_type: KeyType,
    /// Root certificate, DER.
    pub root_cert: Vec<u8>,
    /// Intermediate certificate, DER.
    pub intermediate_cert: Vec<u8>,
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
        for e in store.list("authority/").await? {
            let r: AuthorityRecord = from_json(&e.key, &e.value)?;
            authorities.push(AuthorityInfo {
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

    /// Every intermediate, DER.
    pub fn intermediates(&self) -> Vec<Vec<u8>> {
        self.authorities
            .iter()
            .map(|a| a.intermediate_cert.clone())
            .collect()
    }
}

/// A recorded certificate and its revocation, if any.
pub async fn find_certificate(
    store: &dyn Store,
    serial: &Serial,
) -> Result<(CertRecord, Option<RevokedRecord>), Error> {
    let key = records::cert_key(&serial.to_hex());
    let e = store
        .get(&key)
        .await?
        .ok_or_else(|| Error::UnknownCertificate(serial.to_hex()))?;
    let cert: CertRecord = from_json(&key, &e.value)?;
    let rkey = records::revoked_key(&cert.authority, &cert.serial);
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
    for e in store.list("revoked/").await? {
        let r: RevokedRecord = from_json(&e.key, &e.value)?;
        revoked.insert(r.serial.clone(), r);
    }
    let mut out = Vec::new();
    for e in store.list("cert/").await? {
        let c: CertRecord = from_json(&e.key, &e.value)?;
        let r = revoked.remove(&c.serial);
        out.push((c, r));
    }
    Ok(out)
}

/// The stored CRL of `authority`, if one was ever signed (no keys needed).
pub async fn stored_crl(store: &dyn Store, authority: &str) -> Result<Option<CrlRecord>, Error> {
    let key = records::crl_key(authority);
    // It may be split over chunks (a CRL of many revocations).
    match kith_store::chunked::get(store, &key).await? {
        Some(v) => Ok(Some(from_json(&key, &v.value)?)),
        None => Ok(None),
    }
}

async fn load_cluster(store: &dyn Store) -> Result<ClusterRecord, Error> {
    let e = store
        .get(records::CLUSTER_KEY)
        .await?
        .ok_or(Error::NotInitialized)?;
    from_json(records::CLUSTER_KEY, &e.value)
}

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The cluster's name: fixed at `init`.
    cluster_name: String,
    /// The passphrase-derived key, to unwrap master keys another process
    /// rotates in (replaced by a passphrase change made here).
    kek: std::sync::Mutex<SealKey>,
    /// Everything unlocked, rebuilt when the store says it changed.
    keyring: std::sync::RwLock<Arc<Keyring>>,
    /// One keyring rebuild at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// The task that keeps the keyring current.
    keyring_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set while the store holds a master key this process cannot unwrap:
    /// it must not seal anything until it is restarted with the passphrase.
    keyring_behind: std::sync::atomic::AtomicBool,
    /// Refusals per identity, so that they cannot flood the audit trail.
    refusals: audit::RefusalLimiter,
    settings: Settings,
}

/// An unlocked certificate authority. Cheap to clone; share it across tasks.
#[derive(Clone)]
pub struct Authority {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("cluster", &self.inner.cluster_name)
            .finish_non_exhaustive()
    }
}

pub(crate) fn master_aad(cluster: &str, version: u32) -> String {
    format!("kith:{cluster}:{}:master:v{version}", records::CLUSTER_KEY)
}

pub(crate) fn ca_key_aad(cluster: &str, authority: &str, kind: CaKind, key_version: u32) -> String {
    format!(
        "kith:{cluster}:{}:{}:v{key_version}",
        records::authority_key(authority),
        kind.as_str()
    )
}

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
        if let Some(existing) = store.get(records::CLUSTER_KEY).await? {
            let r: ClusterRecord = from_json(records::CLUSTER_KEY, &existing.value)?;
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
        };
        match store.create(records::CLUSTER_KEY, to_json(&cluster)?).await {
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

    fn assemble(
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
                refusals: audit::RefusalLimiter::new(settings.audit_limits.clone()),
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

    fn inner_master_version(&self) -> u32 {
        self.keyring().cluster.master_version
    }

    /// The master key of `version`: the current one, or the pending one of
    /// an unfinished rotation.
    fn master_for(&self, version: u32) -> Result<Arc<SealKey>, Error> {
        self.keyring().master_for(version)
    }

    fn open_ca_key(&self, record: &AuthorityRecord, kind: CaKind) -> Result<PrivateKey, Error> {
        open_ca_key_with(&self.keyring(), self.cluster(), record, kind)
    }

    fn signer(&self, name: &str) -> Result<Arc<Signer>, Error> {
        self.keyring().signer(name)
    }

    /// Every authority's root, DER, in name order: the trust bundle.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.keyring()
            .signers
            .values()
            .map(|s| s.record.root_cert.clone())
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
        let (master_version, master) = self.sealing()?;
        let record = AuthorityRecord {
            version: 1,
            name: name.to_string(),
            key_type,
            root_key: master.seal(
                &ca_key_aad(self.cluster(), name, CaKind::Root, key_version),
                &root.1,
            )?,
            root_cert: root.0,
            intermediate_key: master.seal(
                &ca_key_aad(self.cluster(), name, CaKind::Intermediate, key_version),
                &intermediate.1,
            )?,
            intermediate_cert: intermediate.0,
            master_version,
            key_version,
            created: now,
        };
        match self
            .inner
            .store
            .create(&records::authority_key(name), to_json(&record)?)
            .await
        {
            Ok(_) => {}
            Err(kith_store::Error::AlreadyExists { .. }) => {
                return Err(Error::AuthorityExists(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
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

    /// Append to the audit trail.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), Error> {
        let now = self.now();
        let mut rnd = [0u8; 6];
        vault::random_fill(&mut rnd)?;
        let key = format!(
            "audit/{:020}-{}",
            now.unix_timestamp_nanos().max(0),
            hex::encode(rnd)
        );
        let rec = AuditRecord {
            at: now,
            actor: actor.to_string(),
            action: action.to_string(),
            subject: subject.to_string(),
            detail: detail.to_string(),
        };
        self.inner.store.create(&key, to_json(&rec)?).await?;
        Ok(())
    }
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
    pending: &records::PendingMaster,
) -> Result<SealKey, Error> {
    let raw = kek
        .open(&master_aad(cluster, pending.version), &pending.wrapped)
        .ok_or_else(|| Error::Integrity("the pending master key does not decrypt".into()))?;
    key_from(&raw)
}

fn key_from(raw: &[u8]) -> Result<SealKey, Error> {
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|_| Error::Integrity("master key has the wrong length".into()))?;
    Ok(SealKey::from_bytes(Zeroizing::new(bytes)))
}

/// A passphrase shorter than 12 bytes is refused: it guards every CA key.
pub(crate) fn check_passphrase_strength(p: &[u8]) -> Result<(), Error> {
    if p.len() < 12 {
        return Err(Error::Invalid(
            "the passphrase must be at least 12 characters".into(),
        ));
    }
    Ok(())
}
