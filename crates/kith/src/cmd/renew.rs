//! `kith renew`: renew this node's certificate now.

use std::path::PathBuf;

use clap::Args;

use crate::node_files::{offline_hint, print_identity};
use crate::output::CliError;

#[derive(Args, Debug)]
pub(crate) struct RenewArgs {
    /// Node directory.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
}

pub(crate) async fn renew(a: RenewArgs, json: bool) -> Result<(), CliError> {
    let id = kith_agent::renew(&a.dir).await.map_err(offline_hint)?;
    print_identity(&id, &a.dir, "renewed", json);
    Ok(())
}
