//! An operator issuing a certificate directly over the admin API (`kith
//! cert issue` online) is audited with who did it, and cannot take the
//! name of a node that joined and is live: its record, renewals and secret
//! reads would pass to the new certificate while its own stayed valid.

mod common;

use common::{csr_for, post, Env};
use kith_api::wire::CertificateIssueRequest;
use kith_authority::{AuditRecord, Publish};
use kith_pki::{KeyType, PrivateKey, Profile, RevocationReason};

fn request(node: &str) -> CertificateIssueRequest {
    let key = PrivateKey::generate(KeyType::P256).expect("key");
    CertificateIssueRequest {
        node: node.into(),
        role: "worker".into(),
        profile: "peer".into(),
        authority: None,
        ttl_seconds: None,
        sans: Vec::new(),
        csr: csr_for(&key, node, &[], Profile::Peer).csr,
    }
}

async fn audit_of(env: &Env, action: &str) -> Vec<AuditRecord> {
    env.authority
        .store()
        .list("audit/")
        .await
        .expect("list audit")
        .into_iter()
        .map(|e| serde_json::from_slice::<AuditRecord>(&e.value).expect("an audit record"))
        .filter(|r| r.action == action)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_issuance_is_audited_and_never_takes_a_joined_nodes_name() {
    let env = Env::start().await;
    let admin = env.admin().await;
    env.join_ok("web1").await;
    let node_before = env
        .authority
        .store()
        .get("node/web1")
        .await
        .expect("get")
        .expect("web1's record");

    // The joined, live name is refused, and nothing about web1 changes.
    let mut c = env.mtls(&admin).await;
    let (status, body) = post(&mut c, "/v1/admin/certs", &request("web1")).await;
    assert_eq!(status.as_u16(), 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("node-name-taken"));
    let node_after = env
        .authority
        .store()
        .get("node/web1")
        .await
        .expect("get")
        .expect("web1's record");
    assert_eq!(
        node_before.revision, node_after.revision,
        "web1's record untouched"
    );
    assert!(audit_of(&env, "cert-issue").await.is_empty());

    // A free name is issued, and the audit trail says who issued what.
    let (status, body) = post(&mut c, "/v1/admin/certs", &request("db1")).await;
    assert_eq!(status.as_u16(), 201, "{}", String::from_utf8_lossy(&body));
    let lines = audit_of(&env, "cert-issue").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].subject, "db1");
    assert!(lines[0].actor.contains("admin"), "{:?}", lines[0]);
    assert!(lines[0].detail.contains("serial "), "{:?}", lines[0]);

    // Once web1 is removed (revoked), its name is the operator's again.
    env.authority
        .remove_node(
            "web1",
            RevocationReason::CessationOfOperation,
            "test",
            Publish::Now,
        )
        .await
        .expect("node rm");
    let (status, body) = post(&mut c, "/v1/admin/certs", &request("web1")).await;
    assert_eq!(status.as_u16(), 201, "{}", String::from_utf8_lossy(&body));
    // Re-issuing a name the operator issued is the operator's call.
    let (status, body) = post(&mut c, "/v1/admin/certs", &request("db1")).await;
    assert_eq!(status.as_u16(), 201, "{}", String::from_utf8_lossy(&body));
}
