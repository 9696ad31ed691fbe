//! Reading the audit trail: listing it in one global order, and verifying
//! every writer's chain (see `audit_chain` for how they are written).
//!
//! The global order is (time, writer, sequence number): records of one
//! writer keep their chain order (a writer's clock is read under its append
//! lock), and records of different writers at the same instant are ordered
//! by writer name. Legacy records (before chains) sort by time, writer "".

use kith_api::wire::{
    AuditBreak, AuditChainView, AuditPage, AuditRecordView, AuditVerifyReport, MAX_AUDIT_PAGE,
};
use kith_store::{Entry, Store};
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit_state::{legacy_set, parse_record_key, HeadRecord, MacKey, SeedRecord};
use crate::authority::Authority;
use crate::error::Error;
use crate::keys;
use crate::records::{from_json, AuditRecord};

/// Which records `kith audit ls` wants.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only records by or about this node: actor `node:<name>`, or subject `<name>`.
    pub node: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// At most this many (1 to [`MAX_AUDIT_PAGE`]; 0 is the maximum).
    pub limit: usize,
}

/// What a process knows of a chain that the store alone cannot vouch for:
/// the last (sequence number, MAC) it wrote. A head rolled back together
/// with the tail of its chain verifies on its own; against an anchor it
/// does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditAnchor {
    /// The writer.
    pub writer: String,
    /// The highest sequence number it wrote.
    pub seq: u64,
    /// That record's MAC (hex).
    pub mac: String,
}

impl From<&AuditRecord> for AuditRecordView {
    fn from(r: &AuditRecord) -> Self {
        Self {
            id: String::new(),
            at: r.at.format(&Rfc3339).unwrap_or_else(|_| r.at.to_string()),
            actor: r.actor.clone(),
            action: r.action.clone(),
            subject: r.subject.clone(),
            outcome: r.outcome.clone(),
            detail: r.detail.clone(),
            request_id: r.request_id.clone(),
            writer: r.writer.clone(),
            seq: r.seq,
        }
    }
}

/// The audit records of `store` that match `q`, in the global order, at
/// most one page. Needs no key: listing vouches for nothing (`verify` does).
pub async fn list_audit(store: &dyn Store, q: &AuditQuery) -> Result<AuditPage, Error> {
    let limit = match q.limit {
        0 => MAX_AUDIT_PAGE,
        n => n.min(MAX_AUDIT_PAGE),
    };
    let node_actor = q.node.as_ref().map(|n| format!("node:{n}"));
    let mut matched: Vec<(AuditRecord, String)> = Vec::new();
    for e in store.list(keys::AUDIT_PREFIX).await? {
        // A record that does not parse is verify's to report, not ls's.
        let Ok(r) = from_json::<AuditRecord>(&e.key, &e.value) else {
            continue;
        };
        if q.since.is_some_and(|t| r.at < t)
            || q.action.as_ref().is_some_and(|a| *a != r.action)
            || q.node
                .as_ref()
                .is_some_and(|n| r.subject != *n && Some(&r.actor) != node_actor.as_ref())
        {
            continue;
        }
        matched.push((r, e.key));
    }
    matched.sort_by(|(a, ka), (b, kb)| {
        (a.at, &a.writer, a.seq, ka).cmp(&(b.at, &b.writer, b.seq, kb))
    });
    let more = matched.len() > limit;
    let records = matched
        .into_iter()
        .take(limit)
        .map(|(r, key)| AuditRecordView {
            id: key,
            ..AuditRecordView::from(&r)
        })
        .collect();
    Ok(AuditPage { records, more })
}

/// One writer's entries as listed.
#[derive(Default)]
struct Chain {
    records: Vec<(u64, Entry)>,
    head: Option<Entry>,
}

