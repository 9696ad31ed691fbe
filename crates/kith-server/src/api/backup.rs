//! `GET /v1/admin/backup`: every record of the CA's store in one backup
//! file (`kith backup`), still sealed by the master key.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::extract::Admin;
use super::St;
use crate::error::ApiError;

/// The media type of a backup: one JSON object per line.
pub(crate) const BACKUP_MEDIA_TYPE: &str = "application/x-ndjson";

/// One backup at a time in this process: each holds the whole store in
/// memory, so concurrent ones wait rather than multiply that.
static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

pub(super) async fn download(
    axum::extract::State(s): St,
    Admin(actor): Admin,
) -> Result<Response, ApiError> {
    let _slot = ONE_AT_A_TIME
        .acquire()
        .await
        .map_err(|_| ApiError::new(kith_api::ErrorCode::Internal, "the backup slot is closed"))?;
    let bytes = s.authority.backup(&actor).await?;
    Ok((
        [
            (CONTENT_TYPE, BACKUP_MEDIA_TYPE),
            (CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response())
}
