//! Concurrent writers on one key: conditions decide exactly one winner.

use std::sync::Arc;

use crate::{Error, Store};

pub(super) async fn concurrent_create_one_winner(s: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.create("conf-race/a", vec![i]).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => wins += 1,
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => panic!("concurrent_create_one_winner: {e}"),
        }
    }
    assert_eq!(wins, 1, "concurrent_create_one_winner");
}

pub(super) async fn concurrent_cas_counter_exact(s: Arc<dyn Store>) {
    s.put("conf-counter/n", 0u64.to_be_bytes().to_vec())
        .await
        .expect("put");
    let workers = 8;
    let per_worker = 25;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while done < per_worker {
                    let e = s
                        .get("conf-counter/n")
                        .await
                        .expect("get")
                        .expect("present");
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&e.value);
                    let next = (u64::from_be_bytes(b) + 1).to_be_bytes().to_vec();
                    match s.update("conf-counter/n", next, e.revision).await {
                        Ok(_) => done += 1,
                        Err(Error::RevisionMismatch { .. }) => {}
                        Err(e) => panic!("concurrent_cas_counter_exact: {e}"),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let e = s
        .get("conf-counter/n")
        .await
        .expect("get")
        .expect("present");
    let mut b = [0u8; 8];
    b.copy_from_slice(&e.value);
    assert_eq!(
        u64::from_be_bytes(b),
        (workers * per_worker) as u64,
        "concurrent_cas_counter_exact: no increment lost or doubled"
    );
}

/// An update and a delete, both conditional on the same revision, race:
/// exactly one wins, and the store shows the winner's outcome.
pub(super) async fn update_racing_delete_if(s: Arc<dyn Store>) {
    for round in 0..50u32 {
        let key = format!("conf-upd-del/{round}");
        let r = s.create(&key, vec![0]).await.expect("create");
        let update = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.update(&key, vec![1], r).await })
        };
        let delete = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.delete_if(&key, r).await })
        };
        let update = update.await.expect("task");
        let delete = delete.await.expect("task");
        let now = s.get(&key).await.expect("get");
        match (&update, &delete) {
            (Ok(rev), Err(Error::RevisionMismatch { .. })) => {
                let e = now.expect("update_racing_delete_if: the update won, the key stays");
                assert_eq!((e.value.as_slice(), e.revision), (&[1u8][..], *rev));
            }
            (Err(Error::RevisionMismatch { .. }), Ok(())) => {
                assert_eq!(now, None, "update_racing_delete_if: the delete won");
            }
            other => panic!("update_racing_delete_if: exactly one must win, got {other:?}"),
        }
    }
}

/// Two creates of one key, many times over: exactly one wins each time and
/// its value is the one stored.
pub(super) async fn create_racing_create_rounds(s: Arc<dyn Store>) {
    for round in 0..50u32 {
        let key = format!("conf-create-race/{round}");
        let tasks: Vec<_> = (0..2u8)
            .map(|i| {
                let (s, key) = (s.clone(), key.clone());
                tokio::spawn(async move { (i, s.create(&key, vec![i]).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                (i, Ok(rev)) => winners.push((i, rev)),
                (_, Err(Error::AlreadyExists { .. })) => {}
                (_, Err(e)) => panic!("create_racing_create_rounds: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "create_racing_create_rounds: one winner");
        let e = s.get(&key).await.expect("get").expect("present");
        assert_eq!(
            (e.value, e.revision),
            (vec![winners[0].0], winners[0].1),
            "create_racing_create_rounds: the winner's value is stored"
        );
    }
}

/// A create racing a conditional delete of the key's current value: the
/// create either finds the key (and changes nothing) or lands after the
/// delete; a delete never removes the value of a create it did not see.
pub(super) async fn create_racing_delete_if(s: Arc<dyn Store>) {
    for round in 0..50u32 {
        let key = format!("conf-create-del/{round}");
        let r = s.create(&key, vec![0]).await.expect("create");
        let create = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.create(&key, vec![1]).await })
        };
        let delete = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.delete_if(&key, r).await })
        };
        let create = create.await.expect("task");
        delete
            .await
            .expect("task")
            .expect("create_racing_delete_if: the delete is at the current revision");
        let now = s.get(&key).await.expect("get");
        match create {
            Ok(rev) => {
                let e = now.expect("create_racing_delete_if: a successful create stays");
                assert_eq!((e.value.as_slice(), e.revision), (&[1u8][..], rev));
            }
            Err(Error::AlreadyExists { .. }) => {
                assert_eq!(now, None, "create_racing_delete_if: nothing left");
            }
            Err(e) => panic!("create_racing_delete_if: {e}"),
        }
    }
}

/// An update at the current revision racing an unconditional delete: the
/// delete always succeeds and the key always ends absent; the update
/// either landed first (and was then deleted) or found the key gone.
pub(super) async fn update_racing_delete(s: Arc<dyn Store>) {
    for round in 0..50u32 {
        let key = format!("conf-upd-rm/{round}");
        let r = s.create(&key, vec![0]).await.expect("create");
        let update = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.update(&key, vec![1], r).await })
        };
        let delete = {
            let (s, key) = (s.clone(), key.clone());
            tokio::spawn(async move { s.delete(&key).await })
        };
        let update = update.await.expect("task");
        delete
            .await
            .expect("task")
            .expect("update_racing_delete: an unconditional delete succeeds");
        match update {
            Ok(rev) => assert!(rev > r, "update_racing_delete: {rev} after {r}"),
            Err(Error::RevisionMismatch { current: None, .. }) => {}
            Err(e) => panic!("update_racing_delete: the update gave {e:?}"),
        }
        assert_eq!(
            s.get(&key).await.expect("get"),
            None,
            "update_racing_delete: the delete is the last word"
        );
    }
}
