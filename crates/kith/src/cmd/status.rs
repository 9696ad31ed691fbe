//! `kith status`: the server's view of the cluster, and an exit status a
//! cron job can alert on.

use std::path::Path;

use hyper::Method;
use kith_api::wire::StatusResponse;

use crate::admin::{expiry_warning, AdminArgs, Credential};
use crate::output::{print_json, CliError};

pub(crate) async fn status(dir: &Path, a: AdminArgs, json: bool) -> Result<(), CliError> {
    // Said first, on stderr: an expired credential fails the request below.
    let cred_dir = a.admin_dir(dir);
    if let Ok(cred) = Credential::load(&cred_dir) {
        if let Some(w) = expiry_warning(&cred_dir, cred.not_after, time::OffsetDateTime::now_utc())
        {
            eprintln!("{w}");
        }
    }
    let mut conn = a.connect(dir).await?;
    let s: StatusResponse = conn
        .json(Method::GET, "/v1/admin/status", None::<&()>)
        .await?;
    if json {
        print_json(&named_json(&s));
        exit_for_problems(&s);
        return Ok(());
    }
    println!(
        "cluster {} (kith {}), server time {}",
        s.cluster, s.version, s.now
    );
    if let Some(name) = &s.server_name {
        println!("  answered by server {name}");
    }
    for au in &s.authorities {
        println!(
            "  authority {:<10} root until {}{}, intermediate until {}{}, CRL #{} ({} entries)",
            au.name,
            au.root_not_after,
            left(&s.now, &au.root_not_after),
            au.intermediate_not_after,
            left(&s.now, &au.intermediate_not_after),
            au.crl_number,
            au.crl_entries
        );
    }
    let fmt = |v: &[(String, usize)]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    println!("  nodes:  {}", fmt(&s.nodes));
    println!("  tokens: {}", fmt(&s.tokens));
    if !s.replicas.is_empty() {
        println!("  replicas:");
        for r in &s.replicas {
            println!(
                "    {:<24} {:<32} kith {:<8} heartbeat {}s ago  {}",
                r.name,
                r.advertise,
                r.version,
                r.heartbeat_age_seconds,
                if r.live { "live" } else { "not live" }
            );
        }
    }
    exit_for_problems(&s);
    Ok(())
}

/// What `kith status --help` says about its exit status.
pub(crate) const EXIT_HELP: &str = "\
Exit status (for a cron job or a monitoring check):
  0   nothing needs an operator
  1   the status could not be read (error[code]: message on stderr)
  10  crl-stale: a CRL is past its next update, or was not re-signed after a revocation
  11  nodes-expired: nodes neither revoked nor removed hold only expired certificates
  12  rotation-due: a CA is inside its rotation window (an intermediate past its renewal
      point, a third of its life left by default, and not renewed an hour after it should
      have been; or a root with less than a third of its life left and no root rotation
      under way)
  13  a problem this version does not know (a newer server)
Each problem is one line on stderr (problem[KIND]: reason), and the `problems` field
with --json. When several hold, the status is the most urgent one's (the lowest).";

/// The exit status for a problem kind (see [`EXIT_HELP`]).
fn exit_status(kind: &str) -> u8 {
    match kind {
        "crl-stale" => 10,
        "nodes-expired" => 11,
        "rotation-due" => 12,
        _ => 13,
    }
}

/// Say every problem on stderr, one line each, and exit with the most
/// urgent one's status; return if there is none.
fn exit_for_problems(s: &StatusResponse) {
    let Some(code) = s.problems.iter().map(|p| exit_status(&p.kind)).min() else {
        return;
    };
    for p in &s.problems {
        eprintln!("problem[{}]: {}", p.kind, p.reason);
    }
    // The report above must reach its reader before the process ends.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(i32::from(code));
}

/// ` (N days left)` from the server's time `now` to `until` (RFC 3339
/// both), or nothing if either does not parse.
fn left(now: &str, until: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    match (
        OffsetDateTime::parse(now, &Rfc3339),
        OffsetDateTime::parse(until, &Rfc3339),
    ) {
        (Ok(now), Ok(until)) if until <= now => " (expired)".into(),
        (Ok(now), Ok(until)) => {
            let d = until - now;
            if d.whole_days() >= 1 {
                format!(" ({} days left)", d.whole_days())
            } else {
                format!(" ({} hours left)", d.whole_hours())
            }
        }
        _ => String::new(),
    }
}

/// The status as `--json` prints it: counts by state as named fields
/// (`"nodes": {"active": 3}`) rather than the wire's pairs.
fn named_json(s: &StatusResponse) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    let named = |pairs: &[(String, usize)]| {
        serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, n)| (k.clone(), serde_json::Value::from(*n)))
                .collect(),
        )
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("nodes".into(), named(&s.nodes));
        o.insert("tokens".into(), named(&s.tokens));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::exit_status;

    #[test]
    fn each_problem_kind_has_the_status_the_help_documents() {
        for (kind, code) in [
            ("crl-stale", 10),
            ("nodes-expired", 11),
            ("rotation-due", 12),
            ("from-a-newer-server", 13),
        ] {
            assert_eq!(exit_status(kind), code, "{kind}");
            assert!(
                super::EXIT_HELP.contains(&format!("{code}  ")),
                "{code} in the help"
            );
        }
    }
}
