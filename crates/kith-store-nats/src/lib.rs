//! kith's replicated store: one NATS JetStream key-value bucket that several
//! kith replicas share.
//!
//! (Implementation in progress: `NatsStore::connect` is the only entry point.)

mod options;

pub use options::{NatsOptions, DEFAULT_BUCKET, DEFAULT_REPLICAS, DEFAULT_RETRY_WINDOW};

use kith_store::{Error, Result, Store};

/// The NATS JetStream backend of [`Store`].
pub struct NatsStore {
    _opts: NatsOptions,
}

impl NatsStore {
    /// Connect to the cluster, check the server version (2.11 or later),
    /// and open (or create) the bucket.
    pub async fn connect(opts: NatsOptions) -> Result<Self> {
        let _ = opts;
        Err(Error::Backend("the NATS store is not built yet".into()))
    }
}

#[async_trait::async_trait]
impl Store for NatsStore {
    async fn get(&self, _: &str) -> Result<Option<kith_store::Entry>> {
        Err(Error::Backend("not built yet".into()))
    }
    async fn put(&self, _: &str, _: Vec<u8>) -> Result<kith_store::Revision> {
        Err(Error::Backend("not built yet".into()))
    }
    async fn create(&self, _: &str, _: Vec<u8>) -> Result<kith_store::Revision> {
        Err(Error::Backend("not built yet".into()))
    }
    async fn update(&self, _: &str, _: Vec<u8>, _: u64) -> Result<kith_store::Revision> {
        Err(Error::Backend("not built yet".into()))
    }
    async fn delete(&self, _: &str) -> Result<()> {
        Err(Error::Backend("not built yet".into()))
    }
    async fn delete_if(&self, _: &str, _: u64) -> Result<()> {
        Err(Error::Backend("not built yet".into()))
    }
    async fn list(&self, _: &str) -> Result<Vec<kith_store::Entry>> {
        Err(Error::Backend("not built yet".into()))
    }
    async fn watch(
        &self,
        _: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<kith_store::WatchEvent>>> {
        Err(Error::Backend("not built yet".into()))
    }
    fn limits(&self) -> kith_store::Limits {
        kith_store::Limits::new(1 << 20)
    }
}
