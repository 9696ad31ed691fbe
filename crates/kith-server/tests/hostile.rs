//! Hostile input against a real server: real TCP, real TLS (rustls on both
//! ends), a real redb store, an injected clock. Each case asserts the exact
//! HTTP status and error code, and that the store did not change.

mod common;

use common::*;
use hyper::Method;
use kith_agent::Connection;
use kith_api::wire::{CsrSubmission, IssueResponse, JoinRequest, RenewRequest};
use kith_authority::RevokeOutcome;
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason, San};
use time::{Duration, OffsetDateTime};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_inputs_are_refused_with_exact_codes_and_change_nothing() {
    let env = Env::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cases = 0;
    let mut c = env.public().await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let good_csr = csr_for(&key, "node-1", &[], Profile::Peer);
    let join_body = |token: &str, csrs: Vec<CsrSubmission>| JoinRequest {
        token: token.into(),
        node: Some("node-1".into()),
        csrs,
        may_leave_out: Vec::new(),
    };

    // --- tokens
    cases += hostile!(
        env,
        "garbage token",
        400,
        "malformed-token",
        post(
            &mut c,
            "/v1/join",
            &join_body("not a token", vec![good_csr.clone()])
        )
        .await
    );
    let real = env.token("worker", None, 1).await;
    cases += hostile!(
        env,
        "wrong version prefix",
        400,
        "malformed-token",
        post(
            &mut c,
            "/v1/join",
            &join_body(&real.replacen("KITH1", "KITH2", 1), vec![good_csr.clone()])
        )
        .await
    );
    let (pin_id, _secret) = real.rsplit_once('.').expect("token shape");
    let guessed_id = format!(
        "{}-{}.{}",
        &pin_id[..pin_id.len() - 17],
        "0123456789abcdef",
        "ab".repeat(32)
    );
    cases += hostile!(
        env,
        "guessed token",
        401,
        "invalid-token",
        post(
            &mut c,
            "/v1/join",
            &join_body(&guessed_id, vec![good_csr.clone()])
        )
        .await
    );
    let wrong_secret = format!("{pin_id}.{}", "cd".repeat(32));
    cases += hostile!(
        env,
        "wrong secret for a real token id",
        401,
        "invalid-token",
        post(
            &mut c,
            "/v1/join",
            &join_body(&wrong_secret, vec![good_csr.clone()])
        )
        .await
    );
    let wrong_pin = format!("KITH1-{}{}", "00".repeat(32), &real[6 + 64..]);
    cases += hostile!(
        env,
        "token with another cluster's pin",
        403,
        "token-wrong-cluster",
        post(
            &mut c,
            "/v1/join",
            &join_body(&wrong_pin, vec![good_csr.clone()])
        )
        .await
    );
    let revoked = env.token("worker", None, 1).await;
    let id = kith_api::JoinToken::parse(&revoked).expect("parse").id;
    env.authority
        .revoke_token(&id, "test")
        .await
        .expect("revoke token");
    cases += hostile!(
        env,
        "revoked token",
        403,
        "token-revoked",
        post(
            &mut c,
            "/v1/join",
            &join_body(&revoked, vec![good_csr.clone()])
        )
        .await
    );
    let expiring = env.token("worker", None, 1).await;
    env.clock.advance(Duration::hours(2));
    cases += hostile!(
        env,
        "expired token",
        403,
        "token-expired",
        post(
            &mut c,
            "/v1/join",
            &join_body(&expiring, vec![good_csr.clone()])
        )
        .await
    );
    env.clock.set(OffsetDateTime::now_utc());
    let fixed = env.token("worker", Some("node-a"), 1).await;
    cases += hostile!(
        env,
        "token for another node name",
        403,
        "node-name-mismatch",
        post(
            &mut c,
            "/v1/join",
            &join_body(&fixed, vec![good_csr.clone()])
        )
        .await
    );

    // --- CSRs (a good token each time: a refused CSR must not spend it)
    let token = env.token("worker", None, 1).await;
    let mut csr_der =
        kith_pki::build_csr(&key, "node-1", &[San::Dns("node-1".into())]).expect("csr");
    let last = csr_der.len() - 1;
    csr_der[last] ^= 0x01;
    let bad_sig = CsrSubmission {
        profile: "peer".into(),
        csr: kith_pki::pem_encode("CERTIFICATE REQUEST", &csr_der),
    };
    cases += hostile!(
        env,
        "CSR with a bad signature",
        400,
        "bad-signature",
        post(&mut c, "/v1/join", &join_body(&token, vec![bad_sig])).await
    );
    let weak = CsrSubmission {
        profile: "peer".into(),
        csr: openssl_csr(
            tmp.path(),
            "rsa:1024",
            &["-addext", "subjectAltName=DNS:node-1"],
        ),
    };
    cases += hostile!(
        env,
        "CSR with an RSA-1024 key",
        400,
        "weak-key",
        post(&mut c, "/v1/join", &join_body(&token, vec![weak])).await
    );
    let wildcard = csr_for(
        &key,
        "node-1",
        &[San::Dns("*.test.example".into())],
        Profile::Peer,
    );
    cases += hostile!(
        env,
        "CSR asking for a wildcard",
        403,
        "wildcard-not-allowed",
        post(&mut c, "/v1/join", &join_body(&token, vec![wildcard])).await
    );
    let other = csr_for(
        &key,
        "node-1",
        &[San::Dns("node-2.test.example".into())],
        Profile::Peer,
    );
    cases += hostile!(
        env,
        "CSR asking for another node's name",
        403,
        "san-not-allowed",
        post(&mut c, "/v1/join", &join_body(&token, vec![other])).await
    );
    let ca = CsrSubmission {
        profile: "peer".into(),
        csr: openssl_csr(
            tmp.path(),
            "rsa:2048",
            &[
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "subjectAltName=DNS:node-1",
            ],
        ),
    };
    cases += hostile!(
        env,
        "CSR asking to be a CA",
        403,
        "ca-not-allowed",
        post(&mut c, "/v1/join", &join_body(&token, vec![ca])).await
    );
    let garbage = CsrSubmission {
        profile: "peer".into(),
        csr: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
            .into(),
    };
    cases += hostile!(
        env,
        "CSR that is not DER inside",
        400,
        "malformed-csr",
        post(&mut c, "/v1/join", &join_body(&token, vec![garbage])).await
    );
    cases += hostile!(
        env,
        "admin profile through a join",
        403,
        "profile-not-allowed",
        post(
            &mut c,
            "/v1/join",
            &join_body(&token, vec![csr_for(&key, "node-1", &[], Profile::Admin)])
        )
        .await
    );
    let mut unknown = good_csr.clone();
    unknown.profile = "root".into();
    cases += hostile!(
        env,
        "unknown profile",
        400,
        "unknown-profile",
        post(&mut c, "/v1/join", &join_body(&token, vec![unknown])).await
    );
    cases += hostile!(
        env,
        "no CSR at all",
        400,
        "invalid-argument",
        post(&mut c, "/v1/join", &join_body(&token, vec![])).await
    );
    let key2 = PrivateKey::generate(KeyType::P256).expect("key");
    cases += hostile!(
        env,
        "CSRs over two different keys",
        400,
        "csr-key-mismatch",
        post(
            &mut c,
            "/v1/join",
            &join_body(
                &token,
                vec![
                    good_csr.clone(),
                    csr_for(&key2, "node-1", &[], Profile::Client)
                ]
            )
        )
        .await
    );

    // --- bodies
    let huge = vec![b' '; kith_api::wire::MAX_BODY_BYTES + 1];
    cases += hostile!(
        env,
        "oversized body",
        413,
        "body-too-large",
        c.send(Method::POST, "/v1/join", Some(huge))
            .await
            .expect("transport")
    );
    let full = serde_json::to_vec(&join_body(&token, vec![good_csr.clone()])).expect("encode");
    cases += hostile!(
        env,
        "truncated body",
        400,
        "malformed-request",
        c.send(
            Method::POST,
            "/v1/join",
            Some(full[..full.len() / 2].to_vec())
        )
        .await
        .expect("transport")
    );
    cases += hostile!(
        env,
        "wrong content type",
        415,
        "unsupported-media-type",
        c.send_raw(Method::POST, "/v1/join", Some("text/plain"), full.clone())
            .await
            .expect("transport")
    );
    cases += hostile!(
        env,
        "no content type",
        415,
        "unsupported-media-type",
        c.send_raw(Method::POST, "/v1/join", None, full.clone())
            .await
            .expect("transport")
    );
    let mut extra: serde_json::Value = serde_json::from_slice(&full).expect("json");
    extra["role"] = "admin".into();
    cases += hostile!(
        env,
        "unknown field (trying to pick the role)",
        400,
        "malformed-request",
        post(&mut c, "/v1/join", &extra).await
    );
    cases += hostile!(
        env,
        "unknown endpoint",
        404,
        "not-found",
        c.send(Method::GET, "/v1/nothing", None)
            .await
            .expect("transport")
    );
    cases += hostile!(
        env,
        "wrong method",
        405,
        "method-not-allowed",
        c.send(Method::GET, "/v1/join", None)
            .await
            .expect("transport")
    );
    cases += hostile!(
        env,
        "path that is not UTF-8",
        400,
        "malformed-request",
        c.send(Method::GET, "/v1/crl/%FF%FE", None)
            .await
            .expect("transport")
    );
    cases += hostile!(
        env,
        "CRL of an unknown authority",
        404,
        "unknown-authority",
        c.send(Method::GET, "/v1/crl/nope", None)
            .await
            .expect("transport")
    );
    // The good token is still unspent after all that: it joins now.
    let r: IssueResponse = c
        .json(
            Method::POST,
            "/v1/join",
            Some(&join_body(&token, vec![good_csr.clone()])),
        )
        .await
        .expect("the token survived every refused request");
    let node1 = creds_from(key, &r);
    cases += hostile!(
        env,
        "reused single-use token",
        403,
        "token-used-up",
        post(
            &mut c,
            "/v1/join",
            &join_body(&token, vec![good_csr.clone()])
        )
        .await
    );
    let fresh = env.token("worker", None, 1).await;
    cases += hostile!(
        env,
        "name held by a live certificate with another key",
        409,
        "node-name-taken",
        post(
            &mut c,
            "/v1/join",
            &join_body(&fresh, vec![csr_for(&key2, "node-1", &[], Profile::Peer)])
        )
        .await
    );

    // --- renewal and admin endpoints
    let renew_body = |node: Option<&str>, k: &PrivateKey, p: Profile| RenewRequest {
        node: node.map(str::to_string),
        csrs: vec![csr_for(k, node.unwrap_or("node-1"), &[], p)],
    };
    let k3 = PrivateKey::generate(KeyType::P256).expect("key");
    cases += hostile!(
        env,
        "renewal without a client certificate",
        401,
        "client-certificate-required",
        post(
            &mut c,
            "/v1/renew",
            &renew_body(Some("node-1"), &k3, Profile::Peer)
        )
        .await
    );
    cases += hostile!(
        env,
        "admin endpoint without a client certificate",
        401,
        "client-certificate-required",
        c.send(Method::GET, "/v1/admin/nodes", None)
            .await
            .expect("transport")
    );
    let mut m1 = env.mtls(&node1).await;
    cases += hostile!(
        env,
        "admin endpoint with a node certificate",
        403,
        "admin-required",
        m1.send(Method::GET, "/v1/admin/status", None)
            .await
            .expect("transport")
    );
    cases += hostile!(
        env,
        "renewal body naming a different node",
        403,
        "identity-mismatch",
        post(
            &mut m1,
            "/v1/renew",
            &renew_body(Some("node-2"), &k3, Profile::Peer)
        )
        .await
    );
    cases += hostile!(
        env,
        "renewal asking for a profile never granted",
        403,
        "profile-not-allowed",
        post(
            &mut m1,
            "/v1/renew",
            &renew_body(Some("node-1"), &k3, Profile::Server)
        )
        .await
    );

    // A certificate that expired yesterday renews (grace window; the
    // handshake proves the old key); one that expired 10 days ago does not.
    env.clock
        .set(OffsetDateTime::now_utc() - Duration::days(91));
    let old = env.join_ok("node-old").await;
    let older_clock = OffsetDateTime::now_utc() - Duration::days(101);
    env.clock.set(older_clock);
    let oldest = env.join_ok("node-oldest").await;
    env.clock.set(OffsetDateTime::now_utc());
    let mut mo = env.mtls(&oldest).await;
    cases += hostile!(
        env,
        "expired certificate past the grace window",
        403,
        "renewal-window-passed",
        post(
            &mut mo,
            "/v1/renew",
            &renew_body(Some("node-oldest"), &k3, Profile::Peer)
        )
        .await
    );
    let mut mg = env.mtls(&old).await;
    let k4 = PrivateKey::generate(KeyType::P256).expect("key");
    let renewed: IssueResponse = mg
        .json(
            Method::POST,
            "/v1/renew",
            Some(&renew_body(Some("node-old"), &k4, Profile::Peer)),
        )
        .await
        .expect("an expired certificate inside the grace window renews");
    assert_eq!(renewed.node, "node-old");

    // Revoked certificate renewing, and a removed node renewing.
    let outcome = env
        .authority
        .revoke(
            kith_authority::RevokeTarget::Serial(
                kith_pki::Serial::parse(&node1.serial).expect("serial"),
            ),
            RevocationReason::KeyCompromise,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("revoke")
        .remove(0);
    assert!(matches!(outcome, RevokeOutcome::Revoked(_)));
    let mut m1 = env.mtls(&node1).await;
    cases += hostile!(
        env,
        "revoked certificate renewing",
        403,
        "certificate-revoked",
        post(
            &mut m1,
            "/v1/renew",
            &renew_body(Some("node-1"), &k3, Profile::Peer)
        )
        .await
    );
    let gone = env.join_ok("node-gone").await;
    env.authority
        .remove_node(
            "node-gone",
            RevocationReason::CessationOfOperation,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("remove");
    let mut mr = env.mtls(&gone).await;
    cases += hostile!(
        env,
        "removed node renewing",
        403,
        "certificate-revoked",
        post(
            &mut mr,
            "/v1/renew",
            &renew_body(Some("node-gone"), &k3, Profile::Peer)
        )
        .await
    );

    // A client certificate from a CA that is not the cluster's: refused in the handshake.
    let stranger = {
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let ca = kith_pki::CaSpec {
            cluster: "evil.example".into(),
            authority: "cluster".into(),
            generation: 1,
            kind: kith_pki::CaKind::Root,
            not_before: OffsetDateTime::now_utc() - Duration::hours(1),
            not_after: OffsetDateTime::now_utc() + Duration::days(1),
            serial: kith_pki::Serial::random().expect("serial"),
        }
        .self_signed(key)
        .expect("evil root");
        let leaf_key = PrivateKey::generate(KeyType::P256).expect("key");
        let signer = ca.into_signer().expect("signer");
        let leaf = kith_pki::LeafSpec {
            cluster: "evil.example".into(),
            namespace: kith_pki::Namespace::Node,
            node: "node-1".into(),
            role: "admin".into(),
            profile: Profile::Admin,
            extra_sans: vec![],
            ttl: Duration::days(1),
            serial: kith_pki::Serial::random().expect("serial"),
            crl_urls: vec![],
        }
        .sign(&leaf_key.public_key(), &signer, OffsetDateTime::now_utc())
        .expect("evil leaf");
        Creds {
            key: leaf_key,
            chain: vec![leaf.der],
            serial: String::new(),
        }
    };
    let before = env.snapshot().await;
    let refused = match Connection::open(&env.server(), env.mtls_config(&stranger)).await {
        // TLS 1.3: the client learns of the refusal on its first read.
        Ok(mut conn) => conn
            .send(Method::GET, "/v1/admin/status", None)
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(
        refused,
        "a certificate from another CA must fail the handshake"
    );
    assert_eq!(before, env.snapshot().await);
    cases += 1;

    assert!(cases >= 30, "only {cases} hostile cases");
    eprintln!("{cases} hostile cases refused with the exact code, nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_joins_race_for_the_last_uses() {
    let env = Env::start().await;
    let token = env.token("worker", None, 3).await;
    let attempts = 24;
    let results = futures::future::join_all((0..attempts).map(|i| {
        let token = token.clone();
        let env = &env;
        async move {
            let key = PrivateKey::generate(KeyType::P256).expect("key");
            let node = format!("racer-{i}");
            let body = JoinRequest {
                token,
                node: Some(node.clone()),
                csrs: vec![csr_for(&key, &node, &[], Profile::Peer)],
                may_leave_out: Vec::new(),
            };
            let mut c = env.public().await;
            post(&mut c, "/v1/join", &body).await
        }
    }))
    .await;
    let ok = results.iter().filter(|(s, _)| s.is_success()).count();
    assert_eq!(ok, 3, "exactly the token's uses succeed");
    for (s, b) in results.iter().filter(|(s, _)| !s.is_success()) {
        let e: kith_api::wire::ErrorBody = serde_json::from_slice(b).expect("json error");
        assert_eq!((s.as_u16(), e.code.as_str()), (403, "token-used-up"));
    }
    let nodes = kith_authority::list_nodes(&**env.authority.store(), env.authority.now())
        .await
        .expect("nodes");
    assert_eq!(nodes.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_pin_sends_nothing() {
    let env = Env::start().await;
    let token = env.token("worker", None, 1).await;
    // Same id and secret, another cluster's pin: the node must refuse the
    // server before sending the token.
    let forged = format!("KITH1-{}{}", "11".repeat(32), &token[6 + 64..]);
    let dir = tempfile::tempdir().expect("tempdir");
    let before = env.snapshot().await;
    let err = kith_agent::join(&kith_agent::JoinOptions {
        server: env.server(),
        token: forged,
        node: Some("node-p".into()),
        sans: vec![],
        dir: dir.path().join("node"),
        profiles: vec![Profile::Peer],
        key_type: KeyType::P256,
        interface_ips: false,
        force: false,
    })
    .await
    .expect_err("a wrong pin must fail");
    assert_eq!(err.code(), "pin-mismatch", "{err}");
    assert_eq!(
        before,
        env.snapshot().await,
        "nothing reached the server's store"
    );
    assert!(!dir.path().join("node").exists(), "nothing written");
    // The real token still works.
    let id = kith_agent::join(&kith_agent::JoinOptions {
        server: env.server(),
        token,
        node: Some("node-p".into()),
        sans: vec![],
        dir: dir.path().join("node"),
        profiles: vec![Profile::Peer, Profile::Client],
        key_type: KeyType::P256,
        interface_ips: false,
        force: false,
    })
    .await
    .expect("join");
    assert_eq!(id.node, "node-p");
    for f in [
        "key.pem",
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "ca.pem",
        "crl.pem",
        "identity.json",
        "client-cert.pem",
        "client-fullchain.pem",
    ] {
        assert!(dir.path().join("node").join(f).exists(), "{f}");
    }
    // A second join into the same directory is refused before anything is sent.
    let token2 = env.token("worker", None, 1).await;
    let before = env.snapshot().await;
    let err = kith_agent::join(&kith_agent::JoinOptions {
        server: env.server(),
        token: token2,
        node: Some("node-q".into()),
        sans: vec![],
        dir: dir.path().join("node"),
        profiles: vec![Profile::Peer],
        key_type: KeyType::P256,
        interface_ips: false,
        force: false,
    })
    .await
    .expect_err("an existing identity must not be overwritten silently");
    assert_eq!(err.code(), "node-dir", "{err}");
    assert_eq!(before, env.snapshot().await, "the token was not spent");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("node/key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
