//! Shared by the server tests: a real server on a real port over a real
//! redb store, with an injected clock, and TLS clients for it.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use hyper::Method;
use kith_agent::{Connection, ServerAddr};
use kith_api::wire::{CsrSubmission, IssueResponse, JoinRequest};
use kith_authority::{Authority, InitOptions, KdfParams, ManualClock, Settings, TokenSpec};
use kith_pki::{KeyType, PrivateKey, Profile, San};
use kith_store::Store;
use kith_store_redb::RedbStore;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

pub const PASS: &[u8] = b"correct horse battery staple";

pub struct Env {
    pub _tmp: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub authority: Authority,
    pub addr: SocketAddr,
    pub root: Vec<u8>,
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A node's credentials as the tests hold them.
pub struct Creds {
    pub key: PrivateKey,
    pub chain: Vec<Vec<u8>>,
    pub serial: String,
}

impl Env {
    pub async fn start() -> Self {
        Self::start_with(|o| o).await
    }

    pub async fn start_with(
        tune: impl FnOnce(kith_server::Options) -> kith_server::Options,
    ) -> Self {
        Self::start_on(None, Settings::default(), tune).await
    }

    /// A server on `store` (a redb file in the temporary directory if
    /// `None`) with `settings`.
    pub async fn start_on(
        store: Option<Arc<dyn Store>>,
        settings: Settings,
        tune: impl FnOnce(kith_server::Options) -> kith_server::Options,
    ) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = match store {
            Some(s) => s,
            None => Arc::new(RedbStore::open(&tmp.path().join("kith.redb")).expect("open redb")),
        };
        let now = OffsetDateTime::now_utc();
        // The CA predates every certificate the tests backdate.
        let clock = Arc::new(ManualClock::new(now - Duration::days(400)));
        let authority = Authority::init(
            store,
            clock.clone(),
            InitOptions {
                cluster: "test.example".into(),
                key_type: KeyType::P256,
                kdf: KdfParams {
                    t: 2,
                    ..KdfParams::MINIMUM
                },
            },
            PASS,
            settings,
        )
        .await
        .expect("init");
        clock.set(now);
        let opts = tune(kith_server::Options::new(
            "127.0.0.1:0".parse().expect("addr"),
        ));
        let server = kith_server::Server::bind(authority.clone(), opts)
            .await
            .expect("bind");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(server.run(std::future::pending()));
        let root = authority.root_cert("cluster").expect("root");
        let env = Self {
            _tmp: tmp,
            clock,
            authority,
            addr,
            root,
        };
        // The first CRL is signed on first demand (or by the maintenance
        // task): make that happen now, not in the middle of a store snapshot.
        env.public()
            .await
            .get_bytes("/v1/crl/cluster")
            .await
            .expect("first CRL");
        // The root's CRL likewise.
        env.public()
            .await
            .get_bytes("/v1/crl/cluster/root")
            .await
            .expect("first root CRL");
        env
    }

    pub fn server(&self) -> ServerAddr {
        ServerAddr {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
        }
    }

    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.root.clone()))
            .expect("root");
        Arc::new(roots)
    }

    pub async fn public(&self) -> Connection {
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        Connection::open(&self.server(), Arc::new(cfg))
            .await
            .expect("connect")
    }

    pub async fn mtls(&self, creds: &Creds) -> Connection {
        Connection::open(&self.server(), self.mtls_config(creds))
            .await
            .expect("connect with a client certificate")
    }

    pub fn mtls_config(&self, creds: &Creds) -> Arc<rustls::ClientConfig> {
        let chain = creds
            .chain
            .iter()
            .map(|c| CertificateDer::from(c.clone()))
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(creds.key.pkcs8_der().to_vec()));
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(self.roots())
            .with_client_auth_cert(chain, key)
            .expect("client cert");
        Arc::new(cfg)
    }

    /// Every key and revision in the store: "nothing changed" means equal
    /// snapshots. A running replica's heartbeat (`replica/`) and its
    /// maintenance lease (`lease/`) are rewritten on their own clocks, not
    /// by requests, so they are left out.
    pub async fn snapshot(&self) -> Vec<(String, u64)> {
        self.authority
            .store()
            .list("")
            .await
            .expect("list")
            .into_iter()
            .filter(|e| !e.key.starts_with("replica/") && !e.key.starts_with("lease/"))
            .map(|e| (e.key, e.revision))
            .collect()
    }

    pub async fn token(&self, role: &str, node: Option<&str>, uses: u32) -> String {
        let (_, t) = self
            .authority
            .create_token(
                TokenSpec {
                    role: role.into(),
                    node: node.map(str::to_string),
                    ttl: Duration::hours(1),
                    uses,
                    allow_sans: Vec::new(),
                    authority: None,
                },
                "test",
            )
            .await
            .expect("token");
        t.encode().to_string()
    }

    /// Join over the API; the credentials on success.
    pub async fn join_ok(&self, node: &str) -> Creds {
        let token = self.token("worker", None, 1).await;
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let body = JoinRequest {
            token,
            node: Some(node.into()),
            csrs: vec![csr_for(&key, node, &[], Profile::Peer)],
            may_leave_out: Vec::new(),
        };
        let mut c = self.public().await;
        let r: IssueResponse = c
            .json(Method::POST, "/v1/join", Some(&body))
            .await
            .expect("join");
        creds_from(key, &r)
    }
}

