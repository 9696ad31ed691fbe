//! The agent loop: renew at about two thirds of the lifetime (with jitter),
//! retry with capped exponential backoff, refresh the CA bundle and CRL on
//! an interval, run the hook after every change, renew at once on SIGHUP,
//! and stop with a clear error when only a new token can help.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::metrics::AgentMetrics;
use crate::node::{connect_to, failover, refresh_with, remember, renew, NodeIdentity, Refreshed};
use crate::revoked::check_own_revocation;
use crate::secrets::{Pass, SecretFiles};
use crate::Error;
use kith_api::ErrorCode;

/// What to do after the node's files change.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hook {
    /// Run a shell command (`sh -c`).
    Exec(String),
    /// Send a signal to a process.
    Signal {
        /// Process id.
        pid: i32,
        /// Signal name without `SIG` (`HUP`, `USR1`, …).
        signal: String,
    },
}

impl Hook {
    /// Parse `PID:SIGNAL` (`1234:HUP`).
    pub fn parse_signal(s: &str) -> Result<Self, Error> {
        let (pid, sig) = s
            .split_once(':')
            .ok_or_else(|| Error::Invalid(format!("--signal {s:?}: expected PID:SIGNAL")))?;
        let pid: i32 = pid
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::Invalid(format!("--signal {s:?}: bad pid")))?;
        let signal = sig.trim_start_matches("SIG").to_ascii_uppercase();
        signal_of(&signal)?;
        Ok(Self::Signal { pid, signal })
    }

    /// Run the hook; a failing hook is logged, never fatal.
    pub async fn run(&self) {
        match self {
            Hook::Exec(cmd) => {
                match tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .status()
                    .await
                {
                    Ok(st) if st.success() => tracing::info!(%cmd, "hook ran"),
                    Ok(st) => tracing::warn!(%cmd, status = %st, "hook failed"),
                    Err(e) => tracing::warn!(%cmd, error = %e, "hook could not start"),
                }
            }
            Hook::Signal { pid, signal } => {
                let result = signal_of(signal).and_then(|sig| {
                    let pid = rustix::process::Pid::from_raw(*pid)
                        .ok_or_else(|| Error::Invalid("pid 0".into()))?;
                    rustix::process::kill_process(pid, sig)
                        .map_err(|e| Error::Invalid(format!("kill: {e}")))
                });
                match result {
                    Ok(()) => tracing::info!(pid, %signal, "hook signalled"),
                    Err(e) => tracing::warn!(pid, %signal, error = %e, "hook signal failed"),
                }
            }
        }
    }
}

fn signal_of(name: &str) -> Result<rustix::process::Signal, Error> {
    use rustix::process::Signal as S;
    Ok(match name {
        "HUP" => S::HUP,
        "INT" => S::INT,
        "TERM" => S::TERM,
        "USR1" => S::USR1,
        "USR2" => S::USR2,
        "QUIT" => S::QUIT,
        other => return Err(Error::Invalid(format!("unsupported signal {other:?}"))),
    })
}

/// How the agent behaves.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Node directory.
    pub dir: PathBuf,
    /// Run after every change of the files.
    pub hook: Option<Hook>,
    /// How often to refresh the CA bundle and CRL.
    pub refresh_every: Duration,
    /// First retry delay; doubles per failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// Secrets to keep in `secrets_dir`, refreshed with the CA bundle and CRL.
    pub secrets: Vec<String>,
    /// Where secret files go (0400 each; the directory must be private,
    /// ideally tmpfs such as /run).
    pub secrets_dir: Option<PathBuf>,
    /// Where the agent counts what it does (`kith agent --metrics-listen`
    /// serves it).
    pub metrics: Arc<AgentMetrics>,
}

impl AgentOptions {
    /// Defaults: refresh every 5 minutes, backoff 1 s doubling to 5 minutes.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            hook: None,
            refresh_every: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            secrets: Vec::new(),
            secrets_dir: None,
            metrics: Arc::default(),
        }
    }
}

