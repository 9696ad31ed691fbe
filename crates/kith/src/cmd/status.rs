//! `kith status`: the server's view of the cluster.

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
        print_json(&s);
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
            "  authority {:<10} root until {}, intermediate until {}, CRL #{} ({} entries)",
            au.name, au.root_not_after, au.intermediate_not_after, au.crl_number, au.crl_entries
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
    Ok(())
}
