//! Values split over chunks ([`crate::chunked`]) on a backend: round trips
//! on both sides of the limit, replacements that leave nothing behind,
//! readers racing writers, orphans swept, and listings that never show a
//! chunk. Each check names itself in its panic message.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::chunked::{self, CHUNK_PREFIX, ORPHAN_GRACE};
use crate::{Error, Store};

/// A value of `len` bytes that says which value it is in every byte, so a
/// mix of two is visible.
fn patterned(len: usize, tag: u8) -> Vec<u8> {
    (0..len).map(|i| tag ^ (i % 251) as u8).collect()
}

/// Every stored value fits the limit, and the chunk keys are exactly `expected`.
async fn assert_store_shape(s: &dyn Store, check: &str, expected_chunks: usize) {
    let max = s.limits().max_value;
    for e in s.list("").await.expect("list all") {
        assert!(
            e.value.len() <= max,
            "{check}: {} holds {} bytes, above the limit {max}",
            e.key,
            e.value.len()
        );
    }
    let chunks = s.list(CHUNK_PREFIX).await.expect("list chunks").len();
    assert_eq!(chunks, expected_chunks, "{check}: chunk keys in the store");
}

pub(super) async fn round_trips(s: &dyn Store, now: SystemTime) {
    let max = s.limits().max_value;
    let sizes = [0, 1, max - 1, max, max + 1, 2 * max, 3 * max + 7, 5 << 20];
    for (i, &len) in sizes.iter().enumerate() {
        let key = format!("conf-chunk-rt/v{i}");
        let value = patterned(len, i as u8);
        let head = chunked::create(s, &key, &value, now)
            .await
            .unwrap_or_else(|e| panic!("round_trips: create {len} bytes: {e}"));
        assert_eq!(
            head.is_chunked(),
            len > max,
            "round_trips: {len} bytes split?"
        );
        let back = chunked::get(s, &key)
            .await
            .expect("round_trips: get")
            .expect("round_trips: present");
        assert!(
            back.value == value,
            "round_trips: {len} bytes come back whole"
        );
        assert_eq!(
            back.head, head,
            "round_trips: the head read is the one written"
        );
        // A value that fits is stored as its bare bytes.
        let raw = s.get(&key).await.expect("get").expect("present");
        if len <= max {
            assert!(raw.value == value, "round_trips: {len} bytes stored inline");
        }
        let expected = if len > max { len.div_ceil(max) } else { 0 };
        assert_store_shape(s, "round_trips", expected).await;
        chunked::delete_if(s, &head)
            .await
            .expect("round_trips: delete");
        assert_eq!(
            s.get(&key).await.expect("get"),
            None,
            "round_trips: deleted"
        );
    }
    assert_store_shape(s, "round_trips: after deletes", 0).await;

    // Something that merely looks like a head is still a value of its own.
    let lookalike = b"\0kith-chunked-v1\nlen=1\nsha256=00\nid=1-0\nchunks=1\n".to_vec();
    let head = chunked::create(s, "conf-chunk-rt/lookalike", &lookalike, now)
        .await
        .expect("round_trips: a lookalike value");
    let back = chunked::get(s, "conf-chunk-rt/lookalike")
        .await
        .expect("get")
        .expect("present");
    assert!(
        back.value == lookalike,
        "round_trips: the lookalike comes back"
    );
    chunked::delete_if(s, &head).await.expect("delete");
    assert_store_shape(s, "round_trips: lookalike deleted", 0).await;

    // A value written before chunking existed (a plain put) reads as itself.
    s.put("conf-chunk-rt/plain", b"{\"old\":true}".to_vec())
        .await
        .expect("put");
    let back = chunked::get(s, "conf-chunk-rt/plain")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        back.value, b"{\"old\":true}",
        "round_trips: plain values read"
    );
    assert!(!back.head.is_chunked());
    s.delete("conf-chunk-rt/plain").await.expect("delete");
}

