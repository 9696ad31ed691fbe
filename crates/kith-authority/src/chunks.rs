//! Records that can outgrow one store value (secret values, CRLs) are
//! written and read through [`kith_store::chunked`]: split over `chunk/`
//! keys behind a small head when larger than the backend's limit. This
//! module holds what the authority adds: its clock for chunk ids, and the
//! sweep of chunks no head names.

use std::time::SystemTime;

use kith_store::chunked;

use crate::authority::Authority;
use crate::error::Error;
use crate::keys::SPLIT_PREFIXES;

impl Authority {
    /// The time chunk ids carry (the authority's clock, so a test's
    /// manual clock ages orphans too).
    pub(crate) fn chunk_time(&self) -> SystemTime {
        SystemTime::from(self.now())
    }

    /// Remove chunks that no secret value or CRL names and that were
    /// written over [`chunked::ORPHAN_GRACE`] ago: those of a writer killed
    /// between its chunks and its head, or of a removal that failed
    /// half-way. Safe to run from any process at any time; the server runs
    /// it from its maintenance tick. Returns how many chunk keys went.
    pub async fn sweep_orphan_chunks(&self) -> Result<usize, Error> {
        Ok(chunked::sweep(
            &**self.store(),
            SPLIT_PREFIXES,
            self.chunk_time(),
            chunked::ORPHAN_GRACE,
        )
        .await?)
    }
}
