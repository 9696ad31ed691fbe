//! `kith agent`: keep a node directory fresh forever.

use std::path::PathBuf;

use clap::Args;
use time::Duration;

use crate::node_files::offline_hint;
use crate::output::CliError;
use crate::util::parse_duration;

fn std_duration(d: Duration) -> std::time::Duration {
    std::time::Duration::try_from(d).unwrap_or(std::time::Duration::ZERO)
}

#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    /// Node directory.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// Shell command to run after the files change (e.g. "systemctl reload myapp").
    #[arg(long, conflicts_with = "signal")]
    exec: Option<String>,
    /// Signal a process after the files change: PID:SIGNAL (e.g. 1234:HUP).
    #[arg(long)]
    signal: Option<String>,
    /// How often to refresh the CA bundle, the CRL and the secrets.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    refresh: Duration,
    /// Secrets to keep as files in --secrets-dir, comma-separated.
    #[arg(long, value_delimiter = ',', requires = "secrets_dir")]
    secrets: Vec<String>,
    /// Where the secret files go (0400 each; the directory must be private;
    /// use tmpfs, e.g. /run/kith/secrets).
    #[arg(long, value_name = "DIR")]
    secrets_dir: Option<PathBuf>,
}

pub(crate) async fn agent(a: AgentArgs) -> Result<(), CliError> {
    // Refuse an unsafe directory now, not at the first renewal hours later.
    kith_nodedir::check_node_dir(&a.dir)?;
    // A directory issued offline has no server to renew with: say so now,
    // instead of retrying a renewal that cannot happen.
    let identity = kith_nodedir::NodeIdentity::load(&a.dir)?;
    identity.server(&a.dir).map_err(offline_hint)?;
    let mut opts = kith_agent::agent::AgentOptions::new(a.dir);
    opts.refresh_every = std_duration(a.refresh).max(std::time::Duration::from_secs(1));
    opts.secrets = a.secrets;
    opts.secrets_dir = a.secrets_dir;
    opts.hook = match (a.exec, a.signal) {
        (Some(cmd), _) => Some(kith_agent::agent::Hook::Exec(cmd)),
        (None, Some(s)) => Some(kith_agent::agent::Hook::parse_signal(&s)?),
        (None, None) => None,
    };
    kith_agent::agent::run(opts).await?;
    Ok(())
}