pub(super) async fn replacements_leave_nothing_behind(s: &dyn Store, now: SystemTime) {
    let check = "replacements_leave_nothing_behind";
    let max = s.limits().max_value;
    let key = "conf-chunk-up/a";
    let big = patterned(3 * max + 1, 1);
    let head = chunked::create(s, key, &big, now).await.expect("create");
    assert_store_shape(s, check, 4).await;
    // create over an existing key: refused, and its chunks withdrawn.
    assert!(
        matches!(
            chunked::create(s, key, &patterned(2 * max, 2), now).await,
            Err(Error::AlreadyExists { .. })
        ),
        "{check}: create over a value"
    );
    assert_store_shape(s, check, 4).await;
    // Big to bigger.
    let bigger = patterned(4 * max + 1, 3);
    let head2 = chunked::update(s, &head, &bigger, now)
        .await
        .expect("update");
    assert_store_shape(s, check, 5).await;
    // A stale compare-and-swap: refused, its chunks withdrawn, the value kept.
    assert!(
        matches!(
            chunked::update(s, &head, &patterned(2 * max + 1, 4), now).await,
            Err(Error::RevisionMismatch { .. })
        ),
        "{check}: update at a stale revision"
    );
    assert_store_shape(s, check, 5).await;
    let back = chunked::get(s, key).await.expect("get").expect("present");
    assert!(back.value == bigger, "{check}: the value after a lost CAS");
    // Big to inline, inline to big.
    let head3 = chunked::update(s, &head2, b"small", now)
        .await
        .expect("to inline");
    assert_store_shape(s, check, 0).await;
    let head4 = chunked::update(s, &head3, &big, now).await.expect("to big");
    assert_store_shape(s, check, 4).await;
    // A stale delete is refused and keeps everything.
    assert!(matches!(
        chunked::delete_if(s, &head3).await,
        Err(Error::RevisionMismatch { .. })
    ));
    assert_store_shape(s, check, 4).await;
    chunked::delete_if(s, &head4).await.expect("delete");
    assert_store_shape(s, check, 0).await;
    assert_eq!(s.get(key).await.expect("get"), None);
}

pub(super) async fn damage_is_reported_not_returned(s: &dyn Store, now: SystemTime) {
    let check = "damage_is_reported_not_returned";
    let max = s.limits().max_value;
    let key = "conf-chunk-bad/a";
    let head = chunked::create(s, key, &patterned(2 * max + 5, 7), now)
        .await
        .expect("create");
    let chunks: Vec<_> = s.list(CHUNK_PREFIX).await.expect("list");
    assert_eq!(chunks.len(), 3, "{check}");
    // A chunk altered in place.
    let mut altered = chunks[1].value.clone();
    altered[0] ^= 1;
    s.put(&chunks[1].key, altered).await.expect("alter");
    assert!(
        matches!(chunked::get(s, key).await, Err(Error::Inconsistent { .. })),
        "{check}: an altered chunk"
    );
    // A chunk missing while its head stays.
    s.put(&chunks[1].key, chunks[1].value.clone())
        .await
        .expect("restore");
    chunked::get(s, key)
        .await
        .expect("restored")
        .expect("present");
    s.delete(&chunks[2].key).await.expect("remove");
    assert!(
        matches!(chunked::get(s, key).await, Err(Error::Inconsistent { .. })),
        "{check}: a missing chunk"
    );
    // A damaged head.
    let raw = s.get(key).await.expect("get").expect("present");
    let mut damaged = raw.value.clone();
    let at = damaged.len() - 3;
    damaged[at] = b'x';
    s.put(key, damaged).await.expect("damage");
    assert!(
        matches!(chunked::get(s, key).await, Err(Error::Inconsistent { .. })),
        "{check}: a damaged head"
    );
    // A head naming more chunks than any value has: refused, not listed.
    let huge = format!(
        "\0kith-chunked-v1\nlen=99999999999999\nsha256={}\nid=1-{}\nchunks=99999999999\n",
        "0".repeat(64),
        "a".repeat(32)
    );
    s.put(key, huge.into_bytes()).await.expect("a huge head");
    assert!(
        matches!(chunked::get(s, key).await, Err(Error::Inconsistent { .. })),
        "{check}: a head naming too many chunks"
    );
    // A head within the chunk cap but claiming a length no store holds:
    // refused when its first chunk is missing, without reserving that
    // length first (which would abort the process, not answer an error).
    let absurd = format!(
        "\0kith-chunked-v1\nlen=999999999999999\nsha256={}\nid=1-{}\nchunks={}\n",
        "0".repeat(64),
        "b".repeat(32),
        chunked::MAX_CHUNKS
    );
    s.put(key, absurd.into_bytes())
        .await
        .expect("an absurd head");
    assert!(
        matches!(chunked::get(s, key).await, Err(Error::Inconsistent { .. })),
        "{check}: a head claiming an absurd length"
    );
    drop(head);
    s.delete(key).await.expect("delete");
    for c in chunks {
        s.delete(&c.key).await.expect("delete chunk");
    }
    assert_store_shape(s, check, 0).await;
}

