//! Settings every process must agree on (CRL validity, largest secret,
//! versions kept) live in the cluster record: a change made through one
//! authority is in effect in another sharing the store within a second; a
//! record written before they existed reads with the defaults; bad values
//! are refused and change nothing; a concurrent master key rotation and a
//! settings change both land.

use std::sync::Arc;

use kith_authority::{
    cluster_settings, AuditRecord, Authority, ClusterSettings, Reader, SecretUpdate,
    SettingsChange, MAX_SECRET_MAX_BYTES,
};
use kith_store::Store;

use common::{within_a_second, PASS};

mod common;
const CLUSTER_KEY: &str = "cluster/meta";
const ADMIN: Reader<'static> = Reader::Admin("admin:test");

/// Two authorities on one in-memory store, as two replicas would be.
async fn pair() -> (Arc<dyn Store>, Authority, Authority) {
    let h = common::Harness::mem().await;
    let b = h.second().await;
    (h.store, h.authority, b)
}

async fn snapshot(store: &dyn Store) -> Vec<(String, u64)> {
    store
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|e| (e.key, e.revision))
        .collect()
}

async fn cluster_json(store: &dyn Store) -> (serde_json::Value, u64) {
    let e = store
        .get(CLUSTER_KEY)
        .await
        .expect("get")
        .expect("a cluster record");
    (serde_json::from_slice(&e.value).expect("JSON"), e.revision)
}

fn change(crl: Option<time::Duration>, max: Option<usize>, keep: Option<usize>) -> SettingsChange {
    SettingsChange {
        crl_validity: crl,
        secret_max_bytes: max,
        keep_versions: keep,
    }
}

