//! rustls configurations built from a node directory, and a watcher that
//! rebuilds them when the agent writes a renewed certificate or a new CRL.
//!
//! Peers are verified against the cluster roots (`ca.pem`) and the current
//! CRLs (`crl.pem`: the leaf's, and a root's for the intermediates of the
//! presented chain), and optionally required to be a given node or role.
//! A rebuilt configuration is published only after it checks out (the key
//! matches the certificate, the chain leads to a root, the certificate is
//! valid now), so a half-written directory never reaches a handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use tokio::sync::watch;

use crate::policy::{provider, PeerPolicy};
use crate::verify::{CheckedServerVerifier, PinVerifier, PolicyClientVerifier, ServerCheck};
use crate::Error;

/// The PEM material of a node directory.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

fn read_material(dir: &Path) -> Result<Material, Error> {
    let nd = |what: &str, e: &dyn std::fmt::Display| {
        Error::NodeDir(format!("{}: {what}: {e}", dir.display()))
    };
    let certs = |name: &str| -> Result<Vec<CertificateDer<'static>>, Error> {
        CertificateDer::pem_slice_iter(&kith_nodedir::read(dir, name)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| nd(name, &e))
    };
    let chain = certs(kith_nodedir::FULLCHAIN)?;
    let roots = certs(kith_nodedir::CA)?;
    if chain.is_empty() || roots.is_empty() {
        return Err(Error::NodeDir(format!(
            "{}: fullchain.pem and ca.pem must each hold a certificate",
            dir.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&kith_nodedir::read(dir, kith_nodedir::KEY)?)
        .map_err(|e| nd(kith_nodedir::KEY, &e))?;
    let crl_path = dir.join(kith_nodedir::CRL);
    let crls = if crl_path.exists() {
        CertificateRevocationListDer::pem_slice_iter(&kith_nodedir::read(dir, kith_nodedir::CRL)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| nd(kith_nodedir::CRL, &e))?
    } else {
        Vec::new()
    };
    Ok(Material {
        chain,
        key,
        roots,
        crls,
    })
}

impl Material {
    /// The checks a configuration must pass before it is published.
    fn check(&self, provider: &CryptoProvider) -> Result<(), Error> {
        let signing = provider
            .key_provider
            .load_private_key(self.key.clone_key())?;
        let leaf = &self.chain[0];
        let spki = signing
            .public_key()
            .ok_or_else(|| Error::NodeDir("cannot derive the public key of key.pem".into()))?;
        if kith_pki::sha256(spki.as_ref()) != kith_pki::spki_pin(leaf)? {
            return Err(Error::NodeDir(
                "key.pem does not match the certificate in fullchain.pem".into(),
            ));
        }
        let (not_before, not_after) = kith_pki::certificate_validity(leaf)?;
        let now = time::OffsetDateTime::now_utc();
        if now < not_before || now > not_after {
            return Err(Error::NodeDir(format!(
                "the certificate is valid from {not_before} to {not_after}, not now"
            )));
        }
        let inter: Vec<Vec<u8>> = self.chain[1..].iter().map(|c| c.to_vec()).collect();
        let roots: Vec<Vec<u8>> = self.roots.iter().map(|c| c.to_vec()).collect();
        kith_pki::verify_chain(leaf, &inter, &roots, &[], now, kith_pki::Profile::Client).or_else(
            |_| kith_pki::verify_chain(leaf, &inter, &roots, &[], now, kith_pki::Profile::Server),
        )?;
        Ok(())
    }

    /// The CA certificates revoked by a CRL of `crl.pem` that a root of
    /// `ca.pem` signed (a compromised root rotation revokes the old
    /// intermediate so).
    fn revoked_cas(&self) -> Arc<kith_pki::RevokedCas> {
        Arc::new(kith_pki::RevokedCas::from_root_crls(
            &self.roots,
            &self.crls,
        ))
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, Error> {
        let mut roots = RootCertStore::empty();
        for r in &self.roots {
            roots.add(r.clone())?;
        }
        Ok(Arc::new(roots))
    }
}

fn warn_without_crl(m: &Material) {
    if m.crls.is_empty() {
        tracing::warn!(
            "no crl.pem: peers' revocations are not checked until the agent fetches one"
        );
    }
}

fn build_server(m: &Material, policy: &PeerPolicy) -> Result<Arc<ServerConfig>, Error> {
    warn_without_crl(m);
    let p = provider();
    let mut b = WebPkiClientVerifier::builder_with_provider(m.roots()?, p.clone());
    if !m.crls.is_empty() {
        b = b
            .with_crls(m.crls.clone())
            .only_check_end_entity_revocation();
    }
    let inner = b
        .build()
        .map_err(|e| Error::NodeDir(format!("client verifier: {e}")))?;
    let verifier = Arc::new(PolicyClientVerifier {
        inner,
        policy: policy.clone(),
        revoked_cas: m.revoked_cas(),
    });
    let cfg = ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(m.chain.clone(), m.key.clone_key())?;
    Ok(Arc::new(cfg))
}

fn build_client(m: &Material, policy: &PeerPolicy) -> Result<Arc<ClientConfig>, Error> {
    warn_without_crl(m);
    let p = provider();
    let mut b = WebPkiServerVerifier::builder_with_provider(m.roots()?, p.clone());
    if !m.crls.is_empty() {
        b = b
            .with_crls(m.crls.clone())
            .only_check_end_entity_revocation();
    }
    let inner = b
        .build()
        .map_err(|e| Error::NodeDir(format!("server verifier: {e}")))?;
    let verifier = Arc::new(CheckedServerVerifier {
        inner,
        check: ServerCheck::Peer(policy.clone()),
        host: None,
        revoked_cas: m.revoked_cas(),
    });
    let cfg = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())?;
    Ok(Arc::new(cfg))
}

/// A rustls `ServerConfig` from node directory `dir`: presents the node's
/// certificate, requires client certificates of the cluster, checks the CRL.
pub fn server_config(dir: &Path, policy: &PeerPolicy) -> Result<Arc<ServerConfig>, Error> {
    let m = read_material(dir)?;
    m.check(&provider())?;
    build_server(&m, policy)
}

/// A rustls `ClientConfig` from node directory `dir`: presents the node's
/// certificate, trusts the cluster roots, checks the CRL.
pub fn client_config(dir: &Path, policy: &PeerPolicy) -> Result<Arc<ClientConfig>, Error> {
    let m = read_material(dir)?;
    m.check(&provider())?;
    build_client(&m, policy)
}

/// A client configuration trusting the roots of `dir` and presenting its
/// certificate, that accepts only a kith server of the same cluster: what
/// the agent, the node commands and the operator commands use to talk to
/// the kith server. Every member of the cluster chains to the same roots,
/// so the chain alone proves only "a member"; the server identity
/// (`spiffe://<cluster>/kith/server/<name>`, which the CA issues to nobody
/// else) proves "the CA". Checked in the handshake, before a byte is sent.
pub(crate) fn server_api_config(dir: &Path) -> Result<Arc<ClientConfig>, Error> {
    server_api_config_for(dir, None)
}

/// [`server_api_config`] for a handshake that sends another server name
/// than `host` (the node's authority's, [`kith_api::authority_sni`]): the
/// certificate is checked for `host`.
pub(crate) fn server_api_config_for(
    dir: &Path,
    host: Option<ServerName<'static>>,
) -> Result<Arc<ClientConfig>, Error> {
    let m = read_material(dir)?;
    let cluster = kith_pki::trust_domain(&m.chain[0])?.ok_or_else(|| {
        Error::NodeDir(format!(
            "{}: the certificate carries no cluster identity (no spiffe:// URI)",
            dir.display()
        ))
    })?;
    let p = provider();
    let mut b = WebPkiServerVerifier::builder_with_provider(m.roots()?, p.clone());
    if !m.crls.is_empty() {
        // A revoked server certificate (a stolen server key) is refused once
        // the node has the CRL naming it. The node's CRL is its own
        // authority's: a server certificate of another issuer is not judged.
        b = b
            .with_crls(m.crls.clone())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    let inner = b
        .build()
        .map_err(|e| Error::NodeDir(format!("server verifier: {e}")))?;
    let verifier = Arc::new(CheckedServerVerifier {
        inner,
        check: ServerCheck::KithServer(cluster),
        host,
        // A server chain through an intermediate a trusted root revoked is
        // refused too: whoever holds a compromised intermediate's key could
        // otherwise pose as the CA to a node (the real server moves its own
        // certificate to the new intermediate at activation).
        revoked_cas: m.revoked_cas(),
    });
    let cfg = ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(m.chain.clone(), m.key.clone_key())?;
    Ok(Arc::new(cfg))
}

/// Live rustls configurations for a node directory: every read of
/// [`TlsWatch::server`] or [`TlsWatch::client`] gives the newest verified
/// one, so each new connection uses the newest certificate and CRL.
#[derive(Debug)]
pub struct TlsWatch {
    server: watch::Receiver<Arc<ServerConfig>>,
    client: watch::Receiver<Arc<ClientConfig>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsWatch {
    /// Load `dir` now (an error if it does not check out) and re-read it
    /// every `every`, publishing new configurations when the files changed
    /// and verify. Call it inside a Tokio runtime: the re-reading runs as a
    /// task, stopped when the `TlsWatch` is dropped.
    pub fn start(dir: PathBuf, policy: PeerPolicy, every: Duration) -> Result<Self, Error> {
        let m = read_material(&dir)?;
        m.check(&provider())?;
        let (stx, srx) = watch::channel(build_server(&m, &policy)?);
        let (ctx, crx) = watch::channel(build_client(&m, &policy)?);
        let mut last = fingerprint(&dir);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = fingerprint(&dir);
                if now == last {
                    continue;
                }
                let built = read_material(&dir).and_then(|m| {
                    m.check(&provider())?;
                    Ok((build_server(&m, &policy)?, build_client(&m, &policy)?))
                });
                match built {
                    Ok((s, c)) => {
                        last = now;
                        let _ = stx.send(s);
                        let _ = ctx.send(c);
                        tracing::info!(dir = %dir.display(), "TLS configuration reloaded");
                    }
                    // Mid-write or bad: keep serving the last good one, look again next tick.
                    Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "not reloading yet"),
                }
            }
        });
        Ok(Self {
            server: srx,
            client: crx,
            task,
        })
    }

    /// The newest server configuration.
    pub fn server(&self) -> Arc<ServerConfig> {
        self.server.borrow().clone()
    }

    /// The newest client configuration.
    pub fn client(&self) -> Arc<ClientConfig> {
        self.client.borrow().clone()
    }

    /// A receiver that sees every new server configuration.
    pub fn server_updates(&self) -> watch::Receiver<Arc<ServerConfig>> {
        self.server.clone()
    }

    /// A receiver that sees every new client configuration.
    pub fn client_updates(&self) -> watch::Receiver<Arc<ClientConfig>> {
        self.client.clone()
    }
}

impl Drop for TlsWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Contents hash of the files a configuration is built from.
fn fingerprint(dir: &Path) -> [u8; 32] {
    let mut all = Vec::new();
    for name in [
        kith_nodedir::KEY,
        kith_nodedir::FULLCHAIN,
        kith_nodedir::CA,
        kith_nodedir::CRL,
    ] {
        all.extend_from_slice(name.as_bytes());
        if let Ok(b) = kith_nodedir::read(dir, name) {
            all.extend_from_slice(&kith_pki::sha256(&b));
        }
    }
    kith_pki::sha256(&all)
}

/// A client configuration that trusts only a server proving the pin.
pub(crate) fn pinned_config(verifier: Arc<PinVerifier>) -> Result<Arc<ClientConfig>, Error> {
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}
