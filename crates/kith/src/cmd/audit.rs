//! `kith audit`: list and verify the audit trail, through a running server
//! when one is configured, else offline on the store.

use clap::{Args, Subcommand};
use hyper::Method;
use std::collections::BTreeMap;

use kith_api::wire::{AuditBreak, AuditPage, AuditVerifyReport, MAX_AUDIT_PAGE};
use kith_api::ErrorCode;
use kith_authority::{AuditAnchor, AuditQuery, Settings};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::admin::AdminArgs;
use crate::args::PassphraseArg;
use crate::output::{print_json, CliError};
use crate::util::{self, Home};

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// List audit records, oldest first (by time, then writer, then sequence).
    Ls(AuditLsArgs),
    /// Verify every audit chain: exits non-zero naming the record where one
    /// breaks (edited, forged, reordered, deleted, or a truncated tail).
    /// Offline it needs the CA passphrase (the MAC key is sealed).
    Verify(AuditVerifyArgs),
}

pub(crate) async fn run(dir: &Home, cmd: AuditCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        AuditCommand::Ls(a) => ls(dir, a, json).await,
        AuditCommand::Verify(a) => verify(dir, a, json).await,
    }
}

/// `--since`: an RFC 3339 time, or a duration back from now (`1h`, `2d`).
fn parse_since(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    util::parse_duration(s)
        .map(|d| OffsetDateTime::now_utc() - d)
        .map_err(|_| format!("{s:?}: expected an RFC 3339 time or a duration such as 1h"))
}

fn parse_limit(s: &str) -> Result<usize, String> {
    s.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
        .ok_or_else(|| format!("expected 1 to {MAX_AUDIT_PAGE}"))
}

#[derive(Args, Debug)]
pub(crate) struct AuditLsArgs {
    /// Only records from this time on: RFC 3339, or a duration ago (1h, 7d).
    #[arg(long, value_parser = parse_since, value_name = "TIME")]
    since: Option<OffsetDateTime>,
    /// Only records by this node (actor node:NAME) or about it (subject NAME).
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// Only this action (token-create, join, renew, revoke, secret-read, ...).
    #[arg(long)]
    action: Option<String>,
    /// At most this many records (1 to 1000).
    #[arg(long, value_parser = parse_limit, default_value = "1000")]
    limit: usize,
    #[command(flatten)]
    admin: AdminArgs,
}

