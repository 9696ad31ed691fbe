//! `kith cert ls`: every certificate this CA has issued.

use clap::Args;
use hyper::Method;
use kith_api::wire::CertificateView;
use kith_api::ErrorCode;
use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::admin::AdminArgs;
use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, relative, rfc3339};

#[derive(Args, Debug)]
pub(crate) struct LsArgs {
    /// Only this node's certificates.
    #[arg(long)]
    node: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

/// One row of the list, from the store or the server.
struct Row {
    serial: String,
    node: String,
    role: String,
    profile: String,
    authority: String,
    issued_at: OffsetDateTime,
    not_after: OffsetDateTime,
    fingerprint: String,
    revoked: Option<(String, OffsetDateTime)>,
}

/// Every certificate: through the running server when there is one (it
/// holds the store), else from the store.
async fn load(dir: &Home, admin: &AdminArgs) -> Result<Vec<Row>, CliError> {
    if let Some(mut conn) = admin.online(dir).await? {
        let all: Vec<CertificateView> = conn
            .json(Method::GET, "/v1/admin/certs", None::<&()>)
            .await?;
        let time = |s: &str| {
            OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
                CliError::new(ErrorCode::BadResponse, format!("a time in the answer: {e}"))
            })
        };
        let mut out = Vec::new();
        for c in all {
            out.push(Row {
                issued_at: time(&c.issued_at)?,
                not_after: time(&c.not_after)?,
                revoked: match c.revoked {
                    Some(r) => Some((r.reason, time(&r.at)?)),
                    None => None,
                },
                serial: c.serial,
                node: c.node,
                role: c.role,
                profile: c.profile,
                authority: c.authority,
                fingerprint: c.fingerprint_sha256,
            });
        }
        return Ok(out);
    }
    let store = util::open_store(dir).await?;
    Ok(kith_authority::list_certificates(&*store)
        .await?
        .into_iter()
        .map(|(c, r)| Row {
            serial: c.serial,
            node: c.node,
            role: c.role,
            profile: c.profile.as_str().to_string(),
            authority: c.authority,
            issued_at: c.issued_at,
            not_after: c.not_after,
            fingerprint: c.fingerprint,
            revoked: r.map(|r| (r.reason.as_str().to_string(), r.revoked_at)),
        })
        .collect())
}

pub(crate) async fn cert_ls(dir: &Home, a: LsArgs, json: bool) -> Result<(), CliError> {
    let mut all = load(dir, &a.admin).await?;
    if let Some(n) = &a.node {
        all.retain(|c| c.node == *n);
    }
    all.sort_by(|a, b| (&a.node, a.issued_at).cmp(&(&b.node, b.issued_at)));
    let now = OffsetDateTime::now_utc();
    if json {
        print_json(&json!(all
            .iter()
            .map(|c| json!({
                "serial": c.serial,
                "node": c.node,
                "role": c.role,
                "profile": c.profile,
                "authority": c.authority,
                "not_after": rfc3339(c.not_after),
                "fingerprint_sha256": c.fingerprint,
                "revoked": c.revoked.as_ref().map(|(reason, at)| json!({"reason": reason, "at": rfc3339(*at)})),
            }))
            .collect::<Vec<_>>()));
        return Ok(());
    }
    for c in &all {
        let state = match &c.revoked {
            Some((reason, _)) => format!("revoked ({reason})"),
            None if c.not_after <= now => "expired".to_string(),
            None => relative(c.not_after, now),
        };
        println!(
            "{:<20} {:<10} {:<7} {}  {}",
            c.node, c.role, c.profile, c.serial, state
        );
    }
    Ok(())
}
