//! The audit trail is a set of MAC chains, one per writer: whoever edits
//! the store without the key cannot flip a byte, delete, swap, drop or
//! forge a record without `verify_audit` naming the record where the chain
//! breaks. Concurrent writers (two handles, two handles sharing a writer
//! id) lose nothing and fork nothing. Nothing secret reaches the store.

use std::sync::Arc;

use kith_authority::{
    AuditAnchor, AuditQuery, Authority, Clock, Reader, SecretUpdate, Settings, TokenSpec,
};

use common::PASS;

mod common;

/// The store key of record `seq` of `writer`'s chain.
fn rec_key(writer: &str, seq: u64) -> String {
    format!("audit/{writer}/{seq:020}")
}

/// A cluster whose own chain holds `extra` records past those `init` wrote
/// (`test-op` on subjects s1, s2, ...), and the length of that chain.
async fn chain_of(extra: u64) -> (common::Harness, u64) {
    let h = common::Harness::mem().await;
    for i in 1..=extra {
        h.authority
            .audit("tester", "test-op", &format!("s{i}"), "")
            .await
            .expect("audit");
    }
    let n = h
        .store
        .list(&format!("audit/{}/", h.authority.audit_writer()))
        .await
        .expect("list")
        .len() as u64;
    assert!(n > extra, "init wrote records too");
    (h, n)
}

/// A handle of another process (its own writer, no memory of this chain):
/// it judges the store alone.
async fn outsider(h: &common::Harness) -> Authority {
    h.second().await
}

/// The ids of the breaks the store alone shows, after asserting there are some.
async fn breaks(a: &Authority) -> Vec<String> {
    let r = a.verify_audit().await.expect("verify");
    assert!(!r.ok, "the chain should not verify: {r:#?}");
    assert!(!r.breaks.is_empty());
    r.breaks.into_iter().map(|b| b.id).collect()
}

#[tokio::test]
async fn an_untouched_chain_verifies_and_records_are_linked() {
    let (h, n) = chain_of(5).await;
    let a = &h.authority;
    let w = a.audit_writer().to_string();
    assert!(w.starts_with("local-"), "{w}");
    let r = a.verify_audit().await.expect("verify");
    assert!(r.ok, "{r:#?}");
    assert_eq!(r.records, n);
    assert_eq!(r.chains.len(), 1);
    assert_eq!((r.chains[0].head_seq, r.chains[0].unanchored), (n, 0));
    // Each record names the MAC of the one before it.
    let e1 = h
        .store
        .get(&rec_key(&w, 1))
        .await
        .expect("get")
        .expect("record 1");
    let e2 = h
        .store
        .get(&rec_key(&w, 2))
        .await
        .expect("get")
        .expect("record 2");
    let r1: serde_json::Value = serde_json::from_slice(&e1.value).expect("json");
    let r2: serde_json::Value = serde_json::from_slice(&e2.value).expect("json");
    assert_eq!(r1["action"], "init");
    assert_eq!(r1["prev"], "");
    assert_eq!(r2["prev"], r1["mac"]);
    assert_eq!(
        r1["mac"].as_str().expect("mac").len(),
        64,
        "HMAC-SHA256, hex"
    );
    // And an outsider agrees.
    assert!(outsider(&h).await.verify_audit().await.expect("verify").ok);
}

#[tokio::test]
async fn a_flipped_byte_is_named() {
    let (h, n) = chain_of(4).await;
    let w = h.authority.audit_writer().to_string();
    let key = rec_key(&w, 3);
    let e = h.store.get(&key).await.expect("get").expect("record 3");
    // A byte inside the subject's value: the JSON still reads.
    let mut v = e.value.clone();
    let at = v
        .windows(10)
        .position(|s| s == b"\"subject\":")
        .expect("subject")
        + 11;
    v[at] ^= 0x01;
    h.store.put(&key, v).await.expect("put");
    assert_eq!(breaks(&outsider(&h).await).await, vec![key.clone()]);
    // Any byte: the middle of the record this time.
    let key = rec_key(&w, n - 1);
    let mut v = h.store.get(&key).await.expect("get").expect("rec").value;
    let mid = v.len() / 2;
    v[mid] ^= 0x20;
    h.store.put(&key, v).await.expect("put");
    let ids = breaks(&outsider(&h).await).await;
    assert!(ids.contains(&key), "{ids:?}");
}

