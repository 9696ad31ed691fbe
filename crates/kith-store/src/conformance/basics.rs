//! Single-key operations: reads, writes, conditions, deletes, key rules.

use crate::{Error, Store};

pub(super) async fn get_missing(s: &dyn Store) {
    assert_eq!(
        s.get("conf-missing/x").await.expect("get"),
        None,
        "get_missing"
    );
}

pub(super) async fn put_get_roundtrip(s: &dyn Store) {
    let rev = s.put("conf-put/a", b"one".to_vec()).await.expect("put");
    let e = s.get("conf-put/a").await.expect("get").expect("present");
    assert_eq!(
        (e.value.as_slice(), e.revision),
        (&b"one"[..], rev),
        "put_get_roundtrip"
    );
    let rev2 = s.put("conf-put/a", b"two".to_vec()).await.expect("put");
    assert!(rev2 > rev, "put_get_roundtrip: revision must grow");
    assert_eq!(
        s.get("conf-put/a")
            .await
            .expect("get")
            .expect("present")
            .value,
        b"two"
    );
}

pub(super) async fn create_only_if_absent(s: &dyn Store) {
    s.create("conf-create/a", b"first".to_vec())
        .await
        .expect("create");
    match s.create("conf-create/a", b"second".to_vec()).await {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "conf-create/a"),
        other => panic!("create_only_if_absent: expected AlreadyExists, got {other:?}"),
    }
    let e = s.get("conf-create/a").await.expect("get").expect("present");
    assert_eq!(
        e.value, b"first",
        "create_only_if_absent: loser must not overwrite"
    );
}

pub(super) async fn update_compare_and_swap(s: &dyn Store) {
    let r1 = s.create("conf-cas/a", b"1".to_vec()).await.expect("create");
    let r2 = s
        .update("conf-cas/a", b"2".to_vec(), r1)
        .await
        .expect("update");
    match s.update("conf-cas/a", b"stale".to_vec(), r1).await {
        Err(Error::RevisionMismatch {
            expected, current, ..
        }) => {
            assert_eq!(
                (expected, current),
                (r1, Some(r2)),
                "update_compare_and_swap"
            );
        }
        other => panic!("update_compare_and_swap: expected RevisionMismatch, got {other:?}"),
    }
    assert_eq!(
        s.get("conf-cas/a")
            .await
            .expect("get")
            .expect("present")
            .value,
        b"2"
    );
    match s.update("conf-cas/absent", b"x".to_vec(), 1).await {
        Err(Error::RevisionMismatch { current: None, .. }) => {}
        other => panic!("update of an absent key must fail, got {other:?}"),
    }
    assert_eq!(s.get("conf-cas/absent").await.expect("get"), None);
}

pub(super) async fn revisions_increase(s: &dyn Store) {
    let a = s.put("conf-rev/a", vec![1]).await.expect("put");
    let b = s.put("conf-rev/b", vec![2]).await.expect("put");
    let c = s.put("conf-rev/a", vec![3]).await.expect("put");
    assert!(a < b && b < c, "revisions_increase: {a} {b} {c}");
}

pub(super) async fn delete_semantics(s: &dyn Store) {
    s.put("conf-del/a", vec![1]).await.expect("put");
    s.delete("conf-del/a").await.expect("delete");
    assert_eq!(
        s.get("conf-del/a").await.expect("get"),
        None,
        "delete_semantics"
    );
    s.delete("conf-del/a")
        .await
        .expect("deleting an absent key is fine");
    s.create("conf-del/a", vec![2])
        .await
        .expect("create after delete");
}

pub(super) async fn delete_if_revision(s: &dyn Store) {
    let r1 = s.create("conf-delif/a", vec![1]).await.expect("create");
    let r2 = s.update("conf-delif/a", vec![2], r1).await.expect("update");
    match s.delete_if("conf-delif/a", r1).await {
        Err(Error::RevisionMismatch {
            expected, current, ..
        }) => assert_eq!(
            (expected, current),
            (r1, Some(r2)),
            "delete_if_revision: a stale revision"
        ),
        other => panic!("delete_if_revision: expected RevisionMismatch, got {other:?}"),
    }
    assert_eq!(
        s.get("conf-delif/a")
            .await
            .expect("get")
            .expect("a failed delete_if leaves the key")
            .value,
        [2]
    );
    s.delete_if("conf-delif/a", r2)
        .await
        .expect("delete_if at the current revision");
    assert_eq!(
        s.get("conf-delif/a").await.expect("get"),
        None,
        "delete_if_revision: deleted"
    );
    match s.delete_if("conf-delif/a", r2).await {
        Err(Error::RevisionMismatch { current: None, .. }) => {}
        other => panic!("delete_if_revision: an absent key must mismatch, got {other:?}"),
    }
    let r3 = s.create("conf-delif/a", vec![3]).await.expect("re-create");
    assert!(r3 > r2, "delete_if_revision: revisions keep growing");
    match s.delete_if("conf-delif/a", r2).await {
        Err(Error::RevisionMismatch { .. }) => {}
        other => {
            panic!("delete_if_revision: a re-created key is not the deleted one, got {other:?}")
        }
    }
    assert!(s.get("conf-delif/a").await.expect("get").is_some());
}

pub(super) async fn invalid_keys_refused(s: &dyn Store) {
    for bad in ["", "a//b", "/a", "a/", "a.b", "a b", "ä"] {
        match s.put(bad, vec![1]).await {
            Err(Error::InvalidKey { .. }) => {}
            other => panic!("invalid_keys_refused: {bad:?} gave {other:?}"),
        }
    }
}
