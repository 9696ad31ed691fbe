//! The summary: the targets with the measured numbers, and the
//! breakdown of each cell (see `breakdown.rs` for the method).

use super::*;

/// The targets with the measured numbers, then where the time goes.
pub(crate) fn summary(rows: &[Row], cs: &[usize], latency: &[(usize, StoreLatency)]) {
    let find = |store: &str, op: &str, c: usize| {
        rows.iter()
            .find(|r| r.store == store && r.op == op && r.c == c)
    };
    let verdict = |ok: bool| if ok { "PASS" } else { "MISS" };
    println!();
    for &c in cs {
        if let (Some(r), Some(cf)) = (find("embedded", "renew", c), find("embedded", "cfssl", c)) {
            println!(
                "c={c}: kith renewals / cfssl signs = {:.2}x (target at c=64: 2.5x)",
                r.rate / cf.rate
            );
        }
    }
    if let Some(j) = find("embedded", "join", 1) {
        println!("join p99 at c=1: {:.2} ms (target < 5 ms)", j.p99);
    }
    for (store, what) in [("nats1", "1 replica"), ("nats3", "3 replicas")] {
        if let (Some(n), Some(e)) = (find(store, "renew", 64), find("embedded", "renew", 64)) {
            let share = 100.0 * n.rate / e.rate;
            println!(
                "target: NATS renewals at c=64, {what}: {:.0}/s = {share:.0} % of the embedded store's {:.0}/s (>= 40 %): {}",
                n.rate,
                e.rate,
                verdict(share >= 40.0)
            );
        }
    }
    if let Some(j) = find("nats1", "join", 1) {
        println!(
            "target: join p99 at c=1, NATS, 1 replica: {:.2} ms (<= 20 ms): {}",
            j.p99,
            verdict(j.p99 <= 20.0)
        );
    }
    println!();
    println!("where the time goes (per operation; CPU from /proc/<pid>/stat over the cell, store calls from nats-server /connz and the stream sequence):");
    println!(
        "{:<9} {:<6} {:>4} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>8}  store estimate",
        "store",
        "op",
        "c",
        "kith cpu",
        "nats cpu",
        "driver",
        "nats %",
        "cores",
        "msgs/op",
        "writes/op"
    );
    for r in rows {
        let Some(u) = r.usage else { continue };
        let cores = (u.kith_ms + u.nats_ms + u.driver_ms) * r.rate / 1e3;
        let est = latency
            .iter()
            .find(|(c, _)| *c == r.c)
            .filter(|_| r.store != "embedded")
            .map(|(_, l)| {
                format!(
                    "store ≈ {:.1} ms of {:.1} ms per {}",
                    l.estimate(u.msgs, u.writes),
                    r.mean,
                    r.op
                )
            })
            .unwrap_or_default();
        println!(
            "{:<9} {:<6} {:>4} {:>9.2} {:>9.2} {:>9.2} {:>6.0}% {:>7.2} {:>8.1} {:>8.1}  {est}",
            r.store,
            r.op,
            r.c,
            u.kith_ms,
            u.nats_ms,
            u.driver_ms,
            u.nats_share(),
            cores,
            u.msgs,
            u.writes
        );
    }
    for (c, l) in latency {
        println!(
            "NATS store call latency at c={c} (one client, R3): get {:.2} ms, conditional update {:.2} ms, create {:.2} ms (means)",
            l.get, l.update, l.create
        );
    }
}
