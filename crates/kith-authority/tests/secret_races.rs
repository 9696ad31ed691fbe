//! `secret put` racing `secret rm` on a real redb store (issue 9 §6).
//!
//! Each round starts from a secret with a known version, then runs one put
//! and one rm (of every version, or of one version) at the same time, and
//! checks after both answered:
//! - every version the secret lists reads back, with the value written for it
//!   (before the fix, an rm deleted value records a concurrent put had just
//!   listed: the secret listed a version whose value was gone and every read
//!   answered `integrity-error`, a 500);
//! - an acknowledged put is either still listed, or an acknowledged rm says
//!   (in its audit line) that it removed exactly that version: no write is
//!   lost silently.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use kith_authority::{AuditRecord, Authority, Error, Reader, SecretUpdate, SettingsChange};
use kith_store::Store;

mod common;

const ADMIN: Reader<'static> = Reader::Admin("admin:test");
const ROUNDS: usize = 300;
const PUTS: usize = 2;

/// A small deterministic generator (xorshift64*), so a failing round can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

async fn authority() -> (common::Harness, Authority) {
    let change = SettingsChange {
        // Small, so that puts also drop old versions while an rm runs; above the
        // 4 versions one round writes, so a round's own puts are never dropped.
        keep_versions: Some(5),
        ..SettingsChange::default()
    };
    let h = common::Harness::redb().await.with_settings(change).await;
    let a = h.authority.clone();
    (h, a)
}

/// Audit lines not seen before, for `name`.
async fn new_audit(store: &dyn Store, seen: &mut BTreeSet<String>, name: &str) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    for e in store.list("audit/").await.expect("list audit") {
        if seen.insert(e.key.clone()) {
            let rec: AuditRecord = serde_json::from_slice(&e.value).expect("audit record");
            if rec.subject == name {
                out.push(rec);
            }
        }
    }
    out
}

/// The version numbers an audit detail names (`version 4`, `all versions (3, 4)`).
fn numbers(detail: &str) -> BTreeSet<u64> {
    detail
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Every listed version reads, with the value written for it.
async fn check_listed_versions_read(
    a: &Authority,
    name: &str,
    written: &HashMap<u64, Vec<u8>>,
    round: usize,
) -> Option<BTreeSet<u64>> {
    let meta = match a.secret_info(name).await {
        Ok(m) => m,
        Err(Error::UnknownSecret(_)) => return None,
        Err(e) => panic!("round {round}: secret info failed: {e}"),
    };
    let mut listed = BTreeSet::new();
    for v in &meta.versions {
        let (got, value) = a
            .get_secret(name, Some(v.version), ADMIN)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "round {round}: version {} is listed but does not read: {} ({e})",
                    v.version,
                    e.code()
                )
            });
        assert_eq!(got, v.version, "round {round}");
        assert_eq!(
            Some(&value.as_slice().to_vec()),
            written.get(&v.version),
            "round {round}: version {} reads another value than was written",
            v.version
        );
        listed.insert(v.version);
    }
    // The latest version reads too (what `secret get` without a version does).
    if let Some(last) = meta.versions.last() {
        let (v, _) = a
            .get_secret(name, None, ADMIN)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the latest version does not read: {e}"));
        assert_eq!(v, last.version, "round {round}");
    }
    Some(listed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_racing_rm_never_loses_a_write_nor_lists_a_missing_value() {
    let (_h, a) = authority().await;
    let a = Arc::new(a);
    let store = a.store().clone();
    let name = "raced";
    let mut seen = BTreeSet::new();
    let mut written: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut rm_all_rounds, mut rm_one_rounds) = (0, 0);
    for round in 0..ROUNDS {
        // A known starting point: at least one listed version.
        let base_value = format!("base-{round}").into_bytes();
        let base = a
            .put_secret(name, &base_value, SecretUpdate::default(), "admin:setup")
            .await
            .expect("setup put")
            .latest();
        written.insert(base, base_value);
        new_audit(&*store, &mut seen, name).await;

        let rm_all = rng.next().is_multiple_of(2);
        // Several puts, started at staggered moments, so that one of them lands
        // between any two steps of the rm.
        let puts: Vec<_> = (0..PUTS)
            .map(|i| {
                let delay = rng.next() % 40;
                let value = format!("value-{round}-{i}").into_bytes();
                let a = a.clone();
                tokio::spawn(async move {
                    for _ in 0..delay {
                        tokio::task::yield_now().await;
                    }
                    let r = a
                        .put_secret(name, &value, SecretUpdate::default(), "admin:put")
                        .await;
                    (value, r)
                })
            })
            .collect();
        let rm = {
            let a = a.clone();
            tokio::spawn(async move {
                a.delete_secret(name, (!rm_all).then_some(base), "admin:rm")
                    .await
            })
        };
        let mut put_versions = Vec::new();
        for put in puts {
            match put.await.expect("put task") {
                (value, Ok(meta)) => {
                    let v = meta.latest();
                    written.insert(v, value);
                    put_versions.push(v);
                }
                (_, Err(e)) => panic!("round {round}: a put failed: {e}"),
            }
        }
        let rm = rm.await.expect("rm task");
        match &rm {
            Ok(()) => {}
            // An rm of everything may have come after another one.
            Err(Error::UnknownSecretVersion { .. }) | Err(Error::UnknownSecret(_)) => {}
            Err(e) => panic!("round {round}: the rm failed: {e}"),
        }
        if rm_all {
            rm_all_rounds += 1;
        } else {
            rm_one_rounds += 1;
        }

        let listed = check_listed_versions_read(&a, name, &written, round).await;
        let removed: BTreeSet<u64> = new_audit(&*store, &mut seen, name)
            .await
            .iter()
            .filter(|r| r.action == "secret-delete")
            .flat_map(|r| numbers(&r.detail))
            .collect();
        for v in put_versions {
            let still_listed = listed.as_ref().is_some_and(|l| l.contains(&v));
            assert!(
                still_listed || (rm.is_ok() && removed.contains(&v)),
                "round {round}: the acknowledged put of version {v} is gone, and no acknowledged \
                 rm removed it (rm: {rm:?}, removed {removed:?}, listed {listed:?})"
            );
        }
        // An rm of one version never takes another one with it.
        if !rm_all && rm.is_ok() {
            assert!(
                removed == BTreeSet::from([base]),
                "round {round}: rm of version {base} removed {removed:?}"
            );
        }
        // What is not listed is not stored either, except value records of writes in flight
        // (none now): rm leaves no readable leftovers behind.
        let stored: BTreeSet<u64> = store
            .list(&format!("secretval/{name}/"))
            .await
            .expect("list values")
            .iter()
            .filter_map(|e| e.key.rsplit('/').next()?.parse().ok())
            .collect();
        assert_eq!(
            stored,
            listed.clone().unwrap_or_default(),
            "round {round}: stored value records differ from the listed versions"
        );
    }
    assert!(
        rm_all_rounds > 50 && rm_one_rounds > 50,
        "both kinds of rm ran"
    );
}
