//! Join, renew and refresh: the node side of the protocol, writing the node
//! directory of DESIGN.md atomically.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::Method;
use kith_api::wire::{
    CaResponse, CsrSubmission, IssueResponse, JoinRequest, NodeSelf, RenewRequest,
};
use kith_api::JoinToken;
use kith_nodedir as nodedir;
pub(crate) use kith_nodedir::NodeIdentity;
use kith_pki::{KeyType, PrivateKey, Profile, San};
use time::OffsetDateTime;

use crate::client::{Connection, ServerAddr};
use crate::tls::{pinned_config, server_api_config_for};
use crate::verify::PinVerifier;
use crate::Error;

/// Most interface addresses a node puts in its certificate.
const MAX_INTERFACE_IPS: usize = 32;

/// What `kith join` needs.
#[derive(Clone, Debug)]
pub struct JoinOptions {
    /// Where the server is.
    pub server: ServerAddr,
    /// The token.
    pub token: String,
    /// Node name; default the host name's first label.
    pub node: Option<String>,
    /// Extra SANs (DNS names or IPs).
    pub sans: Vec<String>,
    /// Node directory to write.
    pub dir: PathBuf,
    /// Profiles to ask for (default `peer`).
    pub profiles: Vec<Profile>,
    /// Key type (default P-256).
    pub key_type: KeyType,
    /// Whether to add this host's interface addresses as IP SANs.
    pub interface_ips: bool,
    /// Replace an identity already in `dir` (otherwise refused before
    /// anything is sent, so a token is not spent by mistake).
    pub force: bool,
}

/// The file names of one profile's certificate.
pub fn profile_files(identity_profiles: &[Profile], p: Profile) -> (String, String) {
    if identity_profiles.first() == Some(&p) {
        (nodedir::CERT.into(), nodedir::FULLCHAIN.into())
    } else {
        (
            format!("{}-{}", p.as_str(), nodedir::CERT),
            format!("{}-{}", p.as_str(), nodedir::FULLCHAIN),
        )
    }
}

/// This host's name, as a node name: the first label, lowercase.
pub fn default_node_name() -> Option<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    let first = h.trim().split('.').next()?.to_ascii_lowercase();
    kith_pki::validate_label("node name", &first).ok()?;
    Some(first)
}

/// The addresses of this host's interfaces a certificate may carry (no
/// link-local ones; the first [`MAX_INTERFACE_IPS`], as a certificate
/// carries 64 names at most).
pub fn interface_addresses() -> Vec<IpAddr> {
    let Ok(ifs) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    ifs.into_iter()
        .take(MAX_INTERFACE_IPS)
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local(),
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect()
}

