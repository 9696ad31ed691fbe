//! The embedded backend on a real filesystem that fills up (a tmpfs):
//! failed writes are `Unavailable` and acknowledged writes are all kept,
//! reads go on, and the store recovers by itself once space returns.
//!
//! Needs root (to mount a tmpfs); the suite runs as root locally and in CI.
//! If the mount fails the test fails: it never skips silently.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kith_store::{Error, Store, WatchEvent};
use kith_store_redb::RedbStore;

/// A tmpfs mounted for the length of a test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("create the mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "mounting a {size} tmpfs on {} failed (this test needs root; it must not skip): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
        }
    }
}

/// Fill the filesystem holding `path` to the last byte it takes.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("create the filler");
    for chunk in [1usize << 20, 64 << 10, 4 << 10, 512] {
        let buf = vec![0x5au8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_cleanly_and_the_store_recovers_by_itself() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = Tmpfs::mount(&tmp.path().join("data"), "8m");
    let path = mnt.dir.join("kith.redb");
    let store = RedbStore::open(&path).expect("open");
    let mut watch = store.watch("").await.expect("watch");
    store
        .put("cert/early", b"early".to_vec())
        .await
        .expect("put");
    let mut acknowledged = vec![("cert/early".to_string(), b"early".to_vec())];

    let filler = mnt.dir.join("filler");
    fill(&filler);
    // The database file may hold a few free pages: write until it fails.
    let mut failure = None;
    for i in 0..200 {
        let key = format!("cert/full-{i:03}");
        let value = vec![i as u8; 96 << 10];
        match store.create(&key, value.clone()).await {
            Ok(_) => acknowledged.push((key, value)),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match failure.expect("200 writes of 96 KiB fitted on a full 8 MiB filesystem") {
        Error::Unavailable(why) => assert!(why.contains("full"), "{why}"),
        other => panic!("a write on a full disk: expected Unavailable, got {other:?}"),
    }
    assert!(
        matches!(store.writable(), Err(Error::Unavailable(_))),
        "writable() must report the failure"
    );
    // Reads go on from the last durable commit; writes keep failing,
    // quickly, and a few seconds of probing do not declare a full disk fine.
    let started = Instant::now();
    let e = store
        .get("cert/early")
        .await
        .expect("a read on a full disk");
    assert_eq!(e.expect("present").value, b"early");
    assert!(matches!(
        store.put("cert/refused", b"x".to_vec()).await,
        Err(Error::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a refused write took {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(store.writable().is_err(), "still full, yet writable");

    std::fs::remove_file(&filler).expect("remove the filler");
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.writable().is_err() {
        assert!(
            Instant::now() < deadline,
            "not writable 30 s after space returned: {:?}",
            store.writable()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = store
        .put("cert/after", b"after".to_vec())
        .await
        .expect("a write after recovery");
    acknowledged.push(("cert/after".into(), b"after".to_vec()));

    // Watchers saw exactly the acknowledged writes, in order.
    let mut seen = Vec::new();
    while seen.len() < acknowledged.len() {
        match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(WatchEvent::Put(e)))) => seen.push(e.key),
            other => panic!("watch after {seen:?}: {other:?}"),
        }
    }
    let keys: Vec<_> = acknowledged.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(seen, keys);

    // Every acknowledged write is in the file, and revisions kept growing.
    drop(watch);
    drop(store);
    let store = RedbStore::open(&path).expect("reopen");
    for (k, v) in &acknowledged {
        let e = store
            .get(k)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("acknowledged {k} is missing"));
        assert_eq!(&e.value, v, "{k}");
        assert!(e.revision <= last);
    }
    assert!(store.get("cert/refused").await.expect("get").is_none());
}
