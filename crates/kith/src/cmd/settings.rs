//! `kith settings`: the settings every replica of the cluster shares (CRL
//! validity, largest secret, versions kept), kept in the cluster record.
//! Through the server's admin API when one is configured (a running server
//! holds the store), else on the store directly, as `kith revoke` decides.

use clap::{Args, Subcommand};
use hyper::Method;
use kith_api::wire::{SettingsUpdate, SettingsView};
use kith_api::ErrorCode;
use kith_authority::{Settings, SettingsChange, LOCAL_OPERATOR};
use time::Duration;

use crate::admin::AdminArgs;
use crate::args::PassphraseArg;
use crate::output::{print_json, CliError};
use crate::util;
use crate::util::Home;

#[derive(Subcommand, Debug)]
pub(crate) enum SettingsCommand {
    /// Print the settings in force.
    Show(AdminArgs),
    /// Change some of them, for every process of the cluster.
    Set(SetArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SetArgs {
    /// Validity of the CRLs signed from now on (nextUpdate − thisUpdate),
    /// 1h to 365d, e.g. 3d. The next CRL asked for is signed with it.
    #[arg(long, value_parser = util::parse_crl_validity)]
    crl_validity: Option<Duration>,
    /// Largest secret value accepted: bytes, or with K/KiB or M/MiB, e.g.
    /// 4MiB (at most 16MiB). Stored secrets are not touched.
    #[arg(long, value_parser = parse_size)]
    secret_max_size: Option<usize>,
    /// Versions kept per secret (1 to 100); older ones go at the next write.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=kith_authority::MAX_KEEP_VERSIONS as i64))]
    keep_versions: Option<u32>,
    #[command(flatten)]
    pass: PassphraseArg,
    #[command(flatten)]
    admin: AdminArgs,
}

pub(crate) async fn run(dir: &Home, cmd: SettingsCommand, json: bool) -> Result<(), CliError> {
    let view = match cmd {
        SettingsCommand::Show(admin) => show(dir, &admin).await?,
        SettingsCommand::Set(a) => set(dir, a).await?,
    };
    if json {
        print_json(&view);
    } else {
        print_text(&view);
    }
    Ok(())
}

async fn show(dir: &Home, admin: &AdminArgs) -> Result<SettingsView, CliError> {
    if let Some(mut conn) = admin.online(dir).await? {
        return Ok(conn
            .json(Method::GET, "/v1/admin/settings", None::<&()>)
            .await?);
    }
    // Not secret: no passphrase needed to read them.
    let store = util::open_store(dir).await?;
    Ok(SettingsView::from(
        &kith_authority::cluster_settings(&*store).await?,
    ))
}

async fn set(dir: &Home, a: SetArgs) -> Result<SettingsView, CliError> {
    let body = SettingsUpdate {
        crl_validity_seconds: a
            .crl_validity
            .map(|d| u64::try_from(d.whole_seconds()).unwrap_or(0)),
        secret_max_bytes: a.secret_max_size.map(|b| b as u64),
        keep_versions: a.keep_versions,
    };
    if body == SettingsUpdate::default() {
        return Err(CliError::new(
            ErrorCode::InvalidArgument,
            "nothing to change: give --crl-validity, --secret-max-size or --keep-versions",
        ));
    }
    if let Some(mut conn) = a.admin.online(dir).await? {
        return Ok(conn
            .json(Method::PATCH, "/v1/admin/settings", Some(&body))
            .await?);
    }
    let authority =
        util::unlock(dir, a.pass.passphrase_file.as_deref(), Settings::default()).await?;
    let now = authority
        .update_settings(SettingsChange::from(&body), LOCAL_OPERATOR)
        .await;
    authority.close().await;
    Ok(SettingsView::from(&now?))
}

fn print_text(v: &SettingsView) {
    println!(
        "crl-validity     {}",
        human_duration(v.crl_validity_seconds)
    );
    println!(
        "secret-max-size  {} ({} bytes)",
        human_size(v.secret_max_bytes),
        v.secret_max_bytes
    );
    println!("keep-versions    {}", v.keep_versions);
}

/// `7d`, `36h`, `90m`, `45s`: the largest unit (up to days) that divides it exactly.
fn human_duration(secs: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs > 0 && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

/// `4MiB`, `256KiB`, `1000B`.
fn human_size(bytes: u64) -> String {
    if bytes > 0 && bytes.is_multiple_of(1 << 20) {
        format!("{}MiB", bytes >> 20)
    } else if bytes > 0 && bytes.is_multiple_of(1 << 10) {
        format!("{}KiB", bytes >> 10)
    } else {
        format!("{bytes}B")
    }
}

/// `--secret-max-size`: `4096`, `4096B`, `256K`, `256KiB`, `4M`, `4MiB`;
/// 1 byte to [`kith_authority::MAX_SECRET_MAX_BYTES`].
fn parse_size(s: &str) -> Result<usize, String> {
    let max = kith_authority::MAX_SECRET_MAX_BYTES;
    let bad = || {
        format!(
            "{s:?}: expected a size such as 4MiB, 256K or 4096, at most {}MiB",
            max >> 20
        )
    };
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: usize = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        _ => return Err(bad()),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("256K"), Ok(256 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        for bad in [
            "0",
            "17M",
            "1G",
            "MiB",
            "1.5M",
            "-1",
            "",
            "4 MiB",
            "99999999999999999999M",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(human_size(4 << 20), "4MiB");
        assert_eq!(human_size(1000), "1000B");
        assert_eq!(human_duration(3 * 86_400), "3d");
        assert_eq!(human_duration(90 * 60), "90m");
    }
}
