//! Issuance: sign a leaf (pure CPU, any thread) and record it durably
//! (the certificate and its holder's index, committed together), for a
//! public key, a CSR made elsewhere, many at once, or the server itself.

use std::sync::Arc;

use futures::future::join_all;
use kith_pki::{parse_csr, CsrPolicy, LeafSpec, Namespace, Profile, PublicKey, San, Serial};
use time::Duration;

use crate::authority::Authority;
use crate::error::Error;
use crate::keys;
use crate::limits::{self, MAX_CERT_TTL};
use crate::nodes::NodeRecord;
use crate::records::CertRecord;
use crate::records::{from_json, to_json, NodeCertIndex};
use crate::revoke::{Publish, RevokeTarget};
use crate::{IssueRequest, DEFAULT_AUTHORITY};

/// Who a certificate is for: decided by the caller, never read from a CSR.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Node name (DNS label).
    pub node: String,
    /// Role (DNS label).
    pub role: String,
    /// Profile.
    pub profile: Profile,
    /// Authority; `None` means [`DEFAULT_AUTHORITY`].
    pub authority: Option<String>,
    /// Lifetime; `None` means the profile's default.
    pub ttl: Option<Duration>,
}

/// An issued leaf: its record and the chain to present with it.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The durable record (includes the DER).
    pub record: CertRecord,
    /// Intermediates, leaf's issuer first.
    pub chain: Vec<Vec<u8>>,
    /// The root of the issuing authority.
    pub root: Vec<u8>,
    /// True when the lifetime was cut to the issuer's expiry.
    pub truncated: bool,
}

impl Authority {
    /// Sign without recording: pure CPU, safe to run on any thread. An
    /// `admin`-profile certificate is an operator's, every other one a
    /// node's (servers have [`Authority::issue_server_certificate`]).
    pub(crate) fn sign(&self, req: &IssueRequest) -> Result<Issued, Error> {
        let ns = if req.identity.profile == Profile::Admin {
            Namespace::Operator
        } else {
            Namespace::Node
        };
        self.sign_in(req, ns)
    }

    /// Sign for a holder in name space `ns`.
    pub(crate) fn sign_in(&self, req: &IssueRequest, ns: Namespace) -> Result<Issued, Error> {
        let id = &req.identity;
        kith_pki::validate_holder(ns, &id.node, &id.role)?;
        let authority = id.authority.as_deref().unwrap_or(DEFAULT_AUTHORITY);
        let signer = self.signer(authority)?;
        let ttl = id.ttl.unwrap_or_else(|| id.profile.default_ttl());
        limits::check("certificate lifetime", ttl, MAX_CERT_TTL, false)?;
        let now = self.now();
        limits::later(now, ttl, "certificate lifetime")?;
        let spec = LeafSpec {
            cluster: self.cluster().to_string(),
            namespace: ns,
            node: id.node.clone(),
            role: id.role.clone(),
            profile: id.profile,
            extra_sans: req.extra_sans.clone(),
            ttl,
            serial: Serial::random()?,
            crl_urls: Vec::new(),
        };
        let leaf = spec.sign(&req.public_key, &signer.intermediate, now)?;
        Ok(Issued {
            record: CertRecord {
                serial: leaf.serial.to_hex(),
                node: id.node.clone(),
                role: id.role.clone(),
                profile: id.profile,
                authority: authority.to_string(),
                not_before: leaf.not_before,
                not_after: leaf.not_after,
                fingerprint: leaf.fingerprint,
                sans: leaf.sans,
                issued_at: now,
                der: leaf.der,
                namespace: Some(ns),
            },
            chain: Self::leaf_chain(&signer.record),
            root: signer.record.root_cert.clone(),
            truncated: leaf.truncated,
        })
    }

    /// Make an issuance durable: the certificate and the node-to-certificate
    /// index, written concurrently so the store commits them together. Two
    /// single-key writes; a crash between them leaves a certificate that
    /// `revoke SERIAL` still finds, only not `revoke --node`.
    pub(crate) async fn record(&self, issued: &Issued) -> Result<(), Error> {
        let r = &issued.record;
        let store = &self.inner.store;
        let (cert_key, index_key) = (
            keys::cert_key(&r.serial),
            keys::holder_cert_key(r.holder(), &r.node, &r.serial),
        );
        let cert = store.create(&cert_key, to_json(r)?);
        let index = store.create(
            &index_key,
            to_json(&NodeCertIndex {
                authority: r.authority.clone(),
                not_after: r.not_after,
            })?,
        );
        let (a, b) = futures::join!(cert, index);
        a?;
        b?;
        Ok(())
    }

