//! What one client may cost the server before it has proven anything.
//!
//! Three layers, each cheap for the server and each bounded in memory:
//! - [`crate::gate`]: how many connections are open, in all and per source
//!   address; a connection over either cap is closed right after `accept`,
//!   before any TLS work and without a task of its own.
//! - the deadlines of [`crate::conn`]: the TLS handshake, a whole request
//!   (headers and body) and the idle time between requests.
//! - [`crate::throttle`]: token buckets per source for requests without a client
//!   certificate, and a stricter one for failed join attempts (token
//!   guesses), answered `429 rate-limited` with `Retry-After`.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host usually owns a
//! whole /64, so counting its addresses one by one would count nothing).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Connection and request limits of a [`crate::Server`], part of
/// [`crate::Options`]. The defaults serve a busy cluster (and the load
/// benchmark's 64 concurrent clients on one address) while keeping one
/// hostile address from holding more than an eighth of the connections.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// How long a client may take to finish the TLS handshake (10 s).
    pub handshake_timeout: Duration,
    /// How long a client may take to send a whole request, headers and
    /// body, from its first byte (10 s). Also the time a new connection
    /// has to start its first request.
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request, or
    /// take to read an answer (30 s).
    pub idle_timeout: Duration,
    /// Connections open at once (1024); more are closed right after
    /// `accept`. Lowered at start if the process may not open that many
    /// descriptors.
    pub max_connections: usize,
    /// Connections open at once from one source address (128).
    pub max_connections_per_source: usize,
    /// New connections per source, each a TLS handshake the server pays
    /// for: off by default, since the load benchmark's joins open 2,000 a
    /// second from one address; set it where clients keep connections alive.
    pub new_connections: Option<Rate>,
    /// Requests without a client certificate (join, CA bundle, CRLs,
    /// health, unknown paths) per source: 600 per 10 s. A join that
    /// succeeds is given back: its token authenticated it.
    pub public_requests: Rate,
    /// Failed token guesses (joins answered `malformed-token` or
    /// `invalid-token`: an unknown token or a wrong secret) per source: 10
    /// per minute. Past that every join from the source is refused until
    /// the bucket refills.
    pub failed_joins: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_source: 128,
            new_connections: None,
            public_requests: Rate::new(600, Duration::from_secs(10)),
            failed_joins: Rate::new(10, Duration::from_secs(60)),
        }
    }
}

/// Longest timeout or rate period accepted.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

impl Limits {
    /// Refuse limits that cannot work: zero caps or timeouts, a per-source
    /// cap above the total, periods over a day.
    pub fn check(&self) -> Result<(), String> {
        for (name, d) in [
            ("handshake timeout", self.handshake_timeout),
            ("request timeout", self.request_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if d.is_zero() || d > MAX_PERIOD {
                return Err(format!("the {name} must be between 1 ms and 24 h"));
            }
        }
        if self.max_connections == 0 || self.max_connections_per_source == 0 {
            return Err("connection caps must be at least 1".into());
        }
        if self.max_connections_per_source > self.max_connections {
            return Err(format!(
                "the per-source connection cap ({}) is above the total cap ({})",
                self.max_connections_per_source, self.max_connections
            ));
        }
        if let Some(r) = &self.new_connections {
            r.check()?;
        }
        self.public_requests.check()?;
        self.failed_joins.check()
    }
}

/// `count` events per `period` from one source, in bursts of up to
/// `count`: a token bucket holding `count` that refills at `count/period`.
/// Written `N/PERIOD`, e.g. `600/10s` or `10/1m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// The bucket's size: events allowed at once.
    pub count: u32,
    /// The time it takes an empty bucket to fill again.
    pub per: Duration,
}

impl Rate {
    /// `count` per `per`.
    pub const fn new(count: u32, per: Duration) -> Self {
        Self { count, per }
    }