/// A reader holding an old head while a writer replaces the value reads the
/// new one (or nothing, once deleted), never the old head's missing chunks.
pub(super) async fn a_replaced_head_is_read_again(s: &dyn Store, now: SystemTime) {
    let check = "a_replaced_head_is_read_again";
    let max = s.limits().max_value;
    let key = "conf-chunk-again/a";
    let head = chunked::create(s, key, &patterned(2 * max + 1, 1), now)
        .await
        .expect("create");
    let old = s.get(key).await.expect("get").expect("present");
    let newer = patterned(3 * max + 2, 2);
    let head2 = chunked::update(s, &head, &newer, now)
        .await
        .expect("update");
    let back = chunked::resolve(s, old.clone())
        .await
        .expect(check)
        .expect("present");
    assert!(back.value == newer, "{check}: the newer value");
    assert_eq!(back.head, head2, "{check}");
    chunked::delete_if(s, &head2).await.expect("delete");
    assert_eq!(
        chunked::resolve(s, old).await.expect(check),
        None,
        "{check}: deleted meanwhile"
    );
    assert_store_shape(s, check, 0).await;
}

pub(super) async fn readers_racing_a_writer_never_see_a_mix(s: Arc<dyn Store>, now: SystemTime) {
    let check = "readers_racing_a_writer_never_see_a_mix";
    let max = s.limits().max_value;
    let len = 2 * max + 3;
    let key = "conf-chunk-race/a";
    // Each value is one byte repeated: a mix of two shows.
    let mut head = chunked::create(&*s, key, &vec![0; len], now)
        .await
        .expect("create");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut whole, mut contended) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match chunked::get(&*s, key).await {
                        Ok(Some(v)) => {
                            let tag = v.value.first().copied().expect("not empty");
                            assert!(
                                v.value.len() == len && v.value.iter().all(|&b| b == tag),
                                "readers_racing_a_writer_never_see_a_mix: a mixed value"
                            );
                            whole += 1;
                        }
                        Err(Error::Contended { .. }) => contended += 1,
                        other => panic!("readers_racing_a_writer_never_see_a_mix: {other:?}"),
                    }
                    tokio::task::yield_now().await;
                }
                (whole, contended)
            })
        })
        .collect();
    for round in 1..=60u8 {
        head = chunked::update(&*s, &head, &vec![round; len], now)
            .await
            .expect("update");
        tokio::task::yield_now().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut whole = 0;
    for r in readers {
        whole += r.await.expect("reader").0;
    }
    assert!(whole > 0, "{check}: some reads completed");
    chunked::delete_if(&*s, &head).await.expect("delete");
    assert_store_shape(&*s, check, 0).await;
}

