//! What `kith audit ls` and `kith audit verify` receive from a server
//! (`GET /v1/admin/audit`, `GET /v1/admin/audit/verify`), and what they
//! print with `--json` when they work offline.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Largest page of `GET /v1/admin/audit` (and the default of `kith audit ls`).
pub const MAX_AUDIT_PAGE: usize = 1000;

/// One audit record as listed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditRecordView {
    /// Its store key (`audit/<writer>/<seq>`, or a legacy unchained key).
    pub id: String,
    /// When (RFC 3339).
    pub at: String,
    /// Who: `admin:<name>`, `node:<name>`, `local-operator`, ...
    pub actor: String,
    /// What (`token-create`, `join`, `secret-read`, ...).
    pub action: String,
    /// On what.
    pub subject: String,
    /// `ok`, or the error code of a refusal.
    pub outcome: String,
    /// Details (never secret material).
    pub detail: String,
    /// The request it was made for, when it came through the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The chain it belongs to (a server's name, or `local-…` for an
    /// offline command); empty for a legacy record.
    pub writer: String,
    /// Its place in the writer's chain, from 1; 0 for a legacy record.
    pub seq: u64,
}

/// `GET /v1/admin/audit`: records in the global order (time, then writer,
/// then sequence number), at most one page.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditPage {
    /// The records.
    pub records: Vec<AuditRecordView>,
    /// More records matched than the page holds: ask again with `since`
    /// set to the last one's time.
    pub more: bool,
}

/// Where an audit chain breaks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditBreak {
    /// The store key of the record (or head) where it breaks.
    pub id: String,
    /// What is wrong there.
    pub problem: String,
}

/// One writer's chain as verified.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditChainView {
    /// The writer.
    pub writer: String,
    /// Records in its chain.
    pub records: u64,
    /// The sequence number its head vouches for.
    pub head_seq: u64,
    /// Authentic records past the head (a writer stopped between writing a
    /// record and advancing its head): not a break.
    pub unanchored: u64,
}

/// `GET /v1/admin/audit/verify` and `kith audit verify --json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct AuditVerifyReport {
    /// No chain breaks.
    pub ok: bool,
    /// Chained records verified.
    pub records: u64,
    /// Records from before the chain existed: neither vouched for nor
    /// counted as breaks.
    pub legacy: u64,
    /// Every writer's chain.
    pub chains: Vec<AuditChainView>,
    /// Every break found, in key order.
    pub breaks: Vec<AuditBreak>,
    /// Records moved out of a chain because they sat past a gap in it (the
    /// rest of a write cut short by a crash, or something planted), by
    /// key: not part of any chain, kept to be looked at.
    #[serde(default)]
    pub orphans: Vec<String>,
}
