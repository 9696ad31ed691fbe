//! Server behaviour over time and under bursts: debounced CRL publication
//! and the server renewing its own certificate.

mod common;

use std::sync::Arc;

use common::*;
use hyper::Method;
use kith_api::wire::{RevokeRequest, RevokeResponse};
use time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_revocations_shares_crl_signatures_and_each_answer_is_covered() {
    let env = Env::start().await;
    let n = 24;
    let mut nodes = Vec::new();
    for i in 0..n {
        nodes.push(env.join_ok(&format!("burst-{i}")).await);
    }
    let before = kith_authority::stored_crl(&**env.authority.store(), "cluster")
        .await
        .expect("crl")
        .map_or(0, |c| c.number);
    let admin = Arc::new(env.admin().await);
    let results = futures::future::join_all(nodes.iter().map(|n| {
        let admin = admin.clone();
        let env = &env;
        async move {
            let mut c = env.mtls(&admin).await;
            let r: RevokeResponse = c
                .json(
                    Method::POST,
                    "/v1/admin/revoke",
                    Some(&RevokeRequest {
                        serial: Some(n.serial.clone()),
                        reason: Some("key-compromise".into()),
                        ..Default::default()
                    }),
                )
                .await
                .expect("revoke");
            // The moment the answer arrives, the published CRL lists it.
            let mut p = env.public().await;
            let der = p.get_bytes("/v1/crl/cluster").await.expect("crl");
            let listed = match kith_pki::inspect(&der).expect("CRL").pop() {
                Some(kith_pki::Inspected::Crl(info)) => {
                    info.revoked.iter().any(|e| e.serial == n.serial)
                }
                _ => false,
            };
            (r, listed)
        }
    }))
    .await;
    for (r, listed) in &results {
        assert!(r.revoked[0].newly_revoked);
        assert!(
            listed,
            "{} answered before its CRL was published",
            r.revoked[0].serial
        );
    }
    let after = kith_authority::stored_crl(&**env.authority.store(), "cluster")
        .await
        .expect("crl")
        .expect("a CRL");
    assert_eq!(after.entries, n);
    let signed = after.number - before;
    assert!(
        signed < n as u64,
        "{n} revocations signed {signed} CRLs: nothing was shared"
    );
    eprintln!("{n} concurrent revocations, {signed} CRL signatures");
}

/// Reads the server's certificate without judging it (its validity is in
/// the injected clock's future).
#[derive(Debug)]
struct Capture(std::sync::Mutex<Option<Vec<u8>>>);

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().expect("lock") = Some(end_entity.to_vec());
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn server_cert(env: &Env) -> Vec<u8> {
    let capture = Arc::new(Capture(Default::default()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(env.addr).await.expect("tcp");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let _tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let der = capture.0.lock().expect("lock").clone();
    der.expect("a certificate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_renews_its_own_certificate_at_two_thirds() {
    let env = Env::start_with(|mut o| {
        o.maintenance_interval = std::time::Duration::from_millis(50);
        o
    })
    .await;
    let first = server_cert(&env).await;
    let (nb, na) = kith_pki::certificate_validity(&first).expect("validity");
    // Just before two thirds of its life: unchanged.
    env.clock.set(nb + (na - nb) / 2);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(server_cert(&env).await, first);
    // Past two thirds: a new certificate, valid from the (injected) now.
    env.clock.set(nb + (na - nb) * 2 / 3 + Duration::hours(1));
    let start = std::time::Instant::now();
    let second = loop {
        let c = server_cert(&env).await;
        if c != first {
            break c;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "never renewed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let (nb2, na2) = kith_pki::certificate_validity(&second).expect("validity");
    assert!(
        nb2 > nb && na2 > na,
        "the new certificate starts later and ends later"
    );
}

/// A certificate cut offline (`kith cert issue`: no node record) reads the
/// secrets its role is allowed, like a joined node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_issued_certificates_read_secrets_by_role() {
    let env = Env::start().await;
    env.authority
        .put_secret(
            "shared",
            b"for workers",
            kith_authority::SecretUpdate {
                allow_roles: Some(vec!["worker".into()]),
                ..Default::default()
            },
            "test",
        )
        .await
        .expect("put");
    let key = kith_pki::PrivateKey::generate(kith_pki::KeyType::P256).expect("key");
    let issued = env
        .authority
        .issue(kith_authority::IssueRequest {
            identity: kith_authority::Identity {
                node: "offline-1".into(),
                role: "worker".into(),
                profile: kith_pki::Profile::Peer,
                authority: None,
                ttl: None,
            },
            public_key: key.public_key(),
            extra_sans: vec![],
        })
        .await
        .expect("issue");
    let mut chain = vec![issued.record.der.clone()];
    chain.extend(issued.chain);
    let creds = Creds {
        key,
        chain,
        serial: issued.record.serial,
    };
    let mut c = env.mtls(&creds).await;
    let (v, value) = kith_agent::secrets::fetch_with(&mut c, "shared", None)
        .await
        .expect("read");
    assert_eq!((v, value.as_slice()), (1, &b"for workers"[..]));
}
