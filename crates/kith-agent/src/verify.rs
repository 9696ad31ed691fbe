//! The verifiers kith plugs into rustls: webpki's verification first,
//! then what a chain alone cannot prove (a peer's node identity, the CA
//! server's identity, a join token's pin).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::policy::{provider, PeerPolicy};

/// A client-certificate verifier for servers: cluster roots, CRL (the
/// leaf's, then the intermediates' that a root revoked), policy.
#[derive(Debug)]
pub(crate) struct PolicyClientVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) policy: PeerPolicy,
    pub(crate) revoked_cas: Arc<kith_pki::RevokedCas>,
}

/// Refuse a presented chain holding a CA certificate that a trusted root's
/// CRL revokes (webpki checks only the end entity's revocation here).
fn check_revoked_cas(
    revoked: &kith_pki::RevokedCas,
    intermediates: &[CertificateDer<'_>],
) -> Result<(), rustls::Error> {
    match intermediates.iter().any(|c| revoked.is_revoked(c)) {
        true => Err(rustls::Error::InvalidCertificate(CertificateError::Revoked)),
        false => Ok(()),
    }
}

impl ClientCertVerifier for PolicyClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        check_revoked_cas(&self.revoked_cas, intermediates)?;
        self.policy.check(end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What a server certificate must show besides a verified chain.
#[derive(Debug)]
pub(crate) enum ServerCheck {
    /// A node of the cluster that `PeerPolicy` accepts (node-to-node TLS).
    Peer(PeerPolicy),
    /// The kith server of this cluster.
    KithServer(String),
}

/// webpki's server verification (roots, CRL, name, validity), then a
/// [`ServerCheck`]. Signatures are webpki's.
#[derive(Debug)]
pub(crate) struct CheckedServerVerifier {
    pub(crate) inner: Arc<dyn ServerCertVerifier>,
    pub(crate) check: ServerCheck,
    /// The name to check the certificate for when the handshake sends
    /// another one (an authority's server name, [`kith_api::authority_sni`]).
    pub(crate) host: Option<ServerName<'static>>,
    /// CA certificates a trusted root revoked ([`check_revoked_cas`]).
    pub(crate) revoked_cas: Arc<kith_pki::RevokedCas>,
}

impl ServerCertVerifier for CheckedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let server_name = self.host.as_ref().unwrap_or(server_name);
        let ok =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        check_revoked_cas(&self.revoked_cas, intermediates)?;
        match &self.check {
            ServerCheck::Peer(policy) => policy.check(end_entity)?,
            ServerCheck::KithServer(cluster) => {
                check_server_identity(end_entity, Some(cluster))?;
            }
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a server was refused although its chain verified: it is not a kith
/// server (a node's certificate, say).
#[derive(Debug)]
pub(crate) struct NotKithServer(pub(crate) String);

impl std::fmt::Display for NotKithServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a kith server: {}", self.0)
    }
}

impl std::error::Error for NotKithServer {}

fn not_kith_server(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        NotKithServer(why),
    ))))
}

/// Check that a verified server certificate carries a kith server identity
/// (of `cluster`, when known). Returns the cluster it names.
fn check_server_identity(
    end_entity: &CertificateDer<'_>,
    cluster: Option<&str>,
) -> Result<String, rustls::Error> {
    match kith_pki::server_identity(end_entity, cluster) {
        Ok(Some((domain, _name))) => Ok(domain),
        Ok(None) => Err(not_kith_server(match cluster {
            Some(c) => format!(
                "its certificate chains to the cluster roots but carries no server identity of {c} (spiffe://{c}/kith/server/...): it may be a node posing as the CA"
            ),
            None => "its certificate chains to the pinned root but carries no kith server identity (spiffe://<cluster>/kith/server/...): it may be a node posing as the CA".into(),
        })),
        Err(e) => Err(not_kith_server(format!("unreadable certificate: {e}"))),
    }
}

/// Verifies the kith server during a join: its chain must end in a root
/// whose SPKI SHA-256 is the token's pin, name the server, and its
/// certificate must carry a kith server identity (a node of the cluster
/// chains to the pinned root too). Nothing is sent before this passes.
#[derive(Debug)]
pub(crate) struct PinVerifier {
    pin: [u8; 32],
    /// The server's host: the handshake sends the pin's server name
    /// ([`kith_api::pin_sni`]), the certificate is checked for this one.
    host: ServerName<'static>,
    provider: Arc<CryptoProvider>,
    pub(crate) mismatch: std::sync::atomic::AtomicBool,
    /// The cluster the server's identity names, once verified.
    pub(crate) cluster: std::sync::Mutex<Option<String>>,
}

impl PinVerifier {
    pub(crate) fn new(pin: [u8; 32], host: ServerName<'static>) -> Self {
        Self {
            pin,
            host,
            provider: provider(),
            mismatch: Default::default(),
            cluster: Default::default(),
        }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let root = intermediates
            .iter()
            .find(|c| kith_pki::spki_pin(c).is_ok_and(|p| p == self.pin));
        let Some(root) = root else {
            self.mismatch
                .store(true, std::sync::atomic::Ordering::SeqCst);
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(root.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        let _ = server_name; // the pin's server name, not the host
        let ok = verifier.verify_server_cert(end_entity, intermediates, &self.host, ocsp, now)?;
        let cluster = check_server_identity(end_entity, None)?;
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(cluster);
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
