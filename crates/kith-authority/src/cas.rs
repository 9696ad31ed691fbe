//! One bounded retry for every read-modify-write. A record shared between
//! requests (and processes) is changed by reading it with its revision and
//! writing it back only if the revision still matches (or creating it only
//! if it is still absent); a writer that loses reads again. Losing forever
//! is possible under contention, so the number of attempts is capped, and a
//! key still contended after the cap is [`Error::Contended`], which the
//! caller may retry: a hand-written loop without a cap can spin for ever.

use crate::error::Error;

/// Attempts for a record that many writers may race on (a token's uses, a
/// node record, a CRL).
pub(crate) const ATTEMPTS: usize = 64;

/// What one attempt of a read-modify-write came to.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    /// Finished (written, or nothing left to write): the result.
    Done(T),
    /// Lost to a concurrent writer: read again and decide again.
    Conflict,
}

/// Run one attempt (read, decide, write) until it is done, at most
/// `attempts` times, else [`Error::Contended`] naming `key`. An error from
/// an attempt ends the retry at once. Written like an async closure,
/// `retry!(key, attempts, async |n| { ... })` with `n` the attempt number
/// from 0, and awaited; it is a macro rather than a function taking an
/// `AsyncFnMut` because the futures of such closures cannot yet be proven
/// `Send` for every lifetime, and the server spawns these operations.
macro_rules! retry {
    ($key:expr, $attempts:expr, async |$n:pat_param| $body:block) => {
        async {
            for $n in 0..$attempts {
                if let $crate::cas::Attempt::Done(v) = $crate::cas::attempt(async $body).await? {
                    return Ok(v);
                }
            }
            Err($crate::error::Error::Contended(String::from($key)))
        }
    };
}
pub(crate) use retry;

/// One attempt of [`retry!`]: fixes its output type for the compiler.
pub(crate) fn attempt<T, F>(f: F) -> F
where
    F: std::future::Future<Output = Result<Attempt<T>, Error>>,
{
    f
}

/// The outcome of a conditional write: `Some` when it was written, `None`
/// when it lost (the revision moved, the key appeared or vanished); any
/// other store error is an error.
pub(crate) fn written<T>(result: Result<T, kith_store::Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(kith_store::Error::RevisionMismatch { .. })
        | Err(kith_store::Error::AlreadyExists { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kith_store::{MemStore, Store};

    use super::*;

    /// Two writers incrementing one counter by compare-and-swap: every
    /// increment lands once, the loser of each race reads again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_writers_lose_nothing() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        store.create("n", b"0".to_vec()).await.expect("create");
        let bump = |store: Arc<dyn Store>| async move {
            for _ in 0..50 {
                retry!("n", 1000, async |_| {
                    let e = store.get("n").await?.expect("the counter exists");
                    let n: u64 = String::from_utf8_lossy(&e.value).parse().expect("a number");
                    let next = (n + 1).to_string().into_bytes();
                    Ok(match written(store.update("n", next, e.revision).await)? {
                        Some(_) => Attempt::Done(()),
                        None => Attempt::Conflict,
                    })
                })
                .await
                .expect("bounded but generous");
            }
        };
        let (a, b) = tokio::join!(
            tokio::spawn(bump(store.clone())),
            tokio::spawn(bump(store.clone()))
        );
        a.expect("writer a");
        b.expect("writer b");
        let e = store.get("n").await.expect("get").expect("the counter");
        assert_eq!(e.value, b"100");
    }

    /// A key that never stops conflicting is reported, not spun on.
    #[tokio::test]
    async fn a_cap_ends_in_contended() {
        let mut calls = 0;
        let out: Result<(), Error> = retry!("k/1", 5, async |n| {
            assert_eq!(n, calls);
            calls += 1;
            Ok(Attempt::Conflict)
        })
        .await;
        assert!(matches!(out, Err(Error::Contended(k)) if k == "k/1"));
        assert_eq!(calls, 5);
    }

    /// An error ends the retry at once; a done attempt returns its value.
    #[tokio::test]
    async fn errors_and_results_pass_through() {
        let mut calls = 0;
        let out: Result<(), Error> = retry!("k", 5, async |_| {
            calls += 1;
            Err(Error::NotInitialized)
        })
        .await;
        assert!(matches!(out, Err(Error::NotInitialized)));
        assert_eq!(calls, 1);
        let out = retry!("k", 5, async |n| {
            Ok(if n < 2 {
                Attempt::Conflict
            } else {
                Attempt::Done(n)
            })
        })
        .await;
        assert_eq!(out.expect("done on the third"), 2);
    }
}
