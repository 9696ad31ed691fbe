//! `kith passphrase change`.

use kith_api::ErrorCode;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use kith_authority::{KdfParams, Settings};

use crate::output::CliError;
use crate::util;
use crate::util::Home;

#[derive(Subcommand, Debug)]
pub(crate) enum PassphraseCommand {
    /// Wrap the master key under a new passphrase (nothing else is rewritten).
    Change(PassphraseChangeArgs),
}

pub(crate) async fn run(dir: &Home, cmd: PassphraseCommand) -> Result<(), CliError> {
    match cmd {
        PassphraseCommand::Change(a) => passphrase_change(dir, a).await,
    }
}

#[derive(Args, Debug)]
pub(crate) struct PassphraseChangeArgs {
    /// File holding the current passphrase (else KITH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// File holding the new passphrase (else KITH_NEW_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,
    /// Argon2id memory cost for the new passphrase, in MiB (19 at least).
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    kdf_memory_mib: u32,
}

pub(crate) async fn passphrase_change(dir: &Home, a: PassphraseChangeArgs) -> Result<(), CliError> {
    let authority = util::unlock(dir, a.passphrase_file.as_deref(), Settings::default()).await?;
    let new = util::read_secret(
        a.new_passphrase_file.as_deref(),
        "KITH_NEW_PASSPHRASE",
        Some(util::Prompt {
            text: "New CA passphrase: ",
            confirm: true,
        }),
    )?
    .ok_or_else(|| {
        CliError::new(ErrorCode::PassphraseRequired, "no new passphrase given")
            .hint("pass --new-passphrase-file FILE or set KITH_NEW_PASSPHRASE")
    })?;
    let kdf = KdfParams {
        m_kib: a.kdf_memory_mib.saturating_mul(1024),
        ..KdfParams::default()
    };
    authority.change_passphrase(new.as_bytes(), kdf).await?;
    println!("passphrase changed: the master key is wrapped under the new one; the old one opens nothing");
    Ok(())
}