impl Authority {
    /// Verify every audit chain in the store, and this process's own chain
    /// against what it wrote (its anchor). See [`Authority::verify_audit_with`].
    pub async fn verify_audit(&self) -> Result<AuditVerifyReport, Error> {
        let own = self
            .inner
            .audit
            .anchor()
            .map(|(writer, seq, mac)| AuditAnchor { writer, seq, mac });
        self.verify_audit_with(own.as_slice()).await
    }

    /// Verify every audit chain: each record's MAC, its link to the one
    /// before, the numbering (a gap is a deleted record, a record under
    /// another's number a moved one), the head's MAC, and that the chain
    /// reaches its head (a shorter chain is a truncated one). `anchors`
    /// are heads known from elsewhere (a running server's memory): a store
    /// head behind one was rolled back. Every break is reported with the
    /// key of the record (or head) where it is.
    pub async fn verify_audit_with(
        &self,
        anchors: &[AuditAnchor],
    ) -> Result<AuditVerifyReport, Error> {
        let key = self.audit_mac_key().await?;
        let store = self.store();
        let mut chains: BTreeMap<String, Chain> = BTreeMap::new();
        let mut breaks = Vec::new();
        let mut legacy = 0u64;
        let records = store.list(keys::AUDIT_PREFIX).await?;
        check_legacy(&key, &**store, &records, &mut breaks).await?;
        for e in records {
            match parse_record_key(&e.key) {
                Ok(Some((writer, seq))) => chains
                    .entry(writer.to_string())
                    .or_default()
                    .records
                    .push((seq, e)),
                Ok(None) => legacy += 1,
                Err(()) => breaks.push(AuditBreak {
                    id: e.key.clone(),
                    problem: "not an audit record key".into(),
                }),
            }
        }
        for e in store.list(keys::AUDIT_HEAD_PREFIX).await? {
            let writer = e.key[keys::AUDIT_HEAD_PREFIX.len()..].to_string();
            chains.entry(writer).or_default().head = Some(e);
        }
        for a in anchors {
            chains.entry(a.writer.clone()).or_default();
        }
        let mut views = Vec::new();
        let mut total = 0u64;
        for (writer, mut chain) in chains {
            chain.records.sort_by_key(|(seq, _)| *seq);
            let anchor = anchors.iter().find(|a| a.writer == writer);
            let view = verify_chain(&key, &writer, &chain, anchor, &mut breaks);
            total += view.records;
            views.push(view);
        }
        breaks.sort_by(|a, b| a.id.cmp(&b.id));
        let orphans = store
            .list(keys::AUDIT_ORPHAN_PREFIX)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect();
        Ok(AuditVerifyReport {
            ok: breaks.is_empty(),
            records: total,
            legacy,
            chains: views,
            breaks,
            orphans,
        })
    }
}

/// The legacy records must be those the seed record vouches for: one
/// added later (forged: it would need no key) is named, as is a change.
async fn check_legacy(
    key: &MacKey,
    store: &dyn Store,
    records: &[Entry],
    breaks: &mut Vec<AuditBreak>,
) -> Result<(), Error> {
    let seed = store
        .get(keys::AUDIT_KEY_KEY)
        .await?
        .ok_or_else(|| Error::Integrity(format!("{} vanished", keys::AUDIT_KEY_KEY)))?;
    let vouched = from_json::<SeedRecord>(&seed.key, &seed.value)?.legacy;
    if !key.legacy_is_authentic(&vouched) {
        breaks.push(AuditBreak {
            id: keys::AUDIT_KEY_KEY.into(),
            problem: "its account of the legacy records is not authentic".into(),
        });
        return Ok(());
    }
    let now = legacy_set(records);
    if now.count == vouched.count && now.digest == vouched.digest {
        return Ok(());
    }
    let mut named = false;
    for e in records {
        if matches!(parse_record_key(&e.key), Ok(None)) && e.key > vouched.last_key {
            named = true;
            breaks.push(AuditBreak {
                id: e.key.clone(),
                problem: "a legacy record made after the chains began: forged".into(),
            });
        }
    }
    if !named {
        breaks.push(AuditBreak {
            id: now.last_key,
            problem: format!(
                "the legacy records were changed: {} now, {} when the chains began",
                now.count, vouched.count
            ),
        });
    }
    Ok(())
}

