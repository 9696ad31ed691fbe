//! `kith vault rotate`.

use kith_api::ErrorCode;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use kith_authority::Settings;
use serde_json::json;

use crate::output::{print_json, CliError};
use crate::util::Home;
use crate::util::{self, progress_bar};

#[derive(Subcommand, Debug)]
pub(crate) enum VaultCommand {
    /// A new master key: reseal every CA key and secret data key under it.
    Rotate(RotateArgs),
}

pub(crate) async fn run(dir: &Home, cmd: VaultCommand, json: bool) -> Result<(), CliError> {
    match cmd {
        VaultCommand::Rotate(a) => vault_rotate(dir, a, json).await,
    }
}

#[derive(Args, Debug)]
pub(crate) struct RotateArgs {
    /// File holding the passphrase (else KITH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

pub(crate) async fn vault_rotate(dir: &Home, a: RotateArgs, json: bool) -> Result<(), CliError> {
    let pass = util::read_secret(
        a.passphrase_file.as_deref(),
        "KITH_PASSPHRASE",
        Some(util::Prompt {
            text: "CA passphrase: ",
            confirm: false,
        }),
    )?
    .ok_or_else(|| {
        CliError::new(
            ErrorCode::PassphraseRequired,
            "this command needs the CA passphrase",
        )
        .hint("pass --passphrase-file FILE or set KITH_PASSPHRASE")
    })?;
    let store = util::open_store(dir).await?;
    let authority = kith_authority::Authority::open(
        store,
        Arc::new(kith_authority::SystemClock),
        pass.as_bytes(),
        Settings::default(),
    )
    .await?;
    let bar = Arc::new(progress_bar(0, !json && std::io::stderr().is_terminal()));
    bar.set_message("resealing");
    let b2 = bar.clone();
    let report = authority
        .rotate_master(
            pass.as_bytes(),
            Arc::new(move |done, total| {
                b2.set_length(total as u64);
                b2.set_position(done as u64);
            }),
        )
        .await?;
    bar.finish_and_clear();
    if json {
        print_json(&json!({
            "master_version": report.master_version,
            "authorities": report.authorities,
            "secret_versions": report.secret_versions,
        }));
    } else {
        println!(
            "master key rotated to version {}: {} authorities and {} secret versions resealed; the old key is gone",
            report.master_version, report.authorities, report.secret_versions
        );
    }
    Ok(())
}
