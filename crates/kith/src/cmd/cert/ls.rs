//! `kith cert ls`: every certificate this CA has issued.

use std::path::Path;

use clap::Args;
use serde_json::json;
use time::OffsetDateTime;

use crate::output::{print_json, CliError};
use crate::util::{self, relative, rfc3339};

#[derive(Args, Debug)]
pub(crate) struct LsArgs {
    /// Only this node's certificates.
    #[arg(long)]
    node: Option<String>,
}

pub(crate) async fn cert_ls(dir: &Path, a: LsArgs, json: bool) -> Result<(), CliError> {
    let store = util::open_store(dir)?;
    let mut all = kith_authority::list_certificates(&*store).await?;
    if let Some(n) = &a.node {
        all.retain(|(c, _)| c.node == *n);
    }
    all.sort_by(|(a, _), (b, _)| (&a.node, a.issued_at).cmp(&(&b.node, b.issued_at)));
    let now = OffsetDateTime::now_utc();
    if json {
        print_json(&json!(all
            .iter()
            .map(|(c, r)| json!({
                "serial": c.serial,
                "node": c.node,
                "role": c.role,
                "profile": c.profile,
                "authority": c.authority,
                "not_after": rfc3339(c.not_after),
                "fingerprint_sha256": c.fingerprint,
                "revoked": r.as_ref().map(|r| json!({"reason": r.reason, "at": rfc3339(r.revoked_at)})),
            }))
            .collect::<Vec<_>>()));
        return Ok(());
    }
    for (c, r) in &all {
        let state = match r {
            Some(r) => format!("revoked ({})", r.reason),
            None if c.not_after <= now => "expired".to_string(),
            None => relative(c.not_after, now),
        };
        println!(
            "{:<20} {:<10} {:<7} {}  {}",
            c.node,
            c.role,
            c.profile.as_str(),
            c.serial,
            state
        );
    }
    Ok(())
}
