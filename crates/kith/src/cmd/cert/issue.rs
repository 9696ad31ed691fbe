//! `kith cert issue`: keys and certificates for many nodes at once.

use kith_api::ErrorCode;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use kith_authority::{Identity, IssueRequest, Issued, Settings, DEFAULT_AUTHORITY, LOCAL_OPERATOR};
use kith_nodedir as nodedir;
use kith_pki::{KeyType, PrivateKey, Profile, San};
use serde_json::json;
use time::{Duration, OffsetDateTime};

mod online;

use crate::admin::AdminArgs;
use crate::args::{key_type_parser, profile_parser, PassphraseArg};
use crate::node_files::stage_node_files;
use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, progress_bar, relative, rfc3339};

#[derive(Args, Debug)]
pub(crate) struct IssueArgs {
    /// Node names (DNS labels), one folder each.
    #[arg(required = true, value_name = "NODE")]
    nodes: Vec<String>,
    /// Role of these nodes (a DNS label, e.g. worker).
    #[arg(long)]
    role: String,
    /// Profile: peer, server, client, admin.
    #[arg(long, default_value = "peer", value_parser = profile_parser)]
    profile: Profile,
    /// Extra SAN for every node: a DNS name or an IP address. Repeatable.
    #[arg(long = "san", value_name = "NAME|IP")]
    sans: Vec<String>,
    /// Directory under which each node's folder is created.
    #[arg(long, default_value = ".", value_name = "DIR")]
    out: PathBuf,
    /// Lifetime, e.g. 90d, 12h (default: the profile's, 90 days).
    #[arg(long, value_parser = util::parse_cert_ttl)]
    ttl: Option<Duration>,
    /// Key type of the node keys.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    /// Authority to issue from.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Replace node folders that already hold a key.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    /// Through a running server (`--server`, KITH_SERVER, server.json),
    /// else offline on the store.
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn cert_issue(dir: &Home, a: IssueArgs, json: bool) -> Result<(), CliError> {
    // Check everything before touching keys or state.
    let mut seen = BTreeSet::new();
    for n in &a.nodes {
        kith_pki::validate_label("node name", n)?;
        if !seen.insert(n.as_str()) {
            return Err(CliError::new(
                ErrorCode::InvalidArgument,
                format!("node {n} is named twice"),
            ));
        }
    }
    kith_pki::validate_label("role", &a.role)?;
    let sans: Vec<San> = a
        .sans
        .iter()
        .map(|s| s.parse::<San>())
        .collect::<Result<_, _>>()?;
    if !a.force {
        if let Some(n) = a
            .nodes
            .iter()
            .find(|n| a.out.join(n).join(nodedir::KEY).exists())
        {
            return Err(CliError::new(
                ErrorCode::Exists,
                format!("{} already holds a key", a.out.join(n).display()),
            )
            .hint("pass --force to issue a new key and certificate over it"));
        }
    }
    if let Some(conn) = a.admin.online(dir).await? {
        return online::cert_issue(conn, a, json).await;
    }
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    authority.root_cert(&a.authority)?; // unknown authority: fail before generating keys

    let n = a.nodes.len();
    // RSA keys take seconds each: a bar even for a few of them.
    let bar = progress_bar(n as u64 * 4, n >= 50 || a.key_type.is_rsa());
    bar.set_message("generating keys");
    let key_type = a.key_type;
    let keys = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            (0..n)
                .into_par_iter()
                .map(|_| {
                    let k = PrivateKey::generate(key_type);
                    bar.inc(1);
                    k
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| CliError::new(ErrorCode::Internal, e))??
    };
    bar.set_message("signing and recording");
    let reqs = a
        .nodes
        .iter()
        .zip(&keys)
        .map(|(node, key)| IssueRequest {
            identity: Identity {
                node: node.clone(),
                role: a.role.clone(),
                profile: a.profile,
                authority: Some(a.authority.clone()),
                ttl: a.ttl,
            },
            public_key: key.public_key(),
            extra_sans: sans.clone(),
        })
        .collect();
    let tick = bar.clone();
    let results = authority
        .issue_many(reqs, Arc::new(move || tick.inc(1)))
        .await;
    let issued: Vec<Issued> = results.into_iter().collect::<Result<_, _>>()?;
    authority.audit_issued_all(&issued, LOCAL_OPERATOR).await?;

    bar.set_message("writing files");
    let out = a.out.clone();
    let extra = a.sans.clone();
    let cluster = authority.cluster().to_string();
    let written = {
        let bar = bar.clone();
        let issued = issued.clone();
        tokio::task::spawn_blocking(move || -> Result<(), CliError> {
            use rayon::prelude::*;
            nodedir::create_dir(&out)?;
            let batch = nodedir::Batch::new();
            keys.par_iter().zip(issued.par_iter()).try_for_each(
                |(key, iss)| -> Result<(), CliError> {
                    let node_dir = out.join(&iss.record.node);
                    stage_node_files(&batch, &node_dir, key, iss, &cluster, &extra)?;
                    bar.inc(1);
                    Ok(())
                },
            )?;
            batch.commit()?;
            Ok(())
        })
    };
    written
        .await
        .map_err(|e| CliError::new(ErrorCode::Internal, e))??;
    bar.finish_and_clear();

    let now = OffsetDateTime::now_utc();
    if let Some(t) = issued.iter().find(|i| i.truncated) {
        eprintln!(
            "warning: the lifetime was cut to the issuing intermediate's expiry ({})",
            rfc3339(t.record.not_after)
        );
    }
    if json {
        print_json(&json!(issued
            .iter()
            .map(|i| json!({
                "node": i.record.node,
                "serial": i.record.serial,
                "profile": i.record.profile,
                "not_after": rfc3339(i.record.not_after),
                "truncated": i.truncated,
                "dir": a.out.join(&i.record.node),
            }))
            .collect::<Vec<_>>()));
    } else if n <= 20 {
        for i in &issued {
            println!(
                "{:<20} serial {}  expires {}  {}",
                i.record.node,
                i.record.serial,
                relative(i.record.not_after, now),
                a.out.join(&i.record.node).display()
            );
        }
    } else {
        println!(
            "issued {n} {} certificates for role {} under {}",
            a.profile,
            a.role,
            a.out.display()
        );
    }
    Ok(())
}
