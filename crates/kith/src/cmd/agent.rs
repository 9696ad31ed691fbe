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

// Each option also reads an environment variable, so that a service
// manager's environment file sets it without shell quoting
// (`KITH_AGENT_EXEC=systemctl reload myapp`).
#[derive(Args, Debug)]
pub(crate) struct AgentArgs {
    /// Node directory.
    #[arg(long, default_value = "/var/lib/kith")]
    dir: PathBuf,
    /// Shell command to run after the files change (e.g. "systemctl reload myapp").
    #[arg(long, env = "KITH_AGENT_EXEC", conflicts_with = "signal")]
    exec: Option<String>,
    /// Signal a process after the files change: PID:SIGNAL (e.g. 1234:HUP).
    #[arg(long, env = "KITH_AGENT_SIGNAL")]
    signal: Option<String>,
    /// How often to refresh the CA bundle, the CRL and the secrets; the agent
    /// also stops (exit status 3) within one refresh of its own revocation.
    #[arg(long, env = "KITH_AGENT_REFRESH", value_parser = parse_duration, default_value = "5m")]
    refresh: Duration,
    /// Secrets to keep as files in --secrets-dir, comma-separated. One that
    /// does not exist or that this node may not read is reported and asked
    /// for again (with backoff); its file is removed when access is withdrawn.
    #[arg(
        long,
        env = "KITH_AGENT_SECRETS",
        value_delimiter = ',',
        requires = "secrets_dir"
    )]
    secrets: Vec<String>,
    /// Where the secret files go (0400 each; the directory must be private;
    /// use tmpfs, e.g. /run/kith/secrets).
    #[arg(long, env = "KITH_AGENT_SECRETS_DIR", value_name = "DIR")]
    secrets_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on plain HTTP at this address
    /// (`GET /metrics`; e.g. 127.0.0.1:9465). Off by default; never a
    /// secret or a secret's name.
    #[arg(long, env = "KITH_AGENT_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<std::net::SocketAddr>,
}

pub(crate) async fn agent(a: AgentArgs) -> Result<(), CliError> {
    // Arguments first: a typo is reported as such, whatever the directory.
    let hook = match (a.exec, a.signal) {
        (Some(cmd), _) => Some(kith_agent::agent::Hook::Exec(cmd)),
        (None, Some(s)) => Some(kith_agent::agent::Hook::parse_signal(&s)?),
        (None, None) => None,
    };
    // Refuse an unsafe directory now, not at the first renewal hours later.
    kith_nodedir::check_node_dir(&a.dir)?;
    // A directory issued offline has no server to renew with: say so now,
    // instead of retrying a renewal that cannot happen.
    let identity = kith_nodedir::NodeIdentity::load(&a.dir)?;
    let server = identity.server(&a.dir).map_err(offline_hint)?.to_string();
    // What to do when only a new token can help: the directory still holds
    // the old identity, so the next join must replace it (--force).
    let rejoin = format!(
        "only a new token can help: ask the operator for one (`kith token create --role {role} --name {node}`), then run `kith join --force --server {server} --token NEW-TOKEN --name {node} --dir {dir}` (--force: {dir} still holds the old identity)",
        role = identity.role,
        node = identity.node,
        dir = a.dir.display(),
    );
    let mut opts = kith_agent::agent::AgentOptions::new(a.dir);
    opts.refresh_every = std_duration(a.refresh).max(std::time::Duration::from_secs(1));
    opts.secrets = a.secrets;
    opts.secrets_dir = a.secrets_dir;
    opts.hook = hook;
    if let Some(addr) = a.metrics_listen {
        let m = opts.metrics.clone();
        crate::metrics_http::start(
            addr,
            kith_agent::metrics::CONTENT_TYPE,
            std::sync::Arc::new(move || m.encode()),
        )
        .await?;
    }
    kith_agent::agent::run(opts).await.map_err(|e| {
        let needs_new_token = e.needs_new_token();
        let err = CliError::from(e);
        if needs_new_token {
            err.hint(rejoin)
        } else {
            err
        }
    })
}
