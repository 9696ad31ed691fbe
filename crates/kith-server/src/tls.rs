//! The server's TLS: its own certificates (one per authority, issued at
//! start and renewed by the server itself, chosen by the client's server
//! name) and the client-certificate verifier.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kith_authority::{Authority, DEFAULT_AUTHORITY};
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

/// The certificate of one authority, the first hex digits of the pin of
/// every root in its bundle (what a joining node's server name carries:
/// during a root rotation a token may pin either root), and what it was
/// issued under, to tell when that changed.
#[derive(Debug)]
struct PerAuthority {
    pin_prefixes: Vec<String>,
    /// The intermediate that signed it.
    issuer: Vec<u8>,
    /// The authority's bundle roots when it was issued.
    roots: Vec<Vec<u8>>,
    current: Current,
}

/// The server's current certificates, one per authority, swapped in place
/// when renewed, each issued to this replica's own name in the server name
/// space (`spiffe://<cluster>/kith/server/<name>`), which no node can reach.
/// Which one a handshake gets is chosen by the client's server name
/// ([`kith_api::parse_sni`]): an authority's nodes trust only its root.
#[derive(Debug)]
pub(crate) struct ServerCert {
    name: String,
    current: RwLock<BTreeMap<String, PerAuthority>>,
    sans: Vec<San>,
    /// The authority, to tell an authority added since the last
    /// maintenance tick (worth issuing for at once) from an unknown name.
    authority: Authority,
    /// Wakes the maintenance task when a client asked for such an authority.
    pub(crate) missing: tokio::sync::Notify,
    /// When a handshake last woke it: anyone can send a ClientHello, so a
    /// missing certificate (its issuance failing, say) wakes the task at
    /// most once per [`WAKE_EVERY`], and the check itself is skipped between.
    last_wake: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Least time between two wakes of the maintenance task by handshakes.
const WAKE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl ServerCert {
    /// Issue a certificate under every authority (the default one must
    /// succeed; another that fails is retried at the next tick).
    pub(crate) async fn issue(
        authority: &Authority,
        name: String,
        sans: Vec<San>,
    ) -> Result<Self, Error> {
        let this = Self {
            name,
            current: RwLock::new(BTreeMap::new()),
            sans,
            authority: authority.clone(),
            missing: tokio::sync::Notify::new(),
            last_wake: std::sync::Mutex::new(None),
        };
        let default =
            issue_server_cert(authority, DEFAULT_AUTHORITY, &this.name, &this.sans).await?;
        this.put(DEFAULT_AUTHORITY, default);
        // The other authorities (each failure is logged and retried).
        if let Err(e @ Error::Authority(kith_authority::Error::ServerNameRetired(_))) =
            this.renew_if_due(authority).await
        {
            return Err(e);
        }
        Ok(this)
    }

    fn put(&self, authority: &str, entry: PerAuthority) {
        self.current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(authority.to_string(), entry);
    }

    /// This replica's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Renew each certificate when two thirds of its lifetime are gone,
    /// or at once when the authority's active intermediate or its bundle
    /// roots changed (an intermediate or root rotation step: a chain under
    /// a root that left the bundle is refused by every node), and issue one
    /// under each authority added since. Returns whether it issued any. A retired name (this replica was revoked) is refused by
    /// the authority: the server never renews itself past its revocation.
    pub(crate) async fn renew_if_due(&self, authority: &Authority) -> Result<bool, Error> {
        let mut issued = false;
        let mut failed = None;
        for name in authority.authority_names() {
            let due = {
                let g = self.current.read().unwrap_or_else(|p| p.into_inner());
                g.get(&name).is_none_or(|e| {
                    let (nb, na) = (e.current.not_before, e.current.not_after);
                    authority.now() >= nb + (na - nb) * 2 / 3
                        || authority
                            .intermediate_cert(&name)
                            .is_ok_and(|i| i != e.issuer)
                        || authority.authority_roots(&name).is_ok_and(|r| r != e.roots)
                })
            };
            if !due {
                continue;
            }
            match issue_server_cert(authority, &name, &self.name, &self.sans).await {
                Ok(fresh) => {
                    self.put(&name, fresh);
                    issued = true;
                }
                Err(e @ Error::Authority(kith_authority::Error::ServerNameRetired(_))) => {
                    return Err(e)
                }
                Err(e) => {
                    tracing::error!(authority = %name, error = %e, "issuing the server certificate failed");
                    failed = Some(e);
                }
            }
        }
        match failed {
            Some(e) if !issued => Err(e),
            _ => Ok(issued),
        }
    }
}

impl ServerCert {
    /// Whether the keyring holds an authority `selector` names that this
    /// server has no certificate for yet (added by another process).
    fn is_new(&self, selector: &kith_api::SniSelector) -> bool {
        match selector {
            kith_api::SniSelector::Authority(a) => self.authority.authority_names().contains(a),
            kith_api::SniSelector::PinPrefix(p) => self.authority.roots().iter().any(|r| {
                kith_pki::spki_pin(r)
                    .is_ok_and(|pin| kith_api::pin_sni(&pin).starts_with(p.as_str()))
            }),
            _ => false,
        }
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let selector = hello.server_name().and_then(kith_api::parse_sni);
        let g = self.current.read().unwrap_or_else(|p| p.into_inner());
        let chosen = match &selector {
            Some(kith_api::SniSelector::Authority(a)) => g.get(a),
            Some(kith_api::SniSelector::PinPrefix(p)) => {
                g.values().find(|e| e.pin_prefixes.contains(p))
            }
            _ => None,
        };
        if let Some(sel) = selector.as_ref().filter(|_| chosen.is_none()) {
            // An authority added since the last tick: issue for it now (this
            // handshake gets the default chain; `kith join` tries again). An
            // unknown name wakes nothing, so it cannot make the server work.
            let mut last = self.last_wake.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= WAKE_EVERY);
            if due && self.is_new(sel) {
                *last = Some(std::time::Instant::now());
                self.missing.notify_one();
            }
        }
        // No name, another name or an unknown authority: the default one's,
        // so clients of other TLS stacks keep working as before.
        chosen
            .or_else(|| g.get(DEFAULT_AUTHORITY))
            .map(|e| e.current.key.clone())
    }
}