async fn put(a: &Authority, name: &str, value: &[u8]) -> Result<u64, kith_authority::Error> {
    a.put_secret(name, value, SecretUpdate::default(), "admin:test")
        .await
        .map(|r| r.latest())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_in_one_process_is_in_effect_in_the_other() {
    let (store, a, b) = pair().await;
    assert_eq!(b.cluster_settings(), ClusterSettings::default());
    // Before: B signs the 7-day CRL, and stores a value the new limit will refuse.
    let before = b.crl("cluster").await.expect("crl");
    assert_eq!(
        before.next_update - before.this_update,
        time::Duration::days(7)
    );
    put(&b, "big", &[7u8; 2000]).await.expect("2000 bytes fit");

    let now = a
        .update_settings(
            change(Some(time::Duration::days(1)), Some(1024), Some(2)),
            "admin:alice",
        )
        .await
        .expect("update");
    assert_eq!(now.crl_validity, time::Duration::days(1));
    assert_eq!(
        a.cluster_settings(),
        now,
        "in effect at once where it was made"
    );
    within_a_second("the new settings in the other process", || {
        b.cluster_settings() == now
    })
    .await;

    // B's next CRL uses the new validity, though the stored one is fresh.
    let after = b.crl("cluster").await.expect("crl");
    assert_eq!(
        after.next_update - after.this_update,
        time::Duration::days(1)
    );
    assert!(after.number > before.number, "a new CRL was signed");
    // And it is kept: the next request is served from the store.
    assert_eq!(b.crl("cluster").await.expect("crl").number, after.number);

    // B refuses a secret above the new limit, accepts one at it.
    let e = put(&b, "api-key", &[1u8; 1025])
        .await
        .expect_err("over the new limit");
    assert_eq!(e.code(), "secret-too-large", "{e}");
    put(&b, "api-key", &[1u8; 1024])
        .await
        .expect("at the limit");
    // A smaller limit leaves stored secrets alone.
    let (_, big) = b.get_secret("big", None, ADMIN).await.expect("read big");
    assert_eq!(big.len(), 2000);

    // B keeps the new number of versions.
    for i in 0..4u8 {
        put(&b, "rotating", &[i]).await.expect("put");
    }
    let info = b.secret_info("rotating").await.expect("info");
    assert_eq!(
        info.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [3, 4],
        "the last 2 versions are kept"
    );

    // The change is in the audit trail, with who made it and what changed.
    let audit: Vec<AuditRecord> = store
        .list("audit/")
        .await
        .expect("audit")
        .iter()
        .map(|e| serde_json::from_slice(&e.value).expect("audit record"))
        .filter(|r: &AuditRecord| r.action == "settings-update")
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].actor, "admin:alice");
    assert!(
        audit[0].detail.contains("crl-validity 604800s -> 86400s")
            && audit[0].detail.contains("keep-versions 10 -> 2"),
        "{}",
        audit[0].detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_settings_reads_with_the_defaults() {
    let (store, a, b) = pair().await;
    // Written only once changed: a new cluster's record has none, like one
    // written before they existed.
    let (json, _) = cluster_json(&*store).await;
    assert!(json.get("settings").is_none(), "{json}");
    assert_eq!(
        cluster_settings(&*store).await.expect("read"),
        ClusterSettings::default()
    );

    // A record holding only some of them (an older or newer writer) reads
    // the others with their defaults.
    let (mut json, rev) = cluster_json(&*store).await;
    json["settings"] = serde_json::json!({ "keep_versions": 4 });
    store
        .update(CLUSTER_KEY, serde_json::to_vec(&json).expect("JSON"), rev)
        .await
        .expect("write");
    within_a_second("the hand-written record", || {
        b.cluster_settings().keep_versions == 4
    })
    .await;
    let s = cluster_settings(&*store).await.expect("read");
    assert_eq!(s.keep_versions, 4);
    assert_eq!(s.crl_validity, ClusterSettings::default().crl_validity);
    assert_eq!(
        s.secret_max_bytes,
        ClusterSettings::default().secret_max_bytes
    );

    // A change writes them all; setting them back to the defaults drops them.
    a.update_settings(change(None, Some(4096), None), "test")
        .await
        .expect("update");
    let (json, _) = cluster_json(&*store).await;
    assert_eq!(
        json["settings"],
        serde_json::json!({
            "crl_validity_seconds": 604800,
            "secret_max_bytes": 4096,
            "keep_versions": 4,
        })
    );
    a.update_settings(change(None, Some(1 << 20), Some(10)), "test")
        .await
        .expect("update");
    let (json, rev) = cluster_json(&*store).await;
    assert!(json.get("settings").is_none(), "{json}");
    // Setting what is already in force writes nothing.
    a.update_settings(change(None, None, Some(10)), "test")
        .await
        .expect("no-op");
    assert_eq!(cluster_json(&*store).await.1, rev, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_are_refused_and_change_nothing() {
    let (store, a, _b) = pair().await;
    a.update_settings(change(Some(time::Duration::days(3)), None, None), "test")
        .await
        .expect("a good value");
    let settings = a.cluster_settings();
    let days = time::Duration::days;
    let cases: Vec<(SettingsChange, &str)> = vec![
        (change(None, None, None), "no setting"),
        (change(Some(time::Duration::ZERO), None, None), "365 days"),
        (change(Some(-days(1)), None, None), "365 days"),
        (
            change(Some(time::Duration::minutes(59)), None, None),
            "1 hour",
        ),
        (change(Some(days(366)), None, None), "365 days"),
        (change(Some(time::Duration::MAX), None, None), "365 days"),
        (
            change(Some(time::Duration::milliseconds(3_600_500)), None, None),
            "whole seconds",
        ),
        (change(None, Some(0), None), "16 MiB"),
        (change(None, Some(MAX_SECRET_MAX_BYTES + 1), None), "16 MiB"),
        (change(None, Some(usize::MAX), None), "16 MiB"),
        (change(None, None, Some(0)), "1 to 100"),
        (change(None, None, Some(101)), "1 to 100"),
        // One bad value spoils the whole change: the good one is not applied.
        (change(Some(days(1)), Some(4096), Some(0)), "1 to 100"),
    ];
    for (bad, says) in cases {
        let before = snapshot(&*store).await;
        let e = a
            .update_settings(bad.clone(), "test")
            .await
            .expect_err("refused");
        assert_eq!(e.code(), "invalid-argument", "{bad:?}: {e}");
        assert!(e.to_string().contains(says), "{bad:?}: {e}");
        assert_eq!(
            before,
            snapshot(&*store).await,
            "{bad:?}: the store changed"
        );
        assert_eq!(a.cluster_settings(), settings, "{bad:?}");
    }
    // The bounds themselves are accepted.
    a.update_settings(
        change(
            Some(time::Duration::hours(1)),
            Some(MAX_SECRET_MAX_BYTES),
            Some(100),
        ),
        "test",
    )
    .await
    .expect("the lowest validity, the largest limit, the most versions");
    a.update_settings(change(Some(days(365)), Some(1), Some(1)), "test")
        .await
        .expect("the longest validity, the smallest limit, one version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settings_change_and_a_master_key_rotation_both_land() {
    let (store, a, b) = pair().await;
    put(&a, "db-password", b"hunter2").await.expect("put");
    let rotating = a.clone();
    let rotation = tokio::spawn(async move {
        rotating
            .rotate_master(PASS, Arc::new(|_, _| {}))
            .await
            .map(|r| r.master_version)
    });
    // B changes the settings over and over while A rotates (its two writes
    // of the cluster record, after the key derivation and at the swap,
    // meet these), and once more after: every one must land.
    let mut last = 0;
    let mut changes = 0;
    while !rotation.is_finished() {
        last = 1 + changes % 50;
        b.update_settings(change(None, None, Some(last)), "admin:bob")
            .await
            .expect("a settings change during a rotation");
        changes += 1;
    }
    let version = rotation
        .await
        .expect("the rotation task")
        .expect("a rotation during settings changes");
    assert_eq!(version, 2);
    assert!(
        changes > 10,
        "only {changes} changes ran during the rotation"
    );
    let (json, _) = cluster_json(&*store).await;
    assert_eq!(json["master_version"], 2, "{json}");
    assert!(json["pending_master"].is_null(), "{json}");
    assert_eq!(
        cluster_settings(&*store).await.expect("read").keep_versions,
        last,
        "the last settings change was not undone"
    );
    within_a_second("both processes on the new key and settings", || {
        a.cluster_settings().keep_versions == last && b.cluster_settings().keep_versions == last
    })
    .await;
    // Both processes still read and write secrets.
    put(&b, "db-password", b"hunter3").await.expect("put in B");
    let (_, v) = a
        .get_secret("db-password", None, ADMIN)
        .await
        .expect("read in A");
    assert_eq!(v.as_slice(), b"hunter3");
}