#[tokio::test]
async fn a_deleted_middle_record_is_named() {
    let (h, _) = chain_of(5).await;
    let w = h.authority.audit_writer().to_string();
    h.store.delete(&rec_key(&w, 3)).await.expect("delete");
    // The record after the gap is where the chain breaks.
    assert_eq!(breaks(&outsider(&h).await).await, vec![rec_key(&w, 4)]);
}

#[tokio::test]
async fn two_swapped_records_are_named() {
    let (h, _) = chain_of(5).await;
    let w = h.authority.audit_writer().to_string();
    let (k3, k4) = (rec_key(&w, 3), rec_key(&w, 4));
    let v3 = h.store.get(&k3).await.expect("get").expect("3").value;
    let v4 = h.store.get(&k4).await.expect("get").expect("4").value;
    h.store.put(&k3, v4).await.expect("put");
    h.store.put(&k4, v3).await.expect("put");
    assert_eq!(breaks(&outsider(&h).await).await, vec![k3, k4]);
}

#[tokio::test]
async fn a_dropped_last_record_is_named() {
    let (h, n) = chain_of(3).await;
    let w = h.authority.audit_writer().to_string();
    h.store.delete(&rec_key(&w, n)).await.expect("delete");
    // The head still vouches for n records: the missing one is named.
    assert_eq!(breaks(&outsider(&h).await).await, vec![rec_key(&w, n)]);
}

#[tokio::test]
async fn a_forged_record_is_named() {
    let (h, n) = chain_of(3).await;
    let w = h.authority.audit_writer().to_string();
    // Appended after the last, linked to its MAC, with a MAC made up
    // without the key (copied from a real record).
    let last: serde_json::Value = serde_json::from_slice(
        &h.store
            .get(&rec_key(&w, n))
            .await
            .expect("get")
            .expect("last")
            .value,
    )
    .expect("json");
    let mut forged = last.clone();
    forged["seq"] = (n + 1).into();
    forged["prev"] = last["mac"].clone();
    forged["action"] = "secret-read".into();
    let forged_key = rec_key(&w, n + 1);
    h.store
        .create(&forged_key, serde_json::to_vec(&forged).expect("json"))
        .await
        .expect("create");
    assert_eq!(breaks(&outsider(&h).await).await, vec![forged_key.clone()]);
    // Another writer's chain made up whole: its first record breaks.
    h.store.delete(&forged_key).await.expect("delete");
    let mut other = last.clone();
    other["writer"] = "kith-server-x".into();
    other["seq"] = 1.into();
    other["prev"] = "".into();
    let other_key = rec_key("kith-server-x", 1);
    h.store
        .create(&other_key, serde_json::to_vec(&other).expect("json"))
        .await
        .expect("create");
    let ids = breaks(&outsider(&h).await).await;
    assert!(ids.contains(&other_key), "{ids:?}");
}

