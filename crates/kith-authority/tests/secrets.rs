//! Secrets on a real redb store: envelope encryption, versions and
//! check-and-set, policy, limits, tamper detection, passphrase change and
//! master key rotation across restarts.

use std::sync::Arc;

use kith_authority::{
    Authority, Error, Identity, InitOptions, IssueRequest, KdfParams, ManualClock, Reader,
    SecretUpdate, Settings, SettingsChange,
};
use kith_pki::{KeyType, PrivateKey, Profile};
use kith_store::Store;
use kith_store_redb::RedbStore;
use time::OffsetDateTime;

const PASS: &[u8] = b"a passphrase for tests";
const PASS2: &[u8] = b"another passphrase, longer";

fn kdf() -> KdfParams {
    KdfParams::MINIMUM
}

struct Env {
    dir: tempfile::TempDir,
    authority: Authority,
}

impl Env {
    /// A new cluster whose shared settings are changed by `change`.
    async fn new(change: SettingsChange) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("kith.redb")).expect("open"));
        let authority = Authority::init(
            store,
            Arc::new(ManualClock::new(OffsetDateTime::now_utc())),
            InitOptions {
                cluster: "test.example".into(),
                key_type: KeyType::P256,
                kdf: kdf(),
            },
            PASS,
            Settings::default(),
        )
        .await
        .expect("init");
        if change != SettingsChange::default() {
            authority
                .update_settings(change, "admin:test")
                .await
                .expect("settings");
        }
        Self { dir, authority }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.authority.store().clone()
    }

    /// Drop the authority and its store, and open the database again: a restart.
    async fn restart(self, pass: &[u8]) -> Result<Self, Error> {
        let Env { dir, authority } = self;
        authority.close().await;
        let store: Arc<dyn Store> =
            Arc::new(RedbStore::open(&dir.path().join("kith.redb")).expect("reopen"));
        let authority = Authority::open(
            store,
            Arc::new(ManualClock::new(OffsetDateTime::now_utc())),
            pass,
            Settings::default(),
        )
        .await?;
        Ok(Self { dir, authority })
    }
}

const ADMIN: Reader<'static> = Reader::Admin("admin:test");

async fn put(a: &Authority, name: &str, value: &[u8]) -> u64 {
    a.put_secret(name, value, SecretUpdate::default(), "admin:test")
        .await
        .expect("put")
        .latest()
}

async fn read(a: &Authority, name: &str) -> Vec<u8> {
    a.get_secret(name, None, ADMIN)
        .await
        .expect("get")
        .1
        .to_vec()
}

