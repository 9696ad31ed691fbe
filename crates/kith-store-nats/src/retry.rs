//! Riding out leader elections and reconnects: which failures are worth
//! another try, and the bounded loop that tries.
//!
//! While JetStream elects a leader or the client reconnects, requests time
//! out, find "no responders" (which async-nats reports as stream-not-found
//! for a publish) or get "temporarily unavailable" (HTTP-like code 503).
//! None of these mean "absent" or "refused": the operation is tried again
//! until the retry window closes, then reported as [`Error::Unavailable`].

use std::time::{Duration, Instant};

use kith_store::Error;

/// What one attempt came to, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The cluster did not answer, or answered "not now": try again.
    Transient(String),
    /// A definite answer the caller turns into an error.
    Final(Error),
}

impl Fail {
    pub(crate) fn backend(e: impl std::fmt::Display) -> Self {
        Self::Final(Error::Backend(e.to_string()))
    }
}

/// Whether a JetStream API error (by its HTTP-like code) means "not now".
pub(crate) fn transient_api(code: usize) -> bool {
    // 503: no leader / cluster temporarily unavailable; 408: request timeout.
    matches!(code, 503 | 408)
}

/// Classify an async-nats error by its JetStream API error, if it carries
/// one; anything without one (a timeout, a broken connection, no
/// responders) is transient.
pub(crate) fn classify<K>(err: async_nats::error::Error<K>) -> Fail
where
    K: Clone + std::fmt::Debug + std::fmt::Display + PartialEq + Send + Sync + 'static,
{
    let text = err.to_string();
    match api_code(&err) {
        Some(code) if !transient_api(code) => Fail::Final(Error::Backend(text)),
        _ => Fail::Transient(text),
    }
}

/// The HTTP-like code of the JetStream API error inside `err`, if any.
fn api_code(err: &(dyn std::error::Error + 'static)) -> Option<usize> {
    api_error(err).map(|e| e.code())
}

/// The JetStream API error inside `err`, if any.
pub(crate) fn api_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a async_nats::jetstream::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js);
        }
        cur = e.source();
    }
    None
}

/// The pause before attempt `n` (0-based): quick at first, at most about
/// 1 s, with jitter so two writers refused together do not retry in step.
pub(crate) fn backoff(n: u32) -> Duration {
    let base = (20u64 << n.min(6)).min(1000);
    let mut b = [0u8; 1];
    let jitter = match aws_lc_rs::rand::fill(&mut b) {
        Ok(()) => u64::from(b[0]) * base / 255,
        Err(_) => 0,
    };
    Duration::from_millis(base / 2 + jitter / 2)
}

/// Run `attempt` until it succeeds, fails for good, or `window` has passed
/// since the first try. The attempt number is passed in: a write retried
/// after an unanswered attempt checks whether that attempt landed.
pub(crate) async fn retry<T, F, Fut>(
    window: Duration,
    what: &str,
    mut attempt: F,
) -> Result<T, Error>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = Result<T, Fail>>,
{
    let start = Instant::now();
    let mut n = 0u32;
    loop {
        match attempt(n).await {
            Ok(v) => return Ok(v),
            Err(Fail::Final(e)) => return Err(e),
            Err(Fail::Transient(why)) => {
                let pause = backoff(n);
                if start.elapsed() + pause > window {
                    return Err(Error::Unavailable(format!(
                        "NATS did not complete {what} within {} s: {why}",
                        window.as_secs()
                    )));
                }
                tracing::debug!(what, attempt = n, %why, "NATS store: retrying");
                tokio::time::sleep(pause).await;
                n += 1;
            }
        }
    }
}

/// [`classify`] for consumer creation, whose JetStream API error is its
/// kind rather than its source: a refusal (a bad filter, no permission) is
/// final, not retried for the whole window.
pub(crate) fn classify_consumer(err: async_nats::jetstream::stream::ConsumerError) -> Fail {
    match err.kind() {
        async_nats::jetstream::stream::ConsumerErrorKind::JetStream(j)
            if !transient_api(j.code()) =>
        {
            Fail::Final(Error::Backend(j.to_string()))
        }
        _ => Fail::Transient(err.to_string()),
    }
}
