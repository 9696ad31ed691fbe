//! What every route that revokes answers: the revocation views, and the
//! debounced publication of the CRLs a revocation touched. Shared by the
//! admin handlers (`admin`, `operators`), so neither imports the other.

use kith_api::wire::RevokedView;
use kith_authority::RevokeOutcome;

use super::{rfc3339, AppState};
use crate::error::ApiError;

impl AppState {
    /// Publish the CRLs touched by `outcomes` (debounced), then report
    /// each touched authority's CRL number.
    pub(super) async fn publish(
        &self,
        outcomes: &[RevokeOutcome],
    ) -> Result<Vec<(String, u64)>, ApiError> {
        for o in outcomes {
            if let RevokeOutcome::Revoked(r) = o {
                self.metrics.revoked(&r.authority, r.reason.as_str());
            }
        }
        let mut touched: Vec<&str> = outcomes
            .iter()
            .filter(|o| matches!(o, RevokeOutcome::Revoked(_)))
            .map(|o| o.record().authority.as_str())
            .collect();
        touched.sort_unstable();
        touched.dedup();
        for name in touched {
            self.crls.changed(&self.authority, name).await?;
        }
        let all: Vec<&str> = outcomes
            .iter()
            .map(|o| o.record().authority.as_str())
            .collect();
        Ok(self.authority.crl_numbers(&all).await)
    }
}

/// One view per revoked certificate, saying whether this call revoked it.
pub(super) fn revoked_views(outcomes: &[RevokeOutcome]) -> Vec<RevokedView> {
    outcomes
        .iter()
        .map(|o| {
            let r = o.record();
            RevokedView {
                serial: r.serial.clone(),
                node: r.node.clone(),
                reason: r.reason.as_str().to_string(),
                revoked_at: rfc3339(r.revoked_at),
                newly_revoked: matches!(o, RevokeOutcome::Revoked(_)),
            }
        })
        .collect()
}
