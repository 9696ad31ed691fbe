//! Who may hold which name, against a real server: name spaces kept apart,
//! names never taken over, superseded certificates never renewing, SAN caps
//! and the IP address policy. Each case is an attack that once succeeded.

mod common;

use common::*;
use hyper::Method;
use kith_api::wire::{IssueResponse, JoinRequest, NodeSelf, RenewRequest};
use kith_authority::TokenSpec;
use kith_pki::{KeyType, Namespace, PrivateKey, Profile, RevocationReason, San, Serial};
use std::net::IpAddr;
use time::Duration;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

impl Env {
    async fn token_with(&self, role: &str, node: Option<&str>, allow: &[&str]) -> String {
        let (_, t) = self
            .authority
            .create_token(
                TokenSpec {
                    role: role.into(),
                    node: node.map(str::to_string),
                    ttl: Duration::hours(1),
                    uses: 1,
                    allow_sans: allow.iter().map(|s| s.to_string()).collect(),
                    authority: None,
                },
                "test",
            )
            .await
            .expect("token");
        t.encode().to_string()
    }

    /// Join `node` with `token` asking for `extra` SANs: the raw answer.
    async fn try_join(
        &self,
        token: &str,
        node: &str,
        key: &PrivateKey,
        extra: &[San],
    ) -> (hyper::StatusCode, bytes::Bytes) {
        let body = JoinRequest {
            token: token.into(),
            node: Some(node.into()),
            csrs: vec![csr_for(key, node, extra, Profile::Peer)],
            may_leave_out: Vec::new(),
        };
        post(&mut self.public().await, "/v1/join", &body).await
    }

    async fn renew_with(&self, creds: &Creds, node: &str) -> (hyper::StatusCode, bytes::Bytes) {
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let body = RenewRequest {
            node: Some(node.into()),
            csrs: vec![csr_for(&key, node, &[], Profile::Peer)],
        };
        post(&mut self.mtls(creds).await, "/v1/renew", &body).await
    }

    async fn renew_ok(&self, creds: &Creds, node: &str) -> Creds {
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let body = RenewRequest {
            node: Some(node.into()),
            csrs: vec![csr_for(&key, node, &[], Profile::Peer)],
        };
        let r: IssueResponse = self
            .mtls(creds)
            .await
            .json(Method::POST, "/v1/renew", Some(&body))
            .await
            .expect("renewal");
        creds_from(key, &r)
    }