    /// A node identity being created here (not renewed): its name and
    /// role must not be reserved.
    fn check_new_identity(id: &Identity) -> Result<(), Error> {
        if id.profile != Profile::Admin {
            kith_pki::validate_new_node(&id.node, &id.role)?;
            // Operator-chosen lifetimes have the floor a token's have: a
            // shorter leaf would be renewed without pause.
            if let Some(t) = id.ttl {
                limits::check_cert_ttl(t)?;
            }
        }
        Ok(())
    }

    /// An operator issuing directly may not take the name of a node that
    /// joined and is live: its record (and so its renewals and secret
    /// reads) would pass to the new certificate while the node's own stayed
    /// valid. `kith node rm NAME` first frees it (and revokes the node).
    /// Names the operator issued before (offline) stay the operator's.
    async fn check_name_not_joined(&self, id: &Identity) -> Result<(), Error> {
        if id.profile == Profile::Admin {
            return Ok(());
        }
        let key = keys::node_key(&id.node);
        let Some(e) = self.store().get(&key).await? else {
            return Ok(());
        };
        let node: NodeRecord = from_json(&key, &e.value)?;
        if node.holds_joined_name(self.now()) {
            return Err(Error::NodeNameTaken(id.node.clone()));
        }
        Ok(())
    }

    /// [`Authority::audit_issued`] for each of `issued` (a bulk `cert
    /// issue`), in waves the store commits together.
    pub async fn audit_issued_all(&self, issued: &[Issued], actor: &str) -> Result<(), Error> {
        for wave in issued.chunks(2048) {
            for r in join_all(wave.iter().map(|i| self.audit_issued(i, actor))).await {
                r?;
            }
        }
        Ok(())
    }

    /// Audit an issuance the operator `actor` made directly (not a join or
    /// a renewal, which audit themselves).
    pub async fn audit_issued(&self, issued: &Issued, actor: &str) -> Result<(), Error> {
        let r = &issued.record;
        let sans: Vec<String> = r.sans.iter().map(ToString::to_string).collect();
        self.audit(
            actor,
            "cert-issue",
            &r.node,
            &format!(
                "serial {} profile {} authority {} names {}",
                r.serial,
                r.profile.as_str(),
                r.authority,
                sans.join(",")
            ),
        )
        .await
    }

    /// Issue a leaf for a public key and record it durably.
    pub async fn issue(&self, req: IssueRequest) -> Result<Issued, Error> {
        Self::check_new_identity(&req.identity)?;
        self.check_name_not_joined(&req.identity).await?;
        let issued = self.sign(&req)?;
        self.claim_issued_ips(&issued).await?;
        self.record(&issued).await?;
        self.record_issued_node_or_withdraw(&issued, req.identity.ttl)
            .await?;
        self.settle_issued_ips(&issued).await?;
        Ok(issued)
    }

    /// Issue a kith server its own certificate: the `server` profile with
    /// the server identity `spiffe://<cluster>/kith/server/<name>`, which no
    /// node or operator can be issued, so a node's certificate never passes
    /// for the CA's. `name` is the replica's own, in the server name space
    /// ([`kith_pki::validate_server_name`]); a retired name (a revoked
    /// server's) is refused with [`Error::ServerNameRetired`]. `sans` are the
    /// server's own DNS names and addresses, from its configuration (no CSR
    /// policy applies); replicas may share them (a load balancer's name).
    /// Issued by the default authority; see
    /// [`Authority::issue_server_certificate_in`] for the others.
    pub async fn issue_server_certificate(
        &self,
        name: &str,
        public_key: PublicKey,
        sans: Vec<San>,
        ttl: Duration,
    ) -> Result<Issued, Error> {
        self.issue_server_certificate_in(DEFAULT_AUTHORITY, name, public_key, sans, ttl)
            .await
    }

