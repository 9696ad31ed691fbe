//! Values: any bytes, up to the backend's limit and not one byte more.

use crate::{Error, Store};

pub(super) async fn binary_and_large_values(s: &dyn Store) {
    let bin: Vec<u8> = (0..=255u8).collect();
    s.put("conf-bin/a", bin.clone()).await.expect("put");
    assert_eq!(
        s.get("conf-bin/a")
            .await
            .expect("get")
            .expect("present")
            .value,
        bin
    );
    // 512 KiB, or the backend's limit if that is smaller.
    let big = vec![0xa5u8; (512 * 1024).min(s.limits().max_value)];
    s.put("conf-bin/big", big.clone())
        .await
        .expect("a large value");
    assert_eq!(
        s.get("conf-bin/big")
            .await
            .expect("get")
            .expect("present")
            .value,
        big
    );
    s.put("conf-bin/empty", Vec::new())
        .await
        .expect("empty value");
    assert_eq!(
        s.get("conf-bin/empty")
            .await
            .expect("get")
            .expect("present")
            .value,
        b""
    );
}

/// A value of exactly the limit is stored whole; one byte more is
/// `ValueTooLarge` for every kind of write and changes nothing.
pub(super) async fn limits_honoured(s: &dyn Store) {
    let max = s.limits().max_value;
    assert!(
        max >= 64 * 1024,
        "limits_honoured: the suite needs a limit of at least 64 KiB, got {max}"
    );
    let at_limit: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    let r1 = s
        .create("conf-limit/a", at_limit.clone())
        .await
        .expect("limits_honoured: a value of exactly the limit");
    let e = s.get("conf-limit/a").await.expect("get").expect("present");
    assert!(
        e.value == at_limit && e.revision == r1,
        "limits_honoured: the value at the limit comes back whole"
    );
    let r2 = s
        .update("conf-limit/a", at_limit.clone(), r1)
        .await
        .expect("limits_honoured: an update of exactly the limit");

    let over = vec![7u8; max + 1];
    let refused = |what: &str, got: crate::Result<crate::Revision>| match got {
        Err(Error::ValueTooLarge { key, size, max: m }) => {
            assert_eq!(
                (size, m),
                (max + 1, max),
                "limits_honoured: {what} names the size and the limit"
            );
            assert!(key.starts_with("conf-limit/"), "limits_honoured: {key}");
        }
        other => panic!("limits_honoured: {what} above the limit gave {other:?}"),
    };
    refused("put", s.put("conf-limit/b", over.clone()).await);
    refused("create", s.create("conf-limit/b", over.clone()).await);
    refused("update", s.update("conf-limit/a", over.clone(), r2).await);
    refused("put over", s.put("conf-limit/a", over).await);
    assert_eq!(
        s.get("conf-limit/b").await.expect("get"),
        None,
        "limits_honoured: a refused write stores nothing"
    );
    let e = s.get("conf-limit/a").await.expect("get").expect("present");
    assert!(
        e.value == at_limit && e.revision == r2,
        "limits_honoured: a refused write leaves the old value"
    );
    // The store goes on working, and the key still takes a small value.
    s.update("conf-limit/a", vec![1], r2)
        .await
        .expect("limits_honoured: a write after refusals");
}
