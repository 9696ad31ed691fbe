//! `GET/PATCH /v1/admin/settings`: the settings every replica shares (CRL
//! validity, largest secret, versions kept), kept in the cluster record.
//! Mounted in the admin table ([`super::admin`]), behind its gate.

use axum::extract::State;
use axum::Json;
use kith_api::wire::{SettingsUpdate, SettingsView};
use kith_authority::SettingsChange;

use super::extract::{Admin, Body};
use super::St;
use crate::error::ApiError;

/// The settings in force.
pub(super) async fn show(State(s): St) -> Json<SettingsView> {
    Json(SettingsView::from(&s.authority.cluster_settings()))
}

/// Change some of them; answers the settings now in force.
pub(super) async fn update(
    State(s): St,
    Admin(actor): Admin,
    Body(body): Body<SettingsUpdate>,
) -> Result<Json<SettingsView>, ApiError> {
    let now = s
        .authority
        .update_settings(SettingsChange::from(&body), &actor)
        .await?;
    Ok(Json(SettingsView::from(&now)))
}
