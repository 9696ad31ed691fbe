//! Connecting: the client, the server version check, and the bucket's stream.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::ServerAddr;
use kith_store::Error;

use crate::retry::{classify, retry, Fail};
use crate::NatsOptions;

/// The oldest nats-server kith accepts: 2.9 and 2.10 let two conditional
/// writes on a replicated stream both succeed around a leader change; 2.11
/// made a new leader apply its whole log before it serves.
pub(crate) const MIN_SERVER: (u32, u32) = (2, 11);

/// Room left under the server's `max_payload` for the subject and headers
/// kith sends with a value (message id, expected sequence, operation).
const HEADER_ROOM: usize = 4096;

/// Deduplication window for message ids: far longer than any retry, so a
/// retried write the server already stored is answered as a duplicate.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Reconnections of the client, for watches to start their consumers
/// again from the last revision they saw (see `watch.rs`).
#[derive(Default)]
pub(crate) struct Reconnects {
    /// How many times the client has (re)connected.
    pub(crate) epoch: std::sync::atomic::AtomicU64,
    pub(crate) notify: tokio::sync::Notify,
}

impl Reconnects {
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once the epoch is past `seen` (at once if it already is:
    /// a reconnection while the caller was busy is not missed).
    pub(crate) async fn after(&self, seen: u64) {
        loop {
            let notified = self.notify.notified();
            if self.epoch() != seen {
                return;
            }
            notified.await;
        }
    }
}

pub(crate) struct Connected {
    pub(crate) reconnects: std::sync::Arc<Reconnects>,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    pub(crate) stream: stream::Stream,
    pub(crate) max_value: usize,
    pub(crate) replicas: usize,
}

/// Whether `version` (`2.12.8`, `2.11.0-beta.1`) is at least `min`.
pub(crate) fn version_ok(version: &str, min: (u32, u32)) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    matches!((major, minor), (Some(a), Some(b)) if (a, b) >= min)
}