#[tokio::test]
async fn a_head_rolled_back_with_its_tail_is_caught_by_the_writers_anchor() {
    let (h, n) = chain_of(2).await;
    let a = &h.authority;
    let w = a.audit_writer().to_string();
    let head_key = format!("audithead/{w}");
    let old_head = h
        .store
        .get(&head_key)
        .await
        .expect("get")
        .expect("head")
        .value;
    for i in 0..3 {
        a.audit("tester", "later-op", &format!("t{i}"), "")
            .await
            .expect("audit");
    }
    // Store-only access: drop the three later records and put the old head back.
    for seq in n + 1..=n + 3 {
        h.store.delete(&rec_key(&w, seq)).await.expect("delete");
    }
    h.store.put(&head_key, old_head).await.expect("put");
    // The store alone cannot tell (docs/SECURITY.md says so) ...
    let alone = outsider(&h).await.verify_audit().await.expect("verify");
    assert!(alone.ok, "{alone:#?}");
    // ... the writer that remembers its head can, and names the first record lost.
    assert_eq!(breaks(a).await, vec![rec_key(&w, n + 1)]);
    // As can anyone given that head (a copy kept elsewhere: the log shipped).
    let anchored = outsider(&h)
        .await
        .verify_audit_with(&[AuditAnchor {
            writer: w.clone(),
            seq: n + 3,
            mac: "kept elsewhere".into(),
        }])
        .await
        .expect("verify");
    assert_eq!(anchored.breaks[0].id, rec_key(&w, n + 1));
}

#[tokio::test]
async fn a_forged_head_is_named() {
    let (h, n) = chain_of(2).await;
    let w = h.authority.audit_writer().to_string();
    let head_key = format!("audithead/{w}");
    let mut head: serde_json::Value = serde_json::from_slice(
        &h.store
            .get(&head_key)
            .await
            .expect("get")
            .expect("head")
            .value,
    )
    .expect("json");
    // Hiding the last record by claiming the chain is one shorter.
    h.store.delete(&rec_key(&w, n)).await.expect("delete");
    head["seq"] = (n - 1).into();
    h.store
        .put(&head_key, serde_json::to_vec(&head).expect("json"))
        .await
        .expect("put");
    assert_eq!(breaks(&outsider(&h).await).await, vec![head_key]);
}

#[tokio::test]
async fn legacy_records_are_reported_as_such_and_cannot_be_added_later() {
    // A store from before the chains: its audit records are legacy ones.
    let h = common::Harness::mem().await;
    for prefix in ["audit/", "audithead/", "auditkey/"] {
        for e in h.store.list(prefix).await.expect("list") {
            h.store.delete(&e.key).await.expect("delete");
        }
    }
    let legacy = |action: &str| {
        serde_json::to_vec(&serde_json::json!({
            "at": "2025-01-01T00:00:00Z", "actor": "local-operator", "action": action,
            "subject": "test.example", "detail": "",
        }))
        .expect("json")
    };
    let (old1, old2) = (
        "audit/01735689600000000000-abcdef",
        "audit/01735689700000000000-012345",
    );
    h.store.create(old1, legacy("init")).await.expect("create");
    h.store
        .create(old2, legacy("revoke"))
        .await
        .expect("create");
    // The upgraded binary's first record begins the chains and vouches for them.
    let a = outsider(&h).await;
    a.audit("tester", "first-chained", "x", "")
        .await
        .expect("audit");
    let r = outsider(&h).await.verify_audit().await.expect("verify");
    assert!(r.ok, "{r:#?}");
    assert_eq!((r.records, r.legacy), (1, 2));
    // Listed first (oldest), with no writer.
    let page = kith_authority::list_audit(&*h.store, &AuditQuery::default())
        .await
        .expect("list");
    assert_eq!(page.records[0].id, old1);
    assert_eq!(
        (page.records[0].writer.as_str(), page.records[0].seq),
        ("", 0)
    );
    assert_eq!(page.records[0].outcome, "ok");
    // A record of the legacy shape made up afterwards is named.
    let forged = "audit/01900000000000000000-beef";
    h.store
        .create(forged, legacy("secret-read"))
        .await
        .expect("create");
    assert_eq!(breaks(&outsider(&h).await).await, vec![forged.to_string()]);
    h.store.delete(forged).await.expect("delete");
    // So is a legacy record edited or deleted.
    h.store.put(old1, legacy("nothing")).await.expect("put");
    let ids = breaks(&outsider(&h).await).await;
    assert_eq!(
        ids,
        vec![old2.to_string()],
        "the breaks name the legacy set by its last key"
    );
}

