//! Huge durations from library callers (issue 9 §6): certificate lifetime,
//! token lifetime and CRL validity each have a documented maximum, and
//! anything beyond (up to `Duration::MAX`) is `invalid-argument` with the
//! limit in its message, never an overflow panic, never a change to the store.

use kith_authority::{
    Authority, Identity, IssueRequest, Settings, SettingsChange, TokenSpec, MAX_CERT_TTL,
    MAX_CRL_VALIDITY, MAX_TOKEN_TTL,
};
use kith_pki::{KeyType, PrivateKey, Profile};
use time::Duration;

mod common;

async fn authority(settings: Settings) -> (common::Harness, Authority) {
    let h = common::Harness::new(common::Backend::Redb, settings).await;
    let a = h.authority.clone();
    (h, a)
}

async fn snapshot(a: &Authority) -> Vec<(String, u64)> {
    a.store()
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|e| (e.key, e.revision))
        .collect()
}

/// Beyond the maximum, far beyond it, at the edges of what `Duration` holds, and not positive.
fn absurd(max: Duration) -> [Duration; 6] {
    [
        max + Duration::SECOND,
        Duration::days(100_000_000),
        Duration::MAX,
        Duration::MIN,
        Duration::ZERO,
        -Duration::SECOND,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_lifetimes_are_bounded() {
    let (_h, a) = authority(Settings::default()).await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let request = |ttl| IssueRequest {
        identity: Identity {
            node: "n1".into(),
            role: "worker".into(),
            profile: Profile::Peer,
            authority: None,
            ttl: Some(ttl),
        },
        public_key: key.public_key(),
        extra_sans: Vec::new(),
    };
    for ttl in absurd(MAX_CERT_TTL) {
        let before = snapshot(&a).await;
        let e = a
            .issue(request(ttl))
            .await
            .expect_err("an absurd lifetime is refused");
        assert_eq!(e.code(), "invalid-argument", "ttl {ttl}: {e}");
        assert!(e.to_string().contains("1825 days"), "{e}");
        assert_eq!(before, snapshot(&a).await, "ttl {ttl}: the store changed");
    }
    a.issue(request(MAX_CERT_TTL))
        .await
        .expect("the longest allowed lifetime issues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lifetimes_are_bounded() {
    let (_h, a) = authority(Settings::default()).await;
    let spec = |ttl| TokenSpec {
        role: "worker".into(),
        node: None,
        ttl,
        uses: 1,
        allow_sans: Vec::new(),
        authority: None,
    };
    for ttl in absurd(MAX_TOKEN_TTL) {
        let before = snapshot(&a).await;
        let e = a
            .create_token(spec(ttl), "test")
            .await
            .expect_err("an absurd lifetime is refused");
        assert_eq!(e.code(), "invalid-argument", "ttl {ttl}: {e}");
        assert!(e.to_string().contains("30 days"), "{e}");
        assert_eq!(before, snapshot(&a).await, "ttl {ttl}: the store changed");
    }
    a.create_token(spec(MAX_TOKEN_TTL), "test")
        .await
        .expect("the longest allowed lifetime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_validity_is_bounded() {
    // The validity is a cluster setting: an absurd one is refused where it
    // is set, so no CRL is ever signed with it.
    let (_h, a) = authority(Settings::default()).await;
    for validity in absurd(MAX_CRL_VALIDITY) {
        let before = snapshot(&a).await;
        let change = SettingsChange {
            crl_validity: Some(validity),
            ..SettingsChange::default()
        };
        let e = a
            .update_settings(change, "test")
            .await
            .expect_err("an absurd CRL validity is refused");
        assert_eq!(e.code(), "invalid-argument", "validity {validity}: {e}");
        assert!(e.to_string().contains("365 days"), "{e}");
        assert_eq!(before, snapshot(&a).await, "the store changed");
    }
    let crl = a.regenerate_crl("cluster").await.expect("a CRL");
    assert_eq!(crl.next_update - crl.this_update, Duration::days(7));
}
