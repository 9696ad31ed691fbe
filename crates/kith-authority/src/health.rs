//! What an operator's monitoring asks of the CA: when each CA certificate
//! expires, how fresh each CRL is, how many tokens, nodes, secrets and live
//! replicas there are ([`Authority::health_view`]), and which of those facts
//! need someone's attention ([`HealthView::problems`], what `kith status`
//! exits non-zero for).
//!
//! One call costs a listing of `node/`, `revoked/`, `token/`, `secret/` and
//! `replica/`: the server runs it on a timer for its metrics, never per
//! scrape.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::crl::stored_crl;
use crate::nodes::{list_nodes, NodeState};
use crate::secrets::list_secrets;
use crate::tokens::list_tokens;
use crate::{Authority, Error};

/// One CA certificate: a root or an intermediate of one authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaExpiry {
    /// The authority.
    pub authority: String,
    /// `root` or `intermediate`.
    pub role: &'static str,
    /// `active`; `prepared` or `previous` for intermediates during their
    /// renewal; `other` for the second root of a root rotation.
    pub state: &'static str,
    /// The certificate's serial, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// The stored CRL of one authority's active intermediate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlHealth {
    /// The authority.
    pub authority: String,
    /// Its CRL number (0: none signed yet).
    pub number: u64,
    /// Its nextUpdate (`None`: none signed yet).
    pub next_update: Option<OffsetDateTime>,
    /// A revocation was recorded after it was signed.
    pub behind_revocations: bool,
}

/// The state of the CA, as its monitoring sees it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HealthView {
    /// The authority's clock at the time of the view.
    pub now: OffsetDateTime,
    /// Every root and intermediate of every authority.
    pub cas: Vec<CaExpiry>,
    /// Each authority's CRL.
    pub crls: Vec<CrlHealth>,
    /// Nodes by state (`active`, `expired`, `revoked`, `removed`).
    pub nodes: BTreeMap<&'static str, usize>,
    /// The earliest expiry among the certificates of live (active or
    /// expired, not revoked or removed) nodes.
    pub earliest_node_expiry: Option<OffsetDateTime>,
    /// Tokens that may still be redeemed (not expired, revoked or used up).
    pub tokens_outstanding: usize,
    /// How many secrets are stored (never their names).
    pub secrets: usize,
    /// Replicas whose heartbeat is recent.
    pub replicas_alive: usize,
    /// Whether each authority's intermediate renewal is overdue, its root
    /// inside the rotation window (see [`HealthView::problems`]).
    pub rotation_due: Vec<(String, &'static str)>,
}

/// What needs an operator: the reasons `kith status` exits non-zero for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A CRL is past its nextUpdate, or does not list a recorded revocation.
    CrlStale,
    /// Nodes that were neither revoked nor removed hold only expired certificates.
    NodesExpired,
    /// A CA is inside its rotation window.
    RotationDue,
}

impl ProblemKind {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrlStale => "crl-stale",
            Self::NodesExpired => "nodes-expired",
            Self::RotationDue => "rotation-due",
        }
    }
}

/// One problem, with a one-line reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// One line, for a human.
    pub reason: String,
}

/// How long a prepared intermediate may stay unactivated past its
/// activation time before its renewal counts as stuck: a few maintenance
/// ticks, generously.
const ACTIVATION_SLACK: time::Duration = time::Duration::hours(1);

/// The share of a root's life left below which it is inside its rotation
/// window when no root rotation is under way (the intermediates' default
/// renew point: a root rotates only on the operator's word).
const ROOT_WINDOW_PERCENT: i32 = crate::intermediates::DEFAULT_INTERMEDIATE_RENEW_PERCENT as i32;