#[tokio::test]
async fn listing_filters_and_pages() {
    let (h, _) = chain_of(0).await;
    let a = &h.authority;
    for i in 0..4 {
        a.audit("node:web-1", "secret-read", "db", &format!("read {i}"))
            .await
            .expect("audit");
        a.audit("admin:ops", "revoke", "web-2", "")
            .await
            .expect("audit");
    }
    let q = |node: Option<&str>, action: Option<&str>, limit| AuditQuery {
        node: node.map(String::from),
        action: action.map(String::from),
        limit,
        ..AuditQuery::default()
    };
    let list = |q| {
        let store = h.store.clone();
        async move { kith_authority::list_audit(&*store, &q).await.expect("list") }
    };
    let by_node = list(q(Some("web-1"), None, 0)).await;
    assert_eq!(by_node.records.len(), 4);
    assert!(by_node.records.iter().all(|r| r.actor == "node:web-1"));
    let about = list(q(Some("web-2"), Some("revoke"), 0)).await;
    assert_eq!(about.records.len(), 4);
    let page = list(q(None, None, 3)).await;
    assert_eq!(page.records.len(), 3);
    assert!(page.more);
    // The global order: time, then writer, then sequence.
    let all = list(q(None, None, 0)).await;
    assert!(!all.more);
    let seqs: Vec<u64> = all.records.iter().map(|r| r.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    assert_eq!(seqs, sorted);
    let since = AuditQuery {
        since: Some(h.clock.now() + time::Duration::hours(1)),
        ..AuditQuery::default()
    };
    assert!(list(since).await.records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing_and_every_chain_verifies() {
    const EACH: usize = 40;
    const TASKS: usize = 5;
    let h = common::Harness::redb().await;
    let shared = |name: &str| Settings {
        audit_writer: Some(name.to_string()),
        ..Settings::default()
    };
    let open = |s: Settings| {
        let (store, clock) = (h.store.clone(), h.clock.clone());
        async move { Authority::open(store, clock, PASS, s).await.expect("open") }
    };
    // Two chains of their own, and two handles writing one chain (as two
    // processes started with the same server name would).
    let handles = [
        h.authority.clone(),
        h.second().await,
        open(shared("kith-server-same")).await,
        open(shared("kith-server-same")).await,
    ];
    let before = h.store.list("audit/").await.expect("list").len();
    // Each handle from several tasks at once, so that its appends go in
    // waves and the two sharing a chain collide inside waves.
    let tasks: Vec<_> = handles
        .iter()
        .enumerate()
        .flat_map(|(w, a)| {
            (0..TASKS).map(move |t| {
                let a = a.clone();
                tokio::spawn(async move {
                    for i in (t..EACH).step_by(TASKS) {
                        a.audit(&format!("writer-{w}"), "test-op", &format!("{w}-{i}"), "")
                            .await
                            .expect("audit while others write");
                    }
                })
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("a writer task");
    }
    let all = h.store.list("audit/").await.expect("list");
    assert_eq!(all.len(), before + 4 * EACH, "no record lost or doubled");
    let r = h.authority.verify_audit().await.expect("verify");
    assert!(r.ok, "{r:#?}");
    let same = r
        .chains
        .iter()
        .find(|c| c.writer == "kith-server-same")
        .expect("the shared chain");
    assert_eq!(
        (same.records, same.head_seq),
        (2 * EACH as u64, 2 * EACH as u64)
    );
    // Every subject made it exactly once.
    for w in 0..4 {
        for i in 0..EACH {
            let s = format!("{w}-{i}");
            let n = all
                .iter()
                .filter(|e| {
                    serde_json::from_slice::<serde_json::Value>(&e.value)
                        .is_ok_and(|v| v["subject"] == s.as_str())
                })
                .count();
            assert_eq!(n, 1, "subject {s}");
        }
    }
}

#[tokio::test]
async fn a_master_key_rotation_keeps_the_chain_verifiable() {
    let (h, _) = chain_of(2).await;
    let a = &h.authority;
    a.rotate_master(PASS, Arc::new(|_, _| {}))
        .await
        .expect("rotate");
    a.audit("tester", "after-rotation", "x", "")
        .await
        .expect("audit");
    let r = a.verify_audit().await.expect("verify");
    assert!(r.ok, "{r:#?}");
    // A process opened after the rotation derives the same key.
    assert!(outsider(&h).await.verify_audit().await.expect("verify").ok);
}

#[tokio::test]
async fn no_token_secret_or_secret_value_reaches_the_store() {
    let h = common::Harness::redb().await;
    let a = &h.authority;
    let (_, token) = a
        .create_token(
            TokenSpec {
                role: "worker".into(),
                node: None,
                ttl: time::Duration::hours(1),
                uses: 1,
                allow_sans: vec![],
                authority: None,
            },
            "admin:ops",
        )
        .await
        .expect("token");
    let encoded = token.encode().to_string();
    let token_secret = encoded.rsplit_once('.').expect("id.secret").1.to_string();
    let value = b"correct-horse-battery-staple-42";
    a.put_secret("db-password", value, SecretUpdate::default(), "admin:ops")
        .await
        .expect("put");
    let (_, read) = a
        .get_secret("db-password", None, Reader::Admin("admin:ops"))
        .await
        .expect("read");
    assert_eq!(&read[..], value);
    let actions: Vec<String> = kith_authority::list_audit(&*h.store, &AuditQuery::default())
        .await
        .expect("list")
        .records
        .into_iter()
        .map(|r| r.action)
        .collect();
    for want in ["token-create", "secret-put", "secret-read"] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }
    for e in h.store.list("").await.expect("list everything") {
        for needle in [
            token_secret.as_bytes(),
            encoded.as_bytes(),
            value.as_slice(),
        ] {
            assert!(
                !e.value.windows(needle.len()).any(|w| w == needle),
                "{} holds a secret",
                e.key
            );
        }
    }
}

#[tokio::test]
async fn a_refusal_is_recorded_with_its_error_code() {
    let h = common::Harness::mem().await;
    let a = &h.authority;
    a.put_secret("api-key", b"value", SecretUpdate::default(), "admin:ops")
        .await
        .expect("put");
    let refused = a
        .get_secret(
            "api-key",
            None,
            Reader::Node {
                name: "web-1",
                role: "worker",
            },
        )
        .await;
    assert!(refused.is_err());
    let q = AuditQuery {
        action: Some("secret-denied".into()),
        ..AuditQuery::default()
    };
    let page = kith_authority::list_audit(&*h.store, &q)
        .await
        .expect("list");
    assert_eq!(page.records.len(), 1);
    assert_eq!(page.records[0].actor, "node:web-1");
    assert_eq!(page.records[0].outcome, "secret-forbidden");
    assert!(a.verify_audit().await.expect("verify").ok);
}

#[tokio::test]
async fn records_past_the_head_are_adopted_not_forked() {
    // A writer that stopped after writing records but before moving its
    // head: the records are authentic, the head behind them.
    let h = common::Harness::mem().await;
    let settings = || Settings {
        audit_writer: Some("kith-server-crashy".into()),
        ..Settings::default()
    };
    let first = Authority::open(h.store.clone(), h.clock.clone(), PASS, settings())
        .await
        .expect("open");
    for i in 0..3 {
        first
            .audit("tester", "op", &format!("a{i}"), "")
            .await
            .expect("audit");
    }
    let head_key = "audithead/kith-server-crashy";
    let behind = h
        .store
        .get(head_key)
        .await
        .expect("get")
        .expect("head")
        .value;
    for i in 0..2 {
        first
            .audit("tester", "op", &format!("b{i}"), "")
            .await
            .expect("audit");
    }
    h.store.put(head_key, behind).await.expect("put");
    drop(first);
    let r = outsider(&h).await.verify_audit().await.expect("verify");
    assert!(r.ok, "records past the head are not a break: {r:#?}");
    let chain = r
        .chains
        .iter()
        .find(|c| c.writer == "kith-server-crashy")
        .expect("chain");
    assert_eq!((chain.records, chain.head_seq, chain.unanchored), (5, 3, 2));
    // The next process writing as it adopts them and writes after them.
    let next = Authority::open(h.store.clone(), h.clock.clone(), PASS, settings())
        .await
        .expect("open");
    next.audit("tester", "op", "c0", "").await.expect("audit");
    let r = outsider(&h).await.verify_audit().await.expect("verify");
    assert!(r.ok, "{r:#?}");
    let chain = r
        .chains
        .iter()
        .find(|c| c.writer == "kith-server-crashy")
        .expect("chain");
    assert_eq!((chain.records, chain.head_seq, chain.unanchored), (6, 6, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_appends_of_one_process_go_in_waves() {
    const N: usize = 400;
    let h = common::Harness::redb().await;
    let a = h.authority.clone();
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move {
                a.audit("tester", "op", &format!("s{i}"), "")
                    .await
                    .expect("audit");
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let took = start.elapsed();
    let r = a.verify_audit().await.expect("verify");
    assert!(r.ok, "{r:#?}");
    let chain = &r.chains[0];
    assert_eq!(chain.records, chain.head_seq);
    assert_eq!(chain.records as usize, N + 1, "init and the {N}");
    // Not a timing assertion (the machine is shared): what it took, for
    // whoever reads the output.
    println!("{N} concurrent appends on redb took {took:?}");
}

/// A wave cut short (a crash, a store that failed mid-wave) can leave a
/// record past a gap: the head says 3, record 4 never landed, record 5 did.
/// The next process writing as that writer fills 4 and must not stop at 5
/// for good (before: every append failed, and `kith serve` could not start
/// again): the orphan is moved aside, listed by verify, and the chain goes on.
#[tokio::test]
async fn a_record_past_a_gap_is_moved_aside_not_a_wedge() {
    let h = common::Harness::mem().await;
    let settings = || Settings {
        audit_writer: Some("kith-server-cut".into()),
        ..Settings::default()
    };
    let first = Authority::open(h.store.clone(), h.clock.clone(), PASS, settings())
        .await
        .expect("open");
    for i in 0..3 {
        first
            .audit("tester", "op", &format!("a{i}"), "")
            .await
            .expect("audit");
    }
    let head_key = "audithead/kith-server-cut";
    let seq = |v: &[u8]| -> u64 {
        serde_json::from_slice::<serde_json::Value>(v).expect("head")["seq"]
            .as_u64()
            .expect("seq")
    };
    let head = h
        .store
        .get(head_key)
        .await
        .expect("get")
        .expect("head")
        .value;
    let at = seq(&head);
    for i in 0..2 {
        first
            .audit("tester", "op", &format!("b{i}"), "")
            .await
            .expect("audit");
    }
    drop(first);
    // The wave's first record never landed, nor the head's move.
    h.store
        .delete(&rec_key("kith-server-cut", at + 1))
        .await
        .expect("delete");
    h.store.put(head_key, head).await.expect("put");

    let next = Authority::open(h.store.clone(), h.clock.clone(), PASS, settings())
        .await
        .expect("open");
    for i in 0..3 {
        next.audit("tester", "op", &format!("c{i}"), "")
            .await
            .expect("the chain goes on past the orphan");
    }
    let r = outsider(&h).await.verify_audit().await.expect("verify");
    assert!(r.ok, "{r:#?}");
    assert_eq!(r.orphans.len(), 1, "{r:#?}");
    assert!(
        r.orphans[0].starts_with(&format!("auditorphan/kith-server-cut/{:020}-", at + 2)),
        "{r:#?}"
    );
    let chain = r
        .chains
        .iter()
        .find(|c| c.writer == "kith-server-cut")
        .expect("chain");
    assert_eq!((chain.records, chain.head_seq), (at + 3, at + 3));
}
