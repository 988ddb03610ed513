//! Small steps the cases share: each one calls the store and panics with a clear message when
//! the store fails where the contract says it must not.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use tidings::{
    AppId, DeliveryId, DeliveryOutcome, Endpoint, EndpointId, HistoryFilter, HistoryQuery,
    Inserted, LeaseRequest, LeasedDelivery, Notification, NotificationId, Outcome, OutcomeReport,
    StatePatch, StateUpdate, Store, StoreError, StoreErrorKind, SyncSchedule, Timestamp, UserId,
};

use super::fixtures::{self, T0};

/// How long the leases the cases take last.
pub(crate) const LEASE: Duration = Duration::from_secs(60);

/// Long before [`T0`]: endpoints last seen then are stale for [`deactivate_stale`].
pub(crate) fn long_ago() -> Timestamp {
    T0.minus(Duration::from_secs(400 * 86_400))
}

/// Unwraps a store result, naming the call that failed.
pub(crate) fn ok<T>(result: Result<T, StoreError>, call: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{call} failed: {e}"),
    }
}

/// Asserts the result is a [`StoreErrorKind::NotFound`] error.
pub(crate) fn assert_not_found<T: Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(e) if e.kind() == StoreErrorKind::NotFound => {}
        Err(e) => panic!("{what}: expected NotFound, got error {e}"),
        Ok(v) => panic!("{what}: expected NotFound, got {v:?}"),
    }
}

pub(crate) async fn register(store: &dyn Store, endpoint: Endpoint) -> Endpoint {
    ok(store.upsert_endpoint(endpoint).await, "upsert_endpoint")
}

/// Registers an endpoint last seen [`long_ago`], then deactivates it as stale.
pub(crate) async fn register_inactive(store: &dyn Store, app: &AppId, user: &UserId) -> Endpoint {
    let mut e = fixtures::endpoint_with(app, user, fixtures::fcm_address(), long_ago());
    e.created_at = long_ago();
    let e = register(store, e).await;
    deactivate_stale(store, 1).await;
    e
}

/// Deactivates endpoints last seen more than 300 days before [`T0`]; asserts how many.
pub(crate) async fn deactivate_stale(store: &dyn Store, expected: usize) {
    let seen_before = T0.minus(Duration::from_secs(300 * 86_400));
    let n = ok(
        store.deactivate_stale_endpoints(seen_before, T0).await,
        "deactivate_stale_endpoints",
    );
    assert_eq!(
        n, expected,
        "deactivate_stale_endpoints deactivated {n}, expected {expected}"
    );
}

pub(crate) async fn endpoints(store: &dyn Store, app: &AppId, user: &UserId) -> Vec<Endpoint> {
    ok(store.endpoints(app, user).await, "endpoints")
}

pub(crate) async fn insert(store: &dyn Store, n: Notification) -> Inserted {
    ok(store.insert_notification(n).await, "insert_notification")
}

/// Inserts and asserts it was created with `deliveries` deliveries.
pub(crate) async fn insert_new(
    store: &dyn Store,
    n: Notification,
    deliveries: usize,
) -> Notification {
    let inserted = insert(store, n).await;
    assert!(
        inserted.created,
        "a notification with a fresh app notification id was not created"
    );
    assert_eq!(
        inserted.deliveries, deliveries,
        "insert_notification enqueued {} deliveries, expected {deliveries}",
        inserted.deliveries
    );
    inserted.notification
}

pub(crate) async fn lease(store: &dyn Store, now: Timestamp, limit: usize) -> Vec<LeasedDelivery> {
    ok(
        store
            .lease_due(LeaseRequest {
                now,
                limit,
                lease_until: now.plus(LEASE),
            })
            .await,
        "lease_due",
    )
}

/// Leases everything due at `now` (up to 1000).
pub(crate) async fn lease_all(store: &dyn Store, now: Timestamp) -> Vec<LeasedDelivery> {
    lease(store, now, 1000).await
}

pub(crate) fn outcome(leased: &LeasedDelivery, outcome: Outcome, at: Timestamp) -> DeliveryOutcome {
    DeliveryOutcome {
        delivery: leased.delivery.id,
        lease: leased.lease,
        endpoint: leased.endpoint.id,
        outcome,
        at,
    }
}

