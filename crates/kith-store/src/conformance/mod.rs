//! The suite every [`Store`] backend must pass. A backend's tests call
//! [`run_all`] with a fresh store; each check uses its own key prefix.
//!
//! The suite writes one value of exactly [`Store::limits`]' `max_value`
//! bytes, so it expects a backend whose limit is at least 64 KiB (every
//! real one is) and can hold a value of that size in memory a few times.

use std::sync::Arc;

use crate::Store;

mod basics;
mod chunked;
mod listing;
mod races;
mod values;
mod watching;

/// Run every check against `store`, panicking with the check's name on failure.
pub async fn run_all(store: Arc<dyn Store>) {
    basics::get_missing(&*store).await;
    basics::put_get_roundtrip(&*store).await;
    basics::create_only_if_absent(&*store).await;
    basics::update_compare_and_swap(&*store).await;
    basics::revisions_increase(&*store).await;
    basics::delete_semantics(&*store).await;
    basics::delete_if_revision(&*store).await;
    listing::list_by_prefix(&*store).await;
    listing::list_zero_matches(&*store).await;
    listing::list_after_deletes(&*store).await;
    values::binary_and_large_values(&*store).await;
    values::limits_honoured(&*store).await;
    basics::invalid_keys_refused(&*store).await;
    watching::watch_sees_changes(&*store).await;
    watching::watch_in_revision_order(store.clone()).await;
    races::concurrent_create_one_winner(store.clone()).await;
    races::concurrent_cas_counter_exact(store.clone()).await;
    races::update_racing_delete_if(store.clone()).await;
    races::update_racing_delete(store.clone()).await;
    races::create_racing_create_rounds(store.clone()).await;
    races::create_racing_delete_if(store.clone()).await;
}

/// Run every check of split values ([`crate::chunked`]) against `store`,
/// which must be fresh (the checks count every chunk in it) and have a
/// small limit (they write values of several times it, and 5 MiB):
/// 64 KiB to 1 MiB.
pub async fn run_chunked(store: Arc<dyn Store>) {
    let max = store.limits().max_value;
    assert!(
        (64 * 1024..=1024 * 1024).contains(&max),
        "run_chunked: the suite needs a limit of 64 KiB to 1 MiB, got {max}"
    );
    let now = std::time::SystemTime::now();
    chunked::round_trips(&*store, now).await;
    chunked::replacements_leave_nothing_behind(&*store, now).await;
    chunked::damage_is_reported_not_returned(&*store, now).await;
    chunked::a_replaced_head_is_read_again(&*store, now).await;
    chunked::readers_racing_a_writer_never_see_a_mix(store.clone(), now).await;
    chunked::orphans_are_swept(&*store, now).await;
    chunked::chunks_stay_out_of_other_listings(&*store, now).await;
}
