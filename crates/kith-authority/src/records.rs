//! The typed records the authority keeps, one per store key.

use kith_pki::{KeyType, Namespace, Profile, RevocationReason, San};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cluster_settings::ClusterSettings;
use crate::error::Error;
use crate::vault::KdfParams;

/// Base64 (standard, padded) for binary fields in JSON records.
pub(crate) mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// The cluster: its name and the wrapped master key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Record format version.
    pub version: u32,
    /// Cluster name.
    pub cluster: String,
    /// When `init` ran.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt.
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    /// Master key version (grows when the vault is rotated).
    pub master_version: u32,
    /// The master key sealed under the passphrase-derived key.
    #[serde(with = "b64")]
    pub wrapped_master: Vec<u8>,
    /// A rotation in progress: the next master key (its version and its
    /// wrapping under the passphrase-derived key). Records sealed by either
    /// key open while it is set; `vault rotate` finishes it.
    #[serde(default)]
    pub pending_master: Option<PendingMaster>,
    /// What every process sharing the store must agree on; absent (the
    /// defaults) until one is changed.
    #[serde(default, skip_serializing_if = "ClusterSettings::is_default")]
    pub settings: ClusterSettings,
    /// Every CRL signed from now on is numbered above this, whatever the
    /// stored one says (or with none stored): raised by a restore past any
    /// number the backed-up CA may have published after its backup.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub crl_number_floor: u64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The next master key while `vault rotate` runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingMaster {
    /// Its version.
    pub version: u32,
    /// Sealed under the passphrase-derived key.
    #[serde(with = "b64")]
    pub wrapped: Vec<u8>,
}

/// One CA hierarchy: its root and intermediate certificates and sealed keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthorityRecord {
    /// Record format version.
    pub version: u32,
    /// Authority name.
    pub name: String,
    /// Key type of both CA keys.
    pub key_type: KeyType,
    /// Root certificate, DER.
    #[serde(with = "b64")]
    pub root_cert: Vec<u8>,
    /// Root PKCS#8 key sealed by the master key.
    #[serde(with = "b64")]
    pub root_key: Vec<u8>,
    /// Intermediate certificate, DER.
    #[serde(with = "b64")]
    pub intermediate_cert: Vec<u8>,
    /// Intermediate PKCS#8 key sealed by the master key.
    #[serde(with = "b64")]
    pub intermediate_key: Vec<u8>,
    /// Master key version that sealed the keys.
    pub master_version: u32,
    /// Version of the keys (part of the sealing AAD; grows on re-key).
    pub key_version: u32,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Generation of the active intermediate: 1 for the first, one more at
    /// each renewal (records older than renewals have none: 1).
    #[serde(default = "first_generation")]
    pub intermediate_generation: u32,
    /// The next intermediate, made and published (its CRL served) before
    /// anything is issued from it: peers must hold its CRL before they meet
    /// its leaves, or they refuse them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared_intermediate: Option<OtherIntermediate>,
    /// Intermediates a renewal replaced, kept (and their CRLs signed) until
    /// they expire, since the leaves they signed live until then at most.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_intermediates: Vec<OtherIntermediate>,
    /// Generation of the active root: 1 for the first, one more at each
    /// root rotation.
    #[serde(default = "first_generation")]
    pub root_generation: u32,
    /// A root rotation under way (prepared, active, or finished while the
    /// other root is still trusted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_rotation: Option<RootRotation>,
    /// The highest root generation a root rotation made, an aborted one's
    /// included (0: none): the next root takes a later one, so no two
    /// roots share a name or a CRL key.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_root_generation: u32,
    /// The same for the intermediates a root rotation made.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_intermediate_generation: u32,
    /// The highest key version any key of the record was ever sealed under
    /// (0: none beyond the slots'): a new key takes a later one, so a sealed
    /// key of a slot that is gone (an aborted rotation's, a pruned
    /// intermediate's) never shares an AAD with a later one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_key_version: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a root rotation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RootPhase {
    /// The new root and intermediate exist and are trusted (in the bundle,
    /// vouched for by the old root); nothing is issued from them yet.
    Prepared,
    /// Leaves are issued under the new intermediate, with the new root
    /// cross-signed by the old one in their chain; nodes are asked to renew.
    Active,
    /// New tokens pin the new root; the old one stays trusted until the
    /// last leaf under it has expired.
    Finished,
}