async fn issue_server_cert(
    authority: &Authority,
    authority_name: &str,
    name: &str,
    sans: &[San],
) -> Result<PerAuthority, Error> {
    // The key lives only in this process's memory: a restart makes a new one.
    let key = PrivateKey::generate(KeyType::P256)?;
    let issued = authority
        .issue_server_certificate_in(
            authority_name,
            name,
            key.public_key(),
            sans.to_vec(),
            SERVER_CERT_TTL,
        )
        .await?;
    // Every root of the bundle (the active one first), each answering its
    // own pin's server name.
    let roots = authority.authority_roots(authority_name)?;
    let mut pin_prefixes = Vec::new();
    for root in &roots {
        let pin = kith_pki::spki_pin(root)?;
        if let Some(prefix) = kith_api::pin_sni(&pin).split('.').next() {
            pin_prefixes.push(prefix.to_string());
        }
    }
    // Leaf, its issuer chain as issued, the cross-signed roots and every
    // bundle root: a joining node has only the pin of one root, so that
    // root must come with the chain, and with it a path to it (through the
    // cross-signed certificate when the leaf is under the other root).
    let mut chain = vec![CertificateDer::from(issued.record.der.clone())];
    let mut extra: Vec<Vec<u8>> = issued.chain.clone();
    for c in authority
        .cross_signed(authority_name)?
        .into_iter()
        .chain([issued.root.clone()])
        .chain(roots.iter().cloned())
    {
        if !extra.contains(&c) {
            extra.push(c);
        }
    }
    chain.extend(extra.into_iter().map(CertificateDer::from));
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()));
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(Error::Tls)?;
    tracing::info!(
        server = name,
        authority = authority_name,
        serial = %issued.record.serial,
        not_after = %issued.record.not_after,
        "server certificate issued"
    );
    let issuer = issued.chain.first().cloned().unwrap_or_default();
    Ok(PerAuthority {
        pin_prefixes,
        issuer,
        roots,
        current: Current {
            key: Arc::new(CertifiedKey::new(chain, signing)),
            not_before: issued.record.not_before,
            not_after: issued.record.not_after,
        },
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
