//! `kith ca show` and `kith ca export-key` (`kith ca rotate` is in
//! [`super::rotate`]).

use kith_api::ErrorCode;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use kith_authority::{ClusterInfo, Settings, DEFAULT_AUTHORITY, LOCAL_OPERATOR};
use kith_nodedir as nodedir;
use kith_pki::{CaKind, Inspected};
use serde_json::json;
use time::OffsetDateTime;

use hyper::Method;
use kith_api::wire::CaInfo;

use crate::admin::AdminArgs;
use crate::args::{which_parser, PassphraseArg};
use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, rfc3339, split_path};

#[derive(Subcommand, Debug)]
pub(crate) enum CaCommand {
    /// Authorities, roots, intermediates, validity left and SPKI pins.
    Show(AdminArgs),
    /// Export a CA private key as PKCS#8 ENCRYPTED PRIVATE KEY (openssl reads it).
    ExportKey(ExportKeyArgs),
    /// Rotate an authority's intermediate (`--intermediate`), or show
    /// where rotations stand (`rotate status`).
    Rotate(super::rotate::RotateArgs),
}

pub(crate) async fn run(dir: &Home, cmd: CaCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        CaCommand::Show(admin) => ca_show(dir, &admin, json).await,
        CaCommand::ExportKey(a) => export_key(dir, a).await,
        CaCommand::Rotate(a) => super::rotate::run(dir, a, json).await,
    }
}

/// One authority as `ca show` describes it, from the store or the server.
struct Shown {
    name: String,
    key_type: String,
    root: Vec<u8>,
    intermediate: Vec<u8>,
}

/// The cluster's name, creation time and authorities: through the running
/// server when there is one (it holds the store), else from the store.
async fn load(dir: &Home, admin: &AdminArgs) -> Result<(String, String, Vec<Shown>), CliError> {
    if let Some(mut conn) = admin.online(dir).await? {
        let info: CaInfo = conn.json(Method::GET, "/v1/admin/ca", None::<&()>).await?;
        let der = |pem: &str| -> Result<Vec<u8>, CliError> {
            kith_pki::certs_from_pem_or_der(pem.as_bytes())?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    CliError::new(ErrorCode::BadResponse, "no certificate in the answer")
                })
        };
        let mut out = Vec::new();
        for a in info.authorities {
            out.push(Shown {
                root: der(&a.root)?,
                intermediate: der(&a.intermediate)?,
                name: a.name,
                key_type: a.key_type,
            });
        }
        return Ok((info.cluster, info.created, out));
    }
    let store = util::open_store(dir).await?;
    let info = ClusterInfo::load(&*store).await?;
    let out = info
        .authorities
        .into_iter()
        .map(|a| Shown {
            name: a.name,
            key_type: a.key_type.as_str().to_string(),
            root: a.root_cert,
            intermediate: a.intermediate_cert,
        })
        .collect();
    Ok((info.cluster, rfc3339(info.created), out))
}

pub(crate) async fn ca_show(dir: &Home, admin: &AdminArgs, json_out: bool) -> Result<(), CliError> {
    let (cluster, created, authorities) = load(dir, admin).await?;
    let now = OffsetDateTime::now_utc();
    let describe = |der: &[u8]| -> Result<serde_json::Value, CliError> {
        let found = kith_pki::inspect(der)?;
        let Some(Inspected::Certificate(c)) = found.into_iter().next() else {
            return Err(CliError::new(
                ErrorCode::IntegrityError,
                "stored CA certificate is not a certificate",
            ));
        };
        Ok(json!({
            "subject": c.subject,
            "serial": c.serial,
            "not_before": rfc3339(c.not_before),
            "not_after": rfc3339(c.not_after),
            "days_left": (c.not_after - now).whole_days(),
            "sha256_fingerprint": c.sha256_fingerprint,
        }))
    };
    let mut auths = Vec::new();
    for a in &authorities {
        auths.push(json!({
            "name": a.name,
            "key_type": a.key_type,
            "root": describe(&a.root)?,
            "intermediate": describe(&a.intermediate)?,
            "root_pin_sha256": hex::encode(kith_pki::spki_pin(&a.root)?),
        }));
    }
    if json_out {
        print_json(&json!({
            "cluster": cluster,
            "created": created,
            "authorities": auths,
        }));
        return Ok(());
    }
    println!("cluster {cluster} (initialised {created})");
    for a in &auths {
        println!();
        println!(
            "authority {} ({})",
            a["name"].as_str().unwrap_or("?"),
            a["key_type"].as_str().unwrap_or("?")
        );
        for which in ["root", "intermediate"] {
            let c = &a[which];
            println!(
                "  {which:<13} {}  expires {} ({} days left)",
                c["subject"].as_str().unwrap_or("?"),
                c["not_after"].as_str().unwrap_or("?"),
                c["days_left"]
            );
        }
        println!(
            "  {:<13} sha256:{}",
            "root pin",
            a["root_pin_sha256"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- ca export-key

#[derive(Args, Debug)]
pub(crate) struct ExportKeyArgs {
    /// Authority whose key to export.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Which key: root or intermediate.
    #[arg(long, value_parser = which_parser)]
    which: CaKind,
    /// Where to write the encrypted key (mode 0600).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// File holding the passphrase for the exported key (else
    /// KITH_EXPORT_PASSPHRASE, else a prompt). At least 12 characters.
    #[arg(long, value_name = "FILE")]
    export_passphrase_file: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pass: PassphraseArg,
}

pub(crate) async fn export_key(dir: &Home, a: ExportKeyArgs) -> Result<(), CliError> {
    if a.out.exists() && !a.force {
        return Err(
            CliError::new(ErrorCode::Exists, format!("{} exists", a.out.display()))
                .hint("pass --force to replace it"),
        );
    }
    let export_pass = util::read_secret(
        a.export_passphrase_file.as_deref(),
        "KITH_EXPORT_PASSPHRASE",
        Some(util::Prompt {
            text: "Passphrase for the exported key: ",
            confirm: true,
        }),
    )?
    .ok_or_else(|| {
        CliError::new(
            ErrorCode::PassphraseRequired,
            "the exported key needs its own passphrase",
        )
        .hint("pass --export-passphrase-file FILE or set KITH_EXPORT_PASSPHRASE")
    })?;
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let pem = authority
        .export_key(
            &a.authority,
            a.which,
            export_pass.as_bytes(),
            LOCAL_OPERATOR,
        )
        .await?;
    let (parent, name) = split_path(&a.out)?;
    nodedir::write_atomic(&parent, &name, pem.as_bytes(), nodedir::KEY_MODE)?;
    eprintln!(
        "wrote the {} key of authority {} to {} (PKCS#8, PBES2 AES-256-CBC; `openssl pkey -in {} -passin file:...` reads it)",
        a.which.as_str(),
        a.authority,
        a.out.display(),
        a.out.display()
    );
    Ok(())
}
