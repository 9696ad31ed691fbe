//! Upper bounds of the durations the authority accepts, and checked time
//! arithmetic. A lifetime or window comes from an operator's flag, the API
//! or a library caller; an absurd one (a hundred million days) must be a
//! clear `invalid-argument`, never an overflow panic in a date past 9999.

use time::{Duration, OffsetDateTime};

use crate::error::Error;

/// Longest certificate lifetime: that of the intermediate that signs it
/// (five years), which a leaf never outlives anyway.
pub const MAX_CERT_TTL: Duration = crate::INTERMEDIATE_TTL;
/// Shortest leaf lifetime a token or a server default may set: a minute,
/// short enough to watch a renewal happen, long enough for the renewal
/// at two thirds of it to come before the expiry on a loaded machine.
pub const MIN_CERT_TTL: Duration = Duration::minutes(1);
/// Longest renewal grace window (after expiry, a certificate may still renew
/// for this long by proving its old key): one year.
pub const MAX_RENEW_GRACE: Duration = Duration::days(365);
/// Longest CRL validity (nextUpdate − thisUpdate): one year.
pub const MAX_CRL_VALIDITY: Duration = Duration::days(365);

/// Refuse `d` unless `0 < d <= max` (or `0 <= d` when `zero_ok`).
pub(crate) fn check(what: &str, d: Duration, max: Duration, zero_ok: bool) -> Result<(), Error> {
    let low_ok = if zero_ok {
        d >= Duration::ZERO
    } else {
        d > Duration::ZERO
    };
    if low_ok && d <= max {
        return Ok(());
    }
    let low = if zero_ok { "not negative" } else { "positive" };
    Err(Error::Invalid(format!(
        "the {what} must be {low} and at most {} days",
        max.whole_days()
    )))
}

/// `t + d`, or a clear error where the date would leave what can be represented.
pub(crate) fn later(t: OffsetDateTime, d: Duration, what: &str) -> Result<OffsetDateTime, Error> {
    t.checked_add(d)
        .ok_or_else(|| Error::Invalid(format!("the {what} ends past the year 9999")))
}

/// Check a leaf lifetime an operator chose (a token's `--cert-ttl`, a
/// server's `--leaf-ttl`): from [`MIN_CERT_TTL`] to [`MAX_CERT_TTL`], whole
/// seconds.
pub fn check_cert_ttl(d: Duration) -> Result<(), Error> {
    if d < MIN_CERT_TTL || d > MAX_CERT_TTL || d.subsec_nanoseconds() != 0 {
        return Err(Error::Invalid(format!(
            "a certificate lifetime must be whole seconds from 1 minute to {} days (got {d})",
            MAX_CERT_TTL.whole_days()
        )));
    }
    Ok(())
}