/// A number in [0, 1) that differs between calls and processes: enough to
/// spread renewals and retries; nothing secret depends on it.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn backoff(opts: &AgentOptions, failures: u32) -> Duration {
    let exp = opts
        .backoff_base
        .saturating_mul(1u32 << failures.min(20))
        .min(opts.backoff_cap);
    // Full jitter in the upper half: never hammer, never synchronise.
    exp.mul_f64(0.5 + 0.5 * jitter())
}

/// Log a failure the agent retries: an error when the server is not the CA
/// or offered a bundle that was refused (someone may be posing as the CA),
/// a warning otherwise.
fn warn_or_alarm(e: &Error, what: &str) {
    match e.error_code() {
        Some(ErrorCode::NotKithServer | ErrorCode::BundleRefused | ErrorCode::BadResponse) => {
            tracing::error!(error = %e, "{what}")
        }
        _ => tracing::warn!(error = %e, "{what}"),
    }
}

/// Refresh the CA bundle, the CRL and the secrets over one connection.
/// Returns whether any file changed and whether the CA asks this node to
/// renew now.
async fn refresh_all(
    opts: &AgentOptions,
    secrets: Option<&mut SecretFiles>,
) -> Result<Refreshed, Error> {
    // The known replicas in turn while one is out of service (unreachable,
    // or failing the refresh with a 5xx); the one that answered goes first
    // next time.
    let dir = opts.dir.as_path();
    let identity = NodeIdentity::load(dir)?;
    let servers = identity.servers(dir)?;
    let ((mut conn, refreshed), worked) = failover(&servers, |server| {
        let identity = &identity;
        async move {
            let mut conn = connect_to(dir, identity, &server).await?;
            match refresh_with(&mut conn, identity, dir).await {
                Err(e) if e.is_outage() => Err(e),
                r => Ok((conn, r)),
            }
        }
    })
    .await?;
    remember(dir, identity, &worked);
    // A failure of one part is logged and leaves the other to run.
    let mut out = match refreshed {
        Ok(r) => {
            if r.changed {
                tracing::info!("CA bundle or CRL updated");
            } else {
                tracing::debug!("CA bundle and CRL unchanged");
            }
            r
        }
        Err(e) if e.needs_new_token() => return Err(e),
        Err(e) => {
            warn_or_alarm(&e, "refresh failed; will retry");
            Refreshed::default()
        }
    };
    if let Some(s) = secrets {
        out.changed |= s
            .sync(&mut conn, Pass::Refresh, |f| backoff(opts, f))
            .await?;
    }
    Ok(out)
}

/// Ask again for the secrets the server refused whose retry is due.
async fn retry_secrets(opts: &AgentOptions, secrets: &mut SecretFiles) -> Result<bool, Error> {
    match crate::node::connect(&opts.dir).await {
        Ok((_, mut conn)) => {
            secrets
                .sync(&mut conn, Pass::Retry, |f| backoff(opts, f))
                .await
        }
        Err(e) if e.needs_new_token() => Err(e),
        Err(e) => {
            warn_or_alarm(&e, "cannot reach the server for the secrets; will retry");
            secrets.postpone(|f| backoff(opts, f));
            Ok(false)
        }
    }
}

