//! Per-source request rates: token buckets for requests without a client
//! certificate and for failed token guesses.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::limits::{lock, Limits, Quiet, Rate, Source};
use kith_api::ErrorCode;

/// Most sources whose rate buckets are remembered at once; past that,
/// full (idle) buckets are forgotten, and if none is, the newcomers share
/// one. Keeps a flood of distinct addresses from growing memory.
const MAX_SOURCES: usize = 65_536;

/// How often a full table may be swept for idle buckets: a sweep walks
/// every bucket, so a flood of new addresses must not trigger one each.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One token bucket per source.
#[derive(Debug)]
pub(crate) struct Buckets {
    rate: Rate,
    map: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    buckets: HashMap<Source, Bucket>,
    swept: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    quiet: Quiet,
}

impl Buckets {
    pub(crate) fn new(rate: Rate) -> Self {
        Self {
            rate,
            map: Mutex::default(),
        }
    }

    fn full(&self) -> f64 {
        f64::from(self.rate.count)
    }

    /// The bucket of `source`, refilled up to `now`.
    fn bucket<'a>(&self, table: &'a mut Table, mut source: Source, now: Instant) -> &'a mut Bucket {
        let map = &mut table.buckets;
        if !map.contains_key(&source) && map.len() >= MAX_SOURCES {
            if table
                .swept
                .is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY)
            {
                table.swept = Some(now);
                let (full, per_second) = (self.full(), self.rate.per_second());
                map.retain(|_, b| {
                    b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < full
                });
            }
            if map.len() >= MAX_SOURCES {
                source = Source::Overflow;
            }
        }
        let b = map.entry(source).or_insert_with(|| Bucket {
            tokens: self.full(),
            at: now,
            quiet: Quiet::default(),
        });
        let refill = now.duration_since(b.at).as_secs_f64() * self.rate.per_second();
        b.tokens = (b.tokens + refill).min(self.full());
        b.at = now;
        b
    }

    /// How long until one token is back (at least a second, for `Retry-After`).
    fn wait(&self, tokens: f64) -> Duration {
        let secs = ((1.0 - tokens) / self.rate.per_second()).ceil().max(1.0);
        Duration::from_secs(secs as u64)
    }

    /// Take a token; `Err(retry after)` if there is none.
    pub(crate) fn take(&self, source: Source, now: Instant) -> Result<(), (Duration, Option<u64>)> {
        let mut map = lock(&self.map);
        let per = self.rate.per;
        let b = self.bucket(&mut map, source, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let warn = b.quiet.note(now, per);
        let wait = self.wait(b.tokens);
        Err((wait, warn))
    }

    /// Whether a token is there, without taking it.
    fn peek(&self, source: Source, now: Instant) -> Result<(), (Duration, Option<u64>)> {
        let mut map = lock(&self.map);
        let per = self.rate.per;
        let b = self.bucket(&mut map, source, now);
        if b.tokens >= 1.0 {
            return Ok(());
        }
        let warn = b.quiet.note(now, per);
        let wait = self.wait(b.tokens);
        Err((wait, warn))
    }

    /// Give a token back.
    fn refund(&self, source: Source, now: Instant) {
        let mut map = lock(&self.map);
        let full = self.full();
        let b = self.bucket(&mut map, source, now);
        b.tokens = (b.tokens + 1.0).min(full);
    }

    /// Spend a token for an event that already happened (it may go below
    /// zero, so a burst of failures in flight still counts); `Some(events)`
    /// when the bucket is empty and it is time to warn.
    fn charge(&self, source: Source, now: Instant) -> Option<u64> {
        let mut map = lock(&self.map);
        let per = self.rate.per;
        let full = self.full();
        let b = self.bucket(&mut map, source, now);
        b.tokens = (b.tokens - 1.0).max(-full);
        if b.tokens < 1.0 {
            b.quiet.note(now, per)
        } else {
            None
        }
    }
}

/// The answers of a join that count as a failed token guess. The others
/// (`token-expired`, `token-used-up`, `token-revoked`, `token-wrong-cluster`)
/// are only given to a caller who holds the token's secret: the authority
/// checks the secret first. So a provisioning run that spends a token's
/// last use in parallel is not taken for a guesser.
const TOKEN_FAILURES: &[ErrorCode] = &[ErrorCode::MalformedToken, ErrorCode::InvalidToken];

