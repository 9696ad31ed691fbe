//! `kith ca show` and `kith ca export-key`.

use kith_api::ErrorCode;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use kith_authority::{ClusterInfo, Settings, DEFAULT_AUTHORITY, LOCAL_OPERATOR};
use kith_nodedir as nodedir;
use kith_pki::{CaKind, Inspected};
use serde_json::json;
use time::OffsetDateTime;

use crate::args::{which_parser, PassphraseArg};
use crate::output::{print_json, CliError};
use crate::util::{self, rfc3339, split_path};

#[derive(Subcommand, Debug)]
pub(crate) enum CaCommand {
    /// Authorities, roots, intermediates, validity left and SPKI pins.
    Show,
    /// Export a CA private key as PKCS#8 ENCRYPTED PRIVATE KEY (openssl reads it).
    ExportKey(ExportKeyArgs),
}

pub(crate) async fn run(dir: &Path, cmd: CaCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        CaCommand::Show => ca_show(dir, json).await,
        CaCommand::ExportKey(a) => export_key(dir, a).await,
    }
}

pub(crate) async fn ca_show(dir: &Path, json_out: bool) -> Result<(), CliError> {
    let store = util::open_store(dir)?;
    let info = ClusterInfo::load(&*store).await?;
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
    for a in &info.authorities {
        auths.push(json!({
            "name": a.name,
            "key_type": a.key_type,
            "root": describe(&a.root_cert)?,
            "intermediate": describe(&a.intermediate_cert)?,
            "root_pin_sha256": hex::encode(kith_pki::spki_pin(&a.root_cert)?),
        }));
    }
    if json_out {
        print_json(&json!({
            "cluster": info.cluster,
            "created": rfc3339(info.created),
            "authorities": auths,
        }));
        return Ok(());
    }
    println!(
        "cluster {} (initialised {})",
        info.cluster,
        rfc3339(info.created)
    );
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

pub(crate) async fn export_key(dir: &Path, a: ExportKeyArgs) -> Result<(), CliError> {
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
