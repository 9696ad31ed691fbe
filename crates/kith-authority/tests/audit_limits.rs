//! Refusals of authenticated callers cannot fill the disk with audit
//! records: a node hammering secrets it may not read causes a bounded
//! number of records per window, the aggregate record carries the count of
//! every refusal it stands for, and past a rate the answer is `rate-limited`.

use std::time::{Duration, Instant};

use kith_authority::{AuditLimits, AuditRecord, Authority, Error, Reader, SecretUpdate, Settings};
use kith_pki::KeyType;

mod common;

async fn authority(settings: Settings) -> (common::Harness, Authority) {
    let h = common::Harness::new(common::Backend::Redb, settings).await;
    let a = h.authority.clone();
    (h, a)
}

/// The audit records of refusals of `actor`.
async fn audit_of(a: &Authority, actor: &str) -> Vec<AuditRecord> {
    a.store()
        .list("audit/")
        .await
        .expect("list audit")
        .into_iter()
        .map(|e| serde_json::from_slice::<AuditRecord>(&e.value).expect("an audit record"))
        .filter(|r| r.actor == actor && r.action == "secret-denied")
        .collect()
}

/// How many refusals a record stands for: 1, or the N of a summary's
/// "N more refusals of ...".
fn refusals_in(r: &AuditRecord) -> u64 {
    match r.detail.split_once(" more refusals of ") {
        Some((n, _)) => n.parse().expect("a count before 'more refusals'"),
        None => 1,
    }
}

