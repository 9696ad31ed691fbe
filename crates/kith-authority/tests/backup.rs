//! Backups at the authority level: a CA with values split over chunks is
//! backed up, restored into a store with another value limit and opened
//! with its passphrase (secrets decrypt, CRL numbers moved past the
//! backup's); a backup whose lines were reordered, repeated or miscounted
//! is refused even with a matching checksum; a restore never writes over a
//! store that holds a record.

use std::sync::Arc;
use std::time::SystemTime;

use kith_authority::{
    read_backup, restore_backup, stored_crl, take_backup, Authority, CrlIssuer, Publish, Reader,
    RevokeTarget, SecretUpdate, Settings, SettingsChange, RESTORE_CRL_NUMBER_GAP,
};
use kith_pki::{RevocationReason, Serial};
use kith_store::chunked::CHUNK_PREFIX;
use kith_store::{MemStore, Store};

use common::{noise, PASS};

mod common;

const ADMIN: Reader<'static> = Reader::Admin("admin:test");

fn no_progress(_: u64, _: u64) {}

async fn issue(authority: &Authority, node: &str) -> String {
    authority
        .issue(common::request(node))
        .await
        .expect("issue")
        .record
        .serial
}

/// The manifest line and the record lines of a backup.
fn split(bytes: &[u8]) -> (serde_json::Value, Vec<Vec<u8>>) {
    let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let manifest = serde_json::from_slice(lines.next().expect("manifest")).expect("JSON");
    (manifest, lines.map(<[u8]>::to_vec).collect())
}