fn sans_for(node: Option<&str>, extra: &[String], interface_ips: bool) -> Result<Vec<San>, Error> {
    let mut sans: Vec<San> = node.map(|n| San::Dns(n.to_string())).into_iter().collect();
    sans.push(San::Dns("localhost".into()));
    if interface_ips {
        sans.extend(interface_addresses().into_iter().map(San::Ip));
    }
    for s in extra {
        sans.push(s.parse::<San>()?);
    }
    let mut out: Vec<San> = Vec::new();
    for s in sans {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

fn csrs(
    key: &PrivateKey,
    node: &str,
    profiles: &[Profile],
    sans: &[San],
) -> Result<Vec<CsrSubmission>, Error> {
    let der = kith_pki::build_csr(key, node, sans)?;
    let pem = kith_pki::pem_encode("CERTIFICATE REQUEST", &der);
    Ok(profiles
        .iter()
        .map(|p| CsrSubmission {
            profile: p.as_str().to_string(),
            csr: pem.clone(),
        })
        .collect())
}

fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, Error> {
    kith_pki::certs_from_pem_or_der(pem.as_bytes()).map_err(Error::from)
}

/// The trust bundle to keep after an answer offering `offered` roots: the
/// update rule of [`kith_pki::accept_bundle`] (every new root vouched for by
/// a trusted one, never losing every trusted root), with `cross_signed`
/// from the server's `/v1/ca`. A refusal is loud and writes nothing.
fn accepted_roots(
    server: &ServerAddr,
    trusted: &[Vec<u8>],
    offered: &[Vec<u8>],
    cross_signed: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, Error> {
    kith_pki::accept_bundle(trusted, offered, cross_signed).map_err(|e| {
        let err = Error::BundleRefused {
            server: server.to_string(),
            detail: e.to_string(),
        };
        tracing::error!(error = %err, "CA bundle refused");
        err
    })
}

/// DER certificates.
type Ders = Vec<Vec<u8>>;

/// The roots and cross-signed certificates `/v1/ca` lists for `authority`.
fn authority_roots(ca: &CaResponse, authority: &str) -> Result<(Ders, Ders), Error> {
    let mut roots = Vec::new();
    let mut cross = Vec::new();
    for a in ca.authorities.iter().filter(|a| a.name == authority) {
        roots.extend(pem_certs(&a.root)?);
        for c in &a.cross_signed {
            cross.extend(pem_certs(c)?);
        }
    }
    Ok((roots, cross))
}

/// Check an issue answer against what was asked: each certificate is over
/// our key, chains to `roots` (the bundle this node accepted), and is for
/// the node we expect.
fn check_answer(
    answer: &IssueResponse,
    key: &PrivateKey,
    profiles: &[Profile],
    expected_node: Option<&str>,
    roots: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, Error> {
    let bad = |m: String| Error::BadResponse(m);
    if answer.certificates.len() != profiles.len() {
        return Err(bad(format!(
            "asked for {} certificates, got {}",
            profiles.len(),
            answer.certificates.len()
        )));
    }
    if let Some(n) = expected_node {
        if answer.node != n {
            return Err(bad(format!("issued to {:?}, not {n:?}", answer.node)));
        }
    }
    let our_spki = kith_pki::sha256(key.public_key().spki_der());
    let now = OffsetDateTime::now_utc();
    let mut leaves = Vec::new();
    for (c, p) in answer.certificates.iter().zip(profiles) {
        if c.profile != p.as_str() {
            return Err(bad(format!("asked for {p}, got {}", c.profile)));
        }
        let leaf = pem_certs(&c.certificate)?
            .into_iter()
            .next()
            .ok_or_else(|| bad("an empty certificate".into()))?;
        if kith_pki::spki_pin(&leaf)? != our_spki {
            return Err(bad("a certificate is not over the key we generated".into()));
        }
        kith_pki::verify_chain(&leaf, &pem_certs(&c.chain)?, roots, &[], now, *p)
            .map_err(|e| bad(format!("the {p} certificate does not verify: {e}")))?;
        leaves.push(leaf);
    }
    Ok(leaves)
}

/// Stage every file of the node directory from an answer, then commit. A
/// directory that does not exist yet (a first join) appears whole or not at
/// all; in an existing one each file is replaced atomically.
fn write_node_dir(
    dir: &Path,
    key: &PrivateKey,
    answer: &IssueResponse,
    roots: &[Vec<u8>],
    identity: &NodeIdentity,
    crl_pem: Option<&str>,
) -> Result<(), Error> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        nodedir::create_dir(parent)?;
    }
    let key_pem = key.pkcs8_pem();
    let mut public: Vec<(String, Vec<u8>)> = Vec::new();
    for (c, p) in answer.certificates.iter().zip(&identity.profiles) {
        let (cert, full) = profile_files(&identity.profiles, *p);
        public.push((cert, c.certificate.as_bytes().to_vec()));
        public.push((full, format!("{}{}", c.certificate, c.chain).into_bytes()));
        if identity.profiles.first() == Some(p) {
            public.push((nodedir::CHAIN.into(), c.chain.as_bytes().to_vec()));
        }
    }
    let bundle = kith_pki::pem_encode_many("CERTIFICATE", roots.iter().map(Vec::as_slice));
    public.push((nodedir::CA.into(), bundle.into_bytes()));
    if let Some(crl) = crl_pem {
        public.push((nodedir::CRL.into(), crl.as_bytes().to_vec()));
    }
    let json = identity
        .to_json()
        .map_err(|e| Error::NodeDir(format!("encoding identity: {e}")))?;
    public.push((nodedir::IDENTITY.into(), json));
    let mut files: Vec<(&str, &[u8], u32)> =
        vec![(nodedir::KEY, key_pem.as_bytes(), nodedir::KEY_MODE)];
    files.extend(
        public
            .iter()
            .map(|(name, contents)| (name.as_str(), contents.as_slice(), nodedir::PUBLIC_MODE)),
    );
    let batch = nodedir::Batch::new();
    batch.stage_dir(dir, &files)?;
    batch.commit()?;
    Ok(())
}

fn identity_from(
    answer: &IssueResponse,
    server: &ServerAddr,
    profiles: &[Profile],
    key_type: KeyType,
    sans: &[String],
    interface_ips: bool,
) -> Result<NodeIdentity, Error> {
    let first = &answer.certificates[0];
    let parse = |s: &str| {
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::BadResponse(format!("time {s:?}: {e}")))
    };
    Ok(NodeIdentity {
        cluster: answer.cluster.clone(),
        node: answer.node.clone(),
        role: answer.role.clone(),
        authority: answer.authority.clone(),
        server: Some(server.clone()),
        profiles: profiles.to_vec(),
        serial: first.serial.clone(),
        not_before: parse(&first.not_before)?,
        not_after: parse(&first.not_after)?,
        key_type,
        sans: sans.to_vec(),
        crl_path: answer.crl_path.clone(),
        interface_ips,
        replicas: Vec::new(),
    }
    .with_servers(server, &answer.replicas))
}

async fn fetch_one_crl_pem(conn: &mut Connection, path: &str) -> Result<String, Error> {
    let der = conn.get_bytes(path).await?;
    match kith_pki::inspect(&der) {
        Ok(v) if matches!(v.first(), Some(kith_pki::Inspected::Crl(_))) => {}
        _ => return Err(Error::BadResponse(format!("{path} is not a CRL"))),
    }
    Ok(kith_pki::pem_encode("X509 CRL", &der))
}

/// What `crl.pem` holds: the intermediate's CRL (`path`, the revoked
/// leaves), the root's (`path/root`, the revoked intermediates), then the
/// CRLs of the authority's other intermediates (`path/others`: one
/// prepared by a rotation, whose leaves peers meet once it issues, and the
/// ones it replaced, whose leaves live on), PEM, so that a relying party
/// checking every CA of a chain (nginx `ssl_crl`, `openssl verify
/// -crl_check_all`, the rustls configurations, which refuse a leaf whose
/// issuer has no CRL here) finds one for each. A server from before root
/// CRLs or rotations (404) gives fewer.
async fn fetch_crl_pem(conn: &mut Connection, path: &str) -> Result<String, Error> {
    let mut pem = fetch_one_crl_pem(conn, path).await?;
    match fetch_one_crl_pem(conn, &format!("{path}/root")).await {
        Ok(root) => pem.push_str(&root),
        Err(Error::Api { status: 404, .. }) => {
            tracing::warn!(
                "the server publishes no root CRL: crl.pem holds the intermediate's only"
            )
        }
        Err(e) => return Err(e),
    }
    match fetch_other_crls_pem(conn, &format!("{path}/others")).await {
        Ok(others) => pem.push_str(&others),
        Err(Error::Api { status: 404, .. }) => {
            tracing::debug!(
                "the server publishes no other intermediates' CRLs (it predates rotation)"
            )
        }
        Err(e) => return Err(e),
    }
    Ok(pem)
}

/// The PEM CRLs at `path` (possibly none), each checked to be a CRL.
async fn fetch_other_crls_pem(conn: &mut Connection, path: &str) -> Result<String, Error> {
    use rustls_pki_types::pem::PemObject;
    let body = conn.get_bytes(path).await?;
    let mut pem = String::new();
    for crl in rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(&body) {
        let der = crl.map_err(|e| Error::BadResponse(format!("{path}: not PEM CRLs: {e}")))?;
        match kith_pki::inspect(&der) {
            Ok(v) if matches!(v.first(), Some(kith_pki::Inspected::Crl(_))) => {}
            _ => {
                return Err(Error::BadResponse(format!(
                    "{path} holds something else than CRLs"
                )))
            }
        }
        pem.push_str(&kith_pki::pem_encode("X509 CRL", &der));
    }
    if pem.is_empty() && !body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::BadResponse(format!("{path}: not PEM CRLs")));
    }
    Ok(pem)
}

