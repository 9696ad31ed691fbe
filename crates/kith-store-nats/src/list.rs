//! Listing by prefix: an ordered consumer filtered to the prefix's subjects
//! that delivers the last message of each, read until nothing is pending.
//!
//! The KV `keys()` call takes no filter and walks every key in the bucket;
//! a subject filter makes a listing cost what it returns.

use std::time::Duration;

use async_nats::jetstream::consumer::{push, DeliverPolicy, ReplayPolicy};
use futures::StreamExt;
use kith_store::{validate_prefix, Entry, Result};

use crate::record::{self, is_marker};
use crate::retry::{classify, retry, Fail};
use crate::NatsStore;

/// The longest wait for the next message of a listing before the attempt
/// is counted as interrupted (and the listing started again).
const NEXT_MESSAGE: Duration = Duration::from_secs(5);

impl NatsStore {
    pub(crate) async fn list_prefix(&self, prefix: &str) -> Result<Vec<Entry>> {
        validate_prefix(prefix)?;
        let filter = record::filter(&self.prefix, prefix);
        retry(self.opts.retry_window, "a listing", |_| {
            self.list_once(&filter, prefix)
        })
        .await
    }

    async fn list_once(&self, filter: &str, prefix: &str) -> Result<Vec<Entry>, Fail> {
        let consumer = self
            .stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.client.new_inbox(),
                description: Some("kith listing".into()),
                filter_subject: filter.to_string(),
                deliver_policy: DeliverPolicy::LastPerSubject,
                replay_policy: ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(classify)?;
        let mut out = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(out);
        }
        let mut messages = consumer.messages().await.map_err(classify)?;
        loop {
            let m = match tokio::time::timeout(NEXT_MESSAGE, messages.next()).await {
                Err(_) => return Err(Fail::Transient("a listing stalled".into())),
                Ok(None) => return Err(Fail::Transient("a listing ended early".into())),
                Ok(Some(Err(e))) => return Err(Fail::Transient(e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            let info = m.info().map_err(|e| Fail::Transient(e.to_string()))?;
            let (seq, pending) = (info.stream_sequence, info.pending);
            if !is_marker(m.headers.as_ref()) {
                if let Some(key) = record::key(&self.prefix, m.subject.as_str()) {
                    if key.starts_with(prefix) {
                        out.push(Entry {
                            key,
                            value: m.payload.to_vec(),
                            revision: seq,
                        });
                    }
                }
            }
            if pending == 0 {
                break;
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}