    /// [`Authority::issue_server_certificate`] under `authority`: the server
    /// presents each authority's own chain to that authority's nodes, since
    /// an authority is a trust domain of its own.
    pub async fn issue_server_certificate_in(
        &self,
        authority: &str,
        name: &str,
        public_key: PublicKey,
        sans: Vec<San>,
        ttl: Duration,
    ) -> Result<Issued, Error> {
        kith_pki::validate_server_name(name)?;
        self.signer(authority)?;
        if self.server_retired(name).await? {
            return Err(Error::ServerNameRetired(name.to_string()));
        }
        // The server's configured addresses are its own: no node may hold them.
        self.claim_sans(Namespace::Server, name, authority, &sans, &[], true)
            .await?;
        let issued = self.sign_in(
            &IssueRequest {
                identity: Identity {
                    node: name.to_string(),
                    role: kith_pki::RESERVED_ROLE.to_string(),
                    profile: Profile::Server,
                    authority: Some(authority.to_string()),
                    ttl: Some(ttl),
                },
                public_key,
                extra_sans: sans,
            },
            Namespace::Server,
        )?;
        self.record(&issued).await?;
        // Revoked while this was signed: the revocation marked the name
        // before listing its certificates, and may have missed this one.
        if let Some(reason) = self.server_marked_retired(name).await? {
            let serial = Serial::parse(&issued.record.serial)?;
            self.revoke(RevokeTarget::Serial(serial), reason, name, Publish::Now)
                .await?;
            return Err(Error::ServerNameRetired(name.to_string()));
        }
        self.settle_claims(Namespace::Server, name, std::slice::from_ref(&issued))
            .await?;
        Ok(issued)
    }

    /// Issue many leaves: signing runs in parallel on every core, recording
    /// is group-committed. `progress` is called once per signed and once per
    /// recorded certificate. Results are in request order.
    pub async fn issue_many(
        &self,
        reqs: Vec<IssueRequest>,
        progress: Arc<dyn Fn() + Send + Sync>,
    ) -> Vec<Result<Issued, Error>> {
        use rayon::prelude::*;
        let ttls: Vec<Option<Duration>> = reqs.iter().map(|r| r.identity.ttl).collect();
        let this = self.clone();
        let p = progress.clone();
        let signed = tokio::task::spawn_blocking(move || {
            reqs.par_iter()
                .map(|r| {
                    let out = Self::check_new_identity(&r.identity).and_then(|()| this.sign(r));
                    p();
                    out
                })
                .collect::<Vec<_>>()
        })
        .await;
        let signed = match signed {
            Ok(s) => s,
            Err(e) => return vec![Err(Error::Internal(format!("signing pool: {e}")))],
        };
        let mut out = Vec::with_capacity(signed.len());
        // Bounded waves keep memory flat while still filling each commit.
        let mut iter = signed.into_iter().zip(ttls);
        loop {
            let wave: Vec<_> = iter.by_ref().take(2048).collect();
            if wave.is_empty() {
                break;
            }
            let done = join_all(wave.into_iter().map(|(r, ttl)| {
                let progress = progress.clone();
                async move {
                    let issued = r?;
                    let id = Identity {
                        node: issued.record.node.clone(),
                        role: issued.record.role.clone(),
                        profile: issued.record.profile,
                        authority: None,
                        ttl: None,
                    };
                    self.check_name_not_joined(&id).await?;
                    self.claim_issued_ips(&issued).await?;
                    self.record(&issued).await?;
                    self.record_issued_node_or_withdraw(&issued, ttl).await?;
                    self.settle_issued_ips(&issued).await?;
                    progress();
                    Ok(issued)
                }
            }))
            .await;
            out.extend(done);
        }
        out
    }

    /// Issue a leaf for a CSR made elsewhere. The CSR's signature, key
    /// strength and requested names are checked against `policy` (or the
    /// settings' default); the identity is the one given here, never the
    /// CSR's subject. A refused CSR changes nothing.
    pub async fn sign_csr(
        &self,
        csr: &[u8],
        identity: Identity,
        policy: Option<&CsrPolicy>,
    ) -> Result<Issued, Error> {
        if identity.profile == Profile::Admin {
            return Err(Error::ProfileNotAllowed(
                Profile::Admin.as_str().to_string(),
            ));
        }
        kith_pki::validate_new_node(&identity.node, &identity.role)?;
        let parsed = parse_csr(csr)?;
        let policy = policy.unwrap_or(&self.inner.settings.policy);
        let extra = parsed.approve(policy, self.cluster(), &identity.role, &identity.node)?;
        self.issue(IssueRequest {
            identity,
            public_key: parsed.public_key,
            extra_sans: extra,
        })
        .await
    }
}
