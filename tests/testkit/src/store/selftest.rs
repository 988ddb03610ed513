//! The suite checks itself: it passes on `MemoryStore`, and a case fails when a store breaks
//! the rule that case is about (a wrapper injects one fault at a time).

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;
use tidings::{
    AppId, BulkStateUpdate, ChangePage, ChangesQuery, DeliveryId, DeliveryOutcome, Endpoint,
    EndpointId, HistoryPage, HistoryQuery, Inserted, LeaseRequest, LeaseToken, LeasedDelivery,
    Notification, NotificationId, OutcomeReport, PlatformSet, PurgeReport, StateUpdate, Store,
    StoreError, SyncSchedule, Timestamp, UserId,
};
use tidings_memory::MemoryStore;

use super::{StoreCase, CASES};

/// One broken rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// None: the wrapper only forwards.
    Nothing,
    /// Every insert gets a fresh app notification id, so repeats create duplicates.
    DuplicateInserts,
    /// Fanout ignores the target platforms.
    IgnoreTargets,
    /// Leases lapse the moment they are taken.
    LeasesLapseAtOnce,
    /// Outcomes are applied under whatever lease currently holds the delivery.
    StaleOutcomesApplied,
    /// History ignores the cursor.
    HistoryIgnoresCursor,
    /// The change feed comes newest first.
    ChangesReversed,
    /// `notification` finds a notification whoever asks.
    ReadsIgnoreOwner,
    /// `notification` ignores expiry.
    ExpiredStillServed,
    /// State changes never enqueue sync signals.
    NoSyncSignals,
    /// State changes ignore the APNs background budget.
    NoBackgroundBudget,
    /// Purging removes nothing.
    PurgeKeepsEverything,
    /// `delete_user` does nothing.
    DeleteUserForgetsNothing,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    fault: Fault,
    /// Who owns each inserted notification, for [`Fault::ReadsIgnoreOwner`].
    owners: Mutex<HashMap<NotificationId, (AppId, UserId)>>,
    /// The latest lease of each delivery, for [`Fault::StaleOutcomesApplied`].
    leases: Mutex<HashMap<DeliveryId, LeaseToken>>,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Faulty {
            inner: MemoryStore::new(),
            fault,
            owners: Mutex::default(),
            leases: Mutex::default(),
        }
    }
}

impl Faulty {
    /// A state change's sync schedule as the faulty store treats it.
    fn sync(&self, sync: Option<SyncSchedule>) -> Option<SyncSchedule> {
        match self.fault {
            Fault::NoSyncSignals => None,
            Fault::NoBackgroundBudget => sync.map(|s| SyncSchedule {
                apns_budget: None,
                ..s
            }),
            _ => sync,
        }
    }
}

#[async_trait]
impl Store for Faulty {
    async fn upsert_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, StoreError> {
        self.inner.upsert_endpoint(endpoint).await
    }

    async fn endpoints(&self, app: &AppId, user: &UserId) -> Result<Vec<Endpoint>, StoreError> {
        self.inner.endpoints(app, user).await
    }