pub(crate) fn accepted() -> Outcome {
    Outcome::Accepted {
        provider_message_id: Some("provider-message-1".to_owned()),
    }
}

pub(crate) async fn record(store: &dyn Store, outcomes: Vec<DeliveryOutcome>) -> OutcomeReport {
    ok(store.record_outcomes(outcomes).await, "record_outcomes")
}

/// Reports every leased delivery accepted; asserts each outcome was applied.
pub(crate) async fn accept_all(store: &dyn Store, leased: &[LeasedDelivery], at: Timestamp) {
    let outcomes = leased.iter().map(|l| outcome(l, accepted(), at)).collect();
    let report = record(store, outcomes).await;
    assert_eq!(
        report.applied,
        leased.len(),
        "accepted outcomes under a live lease were not all applied: {report:?}"
    );
}

/// Leases and accepts everything due at `now`; returns what was leased.
pub(crate) async fn deliver_all(store: &dyn Store, now: Timestamp) -> Vec<LeasedDelivery> {
    let leased = lease_all(store, now).await;
    accept_all(store, &leased, now).await;
    leased
}

pub(crate) fn endpoint_ids(leased: &[LeasedDelivery]) -> BTreeSet<EndpointId> {
    leased.iter().map(|l| l.delivery.endpoint_id).collect()
}

pub(crate) fn delivery_ids(leased: &[LeasedDelivery]) -> BTreeSet<DeliveryId> {
    leased.iter().map(|l| l.delivery.id).collect()
}

pub(crate) fn notification_ids(leased: &[LeasedDelivery]) -> BTreeSet<NotificationId> {
    leased
        .iter()
        .filter_map(|l| l.delivery.notification_id)
        .collect()
}

pub(crate) fn ids(items: &[Notification]) -> Vec<NotificationId> {
    items.iter().map(|n| n.id).collect()
}

/// A state change without sync signals.
pub(crate) async fn change(
    store: &dyn Store,
    n: &Notification,
    patch: StatePatch,
    at: Timestamp,
) -> Notification {
    change_with(store, n, patch, at, None, None).await
}

/// A state change from `origin`, with sync signals when `sync` is set.
pub(crate) async fn change_with(
    store: &dyn Store,
    n: &Notification,
    patch: StatePatch,
    at: Timestamp,
    origin: Option<EndpointId>,
    sync: Option<SyncSchedule>,
) -> Notification {
    ok(
        store
            .update_state(StateUpdate {
                app: n.app.clone(),
                user: n.user.clone(),
                id: n.id,
                patch,
                at,
                origin,
                sync,
            })
            .await,
        "update_state",
    )
}

/// Sync signals due `due` seconds after [`T0`], expiring a minute later.
pub(crate) fn sync_due(due: u64) -> Option<SyncSchedule> {
    Some(SyncSchedule {
        due_at: fixtures::at(due),
        expires_at: fixtures::at(due + 60),
        apns_budget: None,
    })
}

pub(crate) async fn sequence(store: &dyn Store, app: &AppId, user: &UserId) -> u64 {
    ok(store.current_sequence(app, user).await, "current_sequence")
}

/// Reads a user's whole history page by page, inserting one of `arriving` (newest first is
/// not required) between pages; asserts each page respects `limit`.
pub(crate) async fn read_history(
    store: &dyn Store,
    app: &AppId,
    user: &UserId,
    filter: &HistoryFilter,
    limit: usize,
    now: Timestamp,
    mut arriving: Vec<Notification>,
) -> Vec<Notification> {
    let mut items = Vec::new();
    let mut after = None;
    for _ in 0..1000 {
        let page = ok(
            store
                .history(&HistoryQuery {
                    app: app.clone(),
                    user: user.clone(),
                    filter: filter.clone(),
                    after,
                    limit,
                    now,
                })
                .await,
            "history",
        );
        assert!(
            page.items.len() <= limit,
            "a history page holds {} items, limit {limit}",
            page.items.len()
        );
        items.extend(page.items);
        if let Some(n) = arriving.pop() {
            insert(store, n).await;
        }
        match page.next {
            Some(cursor) => after = Some(cursor),
            None => return items,
        }
    }
    panic!("history did not end after 1000 pages");
}
