//! Connection caps: how many connections are open, in all and per source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::{lock, Limits, Quiet, Rate, Source};
use crate::throttle::Buckets;

/// Counts open connections, in all and per source.
#[derive(Debug)]
pub(crate) struct Gate {
    max: usize,
    per_source: usize,
    /// New connections per source, if limited.
    rate: Option<Buckets>,
    open: Mutex<Open>,
    refusals: Mutex<Quiet>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<Source, usize>,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    Full,
    SourceFull,
    SourceRate,
}

/// A connection's place under the caps, given back when it drops.
#[derive(Debug)]
pub(crate) struct Slot {
    gate: Arc<Gate>,
    source: Source,
}

impl Gate {
    pub(crate) fn new(max: usize, per_source: usize, rate: Option<Rate>) -> Arc<Self> {
        Arc::new(Self {
            max,
            per_source,
            rate: rate.map(Buckets::new),
            open: Mutex::default(),
            refusals: Mutex::default(),
        })
    }

    /// A slot for a new connection from `source`, if both caps allow it.
    pub(crate) fn admit(self: &Arc<Self>, source: Source) -> Result<Slot, Refused> {
        let mut open = lock(&self.open);
        if open.total >= self.max {
            return Err(Refused::Full);
        }
        if open.by_source.get(&source).copied().unwrap_or(0) >= self.per_source {
            return Err(Refused::SourceFull);
        }
        if let Some(rate) = &self.rate {
            rate.take(source, Instant::now())
                .map_err(|_| Refused::SourceRate)?;
        }
        let n = open.by_source.entry(source).or_insert(0);
        *n += 1;
        open.total += 1;
        Ok(Slot {
            gate: self.clone(),
            source,
        })
    }

    /// Log a refusal, at most once every 10 s.
    pub(crate) fn refused(&self, why: Refused, source: Source) {
        let Some(n) = lock(&self.refusals).note(Instant::now(), Duration::from_secs(10)) else {
            return;
        };
        match why {
            Refused::Full => tracing::warn!(
                refused = n,
                cap = self.max,
                "connection cap reached: refusing new connections (--max-connections)"
            ),
            Refused::SourceFull => tracing::warn!(
                refused = n,
                %source,
                cap = self.per_source,
                "a source holds its connection cap: refusing its new connections \
                 (--max-connections-per-source)"
            ),
            Refused::SourceRate => tracing::warn!(
                refused = n,
                %source,
                "a source opens connections too fast: refusing them (--connection-rate)"
            ),
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        lock(&self.open).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.gate.open);
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// Lower `limits` to what the process may open: raise the soft descriptor
/// limit towards the hard one if the caps need it, else shrink the caps, so
/// that connections can never starve the store or `accept` of descriptors.
pub(crate) fn fit_descriptors(limits: &mut Limits) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // Descriptors kept for everything but client connections: the store,
    // the listener, logs, NATS connections, files being written.
    const RESERVE: u64 = 256;
    let want = limits.max_connections as u64 + RESERVE;
    let mut lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    if soft >= want {
        return;
    }
    let target = lim.maximum.map_or(want, |hard| hard.min(want));
    if target > soft {
        lim.current = Some(target);
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!(error = %e, "raising the descriptor limit failed");
        }
    }
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if soft < want {
        let fit = usize::try_from(soft.saturating_sub(RESERVE).max(16)).unwrap_or(16);
        tracing::warn!(
            asked = limits.max_connections,
            allowed = fit,
            descriptor_limit = soft,
            "the descriptor limit (ulimit -n) is too low for the connection cap: lowering the cap"
        );
        limits.max_connections = fit;
        limits.max_connections_per_source = limits.max_connections_per_source.min(fit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_counts_per_source_and_in_all_and_gives_slots_back() {
        let gate = Gate::new(3, 2, None);
        let (a, b) = (
            Source::of([10, 0, 0, 1].into()),
            Source::of([10, 0, 0, 2].into()),
        );
        let a1 = gate.admit(a).expect("first");
        let _a2 = gate.admit(a).expect("second");
        assert_eq!(gate.admit(a).err(), Some(Refused::SourceFull));
        let _b1 = gate.admit(b).expect("other source");
        assert_eq!(gate.admit(b).err(), Some(Refused::Full));
        drop(a1);
        assert_eq!(gate.open(), 2);
        assert!(gate.admit(a).is_ok(), "a freed slot is reusable");
    }
}
