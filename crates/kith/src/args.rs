//! Flags and value parsers shared by several commands.

use std::path::PathBuf;

use clap::Args;
use kith_pki::{CaKind, KeyType, Profile, RevocationReason};

pub(crate) fn key_type_parser(s: &str) -> Result<KeyType, String> {
    s.parse().map_err(|e: kith_pki::Error| e.to_string())
}
pub(crate) fn profile_parser(s: &str) -> Result<Profile, String> {
    s.parse().map_err(|e: kith_pki::Error| e.to_string())
}
pub(crate) fn reason_parser(s: &str) -> Result<RevocationReason, String> {
    s.parse().map_err(|e: kith_pki::Error| e.to_string())
}
pub(crate) fn which_parser(s: &str) -> Result<CaKind, String> {
    match s {
        "root" => Ok(CaKind::Root),
        "intermediate" => Ok(CaKind::Intermediate),
        _ => Err("expected root or intermediate".into()),
    }
}

/// The CA passphrase flag shared by every command that unlocks keys.
#[derive(Args, Debug)]
pub(crate) struct PassphraseArg {
    /// File holding the CA passphrase (else KITH_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
}
