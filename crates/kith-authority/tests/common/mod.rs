//! The authority-level test harness: an `Authority` initialised on a real
//! store (redb in a temporary directory, or `MemStore`), a manual clock the
//! test moves, a second authority on the same store (a replica), and a
//! restart. Every test file of this crate builds its authorities here.

// Each test binary uses its own part of this module.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use kith_authority::{
    Authority, Error, Identity, InitOptions, IssueRequest, KdfParams, ManualClock, Settings,
    SettingsChange,
};
use kith_pki::{KeyType, PrivateKey, Profile};
use kith_store::{MemStore, Store};
use kith_store_redb::RedbStore;
use time::OffsetDateTime;

/// The passphrase every harness cluster is initialised with.
pub const PASS: &[u8] = b"a passphrase for tests";
/// A second passphrase, for passphrase changes.
pub const PASS2: &[u8] = b"another passphrase, longer";
/// The cluster name.
pub const CLUSTER: &str = "test.example";

/// Which store a harness runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    /// `RedbStore` in the harness's temporary directory (restartable).
    Redb,
    /// `MemStore` with its default (1 MiB) value limit.
    Mem,
    /// `MemStore` whose values are at most this many bytes.
    MemLimited(usize),
}

/// An initialised cluster and the handles a test needs.
pub struct Harness {
    /// Holds the redb file (and anything else the test writes there).
    pub dir: tempfile::TempDir,
    /// The store the authority writes to.
    pub store: Arc<dyn Store>,
    /// The clock every authority of this harness reads.
    pub clock: Arc<ManualClock>,
    /// The authority `init` returned.
    pub authority: Authority,
    backend: Backend,
}

impl Harness {
    /// A P-256 cluster on redb with default settings.
    pub async fn redb() -> Self {
        Self::new(Backend::Redb, Settings::default()).await
    }

    /// A P-256 cluster on `MemStore` with default settings.
    pub async fn mem() -> Self {
        Self::new(Backend::Mem, Settings::default()).await
    }

    /// A P-256 cluster on `backend` with per-process `settings`.
    pub async fn new(backend: Backend, settings: Settings) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(backend, &dir);
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let authority = Authority::init(store.clone(), clock.clone(), options(), PASS, settings)
            .await
            .expect("init");
        Self {
            dir,
            store,
            clock,
            authority,
            backend,
        }
    }

    /// Change the cluster-wide settings (CRL validity, secret size, versions kept).
    pub async fn with_settings(self, change: SettingsChange) -> Self {
        self.authority
            .update_settings(change, "test")
            .await
            .expect("change the cluster settings");
        self
    }

    /// The redb file (meaningful for [`Backend::Redb`]).
    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("kith.redb")
    }

    /// Another authority on the same store and clock: a second replica.
    pub async fn second(&self) -> Authority {
        self.second_with(PASS)
            .await
            .expect("open a second authority")
    }

    /// Another authority on the same store, unlocked with `pass`.
    pub async fn second_with(&self, pass: &[u8]) -> Result<Authority, Error> {
        Authority::open(
            self.store.clone(),
            self.clock.clone(),
            pass,
            Settings::default(),
        )
        .await
    }

    /// A restart: close the authority, let its store go, open the store
    /// again (redb reopens its file; a `MemStore` is kept) and unlock it
    /// with `pass`. The clock carries on.
    pub async fn restart(self, pass: &[u8]) -> Result<Self, Error> {
        let Self {
            dir,
            store,
            clock,
            authority,
            backend,
        } = self;
        authority.close().await;
        let store = match backend {
            Backend::Redb => {
                drop(store);
                open_store(backend, &dir)
            }
            Backend::Mem | Backend::MemLimited(_) => store,
        };
        let authority =
            Authority::open(store.clone(), clock.clone(), pass, Settings::default()).await?;
        Ok(Self {
            dir,
            store,
            clock,
            authority,
            backend,
        })
    }
}

fn open_store(backend: Backend, dir: &tempfile::TempDir) -> Arc<dyn Store> {
    match backend {
        Backend::Redb => {
            Arc::new(RedbStore::open(&dir.path().join("kith.redb")).expect("open the redb store"))
        }
        Backend::Mem => Arc::new(MemStore::new()),
        Backend::MemLimited(max) => Arc::new(MemStore::with_max_value(max)),
    }
}

/// What every harness cluster is initialised with: P-256, the fastest
/// Argon2id parameters the authority accepts.
pub fn options() -> InitOptions {
    InitOptions {
        cluster: CLUSTER.into(),
        key_type: KeyType::P256,
        kdf: KdfParams::MINIMUM,
    }
}

/// A request to issue a `peer` leaf for a fresh P-256 key of node `node`.
pub fn request(node: &str) -> IssueRequest {
    IssueRequest {
        identity: Identity {
            node: node.into(),
            role: "worker".into(),
            profile: Profile::Peer,
            authority: None,
            ttl: None,
        },
        public_key: PrivateKey::generate(KeyType::P256)
            .expect("key")
            .public_key(),
        extra_sans: Vec::new(),
    }
}

/// A CSR (DER) for `node`'s `key`, as `kith join` sends.
pub fn csr(key: &PrivateKey, node: &str) -> Vec<u8> {
    kith_pki::build_csr(key, node, &[kith_pki::San::Dns(node.into())]).expect("csr")
}

/// Poll until `f` holds. The target is a second (a store watch makes it
/// milliseconds); the bound is looser so a loaded machine does not flake.
pub async fn within_a_second(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < StdDuration::from_secs(3),
            "{what}: not seen within three seconds"
        );
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
}

/// Bytes that differ everywhere, so a misplaced chunk or a swapped value shows.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Find an external tool (`KITH_TOOLS_DIR`, then the workspace venv, then
/// `PATH`) or panic with what installs it: a test that needs one never
/// passes without it.
pub(crate) fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("KITH_TOOLS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin"));
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "required tool `{name}` not found: set KITH_TOOLS_DIR or run ./scripts/test.sh, which installs openssl and a venv with pkilint"
            )
        })
}

/// Run openssl; returns (success, stdout + stderr).
pub(crate) fn openssl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(tool("openssl"))
        .args(args)
        .output()
        .expect("run openssl");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
