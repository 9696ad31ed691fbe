//! Join tokens: minted by an operator, redeemed once (or a few times) by
//! joining nodes. Only a SHA-256 hash of the secret is stored (the secret is
//! 256 random bits, so a slow hash adds nothing), compared in constant time;
//! uses are spent with compare-and-swap so two replicas can never both spend
//! the last one.

use kith_api::{JoinToken, TokenId};
use kith_store::Store;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::authority::Authority;
use crate::cas::{self, Attempt};
use crate::error::Error;
use crate::keys;
use crate::records::{from_json, to_json};
use crate::vault;
use crate::DEFAULT_AUTHORITY;

/// Default token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::hours(1);
/// Longest token lifetime accepted: tokens are meant to be short-lived.
pub const MAX_TOKEN_TTL: Duration = Duration::days(30);

fn token_key(id: &TokenId) -> String {
    keys::token_key(&id.to_hex())
}

impl Authority {
    /// The id of a token, other than `except`, minted for `node` that can
    /// still be used: while one exists, the name is reserved for it.
    pub(crate) async fn reserving_token(
        &self,
        node: &str,
        except: &str,
    ) -> Result<Option<String>, Error> {
        let prefix = keys::reservation_prefix(node);
        let now = self.now();
        for e in self.store().list(&prefix).await? {
            let id = &e.key[prefix.len()..];
            if id == except {
                continue;
            }
            let key = keys::token_key(id);
            if let Some(t) = self.store().get(&key).await? {
                let t: TokenRecord = from_json(&key, &t.value)?;
                if t.state(now) == "active" {
                    return Ok(Some(t.id));
                }
            }
        }
        Ok(None)
    }
}

/// What a token allows.
#[derive(Clone, Debug)]
pub struct TokenSpec {
    /// Role of the nodes that join with it.
    pub role: String,
    /// If set, the only node name it can join as.
    pub node: Option<String>,
    /// Lifetime.
    pub ttl: Duration,
    /// How many joins it allows.
    pub uses: u32,
    /// DNS names a joining node may ask for besides its own.
    pub allow_sans: Vec<String>,
    /// Authority that issues to its nodes; `None` means [`DEFAULT_AUTHORITY`].
    pub authority: Option<String>,
}

/// A token as stored: everything but the secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenRecord {
    /// Id (public).
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Role granted.
    pub role: String,
    /// Fixed node name, if any.
    pub node: Option<String>,
    /// Extra DNS names allowed.
    pub allow_sans: Vec<String>,
    /// Issuing authority.
    pub authority: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Uses granted.
    pub uses: u32,
    /// Uses left.
    pub uses_left: u32,
    /// When it was revoked, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Lifetime, in seconds, of the leaves issued to the nodes that join
    /// with it (and of their renewals); `None` is the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_ttl_seconds: Option<i64>,
}

impl TokenRecord {
    /// `revoked`, `expired`, `used-up` or `active`, as of `now`.
    pub fn state(&self, now: OffsetDateTime) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if now >= self.expires {
            "expired"
        } else if self.uses_left == 0 {
            "used-up"
        } else {
            "active"
        }
    }
}

/// Every token, in id order (no secrets: only their hashes are stored).
pub async fn list_tokens(store: &dyn Store) -> Result<Vec<TokenRecord>, Error> {
    store
        .list(keys::TOKEN_PREFIX)
        .await?
        .iter()
        .map(|e| from_json(&e.key, &e.value))
        .collect()
}

impl Authority {
    /// Mint a token. Returns its record and the token to hand to the node;
    /// the secret exists only in the returned token.
    pub async fn create_token(
        &self,
        spec: TokenSpec,
        actor: &str,
    ) -> Result<(TokenRecord, JoinToken), Error> {
        self.create_token_with_cert_ttl(spec, None, actor).await
    }

    /// [`Authority::create_token`] whose nodes get leaves of `cert_ttl`
    /// (from [`crate::MIN_CERT_TTL`] to [`crate::MAX_CERT_TTL`]) at join
    /// and at every renewal; `None` leaves it to the server's default.
    pub async fn create_token_with_cert_ttl(
        &self,
        spec: TokenSpec,
        cert_ttl: Option<Duration>,
        actor: &str,
    ) -> Result<(TokenRecord, JoinToken), Error> {
        if let Some(t) = cert_ttl {
            crate::limits::check_cert_ttl(t)?;
        }
        kith_pki::validate_node_role(&spec.role)?;
        if let Some(n) = &spec.node {
            kith_pki::validate_node_name(n)?;
        }
        if spec.uses == 0 {
            return Err(Error::Invalid("a token needs at least one use".into()));
        }
        crate::limits::check("token lifetime", spec.ttl, MAX_TOKEN_TTL, false)?;
        for san in &spec.allow_sans {
            san.parse::<kith_pki::San>()?;
        }
        let authority = spec.authority.as_deref().unwrap_or(DEFAULT_AUTHORITY);
        let pin = kith_pki::spki_pin(&self.token_root(authority)?)?;
        let mut id = [0u8; 8];
        vault::random_fill(&mut id)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        vault::random_fill(secret.as_mut())?;
        let token = JoinToken {
            pin,
            id: TokenId::from_bytes(id),
            secret,
        };
        let now = self.now();
        let expires = crate::limits::later(now, spec.ttl, "token lifetime")?;
        let record = TokenRecord {
            id: token.id.to_hex(),
            secret_sha256: hex::encode(kith_pki::sha256(token.secret.as_ref())),
            role: spec.role,
            node: spec.node,
            allow_sans: spec
                .allow_sans
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            authority: authority.to_string(),
            created: now,
            expires: kith_pki::second_precision(expires),
            uses: spec.uses,
            uses_left: spec.uses,
            revoked_at: None,
            cert_ttl_seconds: cert_ttl.map(|t| t.whole_seconds()),
        };
        // A token minted for a name reserves it: no other token joins as it
        // while this one can still be used. The reservation is written first,
        // so a token never exists without it.
        if let Some(n) = &record.node {
            self.store()
                .put(&keys::reservation_key(n, &record.id), b"{}".to_vec())
                .await?;
        }
        match self
            .store()
            .create(&token_key(&token.id), to_json(&record)?)
            .await
        {
            Ok(_) => {}
            // 64 random bits colliding means a broken RNG: refuse, never overwrite.
            Err(kith_store::Error::AlreadyExists { key }) => {
                return Err(Error::Internal(format!("token id collision at {key}")))
            }
            Err(e) => return Err(e.into()),
        }
        self.audit(
            actor,
            "token-create",
            &record.id,
            &format!(
                "role {} uses {} expires {}",
                record.role, record.uses, record.expires
            ),
        )
        .await?;
        Ok((record, token))
    }

