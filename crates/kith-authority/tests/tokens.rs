//! Join tokens against a real redb store with an injected clock: every
//! refusal has its code and spends nothing; concurrent redemptions never
//! spend a use twice.

use std::sync::Arc;

use kith_api::{JoinToken, TokenId};
use kith_authority::{list_tokens, Authority, Error, ManualClock, TokenSpec};
use kith_store::Store;
use time::Duration;
use zeroize::Zeroizing;

mod common;

async fn setup() -> (
    tempfile::TempDir,
    Arc<dyn Store>,
    Arc<ManualClock>,
    Authority,
) {
    let h = common::Harness::redb().await;
    (h.dir, h.store, h.clock, h.authority)
}

fn spec(uses: u32) -> TokenSpec {
    TokenSpec {
        role: "worker".into(),
        node: None,
        ttl: Duration::hours(1),
        uses,
        allow_sans: Vec::new(),
        authority: None,
    }
}

async fn uses_left(store: &dyn Store) -> u32 {
    list_tokens(store).await.expect("list")[0].uses_left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeem_once_then_used_up_and_the_secret_is_not_stored() {
    let (_d, store, _c, authority) = setup().await;
    let (record, token) = authority
        .create_token(spec(1), "test")
        .await
        .expect("create");
    let text = token.encode();
    let parsed = JoinToken::parse(&text).expect("parse");
    assert_eq!(
        parsed.pin,
        kith_pki::spki_pin(&authority.root_cert("cluster").expect("root")).expect("pin")
    );
    let stored = store
        .get(&format!("token/{}", record.id))
        .await
        .expect("get")
        .expect("present");
    let secret_hex = &text[text.len() - 64..];
    assert!(
        !String::from_utf8_lossy(&stored.value).contains(secret_hex),
        "only a hash is stored"
    );

    let before = authority.redeem_token(&parsed).await.expect("first use");
    assert_eq!((before.role.as_str(), before.uses_left), ("worker", 1));
    assert_eq!(uses_left(&*store).await, 0);
    let e = authority.redeem_token(&parsed).await.expect_err("reuse");
    assert_eq!(e.code(), "token-used-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_codes_and_spend_nothing() {
    let (_d, store, clock, authority) = setup().await;
    let (record, token) = authority
        .create_token(spec(3), "test")
        .await
        .expect("create");

    // A wrong secret for a real id, and a guessed id: the same answer.
    let mut wrong = token.clone();
    wrong.secret = Zeroizing::new([0u8; 32]);
    assert_eq!(
        authority
            .redeem_token(&wrong)
            .await
            .expect_err("wrong")
            .code(),
        "invalid-token"
    );
    let mut guessed = token.clone();
    guessed.id = TokenId::from_bytes([9; 8]);
    assert_eq!(
        authority
            .redeem_token(&guessed)
            .await
            .expect_err("guess")
            .code(),
        "invalid-token"
    );
    // A token from another cluster: right id and secret, other pin.
    let mut foreign = token.clone();
    foreign.pin = [7; 32];
    assert_eq!(
        authority
            .redeem_token(&foreign)
            .await
            .expect_err("pin")
            .code(),
        "token-wrong-cluster"
    );
    assert_eq!(uses_left(&*store).await, 3, "refusals spend nothing");

    // Expired.
    clock.advance(Duration::hours(1) + Duration::seconds(1));
    assert_eq!(
        authority
            .redeem_token(&token)
            .await
            .expect_err("expired")
            .code(),
        "token-expired"
    );
    clock.advance(-(Duration::hours(1) + Duration::seconds(1)));

    // Revoked (twice is a no-op).
    let id = TokenId::parse(&record.id).expect("id");
    let r1 = authority.revoke_token(&id, "test").await.expect("revoke");
    let r2 = authority
        .revoke_token(&id, "test")
        .await
        .expect("revoke again");
    assert_eq!(r1.revoked_at, r2.revoked_at);
    assert_eq!(
        authority
            .redeem_token(&token)
            .await
            .expect_err("revoked")
            .code(),
        "token-revoked"
    );
    assert_eq!(uses_left(&*store).await, 3);
    assert_eq!(
        authority
            .revoke_token(&TokenId::from_bytes([1; 8]), "test")
            .await
            .expect_err("unknown")
            .code(),
        "unknown-token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_never_spend_a_use_twice() {
    let (_d, store, _c, authority) = setup().await;
    for uses in [1u32, 5] {
        let (_, token) = authority
            .create_token(spec(uses), "test")
            .await
            .expect("create");
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (a, t) = (authority.clone(), token.clone());
                tokio::spawn(async move { a.redeem_token(&t).await })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => ok += 1,
                Err(Error::TokenUsedUp) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(ok, uses, "exactly {uses} of 32 racing joins win");
    }
    assert!(list_tokens(&*store)
        .await
        .expect("list")
        .iter()
        .all(|t| t.uses_left == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused() {
    let (_d, store, _c, authority) = setup().await;
    let cases = [
        TokenSpec { uses: 0, ..spec(1) },
        TokenSpec {
            ttl: Duration::ZERO,
            ..spec(1)
        },
        TokenSpec {
            ttl: Duration::days(31),
            ..spec(1)
        },
        TokenSpec {
            role: "Bad_Role".into(),
            ..spec(1)
        },
        TokenSpec {
            node: Some("a.b".into()),
            ..spec(1)
        },
        TokenSpec {
            allow_sans: vec!["bad name".into()],
            ..spec(1)
        },
        TokenSpec {
            authority: Some("nope".into()),
            ..spec(1)
        },
    ];
    for c in cases {
        let e = authority
            .create_token(c.clone(), "test")
            .await
            .expect_err("refused");
        assert!(
            ["invalid-argument", "invalid-name", "unknown-authority"].contains(&e.code().as_str()),
            "{c:?}: {e}"
        );
    }
    assert!(list_tokens(&*store).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_token_would_authorise_but_fails_its_check_spends_nothing() {
    let (_d, store, _c, authority) = setup().await;
    let (_, token) = authority
        .create_token(spec(1), "test")
        .await
        .expect("create");
    let refused = authority
        .redeem_token_with(&token, |record| {
            assert_eq!(record.role, "worker");
            Err::<(), _>(Error::Invalid("the CSR was refused".into()))
        })
        .await
        .expect_err("check refuses");
    assert_eq!(refused.code(), "invalid-argument");
    assert_eq!(
        uses_left(&*store).await,
        1,
        "a refused request spends no use"
    );
    let (_, value) = authority
        .redeem_token_with(&token, |_| Ok(42))
        .await
        .expect("accepted");
    assert_eq!(value, 42);
    assert_eq!(uses_left(&*store).await, 0);
}
