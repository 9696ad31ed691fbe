//! The replica registry, end to end: several servers on one store register,
//! list each other in `/v1/ca`, leave the list at once on a clean stop and,
//! killed without cleanup, once their heartbeat is older than the liveness
//! window (the injected clock moves; nothing sleeps 15 s). `GET
//! /v1/admin/status` shows every replica, live or not.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use kith_agent::Connection;
use kith_api::wire::{CaResponse, StatusResponse};
use kith_authority::Settings;

/// A second authority on `env`'s store serving as replica `name`.
async fn replica(env: &Env, name: &str) -> Replica {
    replica_every(env, name, Duration::from_secs(60)).await
}

/// [`replica`] with maintenance every `every`.
async fn replica_every(env: &Env, name: &str, every: Duration) -> Replica {
    Replica::start(env, name, Settings::default(), Some(every)).await
}

async fn listed(env: &Env, url: &str) -> BTreeSet<String> {
    let addr = kith_agent::ServerAddr::parse(url).expect("an advertise URL");
    let cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(env.roots())
        .with_no_client_auth();
    let mut c = Connection::open(&addr, std::sync::Arc::new(cfg))
        .await
        .expect("connect");
    let ca: CaResponse = c
        .json(Method::GET, "/v1/ca", None::<&()>)
        .await
        .expect("/v1/ca");
    ca.replicas.into_iter().collect()
}

/// Poll `url`'s `/v1/ca` until its list is `want` (generous bound).
async fn until_listed(env: &Env, url: &str, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    loop {
        let got = listed(env, url).await;
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{url} lists {got:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn env_url(env: &Env) -> String {
    format!("https://{}", env.addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_list_each_other_and_leave_the_list_when_stopped_or_dead() {
    let env = Env::start_on(
        Some(std::sync::Arc::new(kith_store::MemStore::new())),
        Settings::default(),
        |o| o,
    )
    .await;
    let a = env_url(&env);
    let b = replica(&env, "kith-server-b").await;
    let c = replica(&env, "kith-server-c").await;
    let (b_url, c_url) = (b.url.clone(), c.url.clone());
    // Each lists all three (A's own list follows at its 5 s heartbeat).
    until_listed(&env, &b_url, &[&a, &b_url, &c_url]).await;
    until_listed(&env, &c_url, &[&a, &b_url, &c_url]).await;
    until_listed(&env, &a, &[&a, &b_url, &c_url]).await;

    // A clean stop removes the record at once: gone from the others' lists
    // without any time passing on the clock.
    b.stop().await;
    until_listed(&env, &c_url, &[&a, &c_url]).await;
    let records = env.authority.replicas().await.expect("registry");
    assert!(
        records.iter().all(|r| r.name != "kith-server-b"),
        "no record left: {records:?}"
    );

    // A replica killed without cleanup (its run dropped) keeps its record
    // but stops heartbeating: listed until the window passes, not after.
    let d = replica(&env, "kith-server-d").await;
    let d_url = d.url.clone();
    until_listed(&env, &c_url, &[&a, &c_url, &d_url]).await;
    d.run.abort();
    let _ = d.run.await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        listed(&env, &c_url).await.contains(&d_url),
        "within the window, a silent replica is still listed"
    );
    env.clock.advance(time::Duration::seconds(
        (kith_authority::HEARTBEAT_PERIOD.as_secs() * u64::from(kith_authority::LIVE_PERIODS) + 1)
            as i64,
    ));
    // C heartbeats on the new time; A at its next 5 s heartbeat; D never.
    until_listed(&env, &c_url, &[&a, &c_url]).await;
    let d_record = env
        .authority
        .replicas()
        .await
        .expect("registry")
        .into_iter()
        .find(|r| r.name == "kith-server-d")
        .expect("a killed replica leaves its record");
    assert!(!d_record.live);

    // The operator's view: every record, live or not, with its heartbeat.
    let admin = env.admin().await;
    let s: StatusResponse = env
        .mtls(&admin)
        .await
        .json(Method::GET, "/v1/admin/status", None::<&()>)
        .await
        .expect("status");
    let d = s
        .replicas
        .iter()
        .find(|r| r.name == "kith-server-d")
        .expect("d in status");
    assert!(!d.live && d.heartbeat_age_seconds > 15, "{d:?}");
    assert_eq!(d.advertise, d_url);
    assert_eq!(d.version, env!("CARGO_PKG_VERSION"));
    let c_status = s
        .replicas
        .iter()
        .find(|r| r.name == "kith-server-c")
        .expect("c in status");
    assert!(c_status.live, "{c_status:?}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_process_under_a_live_name_takes_the_record_over_and_the_first_leaves_it() {
    let env = Env::start_on(
        Some(std::sync::Arc::new(kith_store::MemStore::new())),
        Settings::default(),
        |o| o,
    )
    .await;
    let first = replica(&env, "kith-server-twin").await;
    let second = replica(&env, "kith-server-twin").await;
    let record = |env: &Env| {
        let a = env.authority.clone();
        async move {
            a.replicas()
                .await
                .expect("registry")
                .into_iter()
                .filter(|r| r.name == "kith-server-twin")
                .map(|r| r.advertise)
                .collect::<Vec<_>>()
        }
    };
    // One key per name, so one record: the twins take it from each other
    // (with a warning). Once the first stops, the second's stays.
    first.stop().await;
    let start = Instant::now();
    let want = vec![second.url.clone()];
    while record(&env).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            record(&env).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        record(&env).await,
        want,
        "the first left the second's record alone"
    );
    second.stop().await;
    assert!(record(&env).await.is_empty(), "the second removed its own");
}

/// Who holds the maintenance lease, polled until `ok` says so.
async fn until_holder(env: &Env, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let held = env
            .authority
            .lease_holder(kith_authority::MAINTENANCE_LEASE)
            .await
            .expect("read the lease");
        if let Some(h) = held
            .clone()
            .filter(|h| h.expires > env.authority.now() && ok(&h.holder))
        {
            return h.holder;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "lease: {held:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_at_a_time_runs_the_maintenance_and_another_takes_over() {
    let env = Env::start_on(
        Some(std::sync::Arc::new(kith_store::MemStore::new())),
        Settings::default(),
        |o| o,
    )
    .await;
    let tick = Duration::from_millis(100);
    let b = replica_every(&env, "kith-server-b", tick).await;
    let c = replica_every(&env, "kith-server-c", tick).await;
    // The harness's server took the lease at its first tick (every minute,
    // for three minutes): B and C wait for it to expire.
    env.clock.advance(time::Duration::minutes(4));
    let first = until_holder(&env, |h| h == "kith-server-b" || h == "kith-server-c").await;
    // Many ticks later the same one still holds it: the others never took
    // it over while it renewed.
    for _ in 0..10 {
        tokio::time::sleep(tick).await;
        let now = until_holder(&env, |_| true).await;
        assert_eq!(now, first, "the holder keeps the lease while it renews");
    }
    // The holder stops cleanly (the lease is released): the other takes it.
    let (stopped, other, rest) = if first == "kith-server-b" {
        (b, "kith-server-c", c)
    } else {
        (c, "kith-server-b", b)
    };
    stopped.stop().await;
    until_holder(&env, |h| h == other).await;
    rest.stop().await;
}