    async fn revoked(&self, serial: &str) -> bool {
        let serial = Serial::parse(serial).expect("serial");
        kith_authority::find_certificate(&**self.authority.store(), &serial)
            .await
            .expect("certificate")
            .1
            .is_some()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reserved_names_are_refused_and_operators_and_servers_are_out_of_reach() {
    let env = Env::start().await;
    let admin = env.admin().await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    // A worker token cannot join as the operator or as the CA server.
    for name in ["admin", "kith-server", "kith"] {
        let token = env.token("worker", None, 1).await;
        hostile!(
            env,
            name,
            400,
            "invalid-name",
            env.try_join(&token, name, &key, &[]).await
        );
    }
    // Nor can an operator mint a token for a reserved name or role.
    for (role, node) in [("kith", None), ("worker", Some("admin"))] {
        let spec = TokenSpec {
            role: role.into(),
            node: node.map(str::to_string),
            ttl: Duration::hours(1),
            uses: 1,
            allow_sans: Vec::new(),
            authority: None,
        };
        let e = env.authority.create_token(spec, "test").await.unwrap_err();
        assert_eq!(e.code(), "invalid-name", "{role} {node:?}: {e}");
    }
    // Revoking "the node admin" can never touch the operator's credential:
    // operators are in another name space.
    let e = env
        .authority
        .revoke(
            kith_authority::RevokeTarget::Node("admin".to_string()),
            RevocationReason::KeyCompromise,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown-node");
    assert!(!env.revoked(&admin.serial).await);
    let (st, _) = env
        .mtls(&admin)
        .await
        .send(Method::GET, "/v1/admin/status", None)
        .await
        .expect("status");
    assert_eq!(st, 200, "the operator credential still works");
    // The server's own certificate carries the server identity, which no
    // node's does.
    let node = env.join_ok("node-1").await;
    assert_eq!(
        kith_pki::server_identity(&node.chain[0], None).expect("parse"),
        None
    );
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let server = env
        .authority
        .issue_server_certificate("kith-server-b", key.public_key(), vec![], Duration::days(1))
        .await
        .expect("server certificate");
    assert_eq!(server.record.holder(), Namespace::Server);
    assert_eq!(
        kith_pki::server_identity(&server.record.der, Some("test.example")).expect("parse"),
        Some(("test.example".into(), "kith-server-b".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_is_never_taken_over() {
    let env = Env::start().await;
    // A live certificate issued offline holds its name against any token.
    let offline_key = PrivateKey::generate(KeyType::P256).expect("key");
    env.authority
        .issue(kith_authority::IssueRequest {
            identity: kith_authority::Identity {
                node: "db-1".into(),
                role: "db".into(),
                profile: Profile::Peer,
                authority: None,
                ttl: None,
            },
            public_key: offline_key.public_key(),
            extra_sans: vec![],
        })
        .await
        .expect("offline issue");
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let token = env.token("worker", None, 1).await;
    hostile!(
        env,
        "name of an offline certificate",
        409,
        "node-name-taken",
        env.try_join(&token, "db-1", &key, &[]).await
    );
    let named = env.token_with("worker", Some("db-1"), &[]).await;
    hostile!(
        env,
        "even a token for the name cannot take a live certificate's name",
        409,
        "node-name-taken",
        env.try_join(&named, "db-1", &key, &[]).await
    );

    // A revoked node's name (and what policies grant it) is not up for grabs.
    env.join_ok("node-1").await;
    env.authority
        .revoke(
            kith_authority::RevokeTarget::Node("node-1".to_string()),
            RevocationReason::KeyCompromise,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("revoke");
    let token = env.token("worker", None, 1).await;
    hostile!(
        env,
        "revoked name, any token",
        409,
        "node-name-retired",
        env.try_join(&token, "node-1", &key, &[]).await
    );
    // A removed one neither.
    env.join_ok("node-2").await;
    env.authority
        .remove_node(
            "node-2",
            RevocationReason::CessationOfOperation,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("remove");
    hostile!(
        env,
        "removed name, any token",
        409,
        "node-name-retired",
        env.try_join(&token, "node-2", &key, &[]).await
    );
    // An expired one neither.
    env.join_ok("node-3").await;
    env.clock.advance(Duration::days(400));
    let late = env.token("worker", None, 1).await;
    hostile!(
        env,
        "expired name, any token",
        409,
        "node-name-retired",
        env.try_join(&late, "node-3", &key, &[]).await
    );
    // A token minted for the name brings each back, on purpose.
    for name in ["node-1", "node-2", "node-3"] {
        let named = env.token_with("worker", Some(name), &[]).await;
        let (st, body) = env.try_join(&named, name, &key, &[]).await;
        assert_eq!(st, 200, "{name}: {}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_superseded_certificate_never_renews() {
    let env = Env::start().await;
    let a = env.join_ok("node-1").await;
    let b = env.renew_ok(&a, "node-1").await;
    // The node presents its new certificate (the agent does, right after a renewal).
    let me: NodeSelf = env
        .mtls(&b)
        .await
        .json(Method::GET, "/v1/node", None::<&()>)
        .await
        .expect("present");
    assert!(me.current && me.node == "node-1" && me.serial == b.serial);
    // The attack: the old certificate (a leaked old key) keeps minting.
    for attempt in 0..2 {
        hostile!(
            env,
            &format!("renewal with the replaced certificate, attempt {attempt}"),
            403,
            "certificate-superseded",
            env.renew_with(&a, "node-1").await
        );
    }
    // Nor does it serve on node routes any more.
    hostile!(
        env,
        "the replaced certificate on /v1/node",
        403,
        "certificate-superseded",
        env.mtls(&a)
            .await
            .send(Method::GET, "/v1/node", None)
            .await
            .expect("transport")
    );
    let c = env.renew_ok(&b, "node-1").await;
    // A lost answer: C was never presented, so B may retry once; the unseen
    // C is revoked so the node keeps one live certificate.
    let d = env.renew_ok(&b, "node-1").await;
    assert!(
        env.revoked(&c.serial).await,
        "the unseen certificate is revoked"
    );
    assert!(!env.revoked(&d.serial).await);
    hostile!(
        env,
        "a second retry",
        403,
        "certificate-superseded",
        env.renew_with(&b, "node-1").await
    );
    env.mtls(&d)
        .await
        .json::<NodeSelf>(Method::GET, "/v1/node", None::<&()>)
        .await
        .expect("present");
    let e = env.renew_ok(&d, "node-1").await;
    // Unpresented, the retry window still closes by itself an hour after a renewal.
    env.clock
        .advance(kith_authority::RETRY_WINDOW + Duration::minutes(1));
    hostile!(
        env,
        "a retry after the window",
        403,
        "certificate-superseded",
        env.renew_with(&d, "node-1").await
    );
    env.renew_ok(&e, "node-1").await;
    // An old key cannot bring the node back through another token either.
    let current = env.authority.node("node-1").await.expect("node").serials[&Profile::Peer].clone();
    env.authority
        .revoke(
            kith_authority::RevokeTarget::Serial(Serial::parse(&current).expect("serial")),
            RevocationReason::KeyCompromise,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("revoke the current certificate");
    let token = env.token("worker", None, 1).await;
    // (Refused: the node's other certificates, over other keys, are live.)
    hostile!(
        env,
        "rejoin with a replaced key",
        409,
        "node-name-taken",
        env.try_join(&token, "node-1", &a.key, &[]).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_node_wins_over_its_renewals() {
    let env = std::sync::Arc::new(Env::start().await);
    for round in 0..5u64 {
        let name = format!("racer-{round}");
        let mut creds = env.join_ok(&name).await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (e2, n2, s2) = (env.clone(), name.clone(), stop.clone());
        let renewer = tokio::spawn(async move {
            // Bounded: until stopped, at most 200 renewals.
            for _ in 0..200 {
                if s2.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let key = PrivateKey::generate(KeyType::P256).expect("key");
                let body = RenewRequest {
                    node: Some(n2.clone()),
                    csrs: vec![csr_for(&key, &n2, &[], Profile::Peer)],
                };
                let Ok(mut c) =
                    kith_agent::Connection::open(&e2.server(), e2.mtls_config(&creds)).await
                else {
                    break;
                };
                match c
                    .json::<IssueResponse>(Method::POST, "/v1/renew", Some(&body))
                    .await
                {
                    Ok(r) => creds = creds_from(key, &r),
                    Err(_) => break,
                }
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(30 * (round + 1))).await;
        env.authority
            .revoke(
                kith_authority::RevokeTarget::Node(name.clone()),
                RevocationReason::KeyCompromise,
                "test",
                kith_authority::Publish::Now,
            )
            .await
            .expect("revoke");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        renewer.await.expect("renewer");
        // No certificate of the node is left unrevoked.
        let certs = kith_authority::list_certificates(&**env.authority.store())
            .await
            .expect("list");
        let live: Vec<String> = certs
            .iter()
            .filter(|(c, r)| c.node == name && r.is_none())
            .map(|(c, _)| c.serial.clone())
            .collect();
        assert!(
            live.is_empty(),
            "round {round}: {live:?} survived the revocation"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_minted_for_a_name_reserves_it() {
    let env = Env::start().await;
    let named = env.token_with("db", Some("db-2"), &[]).await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let any = env.token("worker", None, 1).await;
    hostile!(
        env,
        "a name reserved by a token",
        409,
        "node-name-reserved",
        env.try_join(&any, "db-2", &key, &[]).await
    );
    let (st, _) = env.try_join(&named, "db-2", &key, &[]).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sans_are_capped_and_ip_addresses_follow_policy() {
    let env = Env::start().await;
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    // Thousands of IP SANs (a 42 KB certificate once).
    let many: Vec<San> = (0..3000u32)
        .map(|i| San::Ip(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes())))
        .collect();
    let token = env.token("worker", None, 1).await;
    hostile!(
        env,
        "3000 IP SANs",
        403,
        "too-many-sans",
        env.try_join(&token, "node-1", &key, &many).await
    );
    // Addresses that name no single host.
    for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
        hostile!(
            env,
            bad,
            403,
            "ip-not-allowed",
            env.try_join(&token, "node-1", &key, &[San::Ip(ip(bad))])
                .await
        );
    }
    // Another live node's address.
    let t1 = env.token("worker", None, 1).await;
    let (st, body) = env
        .try_join(&t1, "node-1", &key, &[San::Ip(ip("10.77.0.1"))])
        .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let key2 = PrivateKey::generate(KeyType::P256).expect("key");
    hostile!(
        env,
        "another node's IP",
        409,
        "ip-taken",
        env.try_join(&token, "node-2", &key2, &[San::Ip(ip("10.77.0.1"))])
            .await
    );
    // Loopback belongs to every host: never exclusive.
    let t = env.token("worker", None, 1).await;
    let (st, _) = env
        .try_join(&t, "node-2", &key2, &[San::Ip(ip("127.0.0.1"))])
        .await;
    assert_eq!(st, 200);
    // A token that allows the address lets a node share it (a virtual IP).
    let shared = env.token_with("worker", None, &["10.77.0.1"]).await;
    let key3 = PrivateKey::generate(KeyType::P256).expect("key");
    let (st, _) = env
        .try_join(&shared, "node-3", &key3, &[San::Ip(ip("10.77.0.1"))])
        .await;
    assert_eq!(st, 200);
    // A server's own address is never a node's.
    let skey = PrivateKey::generate(KeyType::P256).expect("key");
    env.authority
        .issue_server_certificate(
            "kith-server-b",
            skey.public_key(),
            vec![San::Ip(ip("10.88.0.1"))],
            Duration::days(1),
        )
        .await
        .expect("server certificate");
    let key4 = PrivateKey::generate(KeyType::P256).expect("key");
    let t = env.token("worker", None, 1).await;
    hostile!(
        env,
        "the server's IP",
        409,
        "ip-taken",
        env.try_join(&t, "node-4", &key4, &[San::Ip(ip("10.88.0.1"))])
            .await
    );
    // A renewal asking for a held address leaves it out instead of failing.
    let k5 = PrivateKey::generate(KeyType::P256).expect("key");
    let t5 = env.token("worker", None, 1).await;
    let (st, body) = env.try_join(&t5, "node-5", &k5, &[]).await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let node5 = creds_from(
        k5,
        &serde_json::from_slice::<IssueResponse>(&body).expect("answer"),
    );
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let body = RenewRequest {
        node: Some("node-5".into()),
        csrs: vec![csr_for(
            &key,
            "node-5",
            &[San::Ip(ip("10.77.0.1"))],
            Profile::Peer,
        )],
    };
    let r: IssueResponse = env
        .mtls(&node5)
        .await
        .json(Method::POST, "/v1/renew", Some(&body))
        .await
        .expect("the renewal succeeds");
    let leaf =
        kith_pki::certs_from_pem_or_der(r.certificates[0].certificate.as_bytes()).expect("leaf");
    let text = match kith_pki::inspect(&leaf[0]).expect("inspect").remove(0) {
        kith_pki::Inspected::Certificate(info) => format!("{:?}", info.sans),
        other => panic!("not a certificate: {other:?}"),
    };
    assert!(!text.contains("10.77.0.1"), "{text}");
    // A certificate issued offline holds its addresses too.
    let okey = PrivateKey::generate(KeyType::P256).expect("key");
    env.authority
        .issue(kith_authority::IssueRequest {
            identity: kith_authority::Identity {
                node: "offline-1".into(),
                role: "db".into(),
                profile: Profile::Peer,
                authority: None,
                ttl: None,
            },
            public_key: okey.public_key(),
            extra_sans: vec![San::Ip(ip("10.99.0.1"))],
        })
        .await
        .expect("offline issue");
    let t6 = env.token("worker", None, 1).await;
    let k6 = PrivateKey::generate(KeyType::P256).expect("key");
    hostile!(
        env,
        "an offline certificate's IP",
        409,
        "ip-taken",
        env.try_join(&t6, "node-6", &k6, &[San::Ip(ip("10.99.0.1"))])
            .await
    );
    // A server's DNS names are not a node's, nor is a node name that reads as one.
    let skey2 = PrivateKey::generate(KeyType::P256).expect("key");
    env.authority
        .issue_server_certificate(
            "kith-server-c",
            skey2.public_key(),
            vec![San::Dns("ca.test.example".into())],
            Duration::days(1),
        )
        .await
        .expect("server certificate");
    hostile!(
        env,
        "a node named like the CA's host",
        403,
        "san-not-allowed",
        env.try_join(&t6, "ca", &k6, &[]).await
    );
    // Once its holder is revoked, an address is free again.
    env.authority
        .revoke(
            kith_authority::RevokeTarget::Node("node-1".to_string()),
            RevocationReason::CessationOfOperation,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("revoke");
    let (st, body) = env
        .try_join(&t, "node-4", &key4, &[San::Ip(ip("10.77.0.1"))])
        .await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_trusts_only_its_own_authority_and_only_vouched_roots() {
    let env = Env::start().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("node-1");
    let token = env.token("worker", None, 1).await;
    kith_agent::join(&kith_agent::JoinOptions {
        server: env.server(),
        token,
        node: Some("node-1".into()),
        sans: vec![],
        dir: dir.clone(),
        profiles: vec![],
        key_type: KeyType::P256,
        interface_ips: false,
        force: false,
    })
    .await
    .expect("join");
    let roots = |d: &std::path::Path| {
        kith_pki::certs_from_pem_or_der(&std::fs::read(d.join("ca.pem")).expect("ca.pem"))
            .expect("roots")
    };
    assert_eq!(roots(&dir), vec![env.root.clone()]);
    // Another authority is another trust domain: its root never reaches
    // this node's bundle, through a refresh or a renewal.
    env.authority
        .add_authority("api", KeyType::P256)
        .await
        .expect("authority add");
    kith_agent::refresh(&dir).await.expect("refresh");
    assert_eq!(roots(&dir), vec![env.root.clone()]);
    kith_agent::renew(&dir).await.expect("renew");
    assert_eq!(roots(&dir), vec![env.root.clone()]);
    // The renewed certificate was presented right away: the one before it
    // can no longer renew.
    let me: NodeSelf = kith_agent::connect(&dir)
        .await
        .expect("connect")
        .1
        .json(Method::GET, "/v1/node", None::<&()>)
        .await
        .expect("node");
    let node = env.authority.node("node-1").await.expect("node record");
    assert!(me.current && node.presented, "{node:?}");
}