    /// Spend one use of `token`. Checks, in this order and revealing nothing
    /// before the secret is proven: the token exists and its secret matches
    /// (`invalid-token` for either), it was minted for this cluster
    /// (`token-wrong-cluster`), it is not revoked, not expired, and has a use
    /// left. The use is spent with compare-and-swap. Returns the record as it
    /// was before this use was spent.
    pub async fn redeem_token(&self, token: &JoinToken) -> Result<TokenRecord, Error> {
        self.redeem_token_with(token, |_| Ok(()))
            .await
            .map(|(record, ())| record)
    }

    /// Like [`Authority::redeem_token`], but spends the use only if `check`
    /// accepts the request the token is about to authorise (its CSRs, the
    /// node name): a bad request is refused with `check`'s error and spends
    /// nothing. `check` sees the token's record (role, fixed name, allowed
    /// SANs) and may run again if a concurrent redemption forces a retry.
    pub async fn redeem_token_with<T>(
        &self,
        token: &JoinToken,
        mut check: impl FnMut(&TokenRecord) -> Result<T, Error>,
    ) -> Result<(TokenRecord, T), Error> {
        let key = token_key(&token.id);
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let (record, revision) = self.valid_token(token).await?;
            let accepted = check(&record)?;
            let spent = TokenRecord {
                uses_left: record.uses_left - 1,
                ..record.clone()
            };
            let write = self.store().update(&key, to_json(&spent)?, revision).await;
            Ok(match cas::written(write)? {
                Some(_) => Attempt::Done((record, accepted)),
                // Someone else spent or changed it meanwhile: look again.
                None => Attempt::Conflict,
            })
        })
        .await
    }

    /// Every check of [`Authority::redeem_token`] without spending a use:
    /// the record and its revision if the token could be redeemed now.
    pub async fn check_token(&self, token: &JoinToken) -> Result<TokenRecord, Error> {
        self.valid_token(token).await.map(|(r, _)| r)
    }

    async fn valid_token(&self, token: &JoinToken) -> Result<(TokenRecord, u64), Error> {
        let key = token_key(&token.id);
        let presented = kith_pki::sha256(token.secret.as_ref());
        let Some(entry) = self.store().get(&key).await? else {
            return Err(Error::InvalidToken);
        };
        let record: TokenRecord = from_json(&key, &entry.value)?;
        let stored = hex::decode(&record.secret_sha256)
            .map_err(|_| Error::Integrity(format!("{key}: bad secret hash")))?;
        if !bool::from(stored.as_slice().ct_eq(&presented)) {
            return Err(Error::InvalidToken);
        }
        // Any root of the bundle: a token minted before a root rotation
        // pins the old root, one minted after it the new one.
        let mut pinned = false;
        for root in self.authority_roots(&record.authority)? {
            pinned |= kith_pki::spki_pin(&root)? == token.pin;
        }
        if !pinned {
            return Err(Error::TokenWrongCluster);
        }
        if let Some(at) = record.revoked_at {
            return Err(Error::TokenRevoked(at));
        }
        if self.now() >= record.expires {
            return Err(Error::TokenExpired(record.expires));
        }
        if record.uses_left == 0 {
            return Err(Error::TokenUsedUp);
        }
        Ok((record, entry.revision))
    }

    /// Revoke a token so it can no longer be redeemed. Revoking twice is a no-op.
    pub async fn revoke_token(&self, id: &TokenId, actor: &str) -> Result<TokenRecord, Error> {
        let key = token_key(id);
        cas::retry!(&key, cas::ATTEMPTS, async |_| {
            let entry = self
                .store()
                .get(&key)
                .await?
                .ok_or_else(|| Error::UnknownToken(id.to_hex()))?;
            let record: TokenRecord = from_json(&key, &entry.value)?;
            if record.revoked_at.is_some() {
                return Ok(Attempt::Done(record));
            }
            let revoked = TokenRecord {
                revoked_at: Some(kith_pki::second_precision(self.now())),
                ..record
            };
            let write = self
                .store()
                .update(&key, to_json(&revoked)?, entry.revision)
                .await;
            if cas::written(write)?.is_none() {
                return Ok(Attempt::Conflict);
            }
            self.audit(actor, "token-revoke", &revoked.id, "").await?;
            Ok(Attempt::Done(revoked))
        })
        .await
    }
}