/// What the throttle needs to know of a request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ask {
    pub(crate) source: Source,
    /// The connection presented a client certificate that the TLS layer verified.
    pub(crate) authenticated: bool,
    pub(crate) join: bool,
}

/// Per-source request limits.
#[derive(Debug)]
pub(crate) struct Throttle {
    public: Buckets,
    failed_joins: Buckets,
}

impl Throttle {
    pub(crate) fn new(limits: &Limits) -> Self {
        Self {
            public: Buckets::new(limits.public_requests),
            failed_joins: Buckets::new(limits.failed_joins),
        }
    }

    /// Before routing: `Err` to refuse the request unread.
    pub(crate) fn admit(&self, ask: Ask) -> Result<(), Limited> {
        let now = Instant::now();
        let source = ask.source;
        if ask.join {
            if let Err((wait, warn)) = self.failed_joins.peek(source, now) {
                if let Some(n) = warn {
                    tracing::warn!(
                        %source,
                        refused_since_last_warning = n,
                        limit = %self.failed_joins.rate,
                        "joins refused: too many failed token guesses from this source \
                         (--failed-join-rate)"
                    );
                }
                return Err(Limited(
                    wait,
                    "too many failed join attempts from this address; wait before trying again",
                ));
            }
        }
        if !ask.authenticated {
            if let Err((wait, warn)) = self.public.take(source, now) {
                if let Some(n) = warn {
                    tracing::warn!(
                        %source,
                        refused_since_last_warning = n,
                        limit = %self.public.rate,
                        "requests refused: per-source request rate exceeded (--public-rate)"
                    );
                }
                return Err(Limited(
                    wait,
                    "too many requests from this address; wait before trying again",
                ));
            }
        }
        Ok(())
    }

    /// After the answer: a successful join gives its request back, a failed
    /// token costs the source one failure.
    pub(crate) fn answered(&self, ask: Ask, answer: &Response) {
        if !ask.join {
            return;
        }
        let now = Instant::now();
        if answer.status().is_success() {
            if !ask.authenticated {
                self.public.refund(ask.source, now);
            }
            return;
        }
        let Some(code) = answer.extensions().get::<ErrorCode>().copied() else {
            return;
        };
        if !TOKEN_FAILURES.contains(&code) {
            return;
        }
        tracing::debug!(source = %ask.source, code = %code, "failed join attempt");
        if let Some(n) = self.failed_joins.charge(ask.source, now) {
            tracing::warn!(
                source = %ask.source,
                guesses_over_limit_since_last_warning = n,
                limit = %self.failed_joins.rate,
                "too many failed token guesses from one source: \
                 refusing its joins until its budget refills (--failed-join-rate)"
            );
        }
    }
}

/// A request refused by a rate (how long to wait, why): `429
/// rate-limited` with `Retry-After`.
#[derive(Debug)]
pub(crate) struct Limited(Duration, &'static str);

impl IntoResponse for Limited {
    fn into_response(self) -> Response {
        let mut r = ApiError::new(ErrorCode::RateLimited, self.1).into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(self.0.as_secs().max(1)),
        );
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn buckets_refuse_when_empty_refill_with_time_and_stay_bounded() {
        let b = Buckets::new(Rate::new(2, Duration::from_secs(10)));
        let s = Source::of([10, 0, 0, 1].into());
        let now = Instant::now();
        assert!(b.take(s, now).is_ok());
        assert!(b.take(s, now).is_ok());
        let (wait, warn) = b.take(s, now).expect_err("empty");
        assert_eq!(wait, Duration::from_secs(5));
        assert_eq!(warn, Some(1), "the first refusal warns");
        assert_eq!(
            b.take(s, now).expect_err("still empty").1,
            None,
            "once per period"
        );
        assert!(b.take(s, now + Duration::from_secs(5)).is_ok(), "refilled");
        // A flood of distinct sources: memory stays bounded.
        let later = now + Duration::from_secs(60);
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let _ = b.take(Source::of(IpAddr::V4(Ipv4Addr::from(i))), later);
        }
        assert!(lock(&b.map).buckets.len() <= MAX_SOURCES + 1);
        // Once they are idle (full again), a newcomer sweeps them away.
        let idle = later + Duration::from_secs(60);
        assert!(b.take(Source::of([10, 9, 9, 9].into()), idle).is_ok());
        assert_eq!(lock(&b.map).buckets.len(), 1, "idle buckets are forgotten");
    }
}
