//! The Store conformance suite: every rule of the [`Store`] contract as a case.
//!
//! Each case is a `pub async fn(&dyn Store)` that builds its own data (fresh random app, user
//! and notification ids, fixed times from [`fixtures::T0`]) on a store handed in fresh, and
//! panics when the store breaks the contract. Run them all from a test file with
//! [`store_conformance!`](crate::store_conformance), one `#[test]` per case:
//!
//! ```no_run
//! tidings_testkit::store_conformance!(async { tidings_memory::MemoryStore::new() });
//! # fn main() {}
//! ```
//!
//! or in one test with [`run_all`]. [`CASES`] lists every case by name; the macro and the list
//! are generated from one list of names, so a case cannot be in one and missing from the other.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use tidings::Store;

pub mod fixtures;

mod endpoint;
mod lease;
mod lifecycle;
mod notify;
mod query;
mod state;
mod support;

#[cfg(test)]
mod selftest;

pub use endpoint::*;
pub use lease::*;
pub use lifecycle::*;
pub use notify::*;
pub use query::*;
pub use state::*;

/// The future a case returns.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One case of the suite: its name and how to run it on a fresh store.
#[derive(Clone, Copy)]
pub struct StoreCase {
    /// The case's function name, e.g. `reregistered_address_moves_to_new_user`.
    pub name: &'static str,
    /// Runs the case; panics when the store breaks the contract.
    pub run: for<'a> fn(&'a dyn Store) -> CaseFuture<'a>,
}

impl fmt::Debug for StoreCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Every case of the suite, in a fixed order.
pub const CASES: &[StoreCase] = crate::__store_cases!(list);

/// Runs every case, each on a fresh store from `factory`, printing each name before it runs (a
/// failing case panics, and the test output shows which). Prefer
/// [`store_conformance!`](crate::store_conformance), which reports each case as its own test.
///
/// Needs a tokio runtime with the time driver enabled (for
/// [`wait_for_work_returns_by_the_timeout`]).
pub async fn run_all<F, Fut, S>(mut factory: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
    S: Store,
{
    for case in CASES {
        eprintln!("store conformance: {}", case.name);
        let store = factory().await;
        (case.run)(&store).await;
    }
}

/// Expands to one test per case of the Store conformance suite, inside a module named
/// `store_conformance` (or the name given with `mod <name>,`), each running the case on a fresh
/// store from the factory expression — an expression of a future that yields the store:
///
/// ```no_run
/// # use tidings_memory::MemoryStore;
/// // A fresh store per case; a database store would create a schema of its own here.
/// async fn fresh_store() -> MemoryStore {
///     MemoryStore::new()
/// }
///
/// tidings_testkit::store_conformance!(async { tidings_memory::MemoryStore::new() });
/// tidings_testkit::store_conformance!(mod via_helper, async { fresh_store().await });
/// # fn main() {}
/// ```
///
/// The expression is evaluated once per test, inside the test's own multi-threaded tokio
/// runtime (two worker threads), and may use items of the module that invokes the macro. The
/// calling crate needs no dependency besides `tidings-testkit`.
#[macro_export]
macro_rules! store_conformance {
    (mod $name:ident, $factory:expr $(,)?) => {
        $crate::__store_cases!(tests $name ($factory));
    };
    ($factory:expr $(,)?) => {
        $crate::__store_cases!(tests store_conformance ($factory));
    };
}

/// The one list of case names; expands to [`CASES`] (`list`) or to the tests of
/// [`store_conformance!`] (`tests`). Add a new case here and nowhere else.
#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases {
    ($($mode:tt)*) => {
        $crate::__store_cases_expand! {
            ($($mode)*)
            // Notifications and fanout.
            insert_is_idempotent_by_app_notification_id,
            concurrent_inserts_of_one_app_notification_id_create_one,
            insert_enqueues_one_delivery_per_active_targeted_endpoint,
            fallback_alerts_go_only_to_apns_endpoints_after_the_delay,
            fetch_cancels_the_fallback_for_that_endpoint_only,
            stored_items_round_trip_unchanged,
            // Endpoints.
            endpoints_are_listed_oldest_first_active_or_not,
            reregistered_address_moves_to_new_user,
            reregistered_address_of_same_user_refreshes_the_endpoint,
            installation_reregistration_replaces_the_address,
            deleted_endpoint_gets_nothing_more,
            deleting_another_users_endpoint_is_not_found,
            stale_endpoints_are_deactivated_and_lose_pending_deliveries,
            // Leases and outcomes.
            lease_is_exclusive_under_concurrent_leasing,
            lease_takes_the_oldest_due_first_up_to_the_limit,
            expired_lease_is_taken_again_and_the_old_token_goes_stale,
            attempt_count_increases_per_lease,
            rescheduled_delivery_is_not_leased_before_its_time,
            retry_outcome_releases_the_lease,
            finished_deliveries_are_never_leased_again,
            outcome_for_a_purged_delivery_is_stale,
            endpoint_gone_deactivates_the_endpoint_and_drops_its_deliveries,
            a_retry_batched_with_its_endpoints_gone_is_dropped,
            endpoint_gone_for_a_changed_address_keeps_the_endpoint,
            // State and sync.
            change_sequence_increases_strictly_per_user,
            concurrent_changes_get_distinct_sequences,
            state_update_that_changes_nothing_bumps_nothing,
            state_change_enqueues_sync_signals_to_other_silent_capable_endpoints,
            sync_signals_coalesce_while_pending,
            apns_sync_signals_respect_the_background_budget,
            bulk_state_update_changes_many_and_signals_once,
            state_change_cancels_pending_fallback_alerts,
            deleting_a_notification_drops_its_pending_deliveries,
            expired_sync_signals_are_never_leased_and_are_purged,
            // Queries.
            history_pages_return_every_item_once_while_new_items_arrive,
            history_filters_select_matching_items_on_every_page,
            history_and_changes_leave_out_expired_items,
            change_feed_pages_in_sequence_order,
            another_users_notification_is_not_found,
            // Lifecycle.
            purge_removes_expired_notifications_and_their_pending_deliveries,
            purge_removes_at_most_limit_notifications_per_call,
            expired_deliveries_are_never_leased_even_before_purge,
            delete_user_leaves_nothing_of_that_user,
            wait_for_work_returns_by_the_timeout,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_cases_expand {
    ((list) $($case:ident,)*) => {
        &[$(
            $crate::store::StoreCase {
                name: ::core::stringify!($case),
                run: |store| ::std::boxed::Box::pin($crate::store::$case(store)),
            },
        )*]
    };
    ((tests $module:ident ($factory:expr)) $($case:ident,)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::__private::tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .expect("building the test's tokio runtime")
                        .block_on(async {
                            let store = ($factory).await;
                            $crate::store::$case(&store).await;
                        });
                }
            )*
        }
    };
}