    fn check(&self) -> Result<(), String> {
        if self.count == 0 || self.per.is_zero() || self.per > MAX_PERIOD {
            return Err(format!(
                "rate {self}: the count must be at least 1 and the period between 1 ms and 24 h"
            ));
        }
        Ok(())
    }

    pub(crate) fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, Timeout(self.per))
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `N/PERIOD`: `600/10s`, `10/1m`, `5/s` (a bare unit is one of it).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?}: expected COUNT/PERIOD, like 600/10s or 10/1m");
        let (count, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) {
            parse_timeout(per)?
        } else {
            parse_timeout(&format!("1{per}"))?
        };
        let rate = Rate::new(count, per);
        rate.check()?;
        Ok(rate)
    }
}

/// Parse a timeout or period: a number and a unit, `ms`, `s`, `m` or `h`
/// (`10s`, `500ms`, `1m`), at most 24 hours and more than zero.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, like 10s or 1m"))?;
    let ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    let d = n
        .checked_mul(ms)
        .map(Duration::from_millis)
        .filter(|d| !d.is_zero() && *d <= MAX_PERIOD)
        .ok_or_else(|| format!("{s:?}: must be more than zero and at most 24h"))?;
    Ok(d)
}

/// A timeout as `kith serve` flags write it: a number and a unit, `ms`,
/// `s`, `m` or `h` (`10s`, `500ms`, `1m`), more than zero and at most 24 h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl FromStr for Timeout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_timeout(s).map(Timeout)
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        match ms {
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}m", ms / 60_000),
            _ if ms.is_multiple_of(1000) => write!(f, "{}s", ms / 1000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

/// Where a connection comes from, as the limits count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
    /// Everyone, once more sources are tracked than the rate limits keep.
    Overflow,
}

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Net((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(a) => write!(f, "{a}"),
            Self::V6Net(n) => {
                let addr = std::net::Ipv6Addr::from(u128::from(*n) << 64);
                write!(f, "{addr}/64")
            }
            Self::Overflow => f.write_str("(untracked sources)"),
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data is counters only: a panic elsewhere cannot leave them unusable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// At most one warning per period for a noisy event, with a count of the
/// events it summarises.
#[derive(Debug, Default)]
pub(crate) struct Quiet {
    last: Option<Instant>,
    since: u64,
}

impl Quiet {
    /// Count one event; `Some(events since the last warning)` when it is
    /// time to warn again.
    pub(crate) fn note(&mut self, now: Instant, period: Duration) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|t| now.duration_since(t) < period) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_timeouts_parse_print_and_refuse_nonsense() {
        assert_eq!(
            "600/10s".parse::<Rate>(),
            Ok(Rate::new(600, Duration::from_secs(10)))
        );
        assert_eq!(
            "5/s".parse::<Rate>(),
            Ok(Rate::new(5, Duration::from_secs(1)))
        );
        let d = Limits::default();
        for r in [d.public_requests, d.failed_joins] {
            assert_eq!(r.to_string().parse::<Rate>(), Ok(r), "{r} round-trips");
        }
        for bad in [
            "",
            "10",
            "0/1s",
            "10/0s",
            "10/2d",
            "x/1s",
            "10/1x",
            "99999999999/1s",
        ] {
            assert!(bad.parse::<Rate>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        for bad in ["0s", "25h", "18446744073709551615h", "10", "s", "-1s"] {
            assert!(parse_timeout(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(d.check(), Ok(()));
        let mut l = d.clone();
        l.max_connections_per_source = l.max_connections + 1;
        assert!(l.check().is_err());
    }

    #[test]
    fn sources_are_ipv4_addresses_or_ipv6_slash_64s() {
        let a = |s: &str| Source::of(s.parse().expect("ip"));
        assert_eq!(a("2001:db8::1"), a("2001:db8::ffff:1"));
        assert_ne!(a("2001:db8::1"), a("2001:db8:0:1::1"));
        assert_eq!(a("::ffff:10.0.0.1"), a("10.0.0.1"));
        assert_eq!(a("2001:db8::1").to_string(), "2001:db8::/64");
    }
}