/// The CRL, or `None` with a warning: the certificates are issued by now,
/// so a failed CRL fetch must not lose them; the agent's next refresh
/// fetches it (until then peers' revocations are not checked).
async fn crl_or_warn(conn: &mut Connection, path: &str) -> Option<String> {
    match fetch_crl_pem(conn, path).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "could not fetch the CRL; the agent will retry");
            None
        }
    }
}

/// Handshakes a join makes before it reports that the server does not
/// present the pinned root.
const PIN_ATTEMPTS: u32 = 4;

/// Join the cluster: verify the server against the token's pin (sending
/// nothing before that), generate the key here, send CSRs and the token,
/// verify the answer, and write the node directory.
pub async fn join(opts: &JoinOptions) -> Result<NodeIdentity, Error> {
    let token = JoinToken::parse(&opts.token).map_err(|e| Error::Invalid(e.to_string()))?;
    if !opts.force && opts.dir.join(nodedir::KEY).exists() {
        return Err(Error::NodeDir(format!(
            "{} already holds a node identity; pass --force to replace it (its key is overwritten)",
            opts.dir.display()
        )));
    }
    // The server name asks for the chain of the pinned root's authority.
    let sni = kith_api::pin_sni(&token.pin);
    // A replica that learnt of a new authority a moment ago issues its
    // certificate for it within about a second, and answers with the
    // default chain until then: a mismatch is tried again a few times
    // before it is reported (nothing is sent before the pin matches).
    let mut attempt = 0;
    let (mut conn, verifier) = loop {
        let verifier = Arc::new(PinVerifier::new(token.pin, host_name(&opts.server)?));
        let config = pinned_config(verifier.clone())?;
        match Connection::open_as(&opts.server, config, Some(&sni)).await {
            Ok(c) => break (c, verifier),
            Err(_) if verifier.mismatch.load(std::sync::atomic::Ordering::SeqCst) => {
                attempt += 1;
                if attempt == PIN_ATTEMPTS {
                    return Err(Error::PinMismatch {
                        server: opts.server.to_string(),
                        expected: hex::encode(token.pin),
                    });
                }
                tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            }
            Err(e) => return Err(e),
        }
    };
    // The handshake proved a kith server of this cluster under the pinned root.
    let cluster = verifier
        .cluster
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .ok_or_else(|| Error::BadResponse("the server's identity was not checked".into()))?;
    let ca: CaResponse = conn.json(Method::GET, "/v1/ca", None::<&()>).await?;
    if ca.cluster != cluster {
        return Err(Error::BadResponse(format!(
            "the server's certificate is for cluster {cluster}, its answer for {}",
            ca.cluster
        )));
    }
    let pinned = pem_certs(&ca.bundle)?
        .into_iter()
        .find(|r| kith_pki::spki_pin(r).is_ok_and(|p| p == token.pin))
        .ok_or_else(|| {
            Error::BadResponse("the server's CA bundle does not contain the pinned root".into())
        })?;
    // Without --name the host name is only asked for (as the CSR's common
    // name): a token minted for a name decides it instead.
    let node = match &opts.node {
        Some(n) => n.clone(),
        None => default_node_name().ok_or_else(|| {
            Error::Invalid("cannot derive a node name from the host name: pass --name".into())
        })?,
    };
    // A reserved name is refused here, before the token is sent.
    kith_pki::validate_node_name(&node)?;
    let asked = opts.node.as_deref();
    let profiles = if opts.profiles.is_empty() {
        vec![Profile::Peer]
    } else {
        opts.profiles.clone()
    };
    let key = PrivateKey::generate(opts.key_type)?;
    let sans = sans_for(asked, &opts.sans, opts.interface_ips)?;
    // Interface addresses another node holds may be left out; an address
    // asked for with --san may not.
    let named: Vec<San> = opts
        .sans
        .iter()
        .filter_map(|s| s.parse::<San>().ok())
        .collect();
    let may_leave_out = sans
        .iter()
        .filter_map(|s| match s {
            San::Ip(ip) if !named.contains(s) => Some(*ip),
            _ => None,
        })
        .collect();
    let body = JoinRequest {
        token: opts.token.trim().to_string(),
        node: asked.map(str::to_string),
        csrs: csrs(&key, &node, &profiles, &sans)?,
        may_leave_out,
    };
    let answer: IssueResponse = conn.json(Method::POST, "/v1/join", Some(&body)).await?;
    if answer.cluster != cluster {
        return Err(Error::BadResponse(format!(
            "joined cluster {}, but the server is {cluster}'s",
            answer.cluster
        )));
    }
    // The pinned root is the only anchor: the bundle kept is what it vouches for.
    let (_, cross) = authority_roots(&ca, &answer.authority)?;
    let roots = accepted_roots(
        &opts.server,
        std::slice::from_ref(&pinned),
        &pem_certs(&answer.ca_bundle)?,
        &cross,
    )?;
    check_answer(&answer, &key, &profiles, None, &roots)?;
    let crl = crl_or_warn(&mut conn, &answer.crl_path).await;
    let identity = identity_from(
        &answer,
        &opts.server,
        &profiles,
        opts.key_type,
        &opts.sans,
        opts.interface_ips,
    )?;
    write_node_dir(&opts.dir, &key, &answer, &roots, &identity, crl.as_deref())?;
    Ok(identity)
}