/// When to renew `identity`: two thirds of its lifetime, minus `spread`
/// (in [0, 1)) times 5 % of the lifetime.
fn renew_at(identity: &NodeIdentity, spread: f64) -> time::OffsetDateTime {
    let lifetime = identity.not_after - identity.not_before;
    identity.renew_at() - lifetime * (0.05 * spread)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Run until SIGTERM/SIGINT (Ok) or until only a new token can help (Err,
/// logged as an error here: the operator must act).
pub async fn run(opts: AgentOptions) -> Result<(), Error> {
    let result = run_loop(opts).await;
    if let Err(e) = &result {
        if e.needs_new_token() {
            tracing::error!(error = %e, "stopping: only a new token can help this node now");
        }
    }
    result
}

async fn run_loop(opts: AgentOptions) -> Result<(), Error> {
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| Error::Invalid(format!("cannot watch SIGHUP: {e}")))?;
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::Invalid(format!("cannot watch SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::Invalid(format!("cannot watch SIGINT: {e}")))?;
    let mut failures: u32 = 0;
    let mut retry_at: Option<tokio::time::Instant> = None;
    // The first refresh at once: systemd hears READY=1 only after it.
    let mut next_refresh = tokio::time::Instant::now();
    let mut ready = false;
    let _watchdog = AbortOnDrop(tokio::spawn(crate::metrics::watchdog()));
    // Spread the renewal point by up to 5 % of the lifetime, earlier only.
    let spread = jitter();
    let identity = NodeIdentity::load(&opts.dir)?;
    let mut secrets = match (&opts.secrets_dir, opts.secrets.is_empty()) {
        (_, true) => None,
        (None, false) => {
            return Err(Error::Invalid(
                "secrets need a directory to go to (--secrets-dir)".into(),
            ))
        }
        (Some(d), false) => {
            for n in &opts.secrets {
                kith_api::validate_secret_name(n).map_err(Error::Invalid)?;
            }
            if !crate::secrets::prepare_secrets_dir(d)? {
                tracing::warn!(
                    dir = %d.display(),
                    "the secrets directory is not on tmpfs: secrets will reach the disk (use /run/...)"
                );
            }
            // A secret that is missing or not allowed is reported and asked
            // for again; it never stops the renewals.
            Some(SecretFiles::new(d.clone(), &opts.secrets))
        }
    };
    // A node revoked while its agent was stopped stops here, even offline.
    if let Some(e) = check_own_revocation(&opts.dir, &identity) {
        return Err(e);
    }
    tracing::info!(
        node = %identity.node, serial = %identity.serial, not_after = %rfc3339(identity.not_after),
        "agent started"
    );
    // The secrets come with the first refresh, at once, for the service
    // that starts with the agent.
    // The certificate whose next renewal was last announced.
    let mut announced: Option<String> = None;
    // The CA asked this node to renew now (a CA rotation): renew at once,
    // failures backing off as usual, until a renewal succeeds.
    let mut asked = false;
    loop {
        let identity = NodeIdentity::load(&opts.dir)?;
        opts.metrics.certificate(&identity);
        let renew_at = renew_at(&identity, spread);
        if announced.as_deref() != Some(identity.serial.as_str()) {
            tracing::info!(
                renew_at = %rfc3339(renew_at), serial = %identity.serial,
                not_after = %rfc3339(identity.not_after), "next renewal due"
            );
            announced = Some(identity.serial.clone());
        }
        let why_renew = if asked { "asked by the CA" } else { "due" };
        let wait_renew = match retry_at {
            Some(t) => t.saturating_duration_since(tokio::time::Instant::now()),
            None if asked => Duration::ZERO,
            None => {
                let d = renew_at - time::OffsetDateTime::now_utc();
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            }
        };
        let secret_retry = secrets.as_ref().and_then(SecretFiles::next_retry);
        enum Step {
            Renew(&'static str),
            Refresh,
            RetrySecrets,
            Stop,
        }
        let step = tokio::select! {
            _ = tokio::time::sleep(wait_renew) => Step::Renew(why_renew),
            _ = tokio::time::sleep_until(next_refresh) => Step::Refresh,
            _ = sleep_until_some(secret_retry) => Step::RetrySecrets,
            _ = hup.recv() => Step::Renew("SIGHUP"),
            _ = term.recv() => Step::Stop,
            _ = int.recv() => Step::Stop,
        };
        match step {
            Step::Stop => {
                tracing::info!("agent stopping");
                return Ok(());
            }
            Step::Refresh | Step::RetrySecrets => {
                let result = if matches!(step, Step::Refresh) {
                    next_refresh = tokio::time::Instant::now() + opts.refresh_every;
                    // One connection for the bundle, the CRL and the secrets.
                    refresh_all(&opts, secrets.as_mut()).await
                } else {
                    match secrets.as_mut() {
                        Some(s) => retry_secrets(&opts, s).await.map(|changed| Refreshed {
                            changed,
                            ..Refreshed::default()
                        }),
                        None => Ok(Refreshed::default()),
                    }
                };
                // The CRL just fetched says most about a revocation (when,
                // why), even if the server refused the rest.
                if let Some(e) = check_own_revocation(&opts.dir, &identity) {
                    return Err(e);
                }
                if let Some(s) = secrets.as_mut() {
                    opts.metrics.secrets_delivered(s.take_delivered());
                }
                let changed = match result {
                    Ok(r) => {
                        if r.fetched {
                            opts.metrics.refreshed();
                            // Ready: a valid certificate, and the bundle and
                            // CRL just fetched.
                            if !ready && identity.not_after > time::OffsetDateTime::now_utc() {
                                ready = true;
                                crate::metrics::notify_ready();
                                tracing::info!("ready");
                            }
                        }
                        if r.renew_now && !asked {
                            tracing::info!(
                                serial = %identity.serial,
                                "the CA asks this node to renew now (a CA rotation)"
                            );
                            asked = true;
                        }
                        r.changed
                    }
                    Err(e) if e.needs_new_token() => return Err(e),
                    Err(e) => {
                        warn_or_alarm(&e, "refresh failed; will retry");
                        false
                    }
                };
                if changed {
                    if let Some(h) = &opts.hook {
                        h.run().await;
                    }
                }
            }
            Step::Renew(why) => match renew(&opts.dir).await {
                Ok(id) => {
                    opts.metrics.renewed();
                    opts.metrics.certificate(&id);
                    failures = 0;
                    retry_at = None;
                    asked = false;
                    tracing::info!(why, serial = %id.serial, not_after = %rfc3339(id.not_after), "renewed");
                    if let Some(h) = &opts.hook {
                        h.run().await;
                    }
                }
                Err(e) if e.needs_new_token() => {
                    opts.metrics.renewal_failed(e.error_code());
                    return Err(e);
                }
                Err(e) => {
                    opts.metrics.renewal_failed(e.error_code());
                    let delay = backoff(&opts, failures);
                    failures = failures.saturating_add(1);
                    retry_at = Some(tokio::time::Instant::now() + delay);
                    warn_or_alarm(&e, "renewal failed; will retry");
                    tracing::info!(retry_in = ?delay, failures, "renewal backoff");
                }
            },
        }
    }
}

/// Aborts its task when dropped: the watchdog stops with the loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleep until `t`, or forever when there is nothing to wait for.
async fn sleep_until_some(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let mut o = AgentOptions::new(PathBuf::from("/nonexistent"));
        o.backoff_base = Duration::from_secs(1);
        o.backoff_cap = Duration::from_secs(60);
        let b0 = backoff(&o, 0);
        assert!(b0 >= Duration::from_millis(500) && b0 <= Duration::from_secs(1));
        let b3 = backoff(&o, 3);
        assert!(b3 >= Duration::from_secs(4) && b3 <= Duration::from_secs(8));
        for f in [10, 31, 1000] {
            let b = backoff(&o, f);
            assert!(
                b >= Duration::from_secs(30) && b <= Duration::from_secs(60),
                "{b:?}"
            );
        }
    }

    #[test]
    fn signal_hooks() {
        assert_eq!(
            Hook::parse_signal("42:SIGHUP").unwrap(),
            Hook::Signal {
                pid: 42,
                signal: "HUP".into()
            }
        );
        for bad in ["42", "0:HUP", "x:HUP", "42:KILLME"] {
            assert!(Hook::parse_signal(bad).is_err(), "{bad}");
        }
    }
}