pub(super) async fn orphans_are_swept(s: &dyn Store, now: SystemTime) {
    let check = "orphans_are_swept";
    let max = s.limits().max_value;
    let long_ago = now - 2 * ORPHAN_GRACE;
    // A writer killed between its chunks and its head, long ago: its
    // chunks are there, no head names them.
    let crashed = chunked::create(
        s,
        "conf-chunk-sweep/crashed",
        &patterned(2 * max + 1, 1),
        long_ago,
    )
    .await
    .expect("create");
    s.delete("conf-chunk-sweep/crashed")
        .await
        .expect("drop the head only");
    // One killed moments ago: maybe still writing its head, so kept.
    let recent = chunked::create(s, "conf-chunk-sweep/recent", &patterned(max + 1, 2), now)
        .await
        .expect("create");
    s.delete("conf-chunk-sweep/recent")
        .await
        .expect("drop the head only");
    // A live value written long ago: named by its head, so kept.
    let live_value = patterned(2 * max + 9, 3);
    chunked::create(s, "conf-chunk-sweep/live", &live_value, long_ago)
        .await
        .expect("create");
    // Something under chunk/ that is not a chunk: not ours to remove.
    s.put("chunk/not-a-chunk", b"x".to_vec())
        .await
        .expect("put");
    assert!(crashed.is_chunked() && recent.is_chunked());
    assert_eq!(
        s.list(CHUNK_PREFIX).await.expect("list").len(),
        3 + 2 + 3 + 1
    );

    let removed = chunked::sweep(s, &["conf-chunk-sweep/"], now, ORPHAN_GRACE)
        .await
        .expect("sweep");
    assert_eq!(removed, 3, "{check}: the crashed writer's chunks");
    assert_eq!(
        s.list(CHUNK_PREFIX).await.expect("list").len(),
        2 + 3 + 1,
        "{check}"
    );
    let back = chunked::get(s, "conf-chunk-sweep/live")
        .await
        .expect("get")
        .expect("present");
    assert!(back.value == live_value, "{check}: the live value is whole");
    // An hour on, the recent orphan goes too.
    let later = now + ORPHAN_GRACE + Duration::from_secs(60);
    let removed = chunked::sweep(s, &["conf-chunk-sweep/"], later, ORPHAN_GRACE)
        .await
        .expect("sweep");
    assert_eq!(removed, 2, "{check}: the recent orphan, later");
    assert!(chunked::get(s, "conf-chunk-sweep/live")
        .await
        .expect("get")
        .is_some());
    // Clean up.
    let live = chunked::get(s, "conf-chunk-sweep/live")
        .await
        .expect("get")
        .expect("present");
    chunked::delete_if(s, &live.head).await.expect("delete");
    s.delete("chunk/not-a-chunk").await.expect("delete");
    assert_store_shape(s, check, 0).await;
}

pub(super) async fn chunks_stay_out_of_other_listings(s: &dyn Store, now: SystemTime) {
    let check = "chunks_stay_out_of_other_listings";
    let max = s.limits().max_value;
    let a = chunked::create(s, "conf-chunk-list/x/1", &patterned(2 * max + 1, 1), now)
        .await
        .expect("create");
    let b = chunked::create(s, "conf-chunk-list/y", &patterned(max + 1, 2), now)
        .await
        .expect("create");
    let keys: Vec<String> = s
        .list("conf-chunk-list/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(
        keys,
        ["conf-chunk-list/x/1", "conf-chunk-list/y"],
        "{check}"
    );
    // The store is fresh: everything else in it is a chunk, under its prefix.
    let others: Vec<String> = s
        .list("")
        .await
        .expect("list all")
        .into_iter()
        .map(|e| e.key)
        .filter(|k| !k.starts_with(CHUNK_PREFIX))
        .collect();
    assert_eq!(others, keys, "{check}: every other key is a chunk");
    chunked::delete_if(s, &a).await.expect("delete");
    chunked::delete_if(s, &b).await.expect("delete");
    assert_store_shape(s, check, 0).await;
}