const HAMMER: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_refused_reads_writes_a_bounded_number_of_audit_records() {
    let window = Duration::from_secs(3);
    let limits = AuditLimits {
        window,
        ..AuditLimits::default()
    };
    let (_h, a) = authority(Settings {
        audit_limits: limits.clone(),
        ..Settings::default()
    })
    .await;
    a.put_secret(
        "db-password",
        b"hunter2",
        SecretUpdate {
            allow_roles: Some(vec!["db".into()]),
            ..SecretUpdate::default()
        },
        "admin:test",
    )
    .await
    .expect("put");
    a.put_secret(
        "worker-config",
        b"ok",
        SecretUpdate {
            allow_roles: Some(vec!["worker".into()]),
            ..SecretUpdate::default()
        },
        "admin:test",
    )
    .await
    .expect("put");
    let attacker = Reader::Node {
        name: "node-1",
        role: "worker",
    };

    let started = Instant::now();
    let mut limited = 0u64;
    for i in 0..HAMMER {
        // An existing forbidden secret, or any name at all: the subject
        // varies, the bound must not.
        let name = if i % 2 == 0 {
            "db-password".to_string()
        } else {
            format!("guess-{i}")
        };
        match a.get_secret(&name, None, attacker).await {
            Err(Error::SecretForbidden { .. }) => {}
            Err(Error::RateLimited { retry_after }) => {
                assert!(retry_after <= window, "retry after {retry_after:?}");
                limited += 1;
            }
            other => panic!("refusal {i}: unexpected {:?}", other.map(|(v, _)| v)),
        }
    }
    let elapsed = started.elapsed();
    // At most one record and one summary per window the hammering spanned.
    let windows = elapsed.as_secs() / window.as_secs() + 2;
    let records = audit_of(&a, "node:node-1").await;
    assert!(
        records.len() as u64 <= 2 * windows,
        "{} audit records for {HAMMER} refusals in {elapsed:?}",
        records.len()
    );
    assert!(
        limited >= HAMMER - u64::from(limits.max_refusals) * windows,
        "only {limited} of {HAMMER} refusals were answered rate-limited"
    );

    // The node still reads what it may read, and another node's first
    // refusal is recorded at once and answered as a refusal.
    let (_, v) = a
        .get_secret("worker-config", None, attacker)
        .await
        .expect("an allowed read while rate-limited");
    assert_eq!(v.to_vec(), b"ok");
    let e = a
        .get_secret(
            "db-password",
            None,
            Reader::Node {
                name: "node-2",
                role: "worker",
            },
        )
        .await
        .expect_err("node-2 may not read it");
    assert_eq!(e.code(), "secret-forbidden", "{e}");
    assert_eq!(audit_of(&a, "node:node-2").await.len(), 1);

    // When the window closes, one summary carries the count: every refusal
    // is accounted for, none recorded twice.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = audit_of(&a, "node:node-1").await;
        let counted: u64 = records.iter().map(refusals_in).sum();
        if counted == HAMMER {
            let summary = records
                .iter()
                .find(|r| refusals_in(r) > 1)
                .expect("a summary record");
            assert_eq!(summary.action, "secret-denied");
            assert!(
                summary.detail.contains("by node:node-1 between"),
                "{}",
                summary.detail
            );
            break;
        }
        assert!(
            counted < HAMMER,
            "{counted} refusals counted for {HAMMER}: {records:#?}"
        );
        assert!(
            Instant::now() < deadline,
            "after 60 s the audit trail accounts for {counted} of {HAMMER} refusals"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limits_bound_records_per_identity_per_minute() {
    let (_h, a) = authority(Settings::default()).await;
    let limits = AuditLimits::default();
    assert_eq!(limits.window, Duration::from_secs(60));
    let node = Reader::Node {
        name: "node-9",
        role: "worker",
    };
    let mut answers = std::collections::BTreeMap::<&str, u64>::new();
    for i in 0..HAMMER {
        let e = a
            .get_secret(&format!("s-{}", i % 7), None, node)
            .await
            .expect_err("forbidden");
        *answers.entry(e.code().as_str()).or_default() += 1;
    }
    // Well inside one window: one record so far (the summary comes when
    // the window closes), the first refusals answered as refusals, the
    // rest rate-limited.
    assert_eq!(audit_of(&a, "node:node-9").await.len(), 1);
    assert_eq!(
        answers.get("secret-forbidden").copied(),
        Some(u64::from(limits.max_refusals)),
        "{answers:?}"
    );
    assert_eq!(
        answers.get("rate-limited").copied(),
        Some(HAMMER - u64::from(limits.max_refusals)),
        "{answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_allowed_reads_are_aggregated_not_refused() {
    let (_h, a) = authority(Settings::default()).await;
    a.put_secret(
        "worker-config",
        b"ok",
        SecretUpdate {
            allow_roles: Some(vec!["worker".into()]),
            ..SecretUpdate::default()
        },
        "admin:test",
    )
    .await
    .expect("put");
    let node = Reader::Node {
        name: "node-3",
        role: "worker",
    };
    const READS: u64 = 2000;
    for i in 0..READS {
        a.get_secret("worker-config", None, node)
            .await
            .unwrap_or_else(|e| panic!("allowed read {i} refused: {e}"));
    }
    let reads = |records: Vec<kith_store::Entry>| -> Vec<AuditRecord> {
        records
            .into_iter()
            .map(|e| serde_json::from_slice::<AuditRecord>(&e.value).expect("record"))
            .filter(|r| r.actor == "node:node-3" && r.action == "secret-read")
            .collect()
    };
    let before = reads(a.store().list("audit/").await.expect("list"));
    assert_eq!(before.len(), 1, "one record inside the window: {before:#?}");
    assert_eq!(before[0].detail, "version 1");
    // Shutting down writes the summary of the open window.
    a.flush_audit_summaries().await;
    let after = reads(a.store().list("audit/").await.expect("list"));
    assert_eq!(after.len(), 2, "{after:#?}");
    let summary = after
        .iter()
        .find(|r| r.detail != "version 1")
        .expect("a summary");
    assert!(
        summary.detail.starts_with(&format!(
            "{} more of secret-read by node:node-3 on worker-config between ",
            READS - 1
        )),
        "{}",
        summary.detail
    );
}

/// Renewals write certificates, so they are limited per node too: a node
/// renewing in a loop (with its newest certificate each time) gets
/// `max_renewals` per window, then `rate-limited`, recorded as a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewals_in_a_loop_are_limited_per_node() {
    let (_h, a) = authority(Settings::default()).await;
    let (_, token) = a
        .create_token(
            kith_authority::TokenSpec {
                role: "worker".into(),
                node: None,
                ttl: time::Duration::hours(1),
                uses: 1,
                allow_sans: Vec::new(),
                authority: None,
            },
            "admin:test",
        )
        .await
        .expect("token");
    let key = kith_pki::PrivateKey::generate(KeyType::P256).expect("key");
    let csr = |key: &kith_pki::PrivateKey| {
        let der = kith_pki::build_csr(key, "node-4", &[kith_pki::San::Dns("node-4".into())])
            .expect("csr");
        vec![(kith_pki::Profile::Peer, der)]
    };
    let (_, issued) = a
        .join(&token, Some("node-4"), &csr(&key), "test")
        .await
        .expect("join");
    let mut current = issued[0].record.der.clone();
    let max = AuditLimits::default().max_renewals;
    let mut renewed = 0u32;
    let mut limited = None;
    for i in 0..(max + 20) {
        let key = kith_pki::PrivateKey::generate(KeyType::P256).expect("key");
        match a
            .renew(&current, None, &csr(&key), time::Duration::days(7))
            .await
        {
            Ok((_, issued)) => {
                current = issued[0].record.der.clone();
                renewed += 1;
            }
            Err(Error::RateLimited { retry_after }) => {
                assert!(retry_after <= Duration::from_secs(60));
                limited.get_or_insert(i);
            }
            Err(e) => panic!("renewal {i}: {e}"),
        }
    }
    assert_eq!(renewed, max, "renewals allowed in one window");
    assert_eq!(limited, Some(max), "the first renewal past the limit");
    let refused: Vec<_> = a
        .store()
        .list("audit/")
        .await
        .expect("list")
        .into_iter()
        .map(|e| serde_json::from_slice::<AuditRecord>(&e.value).expect("record"))
        .filter(|r| r.actor == "node:node-4" && r.action == "renew-limited")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
}
