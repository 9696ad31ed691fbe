//! Listing by prefix.

use crate::Store;

pub(super) async fn list_by_prefix(s: &dyn Store) {
    for k in [
        "conf-list/a/1",
        "conf-list/a/2",
        "conf-list/ab/1",
        "conf-list/b/1",
    ] {
        s.put(k, k.as_bytes().to_vec()).await.expect("put");
    }
    let keys: Vec<String> = s
        .list("conf-list/a/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["conf-list/a/1", "conf-list/a/2"], "list_by_prefix");
    assert!(s.list("conf-list/zzz/").await.expect("list").is_empty());
    let all = s.list("conf-list/").await.expect("list");
    assert_eq!(all.len(), 4, "list_by_prefix: whole prefix");
    assert!(
        all.windows(2).all(|w| w[0].key < w[1].key),
        "list must be in key order"
    );
}

/// Prefixes that match nothing list nothing (never an error), including
/// ones that share characters with keys that exist; a prefix is a string
/// prefix, so one without a trailing `/` also matches longer segments.
pub(super) async fn list_zero_matches(s: &dyn Store) {
    assert!(
        s.list("conf-none/").await.expect("list").is_empty(),
        "list_zero_matches: an unused prefix"
    );
    s.put("conf-zero/ab/1", vec![1]).await.expect("put");
    s.put("conf-zero/b", vec![2]).await.expect("put");
    for none in [
        "conf-zero/a/",
        "conf-zero/ab/1/",
        "conf-zero/ab/2",
        "conf-zero/c",
        "conf-zero/b/",
        "conf-zero/abc",
    ] {
        let got = s.list(none).await.expect("list");
        assert!(got.is_empty(), "list_zero_matches: {none:?} listed {got:?}");
    }
    let keys = |v: Vec<crate::Entry>| v.into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list("conf-zero/a").await.expect("list")),
        ["conf-zero/ab/1"],
        "list_zero_matches: a prefix ending inside a segment"
    );
    assert_eq!(
        keys(s.list("conf-zero/ab/1").await.expect("list")),
        ["conf-zero/ab/1"],
        "list_zero_matches: a whole key as its own prefix"
    );
}

/// Deleted keys leave listings at once, whichever delete removed them; the
/// rest keep their values and revisions; a re-created key comes back with
/// a new revision.
pub(super) async fn list_after_deletes(s: &dyn Store) {
    let mut revs = Vec::new();
    for i in 0..6u8 {
        let key = format!("conf-list-del/{i}");
        revs.push(s.create(&key, vec![i]).await.expect("create"));
    }
    s.delete("conf-list-del/1").await.expect("delete");
    s.delete_if("conf-list-del/3", revs[3])
        .await
        .expect("delete_if");
    s.delete("conf-list-del/5").await.expect("delete");
    let left: Vec<(String, Vec<u8>, crate::Revision)> = s
        .list("conf-list-del/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| (e.key, e.value, e.revision))
        .collect();
    let expected: Vec<_> = [0u8, 2, 4]
        .iter()
        .map(|&i| (format!("conf-list-del/{i}"), vec![i], revs[usize::from(i)]))
        .collect();
    assert_eq!(
        left, expected,
        "list_after_deletes: the survivors, unchanged"
    );

    for i in [0, 2, 4] {
        s.delete(&format!("conf-list-del/{i}"))
            .await
            .expect("delete");
    }
    assert!(
        s.list("conf-list-del/").await.expect("list").is_empty(),
        "list_after_deletes: everything deleted"
    );
    let again = s
        .create("conf-list-del/3", vec![9])
        .await
        .expect("create after delete");
    let listed = s.list("conf-list-del/").await.expect("list");
    assert_eq!(listed.len(), 1, "list_after_deletes: one re-created key");
    assert!(
        listed[0].key == "conf-list-del/3" && listed[0].value == [9] && listed[0].revision == again,
        "list_after_deletes: the re-created value, got {listed:?}"
    );
    assert!(
        again > revs[5],
        "list_after_deletes: revisions keep growing"
    );
}
