//! The server presents the chain of the authority a client names by TLS
//! server name (issue 11, item 2): `<authority>.authority.kith`, or
//! `<pin prefix>.pin.kith` for a joining node; any other name or none gets
//! the default authority's. An authority added by another process gets its
//! certificate as soon as a client asks for it. And each authority serves
//! its root's CRL at `/v1/crl/{authority}/root`. Real handshakes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{provider, Env};
use kith_pki::KeyType;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Accepts any chain and keeps it: the test judges what was presented.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Vec<u8>>>);

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.to_vec()];
        chain.extend(intermediates.iter().map(|c| c.to_vec()));
        *self.0.lock().expect("recorder lock") = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The chain the server presents to a client sending `sni` (an IP address
/// sends none).
async fn presented(env: &Env, sni: &str) -> Vec<Vec<u8>> {
    let recorder = Arc::new(Recorder::default());
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(env.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    let chain = recorder.0.lock().expect("recorder lock").clone();
    chain
}

/// The root a presented chain ends in (the server sends it last).
fn root_of(chain: &[Vec<u8>]) -> Vec<u8> {
    chain.last().expect("a chain").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_follows_the_server_name() {
    let env = Env::start().await;
    let cluster = env.authority.root_cert("cluster").expect("root");
    // Added after the server started, as another process would.
    env.authority
        .add_authority("api", KeyType::P256)
        .await
        .expect("authority add");
    let api = env.authority.root_cert("api").expect("api root");

    // The first ask wakes the server, which issues the api certificate.
    let deadline = Instant::now() + Duration::from_secs(60);
    while root_of(&presented(&env, "api.authority.kith").await) != api {
        assert!(
            Instant::now() < deadline,
            "the server never presented the api chain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let chain = presented(&env, "api.authority.kith").await;
    assert_eq!(chain.len(), 3, "leaf, intermediate, root");
    assert_eq!(
        chain[1],
        env.authority
            .intermediate_cert("api")
            .expect("api intermediate")
    );
    let id = kith_pki::server_identity(&chain[0], Some("test.example")).expect("parse");
    assert!(
        id.is_some(),
        "the api certificate carries the server identity"
    );

    // A joining node names the pin it holds.
    let pin = kith_pki::spki_pin(&api).expect("pin");
    assert_eq!(
        root_of(&presented(&env, &kith_api::pin_sni(&pin)).await),
        api
    );
    let pin = kith_pki::spki_pin(&cluster).expect("pin");
    assert_eq!(
        root_of(&presented(&env, &kith_api::pin_sni(&pin)).await),
        cluster
    );

    // Everyone else sees the default authority, as before.
    for sni in [
        "127.0.0.1",
        "localhost",
        "cluster.authority.kith",
        "nosuch.authority.kith",
        "0123456789abcdef0123456789abcdef.pin.kith",
        "ca.test.example",
    ] {
        assert_eq!(root_of(&presented(&env, sni).await), cluster, "{sni}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_authority_serves_its_root_crl() {
    let env = Env::start().await;
    env.authority
        .add_authority("api", KeyType::P256)
        .await
        .expect("authority add");
    let mut conn = env.public().await;
    for name in ["cluster", "api"] {
        let root = env.authority.root_cert(name).expect("root");
        let der = conn
            .get_bytes(&format!("/v1/crl/{name}/root"))
            .await
            .expect("root CRL");
        let (_, crl) = x509_parser::parse_x509_crl(&der).expect("a CRL");
        let (_, ca) = x509_parser::parse_x509_certificate(&root).expect("root");
        assert_eq!(crl.issuer(), ca.subject(), "{name}");
        crl.verify_signature(ca.public_key())
            .unwrap_or_else(|e| panic!("{name}'s root CRL is not the root's: {e}"));
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
        // The intermediate's is still at its old path.
        let leaves = conn
            .get_bytes(&format!("/v1/crl/{name}"))
            .await
            .expect("CRL");
        let (_, leaves) = x509_parser::parse_x509_crl(&leaves).expect("a CRL");
        assert_ne!(leaves.issuer(), ca.subject());
    }
    // An unknown authority is refused as before.
    let err = conn
        .get_bytes("/v1/crl/nosuch/root")
        .await
        .expect_err("unknown authority");
    assert!(err.to_string().contains("unknown-authority"), "{err}");
}
