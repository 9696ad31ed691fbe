//! Refusals in the audit trail, bounded per identity.
//!
//! Every refusal of an authenticated caller is worth recording, but one
//! record per refusal lets any node write to the CA's disk as fast as it can
//! send requests. So refusals are counted per identity and action in fixed
//! windows: the first of a window is recorded as it happens, the others are
//! counted, and when the window ends one record says "N more refusals of X
//! by Y between T1 and T2". An identity thus causes at most two records per
//! action and window, whatever it sends. Past [`AuditLimits::max_refusals`]
//! in a window, the answer itself becomes [`Error::RateLimited`].
//!
//! Reads a node may repeat at will (a secret it is allowed to read) are
//! aggregated the same way, per identity, action and subject, but never
//! refused: the subjects are the operator's, so their number is bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[cfg(doc)]
use crate::error::Error;

/// Identities and actions tracked at once; past it the oldest windows are
/// summarised early, so memory stays bounded whoever refuses.
const MAX_TRACKED: usize = 65_536;
/// Subjects named in a summary (the rest are counted, not named).
const MAX_SUBJECTS: usize = 5;

/// What one identity can make the CA record: how its refusals and repeated
/// reads are summarised, and how many refusals and renewals it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditLimits {
    /// The counting window: each identity and action gets at most one
    /// individual record and one summary per window.
    pub window: Duration,
    /// Refusals per identity and action in one window that are answered as
    /// refusals; the ones past it are answered [`Error::RateLimited`].
    pub max_refusals: u32,
    /// Renewals per node in one window (each writes certificates); the
    /// ones past it are refused [`Error::RateLimited`], recorded as
    /// `renew-limited` refusals.
    pub max_renewals: u32,
}

impl Default for AuditLimits {
    /// One minute, 30 refusals, 10 renewals.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            max_refusals: 30,
            max_renewals: 10,
        }
    }
}

/// The refusals of one identity and action in the current window.
struct Window {
    /// Refusals (limited, subjects sampled) or repeats of one subject.
    refusal: bool,
    /// What its records say of the outcome (`ok`, or the refusal's code).
    outcome: String,
    started: Instant,
    refusals: u64,
    /// Refusals counted but not recorded one by one.
    suppressed: u64,
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
    subjects: Vec<String>,
    other_subjects: bool,
    flush_scheduled: bool,
}

/// A summary record to write.
pub(crate) struct Summary {
    pub(crate) actor: String,
    pub(crate) action: String,
    pub(crate) subject: String,
    pub(crate) detail: String,
    /// `ok` for repeated reads, the refusal's error code for refusals.
    pub(crate) outcome: String,
}

impl Window {
    fn new(refusal: bool, outcome: &str, started: Instant) -> Self {
        Self {
            refusal,
            outcome: outcome.to_string(),
            started,
            refusals: 1,
            suppressed: 0,
            first: None,
            last: None,
            subjects: Vec::new(),
            other_subjects: false,
            flush_scheduled: false,
        }
    }

    fn summary(self, key: &Key) -> Option<Summary> {
        let (actor, action) = (&key.0, &key.1);
        let (first, last) = (self.first?, self.last?);
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
        let (first, last, n) = (fmt(first), fmt(last), self.suppressed);
        let detail = if self.refusal {
            let mut subjects = self.subjects.join(", ");
            if self.other_subjects {
                subjects.push_str(" and others");
            }
            format!("{n} more refusals of {action} by {actor} between {first} and {last}; subjects: {subjects}")
        } else {
            format!(
                "{n} more of {action} by {actor} on {} between {first} and {last}",
                key.2
            )
        };
        Some(Summary {
            actor: actor.to_string(),
            action: action.to_string(),
            subject: self.subjects.first().cloned().unwrap_or_default(),
            detail,
            outcome: self.outcome,
        })
    }
}

/// What to do with one refusal.
pub(crate) enum Decision {
    /// The first of its window: record it.
    Record,
    /// Counted for the summary; answer the refusal as usual.
    Counted,
    /// Counted; answer [`Error::RateLimited`].
    Limited(Duration),
}

