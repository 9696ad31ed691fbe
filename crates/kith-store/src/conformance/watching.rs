//! Watching a prefix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{Revision, Store, WatchEvent};

pub(super) async fn watch_sees_changes(s: &dyn Store) {
    let mut w = s.watch("conf-watch/").await.expect("watch");
    s.put("conf-other/x", vec![0]).await.expect("put");
    let r = s.put("conf-watch/a", vec![1]).await.expect("put");
    s.delete("conf-watch/a").await.expect("delete");
    let first = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch_sees_changes: put event in time")
        .expect("stream open")
        .expect("event");
    match first {
        WatchEvent::Put(e) => assert_eq!((e.key.as_str(), e.revision), ("conf-watch/a", r)),
        other => panic!("watch_sees_changes: expected put, got {other:?}"),
    }
    let second = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("watch_sees_changes: delete event in time")
        .expect("stream open")
        .expect("event");
    assert!(
        matches!(&second, WatchEvent::Delete { key, .. } if key == "conf-watch/a"),
        "watch_sees_changes: expected delete, got {second:?}"
    );
}

/// Concurrent writers under one prefix: a watcher sees every change made
/// after it subscribed, nothing from before, each with the revision the
/// writer was answered, in strictly increasing revision order; deletes
/// (plain and conditional) included.
pub(super) async fn watch_in_revision_order(s: Arc<dyn Store>) {
    s.put("conf-order/before", vec![0]).await.expect("put");
    let mut w = s.watch("conf-order/").await.expect("watch");
    let (writers, per_writer) = (8u8, 20u8);
    let tasks: Vec<_> = (0..writers)
        .map(|t| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut done: Vec<(String, Revision)> = Vec::new();
                for i in 0..per_writer {
                    let key = format!("conf-order/{t}-{}", i % 4);
                    let rev = match s.get(&key).await.expect("get") {
                        Some(e) => s.update(&key, vec![t, i], e.revision).await,
                        None => s.create(&key, vec![t, i]).await,
                    }
                    .expect("watch_in_revision_order: each key has one writer");
                    done.push((key, rev));
                }
                done
            })
        })
        .collect();
    let mut written: BTreeMap<Revision, String> = BTreeMap::new();
    for t in tasks {
        for (key, rev) in t.await.expect("task") {
            assert!(
                written.insert(rev, key).is_none(),
                "watch_in_revision_order: two writes answered revision {rev}"
            );
        }
    }
    // Deletes after the writes: their revisions are the next ones the watcher sees.
    let gone = s
        .get("conf-order/0-0")
        .await
        .expect("get")
        .expect("present");
    s.delete_if(&gone.key, gone.revision)
        .await
        .expect("delete_if");
    s.delete("conf-order/1-1").await.expect("delete");

    let mut seen: Vec<(Revision, String, bool)> = Vec::new();
    while seen.len() < written.len() + 2 {
        let ev = tokio::time::timeout(Duration::from_secs(20), w.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "watch_in_revision_order: {} of {} events in time",
                    seen.len(),
                    written.len() + 2
                )
            })
            .expect("stream open")
            .expect("watch_in_revision_order: no lag for a few hundred events");
        seen.push(match ev {
            WatchEvent::Put(e) => (e.revision, e.key, true),
            WatchEvent::Delete { key, revision } => (revision, key, false),
        });
    }
    assert!(
        seen.windows(2).all(|p| p[0].0 < p[1].0),
        "watch_in_revision_order: revisions must strictly increase: {seen:?}"
    );
    let puts: BTreeMap<Revision, String> = seen
        .iter()
        .filter(|(_, _, put)| *put)
        .map(|(r, k, _)| (*r, k.clone()))
        .collect();
    assert_eq!(
        puts, written,
        "watch_in_revision_order: exactly the acknowledged writes, at their revisions"
    );
    let deletes: Vec<&str> = seen[written.len()..]
        .iter()
        .map(|(_, k, put)| {
            assert!(!put, "watch_in_revision_order: the deletes come last");
            k.as_str()
        })
        .collect();
    assert_eq!(deletes, ["conf-order/0-0", "conf-order/1-1"]);
    let last = seen.last().map(|(r, _, _)| *r).unwrap_or_default();
    let next = s.put("conf-order/after", vec![1]).await.expect("put");
    assert!(next > last, "watch_in_revision_order: {next} after {last}");
}