#[tokio::test]
async fn versions_keep_and_check_and_set() {
    let env = Env::new(SettingsChange {
        keep_versions: Some(3),
        ..SettingsChange::default()
    })
    .await;
    let a = &env.authority;
    for i in 1..=5u64 {
        assert_eq!(put(a, "db-password", format!("v{i}").as_bytes()).await, i);
    }
    let info = a.secret_info("db-password").await.expect("info");
    assert_eq!(
        info.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [3, 4, 5],
        "only the last 3 are kept"
    );
    assert_eq!(read(a, "db-password").await, b"v5");
    let (_, old) = a
        .get_secret("db-password", Some(4), ADMIN)
        .await
        .expect("v4");
    assert_eq!(old.as_slice(), b"v4");
    let e = a
        .get_secret("db-password", Some(1), ADMIN)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown-secret-version");
    assert_eq!(
        env.store()
            .list("secretval/db-password/")
            .await
            .expect("list")
            .len(),
        3,
        "dropped versions are deleted from the store"
    );
    // Check-and-set: a write based on version 4 is refused now that 5 exists.
    let stale = SecretUpdate {
        if_version: Some(4),
        ..Default::default()
    };
    let e = a
        .put_secret("db-password", b"x", stale, "admin:b")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "secret-conflict", "{e}");
    assert_eq!(read(a, "db-password").await, b"v5", "nothing overwritten");
    // Two operators writing at once without check-and-set: both versions land, distinct.
    let (x, y) = futures::join!(
        a.put_secret("racy", b"from-a", SecretUpdate::default(), "admin:a"),
        a.put_secret("racy", b"from-b", SecretUpdate::default(), "admin:b"),
    );
    let mut vs = [x.expect("a").latest(), y.expect("b").latest()];
    vs.sort_unstable();
    assert_eq!(vs[1], 2);
    let info = a.secret_info("racy").await.expect("info");
    assert_eq!(info.versions.len(), 2, "neither write was lost");
    // Racing check-and-set writers against the same version: exactly one wins.
    let cas = |who: &'static str| {
        a.put_secret(
            "racy",
            who.as_bytes(),
            SecretUpdate {
                if_version: Some(2),
                ..Default::default()
            },
            who,
        )
    };
    let results = futures::future::join_all(["a", "b", "c", "d"].map(cas)).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.iter().filter(|r| r.is_err()) {
        assert_eq!(r.as_ref().unwrap_err().code(), "secret-conflict");
    }
    // Delete one version, then the secret.
    a.delete_secret("db-password", Some(4), "admin:test")
        .await
        .expect("rm v4");
    assert_eq!(
        a.get_secret("db-password", Some(4), ADMIN)
            .await
            .unwrap_err()
            .code(),
        "unknown-secret-version"
    );
    a.delete_secret("db-password", None, "admin:test")
        .await
        .expect("rm");
    assert_eq!(
        a.secret_info("db-password").await.unwrap_err().code(),
        "unknown-secret"
    );
    assert!(env
        .store()
        .list("secretval/db-password/")
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn policy_limits_and_audit() {
    let env = Env::new(SettingsChange {
        secret_max_bytes: Some(1024),
        ..SettingsChange::default()
    })
    .await;
    let a = &env.authority;
    a.put_secret(
        "api-key",
        b"k",
        SecretUpdate {
            allow_roles: Some(vec!["worker".into()]),
            allow_nodes: Some(vec!["db-1".into()]),
            description: Some("the API key".into()),
            ..Default::default()
        },
        "admin:test",
    )
    .await
    .expect("put");
    // Admin-only by default.
    put(a, "root-only", b"r").await;
    let node = |name: &'static str, role: &'static str| Reader::Node { name, role };
    assert!(a
        .get_secret("api-key", None, node("w-1", "worker"))
        .await
        .is_ok());
    assert!(a
        .get_secret("api-key", None, node("db-1", "db"))
        .await
        .is_ok());
    let e = a
        .get_secret("api-key", None, node("x-1", "db"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "secret-forbidden");
    let e = a
        .get_secret("root-only", None, node("w-1", "worker"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "secret-forbidden");
    // A missing secret looks forbidden to a node: no probing for names.
    let e = a
        .get_secret("nope", None, node("w-1", "worker"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "secret-forbidden");
    // Limits and names.
    let e = a
        .put_secret(
            "big",
            &vec![0u8; 1025],
            SecretUpdate::default(),
            "admin:test",
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), "secret-too-large", "{e}");
    for bad in ["", "-x", "a/b", "a.b", "ü", &"x".repeat(129)] {
        let e = a
            .put_secret(bad, b"v", SecretUpdate::default(), "admin:test")
            .await
            .unwrap_err();
        assert_eq!(e.code(), "invalid-argument", "{bad:?}");
    }
    // Every read, write and refusal is in the audit trail; never the value.
    let audit = env.store().list("audit/").await.expect("audit");
    let text: String = audit
        .iter()
        .map(|e| String::from_utf8_lossy(&e.value).into_owned())
        .collect();
    assert!(
        text.contains("secret-put")
            && text.contains("secret-read")
            && text.contains("secret-denied")
    );
    assert!(text.contains("node:x-1"), "who was refused is recorded");
    // The plaintext is nowhere in the store.
    a.put_secret(
        "marker",
        b"PLAINTEXT-MARKER-123",
        SecretUpdate::default(),
        "admin:test",
    )
    .await
    .expect("put");
    for e in env.store().list("").await.expect("all") {
        assert!(
            !e.value.windows(20).any(|w| w == b"PLAINTEXT-MARKER-123"),
            "plaintext stored in {}",
            e.key
        );
    }
}

#[tokio::test]
async fn tampered_or_moved_ciphertexts_do_not_open() {
    let env = Env::new(SettingsChange::default()).await;
    let a = &env.authority;
    put(a, "one", b"first secret").await;
    put(a, "two", b"second secret").await;
    let store = env.store();
    let key = "secretval/one/00000000000000000001";
    let entry = store.get(key).await.expect("get").expect("value record");
    // Flip one byte of the stored ciphertext.
    let mut rec: serde_json::Value = serde_json::from_slice(&entry.value).expect("json");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut ct = b64
        .decode(rec["value"].as_str().expect("value"))
        .expect("b64");
    ct[20] ^= 0x01;
    rec["value"] = b64.encode(&ct).into();
    store
        .put(key, serde_json::to_vec(&rec).expect("json"))
        .await
        .expect("tamper");
    let e = a.get_secret("one", None, ADMIN).await.unwrap_err();
    assert_eq!(e.code(), "integrity-error", "{e}");
    assert!(!e.to_string().contains("first secret"));
    // Move "two"'s record over "one": its AAD names "two", so it fails here.
    let two = store
        .get("secretval/two/00000000000000000001")
        .await
        .expect("get")
        .expect("two");
    store.put(key, two.value).await.expect("move");
    let e = a.get_secret("one", None, ADMIN).await.unwrap_err();
    assert_eq!(e.code(), "integrity-error", "{e}");
    assert_eq!(read(a, "two").await, b"second secret");
}

#[tokio::test]
async fn passphrase_change_reads_back_with_the_new_one() {
    let env = Env::new(SettingsChange::default()).await;
    put(&env.authority, "db", b"hunter2-but-longer").await;
    env.authority
        .change_passphrase(PASS2, kdf())
        .await
        .expect("change");
    let dir = env.dir;
    env.authority.close().await;
    let reopen = |pass: &'static [u8]| {
        let path = dir.path().join("kith.redb");
        async move {
            let store: Arc<dyn Store> = Arc::new(RedbStore::open(&path).expect("reopen"));
            Authority::open(
                store,
                Arc::new(ManualClock::new(OffsetDateTime::now_utc())),
                pass,
                Settings::default(),
            )
            .await
        }
    };
    let e = reopen(PASS).await.unwrap_err();
    assert_eq!(e.code(), "wrong-passphrase");
    let a = reopen(PASS2).await.expect("the new passphrase opens it");
    assert_eq!(read(&a, "db").await, b"hunter2-but-longer");
}

#[tokio::test]
async fn vault_rotation_then_restart() {
    let env = Env::new(SettingsChange::default()).await;
    let a = &env.authority;
    for i in 0..5 {
        put(a, &format!("s{i}"), format!("value {i}").as_bytes()).await;
    }
    put(a, "s0", b"value 0, second version").await;
    a.add_authority("api", KeyType::P256)
        .await
        .expect("second authority");
    let before = env
        .store()
        .get("cluster/meta")
        .await
        .expect("get")
        .expect("cluster");
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c2 = calls.clone();
    let report = a
        .rotate_master(
            PASS,
            Arc::new(move |_, _| {
                c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
        )
        .await
        .expect("rotate");
    assert_eq!(report.master_version, 2);
    assert_eq!(report.authorities, 2);
    assert_eq!(report.secret_versions, 6);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        8,
        "progress per record"
    );
    let env = env.restart(PASS).await.expect("reopen after rotation");
    let a = &env.authority;
    assert_eq!(read(a, "s0").await, b"value 0, second version");
    let (_, first) = a.get_secret("s0", Some(1), ADMIN).await.expect("v1");
    assert_eq!(first.as_slice(), b"value 0");
    for i in 1..5 {
        assert_eq!(
            read(a, &format!("s{i}")).await,
            format!("value {i}").as_bytes()
        );
    }
    // The CA keys work under the new master key.
    for authority in ["cluster", "api"] {
        a.issue(IssueRequest {
            identity: Identity {
                node: "n1".into(),
                role: "worker".into(),
                profile: Profile::Peer,
                authority: Some(authority.into()),
                ttl: None,
            },
            public_key: PrivateKey::generate(KeyType::P256)
                .expect("key")
                .public_key(),
            extra_sans: vec![],
        })
        .await
        .expect("issue after rotation");
    }
    // The old master key opens nothing: put back the cluster record from
    // before the rotation (it wraps the old key under the same passphrase)
    // and the CA keys no longer open.
    env.store()
        .put("cluster/meta", before.value)
        .await
        .expect("restore old record");
    match env.restart(PASS).await {
        Err(e) => assert_eq!(e.code(), "integrity-error", "{e}"),
        Ok(_) => panic!("the old master key still opens the cluster"),
    }
}