fn verify_chain(
    key: &MacKey,
    writer: &str,
    chain: &Chain,
    anchor: Option<&AuditAnchor>,
    breaks: &mut Vec<AuditBreak>,
) -> AuditChainView {
    let mut report = |id: String, problem: String| breaks.push(AuditBreak { id, problem });
    // The MAC of each record, by sequence number, as stored.
    let mut macs: BTreeMap<u64, String> = BTreeMap::new();
    // The MAC the next record must name; `None` after a record that is
    // not where it belongs (its successor's link is then not judged twice).
    let (mut expected, mut prev) = (1u64, Some(String::new()));
    for (seq, e) in &chain.records {
        let id = e.key.clone();
        let Ok(r) = serde_json::from_slice::<AuditRecord>(&e.value) else {
            report(id, "not a readable audit record".into());
            expected = seq + 1;
            prev = None;
            continue;
        };
        if *seq > expected {
            report(
                id.clone(),
                if *seq == expected + 1 {
                    format!("record {expected} before it is missing (deleted)")
                } else {
                    format!(
                        "records {expected} to {} before it are missing (deleted)",
                        seq - 1
                    )
                },
            );
        }
        let moved = r.writer != writer || r.seq != *seq;
        if moved {
            report(
                id.clone(),
                format!(
                    "holds record {} of writer {:?}: moved or swapped",
                    r.seq, r.writer
                ),
            );
        } else if !key.record_is_authentic(&r) {
            report(
                id.clone(),
                "its MAC does not match its content: edited, or forged without the key".into(),
            );
        } else if *seq == expected && prev.as_ref().is_some_and(|p| *p != r.prev) {
            report(
                id.clone(),
                "does not follow the record before it: reordered or replaced".into(),
            );
        }
        macs.insert(*seq, r.mac.clone());
        expected = seq + 1;
        prev = (!moved).then_some(r.mac);
    }
    let last = chain.records.last().map_or(0, |(s, _)| *s);
    let hk = keys::audit_head_key(writer);
    let mut head_seq = 0;
    match &chain.head {
        None if last > 0 => report(hk, format!("the chain has {last} records but no head")),
        None => {}
        Some(e) => match serde_json::from_slice::<HeadRecord>(&e.value) {
            Err(_) => report(hk, "not a readable chain head".into()),
            Ok(h) if h.writer != writer || !key.head_is_authentic(&h) => report(
                hk,
                "its MAC does not match: edited, or forged without the key".into(),
            ),
            Ok(h) => {
                head_seq = h.seq;
                if h.seq > last {
                    report(
                        keys::audit_record_key(writer, last + 1),
                        format!(
                            "missing: the head vouches for {} records, the chain stops at {last} (truncated)",
                            h.seq
                        ),
                    );
                } else if h.seq > 0 && macs.get(&h.seq) != Some(&h.last_mac) {
                    report(
                        keys::audit_record_key(writer, h.seq),
                        "is not the record its head vouches for: replaced".into(),
                    );
                }
            }
        },
    }
    if let Some(a) = anchor {
        if head_seq < a.seq || last < a.seq {
            report(
                keys::audit_record_key(writer, head_seq.min(last) + 1),
                format!(
                    "missing: the running server wrote {} records, the store's chain stops at {} (head and tail rolled back)",
                    a.seq,
                    head_seq.min(last)
                ),
            );
        } else if macs.get(&a.seq) != Some(&a.mac) {
            report(
                keys::audit_record_key(writer, a.seq),
                "is not the record the running server wrote: replaced".into(),
            );
        }
    }
    AuditChainView {
        writer: writer.to_string(),
        records: chain.records.len() as u64,
        head_seq,
        unanchored: last.saturating_sub(head_seq),
    }
}