/// Actor, action, and the subject for repeats (empty for refusals).
type Key = (String, String, String);

/// Per identity and action refusal counts.
pub(crate) struct RefusalLimiter {
    pub(crate) limits: AuditLimits,
    windows: Mutex<HashMap<Key, Window>>,
    /// Actions admitted per actor and action: when the window started, how many.
    admitted: Mutex<HashMap<(String, String), (Instant, u32)>>,
}

impl RefusalLimiter {
    pub(crate) fn new(limits: AuditLimits) -> Self {
        Self {
            limits,
            windows: Mutex::new(HashMap::new()),
            admitted: Mutex::new(HashMap::new()),
        }
    }

    /// Admit one more `action` by `actor` if fewer than `max` were admitted
    /// in its window; else how long until the window ends.
    pub(crate) fn admit(
        &self,
        actor: &str,
        action: &str,
        max: u32,
        now: Instant,
    ) -> Result<(), Duration> {
        let window = self.limits.window;
        let mut map = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
        let key = (actor.to_string(), action.to_string());
        if !map.contains_key(&key) && map.len() >= MAX_TRACKED {
            map.retain(|_, (started, _)| now.duration_since(*started) < window);
        }
        let entry = map.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        if entry.1 >= max {
            return Err((entry.0 + window).saturating_duration_since(now));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Count one refusal (or repeat, when `refusal` is false). Also returns
    /// the summaries of windows that ended (to be written now) and, when
    /// this one is the first counted in its window, when that window ends
    /// (to schedule its summary).
    pub(crate) fn note(
        &self,
        refusal: bool,
        outcome: &str,
        (actor, action, subject): (&str, &str, &str),
        at: OffsetDateTime,
        now: Instant,
    ) -> (Decision, Vec<Summary>, Option<Instant>) {
        let window = self.limits.window;
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut ended = Vec::new();
        let key = (
            actor.to_string(),
            action.to_string(),
            if refusal {
                String::new()
            } else {
                subject.to_string()
            },
        );
        if map
            .get(&key)
            .is_some_and(|w| now.duration_since(w.started) >= window)
        {
            if let Some(w) = map.remove(&key) {
                ended.extend(w.summary(&key));
            }
        }
        if !map.contains_key(&key) && map.len() >= MAX_TRACKED {
            ended.extend(take_ended(&mut map, now, window));
            if map.len() >= MAX_TRACKED {
                // Still full of live windows: close them all early.
                ended.extend(take_ended(&mut map, now, Duration::ZERO));
            }
        }
        let Some(w) = map.get_mut(&key) else {
            map.insert(key, Window::new(refusal, outcome, now));
            return (Decision::Record, ended, None);
        };
        w.refusals += 1;
        w.suppressed += 1;
        w.first.get_or_insert(at);
        w.last = Some(at);
        if !w.subjects.iter().any(|s| s == subject) {
            if w.subjects.len() < MAX_SUBJECTS {
                w.subjects.push(subject.to_string());
            } else {
                w.other_subjects = true;
            }
        }
        let ends = w.started + window;
        let schedule = (!w.flush_scheduled).then_some(ends);
        w.flush_scheduled = true;
        let decision = if refusal && w.refusals > u64::from(self.limits.max_refusals) {
            Decision::Limited(ends.saturating_duration_since(now))
        } else {
            Decision::Counted
        };
        (decision, ended, schedule)
    }

    /// Take the summaries of every window ended by `now` (all of them with
    /// a zero `window`), dropping those windows.
    pub(crate) fn take_due(&self, now: Instant, window: Duration) -> Vec<Summary> {
        let mut map = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        take_ended(&mut map, now, window)
    }
}

fn take_ended(map: &mut HashMap<Key, Window>, now: Instant, window: Duration) -> Vec<Summary> {
    let ended: Vec<_> = map
        .iter()
        .filter(|(_, w)| now.duration_since(w.started) >= window)
        .map(|(k, _)| k.clone())
        .collect();
    ended
        .into_iter()
        .filter_map(|k| map.remove(&k)?.summary(&k))
        .collect()
}
