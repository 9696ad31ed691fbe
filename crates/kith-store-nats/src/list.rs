//! Listing by prefix: a walk of the stream answered by its leader, one
//! `STREAM.MSG.GET` with `next_by_subj` (the prefix's subject filter) per
//! record, from sequence 1 until none is left.
//!
//! Why not a consumer: an ephemeral consumer may be placed on a follower
//! and deliver from that follower's copy of the stream, which can lag the
//! leader (seen here: a listing right after a node restarted missed a
//! third of the certificates). The listings kith decides on (a name's live
//! certificates, a name's reservations, the revocations a CRL must carry)
//! must not be stale, so they are answered where every acknowledged write
//! is: the leader. The KV `keys()` call would also walk every key of the
//! bucket; the subject filter makes a listing cost what it returns.
//!
//! Records are applied in stream order: a key seen twice keeps its later
//! value, a delete marker after a value removes it, so a walk that races
//! writers ends with each key's state as of when the walk passed it.
//!
//! A walk costs a round trip per record, so a long listing (past
//! [`WALK`] records: `kith store copy`, a status of thousands of nodes)
//! reads the rest through an ordered consumer from where the walk stopped,
//! and proves that consumer's copy of the stream current with a fence: a
//! write to the bucket's fence key made just before, which the consumer
//! must deliver before the listing may end. A lagging copy delivers what it
//! lacked before the fence, since it applies writes in order.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::HeaderMap;
use futures::StreamExt;
use kith_store::{validate_prefix, Entry, Result};

use crate::record::{self, is_marker, FENCE_KEY_PREFIX};
use crate::retry::{backoff, classify, classify_consumer, retry, transient_api, Fail};
use crate::NatsStore;

/// Records read one request each before a listing switches to a consumer.
const WALK: usize = 512;

/// The longest wait for the next message of a consumer listing before the
/// attempt counts as interrupted (and that part is read again).
const NEXT_MESSAGE: Duration = Duration::from_secs(5);

/// What a listing has found so far, applied in stream order.
struct Found<'a> {
    subject_prefix: &'a str,
    prefix: &'a str,
    entries: BTreeMap<String, Entry>,
}

impl Found<'_> {
    fn apply(&mut self, subject: &str, headers: Option<&HeaderMap>, payload: &[u8], seq: u64) {
        let Some(key) = record::key(self.subject_prefix, subject) else {
            return;
        };
        if !key.starts_with(self.prefix) || key.starts_with(FENCE_KEY_PREFIX) {
            return;
        }
        if is_marker(headers) {
            self.entries.remove(&key);
        } else {
            self.entries.insert(
                key.clone(),
                Entry {
                    key,
                    value: payload.to_vec(),
                    revision: seq,
                },
            );
        }
    }
}

impl NatsStore {
    pub(crate) async fn list_prefix(&self, prefix: &str) -> Result<Vec<Entry>> {
        validate_prefix(prefix)?;
        let filter = record::filter(&self.prefix, prefix);
        let mut found = Found {
            subject_prefix: &self.prefix,
            prefix,
            entries: BTreeMap::new(),
        };
        let mut next = 1;
        for _ in 0..WALK {
            // Each step is retried on its own: a leader change in the
            // middle of a long walk resumes where it was.
            let step = retry(self.opts.retry_window, "a listing", |_| {
                next_message(&self.stream, &filter, next)
            })
            .await?;
            let Some(m) = step else {
                return Ok(found.entries.into_values().collect());
            };
            // Each answer must move forward, or a faulty server could keep
            // a walk going for ever.
            if m.sequence < next {
                return Err(kith_store::Error::Backend(format!(
                    "NATS answered sequence {} when asked for {next} or later",
                    m.sequence
                )));
            }
            next = m.sequence.checked_add(1).ok_or_else(|| {
                kith_store::Error::Backend("NATS answered the last possible sequence".into())
            })?;
            found.apply(m.subject.as_str(), Some(&m.headers), &m.payload, m.sequence);
        }
        // Long: the rest through a consumer, fenced.
        let (mut from, start, mut attempt) = (next, std::time::Instant::now(), 0);
        loop {
            match self.consume_rest(&filter, &mut from, &mut found).await {
                Ok(()) => return Ok(found.entries.into_values().collect()),
                Err(Fail::Final(e)) => return Err(e),
                Err(Fail::Transient(why)) => {
                    let pause = backoff(attempt);
                    if start.elapsed() + pause > self.opts.retry_window {
                        return Err(kith_store::Error::Unavailable(format!(
                            "NATS did not complete a listing within {} s: {why}",
                            self.opts.retry_window.as_secs()
                        )));
                    }
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Read every message matching `filter` from sequence `*from` through a
    /// consumer until the fence write it made first is delivered
    /// and nothing is pending. `*from` advances as messages are applied, so
    /// a retry after an interruption goes on from there.
    async fn consume_rest(
        &self,
        filter: &str,
        from: &mut u64,
        found: &mut Found<'_>,
    ) -> Result<(), Fail> {
        let fence_subject = record::subject(&self.prefix, &self.fence_key);
        let fence = self
            .js
            .send_publish(
                fence_subject.clone(),
                PublishMessage::build().payload(bytes::Bytes::from_static(b"fence")),
            )
            .await
            .map_err(classify)?
            .await
            .map_err(classify)?
            .sequence;
        let consumer = self
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("kith listing".into()),
                // The whole bucket's filter covers the fence already (and
                // JetStream refuses overlapping filters).
                filter_subjects: if filter == format!("{}>", self.prefix) {
                    vec![filter.to_string()]
                } else {
                    vec![filter.to_string(), fence_subject.clone()]
                },
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: *from,
                },
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(classify_consumer)?;
        let mut messages = consumer.messages().await.map_err(classify)?;
        let mut fenced = false;
        loop {
            let m = match tokio::time::timeout(NEXT_MESSAGE, messages.next()).await {
                Err(_) => return Err(Fail::Transient("a listing stalled".into())),
                Ok(None) => return Err(Fail::Transient("a listing ended early".into())),
                Ok(Some(Err(e))) => return Err(Fail::Transient(e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            let info = m.info().map_err(|e| Fail::Transient(e.to_string()))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if m.subject.as_str() == fence_subject {
                fenced |= seq >= fence;
            } else {
                found.apply(m.subject.as_str(), m.headers.as_ref(), &m.payload, seq);
            }
            *from = seq.saturating_add(1);
            if fenced && pending == 0 {
                return Ok(());
            }
        }
    }
}

/// The first message at or after `seq` whose subject matches `filter`,
/// answered by the stream's leader (also how a watch catches up when its
/// consumer falls silent: `watch.rs`).
pub(crate) async fn next_message(
    stream: &async_nats::jetstream::stream::Stream,
    filter: &str,
    seq: u64,
) -> Result<Option<async_nats::jetstream::message::StreamMessage>, Fail> {
    let got = stream
        .raw_message_builder()
        .sequence(seq)
        .next_by_subject(filter.to_string())
        .send()
        .await;
    match got {
        Ok(m) => Ok(Some(m)),
        Err(e) => match e.kind() {
            LastRawMessageErrorKind::NoMessageFound => Ok(None),
            LastRawMessageErrorKind::InvalidSubject => {
                Err(Fail::backend(format!("invalid subject filter {filter}")))
            }
            LastRawMessageErrorKind::JetStream(j) if !transient_api(j.code()) => {
                Err(Fail::backend(j))
            }
            _ => Err(Fail::Transient(e.to_string())),
        },
    }
}