impl RootPhase {
    /// `prepared`, `active` or `finished`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepared => "prepared",
            Self::Active => "active",
            Self::Finished => "finished",
        }
    }
}

/// A root rotation of one authority (`roots.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRotation {
    /// Its phase.
    pub phase: RootPhase,
    /// When it was started.
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    /// When the phase began.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// While prepared, the new root; from activation on, the old one.
    pub other_root: OtherRoot,
    /// While prepared, the new intermediate (signed by the new root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_intermediate: Option<OtherIntermediate>,
    /// The new root signed by the old one, then the old one signed by the
    /// new one, DER: how a node that trusts either comes to trust both.
    #[serde(with = "b64_list")]
    pub cross_signed: Vec<Vec<u8>>,
    /// Started because the old keys are compromised: the old intermediate
    /// is revoked by the old root at activation, nodes renew at once.
    #[serde(default)]
    pub compromised: bool,
    /// How long the old root stays trusted after the rotation finishes,
    /// when the operator set it (an emergency): then the overlap is this,
    /// not the life of the last leaf under the old root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap_seconds: Option<i64>,
    /// When the old root (from `finished` on) leaves the bundle: the
    /// expiry of the last leaf that chains to it, or of the last token
    /// minted before the finish (which pins it).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub other_root_until: Option<OffsetDateTime>,
    /// Aborted after activation: the old root is active again and the new
    /// one is the one leaving.
    #[serde(default)]
    pub aborted: bool,
    /// Nodes a forced step left behind, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<String>,
}

/// The root of a rotation that is not the active one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherRoot {
    /// Its generation.
    pub generation: u32,
    /// The certificate, DER.
    #[serde(with = "b64")]
    pub cert: Vec<u8>,
    /// Its PKCS#8 key sealed by the record's master key, under its own key
    /// version (it signs its CRL and, when compromised, revokes).
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The key version in the key's sealing AAD.
    pub key_version: u32,
    /// Its key's type when it differs from the record's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
}

/// Base64 for a list of binary values.
pub(crate) mod b64_list {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            v.iter()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        )
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<String>::deserialize(d)?
            .into_iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

fn first_generation() -> u32 {
    1
}

/// An intermediate of an authority other than the active one: prepared,
/// or replaced.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct OtherIntermediate {
    /// Its generation.
    pub generation: u32,
    /// The certificate, DER.
    #[serde(with = "b64")]
    pub cert: Vec<u8>,
    /// Its PKCS#8 key sealed by the record's master key, under its own key
    /// version.
    #[serde(with = "b64")]
    pub key: Vec<u8>,
    /// The key version in the key's sealing AAD.
    pub key_version: u32,
    /// Its key's type when it differs from the record's (a root rotation
    /// to another key type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    /// When it was prepared, or replaced.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

impl AuthorityRecord {
    /// Every sealed CA key of the record with what its sealing AAD names
    /// (kind and key version): what a master-key rotation reseals.
    pub(crate) fn sealed_keys_mut(&mut self) -> Vec<(kith_pki::CaKind, u32, &mut Vec<u8>)> {
        use kith_pki::CaKind;
        let mut out = vec![
            (CaKind::Root, self.key_version, &mut self.root_key),
            (
                CaKind::Intermediate,
                self.key_version,
                &mut self.intermediate_key,
            ),
        ];
        let (rotation_root, rotation_intermediate) = match &mut self.root_rotation {
            Some(r) => (Some(&mut r.other_root), r.new_intermediate.as_mut()),
            None => (None, None),
        };
        for o in self
            .prepared_intermediate
            .iter_mut()
            .chain(rotation_intermediate)
            .chain(self.previous_intermediates.iter_mut())
        {
            out.push((CaKind::Intermediate, o.key_version, &mut o.key));
        }
        if let Some(r) = rotation_root {
            out.push((CaKind::Root, r.key_version, &mut r.key));
        }
        out
    }

    /// The intermediates other than the active one: prepared (by a renewal
    /// or a root rotation), then replaced.
    pub(crate) fn other_intermediates(&self) -> impl Iterator<Item = &OtherIntermediate> {
        self.prepared_intermediate
            .iter()
            .chain(
                self.root_rotation
                    .iter()
                    .filter_map(|r| r.new_intermediate.as_ref()),
            )
            .chain(self.previous_intermediates.iter())
    }

