//! `kith crl`: write an authority's current CRL.

use kith_api::ErrorCode;
use std::path::PathBuf;

use clap::Args;
use hyper::Method;
use kith_api::wire::{CrlSignRequest, CrlView};
use kith_authority::{CrlIssuer, Settings, DEFAULT_AUTHORITY};
use kith_nodedir as nodedir;
use kith_pki::pem_encode;

use crate::admin::AdminArgs;
use crate::args::PassphraseArg;
use crate::output::CliError;
use crate::util::Home;
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
    /// The root's CRL (of the authority's intermediates) instead of the
    /// intermediate's (of its leaves). A TLS server that checks a CRL for
    /// every certificate of the chain (nginx `ssl_crl`, `openssl verify
    /// -crl_check_all`) needs both, concatenated.
    #[arg(long)]
    root: bool,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

/// The CRL to write: number, entries, next update, DER.
struct Got {
    number: u64,
    entries: usize,
    next_update: String,
    der: Vec<u8>,
}

/// Through the running server when there is one (it holds the store), else
/// from the store, unlocked (a stale CRL is signed anew either way).
async fn get(dir: &Home, a: &CrlArgs) -> Result<Got, CliError> {
    if let Some(mut conn) = a.admin.online(dir).await? {
        let suffix = if a.root { "/root" } else { "" };
        let path = format!("/v1/admin/crl/{}{suffix}", a.authority);
        let v: CrlView = if a.force_new {
            conn.json(Method::POST, &path, Some(&CrlSignRequest {}))
                .await?
        } else {
            conn.json(Method::GET, &path, None::<&()>).await?
        };
        let der = pem_body(&v.pem)
            .ok_or_else(|| CliError::new(ErrorCode::BadResponse, "the answer holds no PEM CRL"))?;
        return Ok(Got {
            number: v.number,
            entries: v.entries,
            next_update: v.next_update,
            der,
        });
    }
    // The validity of a new CRL is the cluster's (`kith settings`).
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let issuer = if a.root {
        CrlIssuer::Root
    } else {
        CrlIssuer::Intermediate
    };
    let record = if a.force_new {
        authority.regenerate_crl_of(&a.authority, issuer).await?
    } else {
        authority.crl_of(&a.authority, issuer).await?
    };
    Ok(Got {
        number: record.number,
        entries: record.entries,
        next_update: rfc3339(record.next_update),
        der: record.der,
    })
}

pub(crate) async fn crl(dir: &Home, a: CrlArgs) -> Result<(), CliError> {
    use std::io::{IsTerminal, Write};
    if a.out.is_none() && !a.pem && std::io::stdout().is_terminal() {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "refusing to write a binary CRL to a terminal",
        )
        .hint("pass --pem, or --out FILE"));
    }
    kith_pki::validate_label("authority", &a.authority)?;
    let record = get(dir, &a).await?;
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
                "{}CRL #{} of authority {}: {} entries, next update {}",
                if a.root { "root " } else { "" },
                record.number,
                a.authority,
                record.entries,
                record.next_update
            );
        }
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| CliError::new(ErrorCode::IoError, e))?,
    }
    Ok(())
}

/// The DER inside one PEM block.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let b64: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .ok()
        .filter(|d| !d.is_empty())
}
