//! kith's replicated store: one NATS JetStream key-value bucket that several
//! kith replicas share ([`NatsStore`]).
//!
//! The bucket is a JetStream stream `KV_<bucket>` on subjects
//! `$KV.<bucket>.>`, laid out as NATS's own key-value buckets are (one
//! message kept per subject, delete markers with `KV-Operation: DEL`), so
//! the `nats kv` tools can read it. kith's `/` is NATS's `.` token
//! separator, so a listing reads only the prefix's subjects (from the stream
//! leader, see `list.rs`), never every key. A record's revision is the stream sequence of its message:
//! global to the bucket and increasing.
//!
//! How each promise of [`kith_store::Store`] holds with several writers:
//! - **Reads are the leader's.** The stream is created with direct gets
//!   off, so every `get` is answered by the stream leader, which has
//!   applied every acknowledged write (NATS gives no read-after-write on a
//!   follower's direct get). Token uses, node claims, revocation status
//!   and CRL numbers are all decided on such reads and then written by
//!   compare-and-swap, so a stale read could only lose a race, never win
//!   one; with the leader answering it is not stale in the first place.
//! - **Compare-and-swap** is `Nats-Expected-Last-Subject-Sequence`, checked
//!   by the leader (sound on 2.11+; older servers are refused).
//! - **Retries are idempotent.** Every write carries a random
//!   `Nats-Msg-Id`, kept across the retries of one call; JetStream answers
//!   a repeat within its 2-minute duplicate window with the first write's
//!   sequence, and a retry that meets a conflict checks whether the stored
//!   message is its own. A write whose answer was lost is thus never done
//!   twice, and a create that landed is not reported as `AlreadyExists`.
//! - **Elections are ridden out**: timeouts, "no responders" and "temporarily
//!   unavailable" are retried for [`NatsOptions::retry_window`] (20 s),
//!   then reported as [`kith_store::Error::Unavailable`], never as "absent".
//! - **Watches resume** from the last revision seen after a disconnect.
//! - Durability is the cluster's: acknowledged means stored on a quorum;
//!   the README's server configuration sets `sync_interval: always`.

mod connect;
mod list;
mod options;
mod record;
mod retry;
mod watch;
mod write;

#[cfg(feature = "test-cluster")]
pub mod testing;

pub use options::{NatsOptions, DEFAULT_BUCKET, DEFAULT_REPLICAS, DEFAULT_RETRY_WINDOW};

use async_nats::jetstream::{self, stream};
use futures::stream::BoxStream;
use kith_store::{Entry, Limits, Result, Revision, Store, WatchEvent};

/// The NATS JetStream backend of [`Store`]. Cheap to share behind an `Arc`;
/// any number of processes may use one bucket at once.
pub struct NatsStore {
    client: async_nats::Client,
    reconnects: std::sync::Arc<connect::Reconnects>,
    js: jetstream::Context,
    stream: stream::Stream,
    /// `$KV.<bucket>.`
    prefix: String,
    limits: Limits,
    replicas: usize,
    /// The bucket's listing fence key (see `list.rs`), one for every
    /// process: each listing waits for a fence at or after its own write.
    fence_key: String,
    opts: NatsOptions,
}

impl std::fmt::Debug for NatsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStore")
            .field("servers", &self.opts.servers)
            .field("bucket", &self.opts.bucket)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl NatsStore {
    /// Connect to the cluster, check the server version (2.11 or later) and
    /// that JetStream is on, and open the bucket, creating its stream with
    /// `opts.replicas` replicas if it does not exist yet.
    pub async fn connect(opts: NatsOptions) -> Result<Self> {
        let c = connect::connect(&opts).await?;
        Ok(Self {
            client: c.client,
            reconnects: c.reconnects,
            js: c.js,
            stream: c.stream,
            prefix: format!("$KV.{}.", opts.bucket),
            limits: Limits::new(c.max_value),
            replicas: c.replicas,
            fence_key: format!("{}list", record::FENCE_KEY_PREFIX),
            opts,
        })
    }

    /// The replica count of the bucket's stream (as found, or as created).
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// The name of the NATS server this client is connected to now.
    pub fn connected_server(&self) -> String {
        self.client.server_info().server_name
    }

    /// The options this store was opened with.
    pub fn options(&self) -> &NatsOptions {
        &self.opts
    }
}

#[async_trait::async_trait]
impl Store for NatsStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>> {
        self.get_entry(key).await
    }
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.write_put(key, value).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<Revision> {
        self.write_create(key, value).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, revision: Revision) -> Result<Revision> {
        self.write_update(key, value, revision).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.write_delete(key).await
    }
    async fn delete_if(&self, key: &str, revision: Revision) -> Result<()> {
        self.write_delete_if(key, revision).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>> {
        self.list_prefix(prefix).await
    }
    async fn watch(&self, prefix: &str) -> Result<BoxStream<'static, Result<WatchEvent>>> {
        self.watch_prefix(prefix).await
    }
    fn limits(&self) -> Limits {
        self.limits
    }
    /// Unavailable while the client has no connection to any node of the
    /// cluster (it reconnects by itself); a leader election with the
    /// connection up shows in the writes themselves, which are retried.
    fn writable(&self) -> Result<()> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(kith_store::Error::Unavailable(format!(
                "not connected to NATS ({state}); reconnecting to {}",
                self.opts.servers.join(",")
            ))),
        }
    }
}
