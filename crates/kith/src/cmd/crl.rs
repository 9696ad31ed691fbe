//! `kith crl`: write an authority's current CRL.

use kith_api::ErrorCode;
use std::path::{Path, PathBuf};

use clap::Args;
use kith_authority::{Settings, DEFAULT_AUTHORITY};
use kith_nodedir as nodedir;
use kith_pki::pem_encode;

use crate::args::PassphraseArg;
use crate::output::CliError;
use crate::util::{self, rfc3339, split_path};

#[derive(Args, Debug)]
pub(crate) struct CrlArgs {
    /// Authority whose CRL to write.
    #[arg(long, default_value = DEFAULT_AUTHORITY)]
    authority: String,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// PEM instead of DER.
    #[arg(long)]
    pem: bool,
    /// Sign a new CRL even if the stored one is still fresh.
    #[arg(long)]
    force_new: bool,
    #[command(flatten)]
    pass: PassphraseArg,
}

pub(crate) async fn crl(dir: &Path, a: CrlArgs) -> Result<(), CliError> {
    use std::io::{IsTerminal, Write};
    if a.out.is_none() && !a.pem && std::io::stdout().is_terminal() {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "refusing to write a binary CRL to a terminal",
        )
        .hint("pass --pem, or --out FILE"));
    }
    // The validity of a new CRL is the cluster's (`kith settings`).
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let record = if a.force_new {
        authority.regenerate_crl(&a.authority).await?
    } else {
        authority.crl(&a.authority).await?
    };
    let bytes = if a.pem {
        pem_encode("X509 CRL", &record.der).into_bytes()
    } else {
        record.der.clone()
    };
    match &a.out {
        Some(out) => {
            let (parent, name) = split_path(out)?;
            nodedir::write_atomic(&parent, &name, &bytes, nodedir::PUBLIC_MODE)?;
            eprintln!(
                "CRL #{} of authority {}: {} entries, next update {}",
                record.number,
                a.authority,
                record.entries,
                rfc3339(record.next_update)
            );
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| CliError::new(ErrorCode::IoError, e))?,
    }
    Ok(())
}