async fn ls(dir: &Home, a: AuditLsArgs, json: bool) -> Result<(), CliError> {
    let page = match a.admin.online(dir).await? {
        Some(mut conn) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(t) = a.since {
                q.append_pair("since", &util::rfc3339(t));
            }
            if let Some(n) = &a.node {
                q.append_pair("node", n);
            }
            if let Some(act) = &a.action {
                q.append_pair("action", act);
            }
            q.append_pair("limit", &a.limit.to_string());
            let path = format!("/v1/admin/audit?{}", q.finish());
            conn.json::<AuditPage>(Method::GET, &path, None::<&()>)
                .await?
        }
        None => {
            let store = util::open_store(dir).await?;
            let q = AuditQuery {
                since: a.since,
                node: a.node,
                action: a.action,
                limit: a.limit,
            };
            kith_authority::list_audit(&*store, &q).await?
        }
    };
    if json {
        print_json(&page);
        return Ok(());
    }
    println!(
        "{:<25}  {:<26}  {:<20}  {:<18}  {:<16}  {:<8}  REQUEST",
        "TIME", "WRITER/SEQ", "ACTOR", "ACTION", "SUBJECT", "OUTCOME"
    );
    for r in &page.records {
        let chain = if r.seq == 0 {
            "(legacy)".to_string()
        } else {
            format!("{}/{}", r.writer, r.seq)
        };
        println!(
            "{:<25}  {:<26}  {:<20}  {:<18}  {:<16}  {:<8}  {}",
            r.at,
            chain,
            r.actor,
            r.action,
            r.subject,
            r.outcome,
            r.request_id.as_deref().unwrap_or("-")
        );
    }
    if page.more {
        eprintln!("more records match: narrow with --since, --node or --action");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct AuditVerifyArgs {
    /// A copy of the records kept outside the store (the JSON lines of
    /// `kith serve --audit-log`): each chain must reach the last record the
    /// copy holds, so a head rolled back with its tail is caught.
    #[arg(long, value_name = "FILE")]
    anchor: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

/// The last record of each writer in the JSON-lines files `paths`.
fn read_anchors(paths: &[std::path::PathBuf]) -> Result<Vec<AuditAnchor>, CliError> {
    let mut last: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for p in paths {
        let bytes = util::read_input(p, MAX_ANCHOR_FILE)?;
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let r: AnchorLine = serde_json::from_slice(line).map_err(|e| {
                CliError::new(
                    ErrorCode::MalformedInput,
                    format!("{} line {}: not an audit record: {e}", p.display(), n + 1),
                )
            })?;
            let entry = last.entry(r.writer).or_default();
            if r.seq > entry.0 {
                *entry = (r.seq, r.mac);
            }
        }
    }
    Ok(last
        .into_iter()
        .filter(|(w, _)| !w.is_empty())
        .map(|(writer, (seq, mac))| AuditAnchor { writer, seq, mac })
        .collect())
}

/// What an anchor needs of one `--audit-log` line.
#[derive(serde::Deserialize)]
struct AnchorLine {
    #[serde(default)]
    writer: String,
    #[serde(default)]
    seq: u64,
    #[serde(default)]
    mac: String,
}

/// Largest `--anchor` file read (a log shipper rotates long before).
const MAX_ANCHOR_FILE: usize = 256 << 20;

async fn verify(dir: &Home, a: AuditVerifyArgs, json: bool) -> Result<(), CliError> {
    let anchors = read_anchors(&a.anchor)?;
    let report: AuditVerifyReport = match a.admin.online(dir).await? {
        // The server verifies, its own chain against the head it keeps;
        // the anchors are compared with the chains it reports.
        Some(mut conn) => {
            let mut report: AuditVerifyReport = conn
                .json(Method::GET, "/v1/admin/audit/verify", None::<&()>)
                .await?;
            for anchor in &anchors {
                let reach = report
                    .chains
                    .iter()
                    .find(|c| c.writer == anchor.writer)
                    .map_or(0, |c| c.head_seq.min(c.records));
                if reach < anchor.seq {
                    report.breaks.push(AuditBreak {
                        id: format!("audit/{}/{:020}", anchor.writer, reach + 1),
                        problem: format!(
                            "missing: the anchor holds {} records of this chain, the store's stops at {reach} (rolled back)",
                            anchor.seq
                        ),
                    });
                    report.ok = false;
                }
            }
            report
        }
        None => {
            let authority =
                util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
            let report = authority.verify_audit_with(&anchors).await?;
            authority.close().await;
            report
        }
    };
    if json {
        print_json(&report);
    } else {
        for b in &report.breaks {
            println!("BROKEN {}: {}", b.id, b.problem);
        }
        for c in &report.chains {
            println!(
                "chain {}: {} records, head at {}{}",
                c.writer,
                c.records,
                c.head_seq,
                if c.unanchored > 0 {
                    format!(
                        ", {} past the head (a writer stopped mid-append)",
                        c.unanchored
                    )
                } else {
                    String::new()
                }
            );
        }
        if report.legacy > 0 {
            println!(
                "{} legacy records from before the chains: not verifiable, not counted as breaks",
                report.legacy
            );
        }
        for o in &report.orphans {
            println!("ORPHAN {o}: moved out of its chain (it sat past a gap: a write cut short, or planted); look at it");
        }
    }
    match report.breaks.first() {
        None => {
            if !json {
                println!(
                    "audit trail verified: {} records in {} chains",
                    report.records,
                    report.chains.len()
                );
            }
            Ok(())
        }
        Some(b) => {
            let mut e = CliError::new(
                ErrorCode::AuditChainBroken,
                format!(
                    "the audit trail breaks at {}: {} ({} breaks in all)",
                    b.id,
                    b.problem,
                    report.breaks.len()
                ),
            );
            e.json_printed = json;
            Err(e)
        }
    }
}