pub fn creds_from(key: PrivateKey, r: &IssueResponse) -> Creds {
    let mut chain =
        kith_pki::certs_from_pem_or_der(r.certificates[0].certificate.as_bytes()).expect("leaf");
    chain.extend(
        kith_pki::certs_from_pem_or_der(r.certificates[0].chain.as_bytes()).expect("chain"),
    );
    Creds {
        key,
        chain,
        serial: r.certificates[0].serial.clone(),
    }
}

pub fn csr_for(key: &PrivateKey, node: &str, extra: &[San], profile: Profile) -> CsrSubmission {
    let mut sans = vec![San::Dns(node.into())];
    sans.extend(extra.iter().cloned());
    let der = kith_pki::build_csr(key, node, &sans).expect("csr");
    CsrSubmission {
        profile: profile.as_str().into(),
        csr: kith_pki::pem_encode("CERTIFICATE REQUEST", &der),
    }
}

/// A CSR made by openssl (for what our own builder refuses to make).
pub fn openssl_csr(dir: &Path, newkey: &str, extra: &[&str]) -> String {
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-nodes",
            "-newkey",
            newkey,
            "-subj",
            "/CN=node-x",
        ])
        .arg("-keyout")
        .arg(dir.join("k.pem"))
        .args(extra)
        .output()
        .expect("openssl must be installed: the test suite setup (scripts/test.sh) installs it");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("PEM")
}

impl Env {
    /// An operator credential (admin profile), issued directly by the authority.
    pub async fn admin(&self) -> Creds {
        let key = PrivateKey::generate(KeyType::P256).expect("key");
        let issued = self
            .authority
            .issue(kith_authority::IssueRequest {
                identity: kith_authority::Identity {
                    node: "admin".into(),
                    role: "admin".into(),
                    profile: Profile::Admin,
                    authority: None,
                    ttl: None,
                },
                public_key: key.public_key(),
                extra_sans: vec![],
            })
            .await
            .expect("admin cert");
        let mut chain = vec![issued.record.der.clone()];
        chain.extend(issued.chain);
        Creds {
            key,
            chain,
            serial: issued.record.serial,
        }
    }
}

/// Assert an error answer: its status, its code, a message.
pub fn assert_refused(what: &str, got: (hyper::StatusCode, bytes::Bytes), status: u16, code: &str) {
    let (st, body) = got;
    let parsed: kith_api::wire::ErrorBody = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {body:?}"));
    assert_eq!(
        (st.as_u16(), parsed.code.as_str()),
        (status, code),
        "{what}: {}",
        parsed.message
    );
    assert!(!parsed.message.is_empty(), "{what}: empty message");
}

pub async fn post(
    c: &mut kith_agent::Connection,
    path: &str,
    body: &impl serde::Serialize,
) -> (hyper::StatusCode, bytes::Bytes) {
    c.send(
        Method::POST,
        path,
        Some(serde_json::to_vec(body).expect("encode")),
    )
    .await
    .expect("transport")
}

/// A refused request: exact status and code, and the store unchanged.
#[macro_export]
macro_rules! hostile {
    ($env:expr, $what:expr, $status:expr, $code:expr, $req:expr) => {{
        let before = $env.snapshot().await;
        let got = $req;
        assert_refused($what, got, $status, $code);
        assert_eq!(
            before,
            $env.snapshot().await,
            "{}: the store changed",
            $what
        );
        1usize
    }};
}

/// Another replica on `env`'s store: its own authority (another process,
/// as far as the store can tell) opened with `settings`, serving as `name`,
/// heartbeating every 100 ms, maintenance every `maintenance` (else the
/// default); its advertised URL and address, what stops it, its `run`.
pub struct Replica {
    pub url: String,
    pub addr: ServerAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The server's task: aborting it is a kill (no clean stop).
    pub run: tokio::task::JoinHandle<Result<(), kith_server::Error>>,
}

impl Replica {
    pub async fn start(
        env: &Env,
        name: &str,
        settings: Settings,
        maintenance: Option<std::time::Duration>,
    ) -> Self {
        let authority = Authority::open(
            env.authority.store().clone(),
            env.clock.clone(),
            PASS,
            settings,
        )
        .await
        .expect("another authority on the store");
        let mut o = kith_server::Options::new("127.0.0.1:0".parse().expect("addr"));
        o.server_name = name.into();
        o.heartbeat_interval = std::time::Duration::from_millis(100);
        if let Some(every) = maintenance {
            o.maintenance_interval = every;
        }
        let server = kith_server::Server::bind(authority, o)
            .await
            .expect("bind a replica");
        let url = server.advertise().to_string();
        let addr = ServerAddr::parse(&url).expect("advertise URL");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        Self {
            url,
            addr,
            stop: Some(tx),
            run: tokio::spawn(server.run(async {
                let _ = rx.await;
            })),
        }
    }

    /// A clean stop: `run` returns, having removed its record.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        tokio::time::timeout(std::time::Duration::from_secs(30), &mut self.run)
            .await
            .expect("a clean stop ends run")
            .expect("run does not panic")
            .expect("run ends well");
    }
}