/// Renew now over mutual TLS with the current certificate: a new key, the
/// same identity and profiles; the directory is rewritten atomically. The
/// answer is checked against the roots this node trusts (a bundle change
/// must be vouched for), and the new certificate is presented once right
/// away, which ends the renewal rights of the one it replaced.
///
/// Failover: the recorded server first, then each other known replica when
/// one is out of service ([`Error::is_outage`]: unreachable, timed out, 5xx);
/// a refusal (4xx) is the answer. The replica that renewed is recorded as
/// the one to try first, with the replicas its answer lists.
pub async fn renew(dir: &Path) -> Result<NodeIdentity, Error> {
    let identity = NodeIdentity::load(dir)?;
    let servers = identity.servers(dir)?;
    let (fresh, _) = failover(&servers, |server| renew_via(dir, &identity, server)).await?;
    Ok(fresh)
}

/// Try `op` on each of `servers` in turn until one is not out of service
/// ([`Error::is_outage`]); its result and the server that gave it. Each
/// attempt is bounded ([`crate::client::CONNECT_TIMEOUT`] to connect).
pub(crate) async fn failover<T, F, Fut>(
    servers: &[ServerAddr],
    mut op: F,
) -> Result<(T, ServerAddr), Error>
where
    F: FnMut(ServerAddr) -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut last = None;
    for (i, server) in servers.iter().enumerate() {
        match op(server.clone()).await {
            Ok(v) => return Ok((v, server.clone())),
            Err(e) if e.is_outage() => {
                if i + 1 < servers.len() {
                    tracing::warn!(server = %server, error = %e, "server out of service; trying the next replica");
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Invalid("no server to talk to".into())))
}

/// [`renew`] through `server`.
async fn renew_via(
    dir: &Path,
    identity: &NodeIdentity,
    server: ServerAddr,
) -> Result<NodeIdentity, Error> {
    let mut conn = connect_to(dir, identity, &server).await?;
    let key = PrivateKey::generate(identity.key_type)?;
    let sans = sans_for(Some(&identity.node), &identity.sans, identity.interface_ips)?;
    let body = RenewRequest {
        node: Some(identity.node.clone()),
        csrs: csrs(&key, &identity.node, &identity.profiles, &sans)?,
    };
    let answer: IssueResponse = conn.json(Method::POST, "/v1/renew", Some(&body)).await?;
    if answer.cluster != identity.cluster {
        return Err(Error::BadResponse(format!(
            "renewed in cluster {}, not {}",
            answer.cluster, identity.cluster
        )));
    }
    let trusted = trusted_roots(dir)?;
    let offered = pem_certs(&answer.ca_bundle)?;
    let cross = if offered == trusted {
        Vec::new()
    } else {
        let ca: CaResponse = conn.json(Method::GET, "/v1/ca", None::<&()>).await?;
        authority_roots(&ca, &identity.authority)?.1
    };
    // A bundle this node must not take does not stop the renewal: the new
    // certificate is checked against the roots it trusts, ca.pem stays.
    let roots = accepted_roots(&server, &trusted, &offered, &cross).unwrap_or(trusted);
    check_answer(
        &answer,
        &key,
        &identity.profiles,
        Some(&identity.node),
        &roots,
    )?;
    let crl = crl_or_warn(&mut conn, &answer.crl_path).await;
    let fresh = identity_from(
        &answer,
        &server,
        &identity.profiles,
        identity.key_type,
        &identity.sans,
        identity.interface_ips,
    )?;
    write_node_dir(dir, &key, &answer, &roots, &fresh, crl.as_deref())?;
    if let Err(e) = present(dir).await {
        tracing::warn!(error = %e, "could not present the new certificate yet; the next request will");
    }
    Ok(fresh)
}

/// Present the directory's current certificate to the server (`GET /v1/node`).
async fn present(dir: &Path) -> Result<NodeSelf, Error> {
    let (_, mut conn) = connect(dir).await?;
    conn.json(Method::GET, &node_self_path(dir), None::<&()>)
        .await
}

/// `GET /v1/node` with the pins of the roots in the directory's `ca.pem`
/// (`?trusts=`): during a root rotation the CA waits for every node to
/// trust both roots. Without a readable `ca.pem`, no report.
fn node_self_path(dir: &Path) -> String {
    let pins: Vec<[u8; 32]> = trusted_roots(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| kith_pki::spki_pin(r).ok())
        .take(kith_api::MAX_TRUSTS)
        .collect();
    match kith_api::trusts_query(&pins) {
        q if q.is_empty() => "/v1/node".to_string(),
        q => format!("/v1/node?{q}"),
    }
}

/// The roots in the directory's `ca.pem`.
fn trusted_roots(dir: &Path) -> Result<Vec<Vec<u8>>, Error> {
    let old = nodedir::read(dir, nodedir::CA)?;
    Ok(kith_pki::certs_from_pem_or_der(&old)?)
}

/// A mutual-TLS connection to the server node directory `dir` joined,
/// with the node's own certificate.
/// The recorded server first, then the other known replicas while one is
/// out of service. The identity returned lists the one that answered
/// first; `identity.json` is left as it is (this serves short-lived
/// commands, `kith exec` and `kith secret get`, which may run beside the
/// agent: the agent's refresh records the order).
pub async fn connect(dir: &Path) -> Result<(NodeIdentity, Connection), Error> {
    let identity = NodeIdentity::load(dir)?;
    let servers = identity.servers(dir)?;
    let (conn, worked) = failover(&servers, |server| {
        let identity = &identity;
        async move { connect_to(dir, identity, &server).await }
    })
    .await?;
    let identity = if identity.server.as_ref() == Some(&worked) {
        identity
    } else {
        identity.with_servers(&worked, &[])
    };
    Ok((identity, conn))
}

/// Record `worked` as the server to try first in `identity.json`, when it
/// is not already. Only the order changes: the file is read again and left
/// alone if its certificate is no longer `identity`'s (a renewal wrote it
/// meanwhile). Best effort: a directory this process may not write keeps
/// its order.
pub(crate) fn remember(dir: &Path, identity: NodeIdentity, worked: &ServerAddr) -> NodeIdentity {
    if identity.server.as_ref() == Some(worked) {
        return identity;
    }
    match NodeIdentity::load(dir) {
        Ok(current) if current.serial == identity.serial => {}
        _ => return identity.with_servers(worked, &[]),
    }
    let moved = identity.with_servers(worked, &[]);
    match moved.to_json() {
        Ok(json) => {
            if let Err(e) =
                nodedir::write_atomic(dir, nodedir::IDENTITY, &json, nodedir::PUBLIC_MODE)
            {
                tracing::debug!(error = %e, "could not record the replica that answered");
            }
        }
        Err(e) => tracing::debug!(error = %e, "encoding identity"),
    }
    moved
}

/// A mutual-TLS connection to `server` as the node of directory `dir`
/// (whose identity is `identity`), asking for its authority's chain: the
/// node trusts only its own authority's roots.
pub async fn connect_to(
    dir: &Path,
    identity: &NodeIdentity,
    server: &ServerAddr,
) -> Result<Connection, Error> {
    let config = server_api_config_for(dir, Some(host_name(server)?))?;
    let sni = kith_api::authority_sni(&identity.authority);
    Connection::open_as(server, config, Some(&sni)).await
}

/// The name a server's certificate must carry: its host, as dialled.
fn host_name(server: &ServerAddr) -> Result<rustls_pki_types::ServerName<'static>, Error> {
    rustls_pki_types::ServerName::try_from(server.host.clone())
        .map_err(|e| Error::Invalid(format!("server name {}: {e}", server.host)))
}

