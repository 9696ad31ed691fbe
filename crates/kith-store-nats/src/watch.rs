//! Watching a prefix: an ordered consumer from "now", fed into a channel by
//! a task that starts it again from the last revision seen whenever it
//! fails, so a watcher never silently stops after a disconnect.
//!
//! A consumer can also fall silent without failing (seen once in CI: after
//! its node was killed, a consumer made again delivered nothing for 30 s).
//! So after [`SILENCE`] without an event the task asks the stream's leader
//! what it has past the last revision seen, delivers that itself, and makes
//! the consumer again if it had fallen behind: a watcher is at most a few
//! seconds late, never stopped.

use std::time::Duration;

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use futures::stream::BoxStream;
use futures::StreamExt;
use kith_store::{validate_prefix, Entry, Result, Revision, WatchEvent};
use tokio::sync::mpsc;

use crate::list::next_message;
use crate::record::{self, is_marker};
use crate::retry::{classify_consumer, retry};
use crate::NatsStore;

/// Events buffered for a slow watcher before the feeding task waits (the
/// consumer's flow control then holds the server back).
const BUFFER: usize = 1024;

/// How long a watch goes without an event before it checks with the
/// stream's leader that it has missed nothing.
const SILENCE: Duration = Duration::from_secs(5);

/// Most records one check delivers before it lets the consumer take over.
const CATCH_UP: usize = 1024;

impl NatsStore {
    pub(crate) async fn watch_prefix(
        &self,
        prefix: &str,
    ) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        validate_prefix(prefix)?;
        let filter = record::filter(&self.prefix, prefix);
        let epoch = self.reconnects.epoch();
        // The first consumer is made before returning: events committed
        // after this call are delivered, as the contract says.
        let first = retry(self.opts.retry_window, "starting a watch", |_| {
            let filter = filter.clone();
            async move {
                self.stream
                    .create_consumer(ordered(&self.client, filter, DeliverPolicy::New))
                    .await
                    .map_err(classify_consumer)
            }
        })
        .await?;
        let (tx, rx) = mpsc::channel(BUFFER);
        let feed = Feed {
            reconnects: self.reconnects.clone(),
            stream: self.stream.clone(),
            client: self.client.clone(),
            subject_prefix: self.prefix.clone(),
            prefix: prefix.to_string(),
            filter,
            tx,
        };
        tokio::spawn(feed.run(first, epoch));
        Ok(tokio_stream_from(rx))
    }
}

fn ordered(
    client: &async_nats::Client,
    filter: String,
    deliver_policy: DeliverPolicy,
) -> push::OrderedConfig {
    push::OrderedConfig {
        deliver_subject: client.new_inbox(),
        description: Some("kith watch".into()),
        filter_subject: filter,
        deliver_policy,
        replay_policy: ReplayPolicy::Instant,
        ..Default::default()
    }
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<WatchEvent>>,
) -> BoxStream<'static, Result<WatchEvent>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

struct Feed {
    reconnects: std::sync::Arc<crate::connect::Reconnects>,
    stream: async_nats::jetstream::stream::Stream,
    client: async_nats::Client,
    subject_prefix: String,
    prefix: String,
    filter: String,
    tx: mpsc::Sender<Result<WatchEvent>>,
}

impl Feed {
    /// `first_epoch`: the client's connection epoch before `first` was made.
    async fn run(
        self,
        first: async_nats::jetstream::consumer::Consumer<push::OrderedConfig>,
        first_epoch: u64,
    ) {
        // The stream's last sequence when the watch began: a consumer made
        // again after a failure starts right after what was last seen.
        let mut last: Revision = first.cached_info().delivered.stream_sequence;
        let mut consumer = Some(first);
        let mut pause = Duration::from_millis(100);
        loop {
            if self.tx.is_closed() {
                return;
            }
            // Taken before the consumer is made: a reconnection from here on
            // makes it again.
            let mut epoch = self.reconnects.epoch();
            let c = match consumer.take() {
                Some(c) => {
                    epoch = first_epoch;
                    c
                }
                None => {
                    let policy = DeliverPolicy::ByStartSequence {
                        start_sequence: last.saturating_add(1),
                    };
                    match self
                        .stream
                        .create_consumer(ordered(&self.client, self.filter.clone(), policy))
                        .await
                    {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!(error = %e, "NATS watch: re-creating the consumer");
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(Duration::from_secs(2));
                            continue;
                        }
                    }
                }
            };
            let mut messages = match c.messages().await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "NATS watch: subscribing");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            pause = Duration::from_millis(100);
            let mut quiet_until = tokio::time::Instant::now() + SILENCE;
            loop {
                let m = tokio::select! {
                    m = messages.next() => m,
                    () = self.tx.closed() => return,
                    () = tokio::time::sleep_until(quiet_until) => {
                        quiet_until = tokio::time::Instant::now() + SILENCE;
                        match self.catch_up(&mut last).await {
                            Ok(0) => continue,
                            Ok(n) => {
                                tracing::debug!(
                                    "NATS watch: its consumer had missed {n} events; making it again"
                                );
                                break;
                            }
                            Err(Stop) => return,
                        }
                    }
                    // The client reconnected (its node died, say): the
                    // consumer is made again from the last revision seen
                    // rather than trusted to resume by itself.
                    () = self.reconnects.after(epoch) => {
                        tracing::debug!("NATS watch: reconnected; resuming from {last}");
                        break;
                    }
                };
                let m = match m {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "NATS watch interrupted; resuming");
                        break;
                    }
                    None => break,
                };
                let Ok(info) = m.info() else { continue };
                quiet_until = tokio::time::Instant::now() + SILENCE;
                let seq = info.stream_sequence;
                if self
                    .deliver(
                        &mut last,
                        seq,
                        m.subject.as_str(),
                        m.headers.as_ref(),
                        &m.payload,
                    )
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    /// Send the event of message `seq` unless it was sent already (`last`
    /// is the highest sequence sent). `Err` when the watcher has gone.
    async fn deliver(
        &self,
        last: &mut Revision,
        seq: u64,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: &[u8],
    ) -> std::result::Result<(), Stop> {
        if seq <= *last {
            return Ok(());
        }
        *last = seq;
        let Some(key) = record::key(&self.subject_prefix, subject) else {
            return Ok(());
        };
        if !key.starts_with(&self.prefix) {
            return Ok(());
        }
        let ev = if is_marker(headers) {
            WatchEvent::Delete { key, revision: seq }
        } else {
            WatchEvent::Put(Entry {
                key,
                value: payload.to_vec(),
                revision: seq,
            })
        };
        self.tx.send(Ok(ev)).await.map_err(|_| Stop)
    }

    /// Deliver what the stream's leader holds past `last`, up to
    /// [`CATCH_UP`] records; how many were new. A failure to ask is not
    /// an error: the consumer, or the next check, goes on.
    async fn catch_up(&self, last: &mut Revision) -> std::result::Result<usize, Stop> {
        let mut sent = 0;
        for _ in 0..CATCH_UP {
            let from = last.saturating_add(1);
            let m = match next_message(&self.stream, &self.filter, from).await {
                Ok(Some(m)) if m.sequence >= from => m,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(error = ?e, "NATS watch: checking with the leader");
                    break;
                }
            };
            self.deliver(
                last,
                m.sequence,
                m.subject.as_str(),
                Some(&m.headers),
                &m.payload,
            )
            .await?;
            sent += 1;
        }
        Ok(sent)
    }
}

/// The watcher has gone: the feeding task ends.
struct Stop;