impl HealthView {
    /// Every problem, most urgent kind first: a stale CRL (peers may refuse
    /// everyone, or accept a revoked node), live nodes with expired
    /// certificates, then CAs inside their rotation window.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for c in &self.crls {
            if let Some(next) = c.next_update.filter(|n| *n <= self.now) {
                out.push(Problem {
                    kind: ProblemKind::CrlStale,
                    reason: format!(
                        "the CRL of authority {} (number {}) is past its next update ({})",
                        c.authority,
                        c.number,
                        rfc3339(next)
                    ),
                });
            } else if c.behind_revocations {
                out.push(Problem {
                    kind: ProblemKind::CrlStale,
                    reason: format!(
                        "the CRL of authority {} (number {}) was not re-signed after a revocation",
                        c.authority, c.number
                    ),
                });
            }
        }
        let expired = self.nodes.get("expired").copied().unwrap_or(0);
        if expired > 0 {
            out.push(Problem {
                kind: ProblemKind::NodesExpired,
                reason: format!(
                    "{expired} node(s) neither revoked nor removed hold only expired certificates"
                ),
            });
        }
        for (authority, what) in &self.rotation_due {
            out.push(Problem {
                kind: ProblemKind::RotationDue,
                reason: format!("authority {authority}: {what}"),
            });
        }
        out.sort_by_key(|p| p.kind);
        out
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn ca(
    authority: &str,
    role: &'static str,
    state: &'static str,
    der: &[u8],
) -> Result<CaExpiry, Error> {
    let (not_before, not_after) = kith_pki::certificate_validity(der)?;
    Ok(CaExpiry {
        authority: authority.to_string(),
        role,
        state,
        serial: kith_pki::certificate_serial(der)?.to_hex(),
        not_before,
        not_after,
    })
}

impl Authority {
    /// The CA as monitoring sees it (see the module docs for its cost).
    pub async fn health_view(&self) -> Result<HealthView, Error> {
        let store = &**self.store();
        let now = self.now();
        let mut cas = Vec::new();
        let mut crls = Vec::new();
        let mut rotation_due = Vec::new();
        for name in self.authority_names() {
            let roots = self.authority_roots(&name)?;
            for (i, root) in roots.iter().enumerate() {
                cas.push(ca(
                    &name,
                    "root",
                    if i == 0 { "active" } else { "other" },
                    root,
                )?);
            }
            let status = self.intermediate_status(&name)?;
            cas.push(ca(&name, "intermediate", "active", &status.active.cert)?);
            if let Some((p, _)) = &status.prepared {
                cas.push(ca(&name, "intermediate", "prepared", &p.cert)?);
            }
            for p in &status.previous {
                cas.push(ca(&name, "intermediate", "previous", &p.cert)?);
            }
            // The intermediate renews itself: due and not started, or
            // started and not finished long after it should have.
            let stuck = match &status.prepared {
                None => now >= status.renew_at,
                Some((_, activate_at)) => now >= *activate_at + ACTIVATION_SLACK,
            };
            if stuck {
                rotation_due.push((
                    name.clone(),
                    "the intermediate is past its renewal point and has not been renewed (is a server running maintenance?)",
                ));
            }
            // A root rotates on the operator's word only; one under way
            // (cross-signed certificates published) is the operator's answer.
            if let Some(root) = roots.first() {
                let (nb, na) = kith_pki::certificate_validity(root)?;
                let left = na - now;
                let life = na - nb;
                if self.cross_signed(&name)?.is_empty() && left * 100 < life * ROOT_WINDOW_PERCENT {
                    rotation_due.push((
                        name.clone(),
                        "the root has less than a third of its life left: rotate it (kith ca rotate --root)",
                    ));
                }
            }
            let crl = stored_crl(store, &name).await?;
            crls.push(CrlHealth {
                number: crl.as_ref().map_or(0, |c| c.number),
                next_update: crl.as_ref().map(|c| c.next_update),
                behind_revocations: self.crl_is_stale(&name).await?,
                authority: name,
            });
        }
        let mut nodes = BTreeMap::new();
        let mut earliest_node_expiry: Option<OffsetDateTime> = None;
        for (n, state) in list_nodes(store, now).await? {
            *nodes.entry(state.as_str()).or_default() += 1;
            if matches!(state, NodeState::Active | NodeState::Expired) {
                earliest_node_expiry =
                    Some(earliest_node_expiry.map_or(n.not_after, |e| e.min(n.not_after)));
            }
        }
        let tokens_outstanding = list_tokens(store)
            .await?
            .iter()
            .filter(|t| t.state(now) == "active")
            .count();
        let secrets = list_secrets(store).await?.len();
        let replicas_alive = self.replicas().await?.iter().filter(|r| r.live).count();
        Ok(HealthView {
            now,
            cas,
            crls,
            nodes,
            earliest_node_expiry,
            tokens_outstanding,
            secrets,
            replicas_alive,
            rotation_due,
        })
    }
}