/// A backup file from a manifest and record lines, with the manifest's
/// checksum and count made to match (what someone editing it would do).
fn join(mut manifest: serde_json::Value, lines: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for l in lines {
        body.extend_from_slice(l);
        body.push(b'\n');
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
    manifest["sha256"] = hex::encode(digest.as_ref()).into();
    manifest["records"] = lines.len().into();
    let mut out = serde_json::to_vec(&manifest).expect("JSON");
    out.push(b'\n');
    out.extend_from_slice(&body);
    out
}

#[tokio::test]
async fn chunked_values_survive_a_restore_into_another_limit() {
    let change = SettingsChange {
        secret_max_bytes: Some(4 << 20),
        ..SettingsChange::default()
    };
    let h = common::Harness::new(common::Backend::MemLimited(64 * 1024), Settings::default())
        .await
        .with_settings(change)
        .await;
    let big = noise(300 * 1024, 7);
    h.authority
        .put_secret("big", &big, SecretUpdate::default(), "test")
        .await
        .expect("a secret split over chunks");
    let serial = issue(&h.authority, "node-1").await;
    h.authority
        .revoke(
            RevokeTarget::Serial(Serial::parse(&serial).expect("serial")),
            RevocationReason::KeyCompromise,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke");
    let number = stored_crl(&*h.store, "cluster")
        .await
        .expect("read")
        .expect("a CRL")
        .number;
    assert!(
        !h.store.list(CHUNK_PREFIX).await.expect("list").is_empty(),
        "the secret is split over chunks"
    );

    let bytes = take_backup(&*h.store, h.authority.now(), &no_progress)
        .await
        .expect("backup");
    let backup = read_backup(&bytes).expect("a good backup reads");
    assert!(
        backup.keys().all(|k| !k.starts_with(CHUNK_PREFIX)),
        "values go in whole, not as chunks"
    );
    assert_eq!(backup.manifest.max_crl_number, number);

    // Into a store with larger values: nothing is split there.
    let target: Arc<dyn Store> = Arc::new(MemStore::with_max_value(1 << 20));
    let restored = restore_backup(&*target, &backup, SystemTime::now(), &no_progress)
        .await
        .expect("restore");
    assert_eq!(restored.records, backup.len());
    assert!(restored.crls_due >= 1);
    assert_eq!(restored.crl_number_floor, number + RESTORE_CRL_NUMBER_GAP);
    let b = Authority::open(target.clone(), h.clock.clone(), PASS, Settings::default())
        .await
        .expect("the restored CA opens with its passphrase");
    let (_, value) = b.get_secret("big", None, ADMIN).await.expect("secret");
    assert_eq!(&*value, &big[..]);
    let crl = b.crl("cluster").await.expect("a CRL from the restored CA");
    assert_eq!(crl.number, number + RESTORE_CRL_NUMBER_GAP + 1);
    let listed = format!("{:?}", kith_pki::inspect(&crl.der).expect("a CRL"));
    assert!(listed.contains(&serial), "the revocation is still listed");
    // The root had signed no CRL before the backup: its first one is past
    // the floor too, never number 1 again.
    let root = b
        .crl_of("cluster", CrlIssuer::Root)
        .await
        .expect("the root's CRL");
    assert!(
        root.number > RESTORE_CRL_NUMBER_GAP,
        "root CRL number {}",
        root.number
    );

    // Once more into a store with smaller values than the source's.
    let small: Arc<dyn Store> = Arc::new(MemStore::with_max_value(16 * 1024));
    restore_backup(&*small, &backup, SystemTime::now(), &no_progress)
        .await
        .expect("restore into small values");
    let c = Authority::open(small.clone(), h.clock.clone(), PASS, Settings::default())
        .await
        .expect("open");
    let (_, value) = c.get_secret("big", None, ADMIN).await.expect("secret");
    assert_eq!(&*value, &big[..]);
    // And a restore never writes over a store that holds a record.
    let before = small.list("").await.expect("list").len();
    let err = restore_backup(&*small, &backup, SystemTime::now(), &no_progress)
        .await
        .expect_err("not into a CA");
    assert!(
        matches!(err, kith_authority::Error::AlreadyInitialized(_)),
        "{err:?}"
    );
    assert_eq!(small.list("").await.expect("list").len(), before);
}

#[tokio::test]
async fn edited_backups_are_refused_even_with_a_matching_checksum() {
    let h = common::Harness::mem().await;
    issue(&h.authority, "node-1").await;
    issue(&h.authority, "node-2").await;
    let bytes = take_backup(&*h.store, h.authority.now(), &no_progress)
        .await
        .expect("backup");
    let (manifest, lines) = split(&bytes);
    assert!(lines.len() >= 4);
    read_backup(&join(manifest.clone(), &lines)).expect("rebuilt unchanged, it reads");

    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    let mut repeated = lines.clone();
    repeated.insert(2, lines[1].clone());
    let mut other_value = lines.clone();
    let mut rec: serde_json::Value = serde_json::from_slice(&lines[1]).expect("JSON");
    rec["value"] = "e30=".into(); // "{}", with the old digest
    other_value[1] = serde_json::to_vec(&rec).expect("JSON");
    let mut unknown_field = lines.clone();
    let mut rec: serde_json::Value = serde_json::from_slice(&lines[0]).expect("JSON");
    rec["extra"] = 1.into();
    unknown_field[0] = serde_json::to_vec(&rec).expect("JSON");
    let no_cluster: Vec<Vec<u8>> = lines
        .iter()
        .filter(|l| !String::from_utf8_lossy(l).contains("\"key\":\"cluster/meta\""))
        .cloned()
        .collect();
    for (what, file, says) in [
        ("swapped", join(manifest.clone(), &swapped), "out of order"),
        ("repeated", join(manifest.clone(), &repeated), "repeated"),
        (
            "another value",
            join(manifest.clone(), &other_value),
            "checksum",
        ),
        (
            "unknown field",
            join(manifest.clone(), &unknown_field),
            "line 2",
        ),
        (
            "no cluster record",
            join(manifest.clone(), &no_cluster),
            "cluster record",
        ),
    ] {
        let err = read_backup(&file).expect_err(what);
        let text = err.to_string();
        assert!(text.contains(says), "{what}: {text}");
    }
    // A count the manifest does not name, with the right checksum.
    let mut m = manifest.clone();
    let file = join(m.clone(), &lines);
    let (mut fixed, _) = split(&file);
    fixed["records"] = (lines.len() + 1).into();
    let (_, body) = file.split_at(file.iter().position(|b| *b == b'\n').expect("nl") + 1);
    let mut bad = serde_json::to_vec(&fixed).expect("JSON");
    bad.push(b'\n');
    bad.extend_from_slice(body);
    assert!(read_backup(&bad)
        .expect_err("count")
        .to_string()
        .contains("records where the manifest names"));
    // A version this code does not read.
    m["version"] = 99.into();
    assert!(matches!(
        read_backup(&join(m, &lines)),
        Err(kith_authority::Error::Invalid(_))
    ));
}

/// A store that fails every create after the first `left` (a disk that
/// fills up, a NATS cluster that goes away): a real store behind it.
struct FailingAfter {
    inner: MemStore,
    left: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for FailingAfter {
    async fn get(&self, key: &str) -> kith_store::Result<Option<kith_store::Entry>> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> kith_store::Result<kith_store::Revision> {
        self.inner.put(key, value).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> kith_store::Result<kith_store::Revision> {
        use std::sync::atomic::Ordering;
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(kith_store::Error::Unavailable("the disk is full".into()));
        }
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: kith_store::Revision,
    ) -> kith_store::Result<kith_store::Revision> {
        self.inner.update(key, value, revision).await
    }
    async fn delete(&self, key: &str) -> kith_store::Result<()> {
        self.inner.delete(key).await
    }
    async fn delete_if(&self, key: &str, revision: kith_store::Revision) -> kith_store::Result<()> {
        self.inner.delete_if(key, revision).await
    }
    async fn list(&self, prefix: &str) -> kith_store::Result<Vec<kith_store::Entry>> {
        self.inner.list(prefix).await
    }
    async fn watch(
        &self,
        prefix: &str,
    ) -> kith_store::Result<
        futures::stream::BoxStream<'static, kith_store::Result<kith_store::WatchEvent>>,
    > {
        self.inner.watch(prefix).await
    }
    fn limits(&self) -> kith_store::Limits {
        self.inner.limits()
    }
}

/// A restore cut short at any point leaves no CA that opens (the cluster
/// record goes last), so nobody serves a CA without its revocations; and a
/// record too large for the target writes nothing at all.
#[tokio::test]
async fn an_interrupted_restore_leaves_no_ca_to_serve() {
    let h = common::Harness::mem().await;
    let serial = issue(&h.authority, "node-1").await;
    h.authority
        .revoke(
            RevokeTarget::Serial(Serial::parse(&serial).expect("serial")),
            RevocationReason::KeyCompromise,
            "test",
            Publish::Now,
        )
        .await
        .expect("revoke");
    let bytes = take_backup(&*h.store, h.authority.now(), &no_progress)
        .await
        .expect("backup");
    let backup = read_backup(&bytes).expect("read");
    for cut in [1, backup.len() / 2, backup.len() - 1] {
        let store: Arc<dyn Store> = Arc::new(FailingAfter {
            inner: MemStore::new(),
            left: cut.into(),
        });
        let err = restore_backup(&*store, &backup, SystemTime::now(), &no_progress)
            .await
            .expect_err("the store fails");
        assert!(format!("{err}").contains("disk is full"), "{err}");
        assert!(
            store.get("cluster/meta").await.expect("get").is_none(),
            "cut after {cut}: the cluster record was written"
        );
        let opened =
            Authority::open(store.clone(), h.clock.clone(), PASS, Settings::default()).await;
        assert!(
            matches!(opened, Err(kith_authority::Error::NotInitialized)),
            "cut after {cut}: {:?}",
            opened.err()
        );
    }
    // Values larger than the target takes, outside what may be split:
    // refused before the first write.
    let tiny: Arc<dyn Store> = Arc::new(MemStore::with_max_value(512));
    let err = restore_backup(&*tiny, &backup, SystemTime::now(), &no_progress)
        .await
        .expect_err("too small");
    assert!(
        matches!(
            err,
            kith_authority::Error::Store(kith_store::Error::ValueTooLarge { .. })
        ),
        "{err:?}"
    );
    assert!(
        tiny.list("").await.expect("list").is_empty(),
        "nothing written"
    );
}
