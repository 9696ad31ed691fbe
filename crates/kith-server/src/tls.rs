//! The server's TLS: its own certificate (issued by the cluster CA at start
//! and renewed by the server itself) and the client-certificate verifier.

use std::sync::{Arc, RwLock};

use kith_authority::Authority;
use kith_pki::{KeyType, PrivateKey, San};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use time::OffsetDateTime;

use crate::Error;

/// Lifetime of the server's own certificate; renewed at two thirds.
pub(crate) const SERVER_CERT_TTL: time::Duration = time::Duration::days(30);

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// One issued server certificate: the key and chain rustls presents, and
/// its validity.
#[derive(Debug)]
struct Current {
    key: Arc<CertifiedKey>,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// The server's current certificate, swapped in place when renewed, issued
/// to this replica's own name in the server name space
/// (`spiffe://<cluster>/kith/server/<name>`), which no node can reach.
#[derive(Debug)]
pub(crate) struct ServerCert {
    name: String,
    current: RwLock<Current>,
    sans: Vec<San>,
}

impl ServerCert {
    pub(crate) async fn issue(
        authority: &Authority,
        name: String,
        sans: Vec<San>,
    ) -> Result<Self, Error> {
        let current = issue_server_cert(authority, &name, &sans).await?;
        Ok(Self {
            name,
            current: RwLock::new(current),
            sans,
        })
    }

    /// This replica's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Renew when two thirds of the lifetime are gone. Returns whether it
    /// did. A retired name (this replica was revoked) is refused by the
    /// authority: the server never renews itself past its revocation.
    pub(crate) async fn renew_if_due(&self, authority: &Authority) -> Result<bool, Error> {
        let (nb, na) = {
            let g = self.current.read().unwrap_or_else(|p| p.into_inner());
            (g.not_before, g.not_after)
        };
        if authority.now() < nb + (na - nb) * 2 / 3 {
            return Ok(false);
        }
        let fresh = issue_server_cert(authority, &self.name, &self.sans).await?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(true)
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .key
                .clone(),
        )
    }
}

async fn issue_server_cert(
    authority: &Authority,
    name: &str,
    sans: &[San],
) -> Result<Current, Error> {
    // The key lives only in this process's memory: a restart makes a new one.
    let key = PrivateKey::generate(KeyType::P256)?;
    let issued = authority
        .issue_server_certificate(name, key.public_key(), sans.to_vec(), SERVER_CERT_TTL)
        .await?;
    // Leaf, intermediate and root: a joining node has only the root's pin,
    // so the root must come with the chain for it to check.
    let mut chain = vec![CertificateDer::from(issued.record.der.clone())];
    chain.extend(issued.chain.iter().map(|c| CertificateDer::from(c.clone())));
    chain.push(CertificateDer::from(issued.root.clone()));
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(Error::Tls)?;
    tracing::info!(
        server = name,
        serial = %issued.record.serial,
        not_after = %issued.record.not_after,
        "server certificate issued"
    );
    Ok(Current {
        key: Arc::new(CertifiedKey::new(chain, signing)),
        not_before: issued.record.not_before,
        not_after: issued.record.not_after,
    })
}

/// Client certificates are optional (join and the CA bundle are public).
/// A presented chain must lead to a cluster root; one that fails only
/// because it has expired is let through, so that the renewal handler can
/// apply the grace window: the handshake has proven the old key either way,
/// and every handler that acts on a client certificate checks its record,
/// revocation and validity itself.
pub(crate) struct ClientVerifier {
    authority: Authority,
    /// webpki's verifier over the roots of a keyring generation: rebuilt
    /// when another process (or this one) adds an authority or rotates a root.
    current: std::sync::Mutex<(u64, Arc<dyn ClientCertVerifier>)>,
}

impl std::fmt::Debug for ClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientVerifier").finish_non_exhaustive()
    }
}

fn webpki_for(roots: &[Vec<u8>]) -> Result<Arc<dyn ClientCertVerifier>, Error> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store
            .add(CertificateDer::from(r.clone()))
            .map_err(Error::Tls)?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| Error::Setup(format!("client verifier: {e}")))
}

impl ClientVerifier {
    pub(crate) fn new(authority: &Authority) -> Result<Self, Error> {
        let generation = authority.keyring_generation();
        let inner = webpki_for(&authority.roots())?;
        Ok(Self {
            authority: authority.clone(),
            current: std::sync::Mutex::new((generation, inner)),
        })
    }

    /// The verifier for the keyring of the moment.
    fn inner(&self) -> Arc<dyn ClientCertVerifier> {
        let generation = self.authority.keyring_generation();
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.0 != generation {
            match webpki_for(&self.authority.roots()) {
                Ok(v) => *cur = (generation, v),
                Err(e) => {
                    // Keep the last verifier; say so once per keyring change.
                    cur.0 = generation;
                    tracing::error!(error = %e, "rebuilding the client verifier failed");
                }
            }
        }
        cur.1.clone()
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The roots change at run time; hints are optional.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let inner = self.inner();
        match inner.verify_client_cert(end_entity, intermediates, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => {
                // Verify everything else as of the last second of its validity.
                let (_, not_after) = kith_pki::certificate_validity(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    (not_after.unix_timestamp() - 1).max(0) as u64,
                ));
                inner.verify_client_cert(end_entity, intermediates, at)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner().supported_verify_schemes()
    }
}
