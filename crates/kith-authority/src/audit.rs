//! The audit trail: one record per operation that changes state, under
//! `audit/` (see [`crate::keys::audit_key`]), and the refusals and repeated
//! reads of authenticated callers, counted and summarised within the limits
//! of [`AuditLimits`] (the counting is in `refusals`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::authority::Authority;
use crate::error::Error;
use crate::records::AuditRecord;
use crate::refusals::{Decision, Summary};

pub use crate::refusals::AuditLimits;

/// The outcome of an operation that was done.
const OK: &str = "ok";
/// The outcome of a refusal whose caller named no error code.
const REFUSED: &str = "refused";

impl Authority {
    /// Append to the audit trail: a record of this process's chain (see
    /// `audit_chain`), carrying the request id of the request being served,
    /// if any ([`crate::with_request_id`]).
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), Error> {
        self.audit_outcome(actor, action, subject, detail, OK).await
    }

    /// [`Authority::audit`] with an outcome other than `ok`.
    pub(crate) async fn audit_outcome(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
        outcome: &str,
    ) -> Result<(), Error> {
        let rec = AuditRecord {
            at: self.now(),
            actor: actor.to_string(),
            action: action.to_string(),
            subject: subject.to_string(),
            detail: detail.to_string(),
            outcome: outcome.to_string(),
            request_id: crate::request_id::current_request_id(),
            writer: String::new(),
            seq: 0,
            prev: String::new(),
            mac: String::new(),
        };
        self.append_audit(rec).await
    }
}

impl Authority {
    /// Record that `actor` was refused `action` on `subject`, within the
    /// limits of [`AuditLimits`]: the first refusal of a window is recorded
    /// now, the others are counted into one summary written when the window
    /// ends. `Err(RateLimited)` when the identity is past its limit (answer
    /// that instead of the refusal); `Err` too if the record cannot be written.
    pub async fn audit_refusal(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), Error> {
        self.audit_counted(true, REFUSED, actor, action, subject, detail)
            .await
    }

    /// [`Authority::audit_refusal`] whose outcome is the error code the
    /// caller is about to answer.
    pub(crate) async fn audit_refused(
        &self,
        code: kith_api::ErrorCode,
        actor: &str,
        action: &str,
        subject: &str,
    ) -> Result<(), Error> {
        self.audit_counted(true, code.as_str(), actor, action, subject, "")
            .await
    }

    /// Record an action an identity may repeat at will (a node reading a
    /// secret it may read): the first of a window for this identity, action
    /// and subject now, the repeats as one summary when the window ends.
    pub(crate) async fn audit_repeatable(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), Error> {
        self.audit_counted(false, OK, actor, action, subject, detail)
            .await
    }

    async fn audit_counted(
        &self,
        refusal: bool,
        outcome: &str,
        actor: &str,
        action: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), Error> {
        let (decision, ended, schedule) = self.inner.refusals.note(
            refusal,
            outcome,
            (actor, action, subject),
            self.now(),
            Instant::now(),
        );
        self.write_summaries(ended).await;
        if let Some(at) = schedule {
            self.schedule_summaries(at);
        }
        match decision {
            Decision::Record => {
                self.audit_outcome(actor, action, subject, detail, outcome)
                    .await
            }
            Decision::Counted => Ok(()),
            Decision::Limited(retry_after) => Err(Error::RateLimited { retry_after }),
        }
    }

    /// Admit a renewal of `node` within [`AuditLimits::max_renewals`] per
    /// window; past it, record a `renew-limited` refusal and refuse.
    pub(crate) async fn limit_renewals(&self, node: &str) -> Result<(), Error> {
        let actor = format!("node:{node}");
        let max = self.inner.refusals.limits.max_renewals;
        match self
            .inner
            .refusals
            .admit(&actor, "renew", max, Instant::now())
        {
            Ok(()) => Ok(()),
            Err(retry_after) => {
                self.audit_refused(
                    kith_api::ErrorCode::RateLimited,
                    &actor,
                    "renew-limited",
                    node,
                )
                .await?;
                Err(Error::RateLimited { retry_after })
            }
        }
    }

    /// Write the summaries of every window still open, now (at shutdown,
    /// so that no count is lost).
    pub async fn flush_audit_summaries(&self) {
        let due = self.inner.refusals.take_due(Instant::now(), Duration::ZERO);
        self.write_summaries(due).await;
    }

    /// After `at`, write the summaries that are due. The task holds the
    /// authority weakly: it does not keep a dropped one alive.
    fn schedule_summaries(&self, at: Instant) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime: the summary is written at this identity's next
            // refusal, or by flush_audit_summaries.
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let window = self.inner.refusals.limits.window;
        rt.spawn(async move {
            // A little after the end, so that the window is surely due.
            let wake = at + Duration::from_millis(100);
            tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
            let Some(inner) = weak.upgrade() else { return };
            let authority = Authority { inner };
            let due = authority.inner.refusals.take_due(Instant::now(), window);
            authority.write_summaries(due).await;
        });
    }

    async fn write_summaries(&self, summaries: Vec<Summary>) {
        for s in summaries {
            let written = self
                .audit_outcome(&s.actor, &s.action, &s.subject, &s.detail, &s.outcome)
                .await;
            if let Err(e) = written {
                // The count is not lost from the log, only from the store.
                tracing::error!(error = %e, summary = %s.detail, "writing a refusal summary failed");
            }
        }
    }
}