/// Bring the roots of `dir` (an operator's credential directory, say) up
/// to date with the roots of `authority` the server at the other end of
/// `conn` offers, by the rule a node's refresh follows: a new root only when
/// a root `dir` trusts vouches for it, never dropping every trusted one.
/// `conn` was verified with `dir`'s roots. Returns whether `ca.pem` changed.
/// Without it an operator's credential trusting only the old root could no
/// longer reach the server once a root rotation completes.
pub async fn refresh_roots(
    conn: &mut Connection,
    dir: &Path,
    authority: &str,
) -> Result<bool, Error> {
    let ca: CaResponse = conn.json(Method::GET, "/v1/ca", None::<&()>).await?;
    let old = trusted_roots(dir)?;
    let (offered, cross) = authority_roots(&ca, authority)?;
    if offered.is_empty() {
        return Ok(false);
    }
    let new = accepted_roots(conn.server(), &old, &offered, &cross)?;
    if new == old {
        return Ok(false);
    }
    let bundle = kith_pki::pem_encode_many("CERTIFICATE", new.iter().map(Vec::as_slice));
    nodedir::write_atomic(dir, nodedir::CA, bundle.as_bytes(), nodedir::PUBLIC_MODE)?;
    tracing::info!(dir = %dir.display(), "trust bundle updated from the server");
    Ok(true)
}

