//! `GET /v1/admin/backup`: every record of the CA's store in one backup
//! file (`kith backup`), still sealed by the master key.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::extract::Admin;
use super::St;
use crate::error::ApiError;

/// The media type of a backup: one JSON object per line.
pub(crate) const BACKUP_MEDIA_TYPE: &str = "application/x-ndjson";

pub(super) async fn download(
    axum::extract::State(s): St,
    Admin(actor): Admin,
) -> Result<Response, ApiError> {
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
