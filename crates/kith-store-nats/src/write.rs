//! Single-key reads and writes: get, put, create, update, delete.

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::ErrorCode;
use bytes::Bytes;
use kith_store::{validate_key, Entry, Error, Result, Revision};

use crate::record::{self, is_marker, new_write_id, write_id, KV_OPERATION};
use crate::retry::{api_error, classify, retry, transient_api, Fail};
use crate::NatsStore;

/// Rounds of a create or a delete that keep losing to other writers before
/// the key is reported contended (the caller may try again).
const LOOP_ATTEMPTS: usize = 64;

/// The condition a write is published under.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// None: `put`.
    Any,
    /// The subject's last sequence must be this (0: no message at all).
    Last(u64),
}

/// How one conditional publish ended.
enum Published {
    Stored(Revision),
    /// The subject's last sequence was not the expected one (and the stored
    /// message is not this call's own).
    Conflict,
}

impl NatsStore {
    /// The newest message of `key` (a value or a marker), answered by the
    /// stream leader; `None` if the subject has no message.
    async fn last(&self, subject: &str) -> Result<Option<StreamMessage>, Fail> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(m)),
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => Ok(None),
                LastRawMessageErrorKind::InvalidSubject => {
                    Err(Fail::backend(format!("invalid subject {subject}")))
                }
                LastRawMessageErrorKind::JetStream(j) if !transient_api(j.code()) => {
                    Err(Fail::backend(j))
                }
                _ => Err(Fail::Transient(e.to_string())),
            },
        }
    }

    async fn last_retried(&self, key: &str) -> Result<Option<StreamMessage>> {
        let subject = record::subject(&self.prefix, key);
        retry(self.opts.retry_window, "a read", |_| self.last(&subject)).await
    }

    pub(crate) async fn get_entry(&self, key: &str) -> Result<Option<Entry>> {
        validate_key(key)?;
        Ok(self.last_retried(key).await?.and_then(|m| {
            (!is_marker(Some(&m.headers))).then(|| Entry {
                key: key.to_string(),
                value: m.payload.to_vec(),
                revision: m.sequence,
            })
        }))
    }

    /// Publish one message under `expect`, retried through elections with
    /// one write id, so a retry of a write that landed is answered with the
    /// stored sequence instead of being written again or reported as a
    /// conflict.
    async fn publish(
        &self,
        key: &str,
        payload: Bytes,
        delete: bool,
        expect: Expect,
    ) -> Result<Published> {
        let subject = record::subject(&self.prefix, key);
        let id = new_write_id();
        retry(self.opts.retry_window, "a write", |attempt| {
            let (subject, id, payload) = (subject.clone(), id.clone(), payload.clone());
            let size = payload.len();
            async move {
                let mut msg = Publish::build().payload(payload).message_id(&id);
                if delete {
                    msg = msg.header(KV_OPERATION, "DEL");
                }
                if let Expect::Last(seq) = expect {
                    msg = msg.expected_last_subject_sequence(seq);
                }
                let ack = match self.js.send_publish(subject.clone(), msg).await {
                    Ok(fut) => fut.await,
                    Err(e) => Err(e),
                };
                match ack {
                    Ok(ack) => Ok(Published::Stored(ack.sequence)),
                    // 10164: the leader has another write of this subject
                    // in flight and cannot check the condition yet. Nothing
                    // was stored and nothing decided: try again.
                    // 10158: our own earlier attempt (same message id) is
                    // still being committed: its outcome is not known yet,
                    // so ask again rather than report a failure that lands.
                    Err(e)
                        if api_error(&e).is_some_and(|j| {
                            j.error_code() == ErrorCode::STREAM_WRONG_LAST_SEQUENCE_CONSTANT
                                || j.error_code() == ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT
                        }) =>
                    {
                        Err(Fail::Transient(e.to_string()))
                    }
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        // After an unanswered attempt, the stored message
                        // may be this call's own.
                        if attempt > 0 {
                            if let Some(m) = self.last(&subject).await? {
                                if write_id(Some(&m.headers)).as_deref() == Some(id.as_str()) {
                                    return Ok(Published::Stored(m.sequence));
                                }
                            }
                        }
                        Ok(Published::Conflict)
                    }
                    Err(e) if e.kind() == PublishErrorKind::MaxPayloadExceeded => {
                        Err(Fail::Final(Error::ValueTooLarge {
                            key: key.to_string(),
                            size,
                            max: self.limits.max_value,
                        }))
                    }
                    Err(e) => Err(classify(e)),
                }
            }
        })
        .await
    }

    pub(crate) async fn write_put(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        validate_key(key)?;
        self.limits.check_value(key, value.len())?;
        match self.publish(key, value.into(), false, Expect::Any).await? {
            Published::Stored(r) => Ok(r),
            Published::Conflict => Err(Error::Backend(format!(
                "an unconditional write of {key} was refused as a conflict"
            ))),
        }
    }

    pub(crate) async fn write_create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        validate_key(key)?;
        self.limits.check_value(key, value.len())?;
        let value = Bytes::from(value);
        // Absent is "no message" or "a delete marker": the condition is the
        // marker's sequence, read again each time another writer moves it.
        let mut expect = 0;
        for _ in 0..LOOP_ATTEMPTS {
            match self
                .publish(key, value.clone(), false, Expect::Last(expect))
                .await?
            {
                Published::Stored(r) => return Ok(r),
                Published::Conflict => match self.last_retried(key).await? {
                    Some(m) if is_marker(Some(&m.headers)) => expect = m.sequence,
                    Some(_) => {
                        return Err(Error::AlreadyExists {
                            key: key.to_string(),
                        })
                    }
                    None => expect = 0,
                },
            }
        }
        Err(Error::Contended {
            key: key.to_string(),
        })
    }

    pub(crate) async fn write_update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: Revision,
    ) -> Result<Revision> {
        validate_key(key)?;
        self.limits.check_value(key, value.len())?;
        self.conditional(key, value.into(), false, revision).await
    }

    pub(crate) async fn write_delete_if(&self, key: &str, revision: Revision) -> Result<()> {
        validate_key(key)?;
        self.conditional(key, Bytes::new(), true, revision)
            .await
            .map(|_| ())
    }

    /// Delete whatever is there: a delete marker conditional on the current
    /// value, so an absent key gets no marker and a racing write is either
    /// before (deleted) or after (kept) this delete, never half of it.
    pub(crate) async fn write_delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        loop {
            let Some(e) = self.get_entry(key).await? else {
                return Ok(());
            };
            match self
                .publish(key, Bytes::new(), true, Expect::Last(e.revision))
                .await?
            {
                Published::Stored(_) => return Ok(()),
                Published::Conflict => continue,
            }
        }
    }

    async fn conditional(
        &self,
        key: &str,
        payload: Bytes,
        delete: bool,
        revision: Revision,
    ) -> Result<Revision> {
        // Revision 0 is "no message" to JetStream; no stored value has it.
        if revision == 0 {
            return Err(self.mismatch(key, revision).await);
        }
        match self
            .publish(key, payload, delete, Expect::Last(revision))
            .await?
        {
            Published::Stored(r) => Ok(r),
            Published::Conflict => Err(self.mismatch(key, revision).await),
        }
    }

    async fn mismatch(&self, key: &str, expected: Revision) -> Error {
        let current = match self.get_entry(key).await {
            Ok(e) => e.map(|e| e.revision),
            Err(e) => return e,
        };
        Error::RevisionMismatch {
            key: key.to_string(),
            expected,
            current,
        }
    }
}