    async fn delete_endpoint(
        &self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Result<(), StoreError> {
        self.inner.delete_endpoint(app, user, id).await
    }

    async fn insert_notification(&self, mut n: Notification) -> Result<Inserted, StoreError> {
        if self.fault == Fault::DuplicateInserts {
            n.app_notification_id = NotificationId::new_random().to_string();
        }
        if self.fault == Fault::IgnoreTargets {
            n.targets = PlatformSet::ALL;
        }
        let inserted = self.inner.insert_notification(n).await?;
        let stored = &inserted.notification;
        self.owners
            .lock()
            .unwrap()
            .insert(stored.id, (stored.app.clone(), stored.user.clone()));
        Ok(inserted)
    }

    async fn notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError> {
        let owner = self.owners.lock().unwrap().get(&id).cloned();
        match (self.fault, owner) {
            (Fault::ReadsIgnoreOwner, Some((app, user))) => {
                self.inner.notification(&app, &user, id, now).await
            }
            (Fault::ExpiredStillServed, _) => {
                self.inner
                    .notification(app, user, id, Timestamp::EPOCH)
                    .await
            }
            _ => self.inner.notification(app, user, id, now).await,
        }
    }

    async fn record_fetch(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        endpoint: EndpointId,
        at: Timestamp,
    ) -> Result<Notification, StoreError> {
        self.inner.record_fetch(app, user, id, endpoint, at).await
    }

    async fn update_state(&self, mut update: StateUpdate) -> Result<Notification, StoreError> {
        update.sync = self.sync(update.sync);
        self.inner.update_state(update).await
    }

    async fn update_states(
        &self,
        mut update: BulkStateUpdate,
    ) -> Result<Vec<Option<Notification>>, StoreError> {
        update.sync = self.sync(update.sync);
        self.inner.update_states(update).await
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let mut query = query.clone();
        if self.fault == Fault::HistoryIgnoresCursor {
            query.after = None;
        }
        self.inner.history(&query).await
    }

    async fn changes(&self, query: &ChangesQuery) -> Result<ChangePage, StoreError> {
        let mut page = self.inner.changes(query).await?;
        if self.fault == Fault::ChangesReversed {
            page.changes.reverse();
        }
        Ok(page)
    }

    async fn current_sequence(&self, app: &AppId, user: &UserId) -> Result<u64, StoreError> {
        self.inner.current_sequence(app, user).await
    }

    async fn lease_due(
        &self,
        mut request: LeaseRequest,
    ) -> Result<Vec<LeasedDelivery>, StoreError> {
        if self.fault == Fault::LeasesLapseAtOnce {
            request.lease_until = request.now.minus(Duration::from_secs(1));
        }
        let leased = self.inner.lease_due(request).await?;
        let mut leases = self.leases.lock().unwrap();
        for l in &leased {
            leases.insert(l.delivery.id, l.lease);
        }
        Ok(leased)
    }

    async fn record_outcomes(
        &self,
        mut outcomes: Vec<DeliveryOutcome>,
    ) -> Result<OutcomeReport, StoreError> {
        if self.fault == Fault::StaleOutcomesApplied {
            let leases = self.leases.lock().unwrap();
            for o in &mut outcomes {
                if let Some(latest) = leases.get(&o.delivery) {
                    o.lease = *latest;
                }
            }
        }
        self.inner.record_outcomes(outcomes).await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<PurgeReport, StoreError> {
        if self.fault == Fault::PurgeKeepsEverything {
            return Ok(PurgeReport::default());
        }
        self.inner.purge_expired(now, limit).await
    }

    async fn deactivate_stale_endpoints(
        &self,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        self.inner
            .deactivate_stale_endpoints(seen_before, now)
            .await
    }

    async fn delete_user(&self, user: &UserId) -> Result<(), StoreError> {
        if self.fault == Fault::DeleteUserForgetsNothing {
            return Ok(());
        }
        self.inner.delete_user(user).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await;
    }
}

fn case(name: &str) -> StoreCase {
    *CASES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs case `name` on a store with `fault`; true when the case failed.
fn fails_with(fault: Fault, name: &str) -> bool {
    let store = Faulty::new(fault);
    let run = case(name).run;
    runtime().block_on(async { AssertUnwindSafe(run(&store)).catch_unwind().await.is_err() })
}

#[test]
fn case_names_are_unique_and_complete() {
    let names: BTreeSet<&str> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), CASES.len(), "a case is listed twice");
    assert!(
        CASES.len() >= 42,
        "cases went missing from the list: {}",
        CASES.len()
    );
}

#[test]
fn run_all_passes_on_memory_store() {
    runtime().block_on(super::run_all(|| async { MemoryStore::new() }));
}

#[test]
fn each_injected_fault_fails_its_case() {
    let expectations = [
        (
            Fault::DuplicateInserts,
            "insert_is_idempotent_by_app_notification_id",
        ),
        (
            Fault::DuplicateInserts,
            "concurrent_inserts_of_one_app_notification_id_create_one",
        ),
        (
            Fault::IgnoreTargets,
            "insert_enqueues_one_delivery_per_active_targeted_endpoint",
        ),
        (
            Fault::LeasesLapseAtOnce,
            "lease_is_exclusive_under_concurrent_leasing",
        ),
        (
            Fault::LeasesLapseAtOnce,
            "expired_lease_is_taken_again_and_the_old_token_goes_stale",
        ),
        (
            Fault::StaleOutcomesApplied,
            "expired_lease_is_taken_again_and_the_old_token_goes_stale",
        ),
        (
            Fault::HistoryIgnoresCursor,
            "history_pages_return_every_item_once_while_new_items_arrive",
        ),
        (
            Fault::HistoryIgnoresCursor,
            "history_filters_select_matching_items_on_every_page",
        ),
        (
            Fault::ChangesReversed,
            "change_feed_pages_in_sequence_order",
        ),
        (
            Fault::ReadsIgnoreOwner,
            "another_users_notification_is_not_found",
        ),
        (
            Fault::ExpiredStillServed,
            "history_and_changes_leave_out_expired_items",
        ),
        (
            Fault::ExpiredStillServed,
            "expired_deliveries_are_never_leased_even_before_purge",
        ),
        (
            Fault::NoSyncSignals,
            "state_change_enqueues_sync_signals_to_other_silent_capable_endpoints",
        ),
        (Fault::NoSyncSignals, "sync_signals_coalesce_while_pending"),
        (
            Fault::NoSyncSignals,
            "bulk_state_update_changes_many_and_signals_once",
        ),
        (
            Fault::NoBackgroundBudget,
            "apns_sync_signals_respect_the_background_budget",
        ),
        (
            Fault::PurgeKeepsEverything,
            "purge_removes_expired_notifications_and_their_pending_deliveries",
        ),
        (
            Fault::PurgeKeepsEverything,
            "purge_removes_at_most_limit_notifications_per_call",
        ),
        (
            Fault::PurgeKeepsEverything,
            "expired_sync_signals_are_never_leased_and_are_purged",
        ),
        (
            Fault::DeleteUserForgetsNothing,
            "delete_user_leaves_nothing_of_that_user",
        ),
    ];
    let missed: Vec<_> = expectations
        .iter()
        .filter(|(fault, name)| !fails_with(*fault, name))
        .collect();
    assert!(missed.is_empty(), "these faults went unnoticed: {missed:?}");
}

#[test]
fn the_wrapper_without_a_fault_passes_every_case() {
    // So the failures above come from the faults, not from the wrapper.
    for c in CASES {
        assert!(
            !fails_with(Fault::Nothing, c.name),
            "{} fails on the fault-free wrapper",
            c.name
        );
    }
}
