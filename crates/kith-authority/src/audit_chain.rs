//! The audit trail as hash chains: one chain per writer, so that replicas
//! sharing a store never contend on one record.
//!
//! A writer is a server's name, or `local-<random>` for one offline
//! process. Its records are `audit/<writer>/<seq>`, numbered from 1; each
//! carries an HMAC-SHA256 over its content and the MAC of the record before
//! it (`prev`). The writer's head, `audithead/<writer>`, holds the last
//! sequence number and MAC, itself MACed, and only ever moves forward by
//! compare-and-swap: without it, dropping the tail of a chain would leave a
//! shorter chain that still verifies.
//!
//! Appending: create the next records (create-if-absent: two processes with
//! the same writer id cannot both take a number), then advance the head.
//! Appends that arrive while a wave is written go together in the next
//! wave, created concurrently so that the store commits them at once. A
//! process that finds a number taken withdraws its records after it (they
//! link to a record that is not there), reloads the head, adopts the
//! authentic records past it (another process with the same writer id wrote
//! them), helps the head forward, and writes the rest after them. A process
//! that stops between the two writes leaves authentic records past the
//! head: not a break, and the next process writing as it adopts them.
//!
//! The MAC key is derived (HKDF-SHA256, a fixed info string) from a random
//! seed kept in the store sealed by the master key, `auditkey/seed`, rather
//! than from the master key itself: `kith vault rotate` destroys the old
//! master key, and records MACed under a key derived from it could never be
//! verified again. The rotation reseals the seed like every other sealed
//! record; the seed and the key never leave memory otherwise.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::audit_state::{
    lock, seed_aad, valid_writer, AuditSink, Head, HeadRecord, MacKey, SeedRecord,
};
use crate::authority::Authority;
use crate::error::Error;
use crate::keys;
use crate::records::{from_json, to_json, AuditRecord};
use crate::vault::{random_fill, SealKey};

/// Attempts of one append against other processes with the same writer id.
const ATTEMPTS: usize = 64;

impl Authority {
    /// The audit chain this process writes (a server's name, or
    /// `local-<random>`).
    pub fn audit_writer(&self) -> &str {
        &self.inner.audit.writer
    }

    /// Also hand every audit record, once durable, to `sink` (a log
    /// shipper's file). Replaces any earlier sink.
    pub fn set_audit_sink(&self, sink: AuditSink) {
        *self
            .inner
            .audit
            .sink
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(sink);
    }

