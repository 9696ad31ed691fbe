//! Authorization belongs to the router, not to each handler: every
//! `/v1/admin` route, taken from the table the admin router is built from,
//! refuses a request without a client certificate and one with a node
//! certificate (before it reads a body, changing nothing), while an operator
//! certificate reaches each of them. Every route that takes a body reads it
//! through one extractor. Real TLS against a real server, as everywhere.

mod common;

use common::*;
use hyper::Method;
use kith_api::wire::{
    NodeView, RenewRequest, StatusResponse, TokenCreateRequest, TokenCreated, MAX_BODY_BYTES,
};
use kith_pki::{KeyType, PrivateKey, Profile};

/// A path with each `{parameter}` filled in with a well-formed value that
/// names nothing stored.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{id}" => "0123456789abcdef",
            "{name}" => "nothing-here",
            s if s.starts_with('{') => panic!("no value for the parameter {s} of {path}"),
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn takes_body(m: &Method) -> bool {
    *m == Method::POST || *m == Method::PUT
}

/// The body sent with each request: empty JSON where a body is taken.
fn body_for(m: &Method) -> Option<Vec<u8>> {
    takes_body(m).then(|| b"{}".to_vec())
}

fn code_of(body: &[u8]) -> String {
    serde_json::from_slice::<kith_api::wire::ErrorBody>(body)
        .map(|e| e.code)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_admin_route_refuses_no_certificate_and_node_certificates() {
    let env = Env::start().await;
    let routes = kith_server::admin_routes();
    // What the CLI's operator commands call is all in the table.
    for (m, p) in [
        (Method::POST, "/v1/admin/tokens"),
        (Method::GET, "/v1/admin/tokens"),
        (Method::DELETE, "/v1/admin/tokens/{id}"),
        (Method::GET, "/v1/admin/nodes"),
        (Method::DELETE, "/v1/admin/nodes/{name}"),
        (Method::POST, "/v1/admin/revoke"),
        (Method::GET, "/v1/admin/status"),
        (Method::GET, "/v1/admin/secrets"),
        (Method::PUT, "/v1/admin/secrets/{name}"),
        (Method::DELETE, "/v1/admin/secrets/{name}"),
        (Method::GET, "/v1/admin/secrets/{name}/history"),
    ] {
        assert!(
            routes.iter().any(|(rm, rp)| *rm == m && rp == p),
            "{m} {p} is missing from the admin table"
        );
    }
    for (m, p) in &routes {
        assert!(p.starts_with("/v1/admin/"), "{m} {p} is outside /v1/admin");
    }

    let node = env.join_ok("node-1").await;
    let admin = env.admin().await;
    let before = env.snapshot().await;
    let mut anon = env.public().await;
    let mut as_node = env.mtls(&node).await;
    for (m, p) in &routes {
        let path = concrete(p);
        assert_refused(
            &format!("{m} {p} without a client certificate"),
            anon.send(m.clone(), &path, body_for(m))
                .await
                .expect("transport"),
            401,
            "client-certificate-required",
        );
        assert_refused(
            &format!("{m} {p} with a node certificate"),
            as_node
                .send(m.clone(), &path, body_for(m))
                .await
                .expect("transport"),
            403,
            "admin-required",
        );
        if takes_body(m) {
            // The gate answers before the body is read: even a body the
            // extractor would refuse gets the authorization answer.
            assert_refused(
                &format!("{m} {p} with a node certificate and a text body"),
                as_node
                    .send_raw(m.clone(), &path, Some("text/plain"), b"x".to_vec())
                    .await
                    .expect("transport"),
                403,
                "admin-required",
            );
        }
    }
    assert_eq!(
        before,
        env.snapshot().await,
        "refused admin requests changed the store"
    );

    // Each listed route is really routed: the operator's request reaches a
    // handler (its answer may be a refusal of the empty body or the unknown
    // name, never the router's 404 or 405).
    let mut op = env.mtls(&admin).await;
    for (m, p) in &routes {
        let (st, body) = op
            .send(m.clone(), &concrete(p), body_for(m))
            .await
            .expect("transport");
        assert_ne!(
            code_of(&body),
            "not-found",
            "{m} {p}: the router does not know it"
        );
        assert_ne!(st.as_u16(), 405, "{m} {p}: the router refuses the method");
    }
    // Nothing else lives under /v1/admin, and a wrong method is the
    // router's answer, given before any certificate is looked at.
    for path in ["/v1/admin", "/v1/admin/", "/v1/admin/certificates"] {
        assert_refused(
            &format!("GET {path} as an operator"),
            op.send(Method::GET, path, None).await.expect("transport"),
            404,
            "not-found",
        );
    }
    assert_refused(
        "PATCH on an admin route without a certificate",
        anon.send(Method::PATCH, "/v1/admin/status", None)
            .await
            .expect("transport"),
        405,
        "method-not-allowed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_routes_need_a_live_certificate_of_the_right_holder() {
    let env = Env::start().await;
    let node = env.join_ok("node-1").await;
    let admin = env.admin().await;
    let mut anon = env.public().await;
    for path in ["/v1/node", "/v1/secrets/db-password"] {
        assert_refused(
            &format!("GET {path} without a certificate"),
            anon.send(Method::GET, path, None).await.expect("transport"),
            401,
            "client-certificate-required",
        );
    }
    let mut op = env.mtls(&admin).await;
    assert_refused(
        "GET /v1/node with an operator certificate",
        op.send(Method::GET, "/v1/node", None)
            .await
            .expect("transport"),
        403,
        "node-required",
    );
    // Revoked: the gate refuses it on every node route.
    let serial = kith_pki::Serial::parse(&node.serial).expect("serial");
    env.authority
        .revoke(
            kith_authority::RevokeTarget::Serial(serial),
            kith_pki::RevocationReason::KeyCompromise,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("revoke");
    let mut as_node = env.mtls(&node).await;
    for path in ["/v1/node", "/v1/secrets/db-password"] {
        assert_refused(
            &format!("GET {path} with a revoked certificate"),
            as_node
                .send(Method::GET, path, None)
                .await
                .expect("transport"),
            403,
            "certificate-revoked",
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_body_goes_through_one_extractor() {
    let env = Env::start().await;
    let node = env.join_ok("node-1").await;
    let admin = env.admin().await;
    let mut op = env.mtls(&admin).await;
    let mut as_node = env.mtls(&node).await;
    let mut anon = env.public().await;

    // (caller, method, path) of every route that takes a body, each with a
    // caller its gate lets through: 0 anonymous, 1 the node, 2 the operator.
    let mut cases: Vec<(usize, Method, String)> = vec![
        (0, Method::POST, "/v1/join".into()),
        (1, Method::POST, "/v1/renew".into()),
    ];
    for (m, p) in kith_server::admin_routes() {
        if takes_body(&m) {
            cases.push((2, m, concrete(&p)));
        }
    }
    assert!(cases.len() >= 5, "join, renew and three admin bodies");
    let before = env.snapshot().await;
    for (who, m, path) in &cases {
        let c = match who {
            0 => &mut anon,
            1 => &mut as_node,
            _ => &mut op,
        };
        assert_refused(
            &format!("{m} {path}: a text body"),
            c.send_raw(m.clone(), path, Some("text/plain"), b"{}".to_vec())
                .await
                .expect("transport"),
            415,
            "unsupported-media-type",
        );
        // A leading unknown field is refused as such, whatever else the
        // body lacks.
        let (st, body) = c
            .send(m.clone(), path, Some(br#"{"not-a-field": 1}"#.to_vec()))
            .await
            .expect("transport");
        let e: kith_api::wire::ErrorBody = serde_json::from_slice(&body).expect("error body");
        assert_eq!(
            (st.as_u16(), e.code.as_str()),
            (400, "malformed-request"),
            "{m} {path}: {}",
            e.message
        );
        assert!(
            e.message.contains("unknown field"),
            "{m} {path}: an unknown field is not named as such: {}",
            e.message
        );
        if !path.contains("/secrets/") {
            // Secret values have their own, larger limit.
            assert_refused(
                &format!("{m} {path}: a body over the limit"),
                c.send(m.clone(), path, Some(vec![b' '; MAX_BODY_BYTES + 1]))
                    .await
                    .expect("transport"),
                413,
                "body-too-large",
            );
        }
    }
    assert_eq!(
        before,
        env.snapshot().await,
        "refused bodies changed the store"
    );

    // A good body passes the same extractor.
    let created: TokenCreated = op
        .json(
            Method::POST,
            "/v1/admin/tokens",
            Some(&TokenCreateRequest {
                role: "worker".into(),
                node: None,
                ttl_seconds: Some(600),
                uses: Some(2),
                allow_sans: Vec::new(),
                authority: None,
                cert_ttl_seconds: None,
            }),
        )
        .await
        .expect("token create");
    assert_eq!(created.info.uses_left, 2);
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    let renewed: kith_api::wire::IssueResponse = as_node
        .json(
            Method::POST,
            "/v1/renew",
            Some(&RenewRequest {
                node: Some("node-1".into()),
                csrs: vec![csr_for(&key, "node-1", &[], Profile::Peer)],
            }),
        )
        .await
        .expect("renew");
    assert_eq!(renewed.node, "node-1");
}

/// The operator's views (built by the authority) count what the store holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_and_node_views_come_from_the_authority() {
    let env = Env::start().await;
    let node = env.join_ok("node-1").await;
    env.join_ok("node-2").await;
    env.token("worker", None, 3).await;
    let admin = env.admin().await;
    let mut op = env.mtls(&admin).await;
    let serial = kith_pki::Serial::parse(&node.serial).expect("serial");
    env.authority
        .revoke(
            kith_authority::RevokeTarget::Serial(serial),
            kith_pki::RevocationReason::KeyCompromise,
            "test",
            kith_authority::Publish::Now,
        )
        .await
        .expect("revoke");

    let status: StatusResponse = op
        .json(Method::GET, "/v1/admin/status", None::<&()>)
        .await
        .expect("status");
    assert_eq!(
        status.nodes,
        vec![("active".to_string(), 1), ("revoked".to_string(), 1)]
    );
    assert_eq!(
        status.tokens,
        vec![("active".to_string(), 1), ("used-up".to_string(), 2)]
    );
    assert_eq!(status.authorities.len(), 1);
    assert!(status.authorities[0].crl_number >= 1, "revoke signed a CRL");
    assert_eq!(status.authorities[0].crl_entries, 1);

    let nodes: Vec<NodeView> = op
        .json(Method::GET, "/v1/admin/nodes", None::<&()>)
        .await
        .expect("nodes");
    let names: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.state.as_str()))
        .collect();
    assert_eq!(names, vec![("node-1", "revoked"), ("node-2", "active")]);
    assert_eq!(nodes[0].serial, node.serial);
    assert_eq!(nodes[0].profiles, vec!["peer".to_string()]);
}