    /// The highest key version any sealed key of the record uses: a new
    /// key takes the next one, so no two share an AAD.
    pub(crate) fn max_key_version(&self) -> u32 {
        let rotation = self.root_rotation.iter().map(|r| r.other_root.key_version);
        self.other_intermediates()
            .map(|o| o.key_version)
            .chain(rotation)
            .chain([self.key_version, self.last_key_version])
            .max()
            .unwrap_or(self.key_version)
    }

    /// Every root this authority's nodes trust now, the active one first.
    pub fn bundle_roots(&self) -> Vec<Vec<u8>> {
        let mut out = vec![self.root_cert.clone()];
        if let Some(r) = &self.root_rotation {
            out.push(r.other_root.cert.clone());
        }
        out
    }

    /// The cross-signed roots published with the bundle (empty outside a
    /// root rotation).
    pub fn cross_signed(&self) -> &[Vec<u8>] {
        match &self.root_rotation {
            Some(r) => &r.cross_signed,
            None => &[],
        }
    }
}

/// Every issued certificate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Node name.
    pub node: String,
    /// Role.
    pub role: String,
    /// Profile.
    pub profile: Profile,
    /// Issuing authority.
    pub authority: String,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER, hex.
    pub fingerprint: String,
    /// SANs.
    pub sans: Vec<San>,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The certificate, DER.
    #[serde(with = "b64")]
    pub der: Vec<u8>,
    /// The holder's name space. Records written before name spaces existed
    /// have none: see [`CertRecord::holder`].
    #[serde(default)]
    pub namespace: Option<Namespace>,
}

impl CertRecord {
    /// The holder's name space; for records older than name spaces, an
    /// `admin`-profile certificate is an operator's and one with the
    /// reserved role `kith` a server's.
    pub fn holder(&self) -> Namespace {
        match self.namespace {
            Some(ns) => ns,
            None if self.profile == Profile::Admin => Namespace::Operator,
            None if self.role == kith_pki::RESERVED_ROLE => Namespace::Server,
            None => Namespace::Node,
        }
    }
}

/// Index entry: `nodecert/<node>/<serial>`, so revoking a node needs no full scan.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct NodeCertIndex {
    pub(crate) authority: String,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) not_after: OffsetDateTime,
}

/// A revocation. Created once; revoking again keeps the first record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokedRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Node name.
    pub node: String,
    /// Issuing authority.
    pub authority: String,
    /// Why.
    pub reason: RevocationReason,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// The certificate's own expiry: after it the entry leaves the CRL.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// The current CRL of an authority.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrlRecord {
    /// Authority name.
    pub authority: String,
    /// CRL number (strictly increasing).
    pub number: u64,
    /// thisUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub next_update: OffsetDateTime,
    /// Number of entries.
    pub entries: usize,
    /// The highest store revision of the revocation records it was signed
    /// from: a revocation record above it is not in this CRL yet.
    #[serde(default)]
    pub covers: u64,
    /// The CRL, DER.
    #[serde(with = "b64")]
    pub der: Vec<u8>,
}

/// One line of the audit trail: a link of its writer's chain (see
/// `audit_chain`). Records written before the chain existed have no
/// writer, sequence number or MAC (they read with the defaults).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who (`local-operator` for offline commands).
    pub actor: String,
    /// What (`init`, `revoke`, `export-key`, ...).
    pub action: String,
    /// On what.
    pub subject: String,
    /// Details (never secret material).
    pub detail: String,
    /// `ok`, or the error code of a refusal (`secret-forbidden`,
    /// `rate-limited`).
    #[serde(default = "ok_outcome")]
    pub outcome: String,
    /// The server request it was made for; none for offline commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The chain: a server's name, or `local-<random>` for one offline
    /// process. Empty for a legacy record.
    #[serde(default)]
    pub writer: String,
    /// Place in the writer's chain, from 1 (0: legacy).
    #[serde(default)]
    pub seq: u64,
    /// The MAC of the writer's previous record (hex; empty for the first).
    #[serde(default)]
    pub prev: String,
    /// HMAC-SHA256 over this record's content and `prev` (hex).
    #[serde(default)]
    pub mac: String,
}

fn ok_outcome() -> String {
    "ok".into()
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(|e| Error::Internal(format!("encoding a record: {e}")))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Integrity(format!("record {key}: {e}")))
}
