//! Debounced CRL publication. A revocation is recorded at once; re-signing
//! the CRL is shared: whoever holds an authority's lock signs one CRL that
//! covers every revocation recorded before it started, and callers whose
//! revocation it covers return without signing again. A burst of N
//! revocations costs a few signatures instead of N, and each caller still
//! answers only once a CRL listing its revocation is stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kith_authority::{Authority, CrlIssuer, CrlRecord, Error};

/// How long the signer waits for more revocations to arrive.
const SETTLE: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Slot {
    /// Tickets handed out (one per recorded revocation).
    requested: AtomicU64,
    /// Highest ticket a stored CRL covers.
    done: tokio::sync::Mutex<u64>,
}

/// Per-authority debouncers.
#[derive(Default)]
pub(crate) struct CrlPublisher {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl CrlPublisher {
    fn slot(&self, authority: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(authority.to_string())
            .or_default()
            .clone()
    }

    /// Call after a revocation under `authority` is durably recorded;
    /// returns once a CRL that lists it is stored.
    pub(crate) async fn changed(&self, authority: &Authority, name: &str) -> Result<(), Error> {
        let slot = self.slot(name);
        let ticket = slot.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = slot.done.lock().await;
        if *done >= ticket {
            return Ok(()); // signed by someone who started after our record
        }
        tokio::time::sleep(SETTLE).await;
        let covers = slot.requested.load(Ordering::SeqCst);
        authority.regenerate_intermediate_crls(name).await?;
        *done = covers;
        Ok(())
    }

    /// The CRL to serve: the stored one while it is fresh
    /// ([`Authority::crl_is_fresh`]; no lock, no signature), else one fresh signature per
    /// authority however many requests ask at once.
    pub(crate) async fn current(
        &self,
        authority: &Authority,
        name: &str,
        issuer: CrlIssuer,
    ) -> Result<CrlRecord, Error> {
        // An unknown name is refused before it costs a slot: anyone may ask
        // for `/v1/crl/<anything>`, and slots are never forgotten.
        authority.intermediate_cert(name)?;
        if let Some(c) = kith_authority::stored_crl_of(&**authority.store(), name, issuer).await? {
            if authority.crl_is_fresh(&c) {
                return Ok(c);
            }
        }
        // The root's CRL has a lock of its own ("/" is no authority name).
        let slot = match issuer {
            CrlIssuer::Root => self.slot(&format!("{name}/root")),
            CrlIssuer::Generation(g) => self.slot(&format!("{name}/{g}")),
            CrlIssuer::OtherRoot => self.slot(&format!("{name}/other-root")),
            _ => self.slot(name),
        };
        let _signing = slot.done.lock().await;
        // Re-checks under the lock: a request that waited finds the new one.
        authority.crl_of(name, issuer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_authority_has_one_slot() {
        // Debouncing is exercised end to end in tests/; here only the bookkeeping.
        let p = CrlPublisher::default();
        let a = p.slot("x");
        let b = p.slot("x");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &p.slot("y")));
    }

    /// Names that are no authority cost no slot (a flood of
    /// `/v1/crl/<random>` would otherwise grow the map for ever).
    #[tokio::test]
    async fn an_unknown_authority_takes_no_slot() {
        let store: Arc<dyn kith_store::Store> = Arc::new(kith_store::MemStore::new());
        let authority = Authority::init(
            store,
            Arc::new(kith_authority::SystemClock),
            kith_authority::InitOptions {
                cluster: "test.example".into(),
                key_type: kith_pki::KeyType::P256,
                kdf: kith_authority::KdfParams {
                    t: 2,
                    ..kith_authority::KdfParams::MINIMUM
                },
            },
            b"correct horse battery staple",
            kith_authority::Settings::default(),
        )
        .await
        .expect("init");
        let p = CrlPublisher::default();
        for i in 0..100 {
            let name = format!("nosuch{i}");
            let e = p
                .current(&authority, &name, CrlIssuer::Intermediate)
                .await
                .expect_err("unknown");
            assert!(matches!(e, Error::UnknownAuthority(_)), "{e}");
        }
        assert!(p.slots.lock().expect("lock").is_empty());
        p.current(&authority, "cluster", CrlIssuer::Intermediate)
            .await
            .expect("the cluster's CRL");
        assert_eq!(p.slots.lock().expect("lock").len(), 1);
    }
}