    /// The audit MAC key: derived once per process from the sealed seed,
    /// which the first writer of the cluster creates.
    pub(crate) async fn audit_mac_key(&self) -> Result<Arc<MacKey>, Error> {
        self.inner
            .audit
            .key
            .get_or_try_init(|| async { self.load_audit_key().await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn load_audit_key(&self) -> Result<MacKey, Error> {
        let store = self.store().clone();
        for _ in 0..ATTEMPTS {
            if let Some(e) = store.get(keys::AUDIT_KEY_KEY).await? {
                let r: SeedRecord = from_json(&e.key, &e.value)?;
                let master = match self.master_for(r.master_version) {
                    Ok(m) => m,
                    // Resealed by a rotation this process has not seen yet.
                    Err(_) => {
                        self.refresh_keyring().await?;
                        self.master_for(r.master_version)?
                    }
                };
                let sealed = hex::decode(&r.sealed)
                    .map_err(|_| Error::Integrity(format!("{}: not hex", keys::AUDIT_KEY_KEY)))?;
                let seed = master
                    .open(&seed_aad(self.cluster(), r.master_version), &sealed)
                    .ok_or_else(|| {
                        Error::Integrity(format!("{} does not decrypt", keys::AUDIT_KEY_KEY))
                    })?;
                return MacKey::derive(&seed, self.cluster());
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            random_fill(seed.as_mut())?;
            let key = MacKey::derive(&*seed, self.cluster())?;
            // The chains begin: vouch for the legacy records there are.
            let mut legacy = crate::audit_state::legacy_set(&store.list(keys::AUDIT_PREFIX).await?);
            legacy.mac = key.legacy_mac(&legacy);
            let (version, master) = self.keyring().sealing();
            let rec = SeedRecord {
                master_version: version,
                sealed: hex::encode(master.seal(&seed_aad(self.cluster(), version), &*seed)?),
                legacy,
            };
            match store.create(keys::AUDIT_KEY_KEY, to_json(&rec)?).await {
                Ok(_) => return Ok(key),
                // Another process made it first: use theirs.
                Err(kith_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended(keys::AUDIT_KEY_KEY.into()))
    }

    /// A master key rotation's share: reseal the audit key seed from the
    /// old master key to the new one. Returns (resealed, conflicts).
    pub(crate) async fn reseal_audit_seed(
        &self,
        (old_version, old_key): (u32, &SealKey),
        (new_version, new_key): (u32, &SealKey),
    ) -> Result<(usize, usize), Error> {
        let Some(e) = self.store().get(keys::AUDIT_KEY_KEY).await? else {
            return Ok((0, 0));
        };
        let r: SeedRecord = from_json(&e.key, &e.value)?;
        if r.master_version != old_version {
            return Ok((0, 0));
        }
        let sealed = hex::decode(&r.sealed)
            .map_err(|_| Error::Integrity(format!("{}: not hex", keys::AUDIT_KEY_KEY)))?;
        let seed = old_key
            .open(&seed_aad(self.cluster(), old_version), &sealed)
            .ok_or_else(|| Error::Integrity(format!("{} does not decrypt", keys::AUDIT_KEY_KEY)))?;
        let rec = SeedRecord {
            master_version: new_version,
            sealed: hex::encode(new_key.seal(&seed_aad(self.cluster(), new_version), &seed)?),
            legacy: r.legacy,
        };
        let written = crate::cas::written(
            self.store()
                .update(&e.key, to_json(&rec)?, e.revision)
                .await,
        )?;
        Ok(if written.is_some() { (1, 0) } else { (0, 1) })
    }

    /// The head of `writer` as stored: `None` when it has none yet. A head
    /// whose MAC is wrong is an integrity error.
    pub(crate) async fn read_audit_head(
        &self,
        key: &MacKey,
        writer: &str,
    ) -> Result<Option<(HeadRecord, u64)>, Error> {
        let hk = keys::audit_head_key(writer);
        let Some(e) = self.store().get(&hk).await? else {
            return Ok(None);
        };
        let h: HeadRecord = from_json(&hk, &e.value)?;
        if h.writer != writer || !key.head_is_authentic(&h) {
            return Err(Error::Integrity(format!(
                "{hk}: the audit chain head is not authentic; run `kith audit verify`"
            )));
        }
        Ok(Some((h, e.revision)))
    }

    async fn load_head(&self, key: &MacKey) -> Result<Head, Error> {
        let writer = &self.inner.audit.writer;
        Ok(match self.read_audit_head(key, writer).await? {
            Some((h, rev)) => Head {
                seq: h.seq,
                mac: h.last_mac,
                revision: Some(rev),
            },
            None => Head {
                seq: 0,
                mac: String::new(),
                revision: None,
            },
        })
    }

    /// Move the stored head from `from` to (`seq`, `mac`) if it is still
    /// at `from`; the new revision, or `None` if it moved meanwhile.
    async fn swap_head(
        &self,
        key: &MacKey,
        from: &Head,
        seq: u64,
        mac: &str,
    ) -> Result<Option<u64>, Error> {
        let writer = &self.inner.audit.writer;
        let h = HeadRecord {
            writer: writer.clone(),
            seq,
            last_mac: mac.to_string(),
            at: self.now(),
            mac: key.head_mac(writer, seq, mac),
        };
        let hk = keys::audit_head_key(writer);
        let value = to_json(&h)?;
        let store = self.store();
        crate::cas::written(match from.revision {
            Some(rev) => store.update(&hk, value, rev).await,
            None => store.create(&hk, value).await,
        })
    }

    /// Append `rec` to this process's chain (numbering, linking and MACing
    /// it), then hand it to the sink.
    ///
    /// Concurrent appends are grouped: whoever holds the chain writes every
    /// record queued meanwhile in one wave (created concurrently, so the
    /// store commits them together; then one head update), so a busy server
    /// pays one round of writes per wave, not two per record.
    pub(crate) async fn append_audit(&self, rec: AuditRecord) -> Result<(), Error> {
        // On a task of its own: a caller that goes away (a client that
        // hangs up drops its request's handler) must not cut a wave that
        // carries other callers' records in half.
        let me = self.clone();
        let task = tokio::spawn(async move { me.append_audit_now(rec).await });
        task.await
            .map_err(|e| Error::Internal(format!("the audit writer task failed: {e}")))?
    }

    async fn append_audit_now(&self, rec: AuditRecord) -> Result<(), Error> {
        let state = &self.inner.audit;
        if !valid_writer(&state.writer) {
            return Err(Error::Invalid(format!(
                "audit writer {:?}: use 1 to 63 of a-z, 0-9 and -",
                state.writer
            )));
        }
        let key = self.audit_mac_key().await?;
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        lock(&state.queue).push((rec.clone(), tx));
        let mut cached = state.head.lock().await;
        let batch = std::mem::take(&mut *lock(&state.queue));
        if !batch.is_empty() {
            let (recs, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let (written, result) = self.write_wave(&key, &mut cached, recs).await;
            for r in &written {
                state.raise_anchor(r.seq, &r.mac);
            }
            let sink = state.sink.read().unwrap_or_else(|p| p.into_inner()).clone();
            let mut written = written.into_iter().peekable();
            for (i, w) in waiters.into_iter().enumerate() {
                let mine = written.next_if(|r| r.batch_index == i);
                if let (Some(r), Some(sink)) = (&mine, &sink) {
                    sink(&r.record);
                }
                let _ = w.send(mine.is_some());
            }
            if let Err(e) = result {
                tracing::warn!(error = %e, "an audit wave failed; its unwritten records are retried one by one");
            }
        }
        // Ours was in this wave or an earlier one, answered before the lock
        // was released. Unwritten: try it alone, and answer its own error.
        if let Ok(true) = rx.try_recv() {
            return Ok(());
        }
        let (written, result) = self.write_wave(&key, &mut cached, vec![rec]).await;
        result?;
        if let Some(r) = written.first() {
            state.raise_anchor(r.seq, &r.mac);
            let sink = state.sink.read().unwrap_or_else(|p| p.into_inner()).clone();
            if let Some(sink) = sink {
                sink(&r.record);
            }
        }
        Ok(())
    }

    /// Write `recs` after the head, in order: the records written (with
    /// their index in `recs`), and whether all were.
    async fn write_wave(
        &self,
        key: &MacKey,
        cached: &mut Option<Head>,
        recs: Vec<AuditRecord>,
    ) -> (Vec<Written>, Result<(), Error>) {
        let mut done = Vec::new();
        let mut pending: Vec<Written> = recs
            .into_iter()
            .enumerate()
            .map(|(batch_index, record)| Written {
                batch_index,
                seq: 0,
                mac: String::new(),
                record,
            })
            .collect();
        for _ in 0..ATTEMPTS {
            if pending.is_empty() {
                return (done, Ok(()));
            }
            match self.write_once(key, cached, &mut pending).await {
                Ok(written) => done.extend(written),
                Err(e) => return (done, Err(e)),
            }
        }
        (
            done,
            Err(Error::Contended(keys::audit_head_key(
                &self.inner.audit.writer,
            ))),
        )
    }

    /// One attempt: chain `pending` after the head, create them all at
    /// once, and move the head past those written. Returns those written
    /// (taken out of `pending`); a number another process took leaves the
    /// rest pending, the head reloaded.
    async fn write_once(
        &self,
        key: &MacKey,
        cached: &mut Option<Head>,
        pending: &mut Vec<Written>,
    ) -> Result<Vec<Written>, Error> {
        let writer = self.inner.audit.writer.clone();
        let head = match cached.clone() {
            Some(h) => h,
            None => {
                let h = self.load_head(key).await?;
                self.adopt_forward(key, h).await?
            }
        };
        let (mut seq, mut prev) = (head.seq, head.mac.clone());
        for w in pending.iter_mut() {
            seq += 1;
            let r = &mut w.record;
            r.writer = writer.clone();
            r.seq = seq;
            r.prev = prev;
            r.mac = key.record_mac(r);
            prev = r.mac.clone();
            (w.seq, w.mac) = (seq, r.mac.clone());
        }
        let store = self.store();
        let mut writes = Vec::with_capacity(pending.len());
        for w in pending.iter() {
            writes.push((keys::audit_record_key(&writer, w.seq), to_json(&w.record)?));
        }
        let results = futures::future::join_all(
            writes
                .into_iter()
                .map(|(k, v)| async move { store.create(&k, v).await }),
        )
        .await;
        let first_failed = results.iter().position(Result::is_err);
        let Some(k) = first_failed else {
            let last = pending.last().map(|w| (w.seq, w.mac.clone()));
            if let Some((seq, mac)) = last {
                self.advance_head(key, cached, head, seq, &mac).await?;
            }
            return Ok(std::mem::take(pending));
        };
        // Another process writing as us took number k (or the store holds
        // a record there): ours after it link to a record that is not
        // there, so they are withdrawn before anyone adopts them.
        for (w, r) in pending.iter().zip(&results).skip(k + 1) {
            if let Ok(rev) = r {
                let rk = keys::audit_record_key(&writer, w.seq);
                match store.delete_if(&rk, *rev).await {
                    Ok(()) | Err(kith_store::Error::RevisionMismatch { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let written: Vec<Written> = pending.drain(..k).collect();
        if let Some(last) = written.last() {
            self.advance_head(key, cached, head, last.seq, &last.mac.clone())
                .await?;
        }
        match results.into_iter().nth(k) {
            Some(Err(kith_store::Error::AlreadyExists { .. })) => {
                // Reload the head and adopt what is past it, then retry.
                *cached = None;
                Ok(written)
            }
            Some(Err(e)) => Err(e.into()),
            _ => Ok(written),
        }
    }

    /// Move the stored head from `from` to (`seq`, `mac`), unless another
    /// process writing as us already moved it there or past it.
    async fn advance_head(
        &self,
        key: &MacKey,
        cached: &mut Option<Head>,
        mut from: Head,
        seq: u64,
        mac: &str,
    ) -> Result<(), Error> {
        *cached = None;
        for _ in 0..ATTEMPTS {
            if from.seq >= seq {
                return Ok(());
            }
            if let Some(rev) = self.swap_head(key, &from, seq, mac).await? {
                *cached = Some(Head {
                    seq,
                    mac: mac.to_string(),
                    revision: Some(rev),
                });
                return Ok(());
            }
            from = self.load_head(key).await?;
        }
        // The records are written; the next append moves the head.
        Ok(())
    }

    /// Adopt the authentic records past the stored head (another process
    /// writing as us, or one that stopped before its head moved), helping
    /// the head forward: where this process's next record goes.
    async fn adopt_forward(&self, key: &MacKey, mut head: Head) -> Result<Head, Error> {
        let writer = self.inner.audit.writer.clone();
        let (mut strays, mut lost) = (0, 0);
        loop {
            let rkey = keys::audit_record_key(&writer, head.seq + 1);
            let Some(e) = self.store().get(&rkey).await? else {
                return Ok(head);
            };
            let found: AuditRecord = from_json(&rkey, &e.value)?;
            if found.writer != writer
                || found.seq != head.seq + 1
                || found.prev != head.mac
                || !key.record_is_authentic(&found)
            {
                // A process writing as us may be withdrawing it right now
                // (see `write_once`). Past a few tries it is an orphan: the
                // rest of a wave cut short (a crash, a store that failed
                // mid-wave) past a record that never landed, or something
                // planted. It is moved aside, kept for `verify` to report,
                // so that it cannot stop this writer's chain for good.
                strays += 1;
                if strays > 20 {
                    self.move_aside(&rkey, head.seq + 1, e).await?;
                    strays = 0;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                head = self.load_head(key).await?;
                continue;
            }
            let mut next = Head {
                seq: found.seq,
                mac: found.mac,
                revision: head.revision,
            };
            match self.swap_head(key, &head, next.seq, &next.mac).await? {
                Some(rev) => next.revision = Some(rev),
                None => {
                    lost += 1;
                    if lost > ATTEMPTS {
                        return Err(Error::Contended(keys::audit_head_key(&writer)));
                    }
                    next = self.load_head(key).await?;
                }
            }
            head = next;
        }
    }
}

impl Authority {
    /// Move the record `e` at `rkey` (number `seq` of this writer's chain)
    /// to [`keys::audit_orphan_key`], if it is still the one read.
    async fn move_aside(&self, rkey: &str, seq: u64, e: kith_store::Entry) -> Result<(), Error> {
        let writer = &self.inner.audit.writer;
        let mut rnd = [0u8; 6];
        crate::vault::random_fill(&mut rnd)?;
        let aside = keys::audit_orphan_key(writer, seq, &hex::encode(rnd));
        let store = self.store();
        store.create(&aside, e.value).await?;
        match store.delete_if(rkey, e.revision).await {
            Ok(()) => {
                tracing::warn!(record = %rkey, moved_to = %aside, "an audit record past a gap in its chain was moved aside (`kith audit verify` lists it)");
                Ok(())
            }
            // Replaced or withdrawn meanwhile: the copy is not needed.
            Err(kith_store::Error::RevisionMismatch { .. }) => {
                let _ = store.delete(&aside).await;
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// A record of a wave, numbered and MACed.
struct Written {
    /// Its place in the wave (which waiter it answers).
    batch_index: usize,
    seq: u64,
    mac: String,
    record: AuditRecord,
}
