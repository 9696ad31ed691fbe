//! `kith authority add`.

use std::path::Path;

use clap::{Args, Subcommand};
use kith_authority::Settings;
use kith_pki::KeyType;

use crate::args::{key_type_parser, PassphraseArg};
use crate::node_files::write_bundle;
use crate::output::CliError;
use crate::util;

#[derive(Subcommand, Debug)]
pub(crate) enum AuthorityCommand {
    /// Add an authority with its own root and intermediate.
    Add(AuthorityAddArgs),
}

pub(crate) async fn run(dir: &Path, cmd: AuthorityCommand) -> Result<(), CliError> {
    match cmd {
        AuthorityCommand::Add(a) => authority_add(dir, a).await,
    }
}

#[derive(Args, Debug)]
pub(crate) struct AuthorityAddArgs {
    /// Name of the new authority (a DNS label, e.g. api).
    name: String,
    /// Key type of its root and intermediate.
    #[arg(long, default_value = "p256", value_parser = key_type_parser)]
    key_type: KeyType,
    #[command(flatten)]
    pass: PassphraseArg,
}

pub(crate) async fn authority_add(dir: &Path, a: AuthorityAddArgs) -> Result<(), CliError> {
    kith_pki::validate_label("authority name", &a.name)?;
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    authority.add_authority(&a.name, a.key_type).await?;
    write_bundle(dir, &authority)?;
    let pin = hex::encode(kith_pki::spki_pin(&authority.root_cert(&a.name)?)?);
    println!(
        "added authority {} ({}); root pin sha256:{pin}",
        a.name, a.key_type
    );
    println!(
        "issue from it with `kith cert issue ... --authority {}`",
        a.name
    );
    Ok(())
}