fn check_bucket_name(bucket: &str) -> Result<(), Error> {
    if bucket.is_empty()
        || bucket.len() > 64
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(Error::Backend(format!(
            "bucket name {bucket:?} must be 1 to 64 ASCII letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

pub(crate) async fn connect(opts: &NatsOptions) -> Result<Connected, Error> {
    check_bucket_name(&opts.bucket)?;
    if !(1..=5).contains(&opts.replicas) {
        return Err(Error::Backend(format!(
            "{} stream replicas: JetStream allows 1 to 5",
            opts.replicas
        )));
    }
    let addrs = opts
        .servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| Error::Backend(format!("NATS address {s:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if addrs.is_empty() {
        return Err(Error::Backend("no NATS server address given".into()));
    }
    let reconnects = std::sync::Arc::new(Reconnects::default());
    let on_event = reconnects.clone();
    let mut co = async_nats::ConnectOptions::new()
        .name("kith")
        .event_callback(move |event| {
            let on_event = on_event.clone();
            async move {
                if matches!(event, async_nats::Event::Connected) {
                    on_event
                        .epoch
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    on_event.notify.notify_waiters();
                }
            }
        })
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        // Reconnect quickly to another node of the cluster: an election is
        // seconds, and every request waits on the connection meanwhile.
        .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(1000)));
    if let Some(creds) = &opts.creds {
        co = co
            .credentials_file(creds)
            .await
            .map_err(|e| Error::Backend(format!("NATS credentials {}: {e}", creds.display())))?;
    }
    if let Some(ca) = &opts.ca {
        co = co.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &opts.client_cert {
        co = co.add_client_certificate(cert.clone(), key.clone());
    }
    let shown = opts.servers.join(",");
    let remote = addrs
        .iter()
        .any(|a| !matches!(a.host(), "localhost" | "127.0.0.1" | "::1" | "[::1]"));
    if remote && opts.ca.is_none() {
        // Tokens, node and revocation records travel as JSON (CA keys and
        // secrets are sealed): on a network, NATS should run TLS.
        tracing::warn!(
            servers = %shown,
            "the NATS connection is not required to use TLS: pass --nats-ca (and a client \
             certificate or --nats-creds) unless the network to NATS is trusted"
        );
    }
    // Nodes that are still starting (a cluster brought up with kith) are
    // waited for within the retry window; bad credentials or TLS are not.
    let client = retry(opts.retry_window, "connecting", |_| {
        let (co, addrs, shown) = (co.clone(), addrs.clone(), shown.clone());
        async move {
            co.connect(addrs).await.map_err(|e| {
                let text = format!("cannot connect to NATS at {shown}: {e}");
                match e.kind() {
                    async_nats::ConnectErrorKind::Io | async_nats::ConnectErrorKind::TimedOut => {
                        Fail::Transient(text)
                    }
                    _ => Fail::Final(Error::Unavailable(text)),
                }
            })
        }
    })
    .await?;
    let info = client.server_info();
    if !version_ok(&info.version, MIN_SERVER) {
        return Err(Error::Backend(format!(
            "nats-server {} at {shown} is too old: kith needs {}.{} or later (older \
             servers can accept two conditional writes on a replicated stream)",
            info.version, MIN_SERVER.0, MIN_SERVER.1
        )));
    }
    if !info.jetstream {
        return Err(Error::Backend(format!(
            "nats-server at {shown} has JetStream disabled; enable it (jetstream {{ store_dir: ... }})"
        )));
    }
    let max_value = info.max_payload.saturating_sub(HEADER_ROOM);
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone());
    let stream = retry(opts.retry_window, "opening the bucket", |_| {
        ensure_stream(&js, opts)
    })
    .await?;
    let replicas = stream.cached_info().config.num_replicas;
    if replicas < 2 {
        tracing::warn!(
            bucket = %opts.bucket,
            "the NATS stream KV_{} has one replica: losing that NATS node loses the CA's \
             records; use --store-replicas 3 on a cluster of three or more",
            opts.bucket
        );
    }
    Ok(Connected {
        reconnects,
        client,
        js,
        stream,
        max_value,
        replicas,
    })
}

/// The bucket's stream, created if missing. An existing one keeps its
/// replica count; direct gets are switched off (see the crate docs).
async fn ensure_stream(
    js: &jetstream::Context,
    opts: &NatsOptions,
) -> Result<stream::Stream, Fail> {
    let name = format!("KV_{}", opts.bucket);
    let subject = format!("$KV.{}.>", opts.bucket);
    match js.get_stream(&name).await {
        Ok(mut s) => {
            let info = s.info().await.map_err(classify)?.clone();
            if !info.config.subjects.contains(&subject) {
                return Err(Fail::backend(format!(
                    "the NATS stream {name} exists but does not hold {subject}: it is not a \
                     kith bucket"
                )));
            }
            if info.config.allow_direct || info.config.duplicate_window < DUPLICATE_WINDOW {
                let mut config = info.config.clone();
                config.allow_direct = false;
                config.duplicate_window = config.duplicate_window.max(DUPLICATE_WINDOW);
                js.update_stream(config).await.map_err(classify)?;
                tracing::info!(stream = %name, "switched off direct gets on the bucket's stream");
                return js.get_stream(&name).await.map_err(classify);
            }
            Ok(s)
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            let config = stream::Config {
                name: name.clone(),
                description: Some("kith CA records".into()),
                subjects: vec![subject],
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::New,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: false,
                num_replicas: opts.replicas,
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            };
            match js.create_stream(config).await {
                Ok(s) => Ok(s),
                // Another replica created it first.
                Err(e) if matches!(e.kind(), jetstream::context::CreateStreamErrorKind::JetStream(ref j) if j.error_code() == jetstream::ErrorCode::STREAM_NAME_EXIST) => {
                    js.get_stream(&name).await.map_err(classify)
                }
                Err(e) => Err(classify(e)),
            }
        }
        Err(e) => Err(classify(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["2.11.0", "2.12.8", "v2.11.3-beta.1", "3.0.0"] {
            assert!(version_ok(ok, MIN_SERVER), "{ok}");
        }
        for old in ["2.10.22", "2.9.0", "1.4", "", "x.y"] {
            assert!(!version_ok(old, MIN_SERVER), "{old}");
        }
    }
}