/// Refresh the CA bundle and the CRL. Returns whether a file changed.
/// Each known replica in turn while one is out of service, as [`renew`].
pub async fn refresh(dir: &Path) -> Result<bool, Error> {
    let identity = NodeIdentity::load(dir)?;
    let servers = identity.servers(dir)?;
    let (refreshed, worked) = failover(&servers, |server| {
        let identity = &identity;
        async move {
            let mut conn = connect_to(dir, identity, &server).await?;
            refresh_with(&mut conn, identity, dir).await
        }
    })
    .await?;
    remember(dir, identity, &worked);
    Ok(refreshed.changed)
}

/// What a refresh did and heard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Refreshed {
    /// `ca.pem` or `crl.pem` changed.
    pub(crate) changed: bool,
    /// The CA asks this node to renew now (a CA rotation).
    pub(crate) renew_now: bool,
    /// The bundle and the CRL were fetched and checked (false: the refresh
    /// failed, or only the secrets were asked for).
    pub(crate) fetched: bool,
}

/// [`refresh`] over an open connection; it also reports the roots this
/// node now trusts and hears whether the CA asks it to renew now.
pub(crate) async fn refresh_with(
    conn: &mut Connection,
    identity: &NodeIdentity,
    dir: &Path,
) -> Result<Refreshed, Error> {
    let ca: CaResponse = conn.json(Method::GET, "/v1/ca", None::<&()>).await?;
    if ca.cluster != identity.cluster {
        return Err(Error::BadResponse(format!(
            "the server answers for cluster {}, not {}",
            ca.cluster, identity.cluster
        )));
    }
    // Only the roots of this node's own authority, and only what the
    // roots it trusts vouch for.
    let old_roots = trusted_roots(dir)?;
    let (offered, cross) = authority_roots(&ca, &identity.authority)?;
    let new_roots = accepted_roots(conn.server(), &old_roots, &offered, &cross)?;
    let crl = fetch_crl_pem(conn, &identity.crl_path).await?;
    let mut changed = false;
    if old_roots != new_roots {
        let bundle = kith_pki::pem_encode_many("CERTIFICATE", new_roots.iter().map(Vec::as_slice));
        nodedir::write_atomic(dir, nodedir::CA, bundle.as_bytes(), nodedir::PUBLIC_MODE)?;
        changed = true;
    }
    let old_crl = nodedir::read(dir, nodedir::CRL).map_or_else(|_| Vec::new(), |b| b.to_vec());
    if old_crl != crl.as_bytes() {
        nodedir::write_atomic(dir, nodedir::CRL, crl.as_bytes(), nodedir::PUBLIC_MODE)?;
        changed = true;
    }
    // Present the certificate: ends the renewal rights of the one it
    // replaced, tells this node if the CA revoked or removed it, reports
    // the roots it now trusts and hears whether to renew now.
    let renew_now = match conn
        .json::<NodeSelf>(Method::GET, &node_self_path(dir), None::<&()>)
        .await
    {
        Ok(me) => me.renew_now,
        Err(e) if e.needs_new_token() => return Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "presenting the certificate failed");
            false
        }
    };
    Ok(Refreshed {
        changed,
        renew_now,
        fetched: true,
    })
}
