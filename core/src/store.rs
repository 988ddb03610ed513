//! The [`Store`] trait: everything Tidings persists.
//!
//! A store is the single source of truth for endpoints, notifications and their state, the
//! per-user change sequence, and the delivery outbox. Every method is one atomic step: when it
//! returns an error, nothing of it happened. The contract below is checked case by case by
//! `tidings-testkit`'s conformance suite, which every store in this repository runs.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::app::BackgroundBudget;
use crate::delivery::{DeliveryOutcome, LeasedDelivery};
use crate::endpoint::Endpoint;
use crate::error::StoreError;
use crate::id::{AppId, EndpointId, NotificationId, UserId};
use crate::notification::{Notification, ReadState, StatePatch, UserAction};
use crate::time::Timestamp;

/// The result of [`Store::insert_notification`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// The stored notification: the new one, or the one already stored under the same
    /// (app, user, app notification id).
    pub notification: Notification,
    /// Whether this call created it.
    pub created: bool,
    /// Deliveries enqueued by this call (0 when it already existed).
    pub deliveries: usize,
}

/// A request to change one notification's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateUpdate {
    /// The app.
    pub app: AppId,
    /// The user; a notification of another user is "not found".
    pub user: UserId,
    /// The notification.
    pub id: NotificationId,
    /// What changes.
    pub patch: StatePatch,
    /// When.
    pub at: Timestamp,
    /// The endpoint the change came from; it gets no sync signal.
    pub origin: Option<EndpointId>,
    /// Sync signals to enqueue for the user's other endpoints, if any.
    pub sync: Option<SyncSchedule>,
}

/// A request to change many notifications of one user at once ("mark all read").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkStateUpdate {
    /// The app.
    pub app: AppId,
    /// The user; notifications of another user are "not found".
    pub user: UserId,
    /// The notifications, each at most once (the engine removes repeats).
    pub ids: Vec<NotificationId>,
    /// What changes, in each of them.
    pub patch: StatePatch,
    /// When.
    pub at: Timestamp,
    /// The endpoint the change came from; it gets no sync signal.
    pub origin: Option<EndpointId>,
    /// Sync signals to enqueue for the user's other endpoints, if any.
    pub sync: Option<SyncSchedule>,
}

/// When the sync signals of a state change are due and when they stop mattering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSchedule {
    /// Due time (the end of the coalescing window).
    pub due_at: Timestamp,
    /// Never sent after this.
    pub expires_at: Timestamp,
    /// The app's per-device budget for APNs endpoints, if any. A new signal for an APNs endpoint
    /// is then due at the time [`BackgroundBudget::admit`] allows (`due_at` or later) and
    /// expires as much later as it was held back; enqueueing it spends the endpoint's budget
    /// (the store keeps each endpoint's budget state). Folding a change into a pending signal
    /// spends nothing, and other platforms have no budget.
    pub apns_budget: Option<BackgroundBudget>,
}

/// Filters for [`Store::history`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryFilter {
    /// Only this read state.
    #[serde(default)]
    pub read: Option<ReadState>,
    /// Only this user action.
    #[serde(default)]
    pub action: Option<UserAction>,
    /// Only this group.
    #[serde(default)]
    pub group: Option<String>,
    /// Only notifications created at or after this time.
    #[serde(default)]
    pub since: Option<Timestamp>,
    /// Include deleted notifications (default: no).
    #[serde(default)]
    pub include_deleted: bool,
}

/// Where a history page continues: after the item with this (created, id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HistoryCursor {
    /// Creation time of the last item returned.
    pub created_at: Timestamp,
    /// Id of the last item returned.
    pub id: NotificationId,
}

impl HistoryCursor {
    /// The cursor of `n`.
    pub fn of(n: &Notification) -> Self {
        HistoryCursor {
            created_at: n.created_at,
            id: n.id,
        }
    }

    /// An opaque text form for clients.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(24);
        bytes.extend_from_slice(&self.created_at.as_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_uuid().as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses [`HistoryCursor::encode`]'s output.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != 24 {
            return None;
        }
        let micros = i64::from_be_bytes(bytes[..8].try_into().ok()?);
        let id = uuid::Uuid::from_slice(&bytes[8..]).ok()?;
        Some(HistoryCursor {
            created_at: Timestamp::from_micros(micros),
            id: NotificationId::from_uuid(id),
        })
    }
}

/// A history query: one user's notifications, newest first, keyset-paginated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The app.
    pub app: AppId,
    /// The user.
    pub user: UserId,
    /// Filters.
    pub filter: HistoryFilter,
    /// Continue after this item.
    pub after: Option<HistoryCursor>,
    /// Page size (at least 1).
    pub limit: usize,
    /// Notifications expired at this time are left out.
    pub now: Timestamp,
}

/// A page of history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryPage {
    /// Newest first.
    pub items: Vec<Notification>,
    /// Present when more items may follow.
    pub next: Option<HistoryCursor>,
}

/// A change-feed query: notifications of one user changed after sequence `since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangesQuery {
    /// The app.
    pub app: AppId,
    /// The user.
    pub user: UserId,
    /// Changes with a sequence greater than this.
    pub since: u64,
    /// Page size (at least 1).
    pub limit: usize,
    /// Notifications expired at this time are left out.
    pub now: Timestamp,
}

/// A page of the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangePage {
    /// Each changed notification once, in its latest state, in ascending `sequence` order.
    pub changes: Vec<Notification>,
    /// Pass this as `since` to continue.
    pub next_since: u64,
    /// Whether more changes follow.
    pub more: bool,
}

/// Which deliveries to lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRequest {
    /// Deliveries due at or before this time and not expired at it.
    pub now: Timestamp,
    /// At most this many.
    pub limit: usize,
    /// The lease lasts until this time.
    pub lease_until: Timestamp,
}

/// What [`Store::record_outcomes`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeReport {
    /// Outcomes applied.
    pub applied: usize,
    /// Outcomes ignored because the lease had been retaken or the delivery no longer exists.
    pub stale: usize,
    /// Endpoints deactivated.
    pub deactivated: usize,
}

/// What [`Store::purge_expired`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Notifications removed.
    pub notifications: usize,
    /// Deliveries removed (of those notifications, and expired sync signals).
    pub deliveries: usize,
}

/// Persistence for everything Tidings keeps.
///
/// Implementations must be safe to share between tasks and, for stores that support it, between
/// processes. Every method is atomic. Items are always addressed within an (app, user); asking
/// for an item of another user or app answers [`StoreErrorKind::NotFound`], exactly as for an
/// id that does not exist. A notification or delivery is *expired at* `now` when
/// `expires_at <= now`; a lease has *lapsed* at `now` when `lease_until <= now`.
///
/// [`StoreErrorKind::NotFound`]: crate::StoreErrorKind::NotFound
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Registers or refreshes an endpoint; `endpoint.id` is used only when a new one is created.
    ///
    /// - When an endpoint of the app already has the same address ([`PushAddress::key`]), that
    ///   endpoint is updated: it takes the new user, installation id, address fields and expiry,
    ///   becomes active, and `last_seen_at` is set. If it changed user, its pending deliveries
    ///   are dropped: the old user can no longer reach the device.
    /// - Otherwise, when `installation_id` is set and the same (app, user, installation id)
    ///   exists, that endpoint takes the new address (and its pending deliveries are dropped).
    /// - Otherwise a new endpoint is stored.
    ///
    /// Returns the stored endpoint.
    ///
    /// [`PushAddress::key`]: crate::PushAddress::key
    async fn upsert_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, StoreError>;

    /// All endpoints of a user of an app, active or not, oldest first.
    async fn endpoints(&self, app: &AppId, user: &UserId) -> Result<Vec<Endpoint>, StoreError>;

    /// Removes an endpoint and its pending deliveries.
    async fn delete_endpoint(
        &self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Result<(), StoreError>;

    /// Stores a notification and, in the same atomic step, its deliveries — unless one with the
    /// same (app, user, app notification id) exists, which is returned unchanged instead.
    ///
    /// On creation the store assigns the user's next change sequence to `sequence`, then
    /// enqueues a [`DeliveryKind::Notification`] due at `created_at` for each active endpoint of
    /// (app, user) whose platform is in `targets`, and, when the notification has a fallback
    /// policy, a [`DeliveryKind::FallbackAlert`] due at `created_at + delay` for each of those
    /// endpoints on APNs. Every delivery expires with the notification.
    ///
    /// [`DeliveryKind::Notification`]: crate::DeliveryKind::Notification
    /// [`DeliveryKind::FallbackAlert`]: crate::DeliveryKind::FallbackAlert
    async fn insert_notification(&self, notification: Notification)
        -> Result<Inserted, StoreError>;

    /// One notification, unless expired at `now`.
    async fn notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError>;

    /// Records that `endpoint` fetched the notification, cancelling that endpoint's pending
    /// fallback alert for it. Returns the notification. NotFound when the notification is
    /// expired at `at`, or when either it or the endpoint belongs to another user or app.
    async fn record_fetch(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        endpoint: EndpointId,
        at: Timestamp,
    ) -> Result<Notification, StoreError>;

    /// Applies a state change.
    ///
    /// NotFound when the notification is expired at `at` or not the user's. A patch that changes
    /// nothing returns the notification as it is. Otherwise, atomically:
    /// the state is updated (`changed_at` = `at`), the user's change sequence is bumped and
    /// assigned to the notification, pending fallback alerts of the notification are cancelled
    /// (the user handled it), pending notification deliveries are dropped when the status became
    /// deleted, and, when `sync` is set, a [`DeliveryKind::Sync`] is enqueued for every other
    /// active endpoint of the user whose platform takes silent pushes — coalesced: an endpoint
    /// that already has a pending, unleased sync signal gets no second one (its sequence is
    /// raised instead). A new signal for an APNs endpoint respects
    /// [`SyncSchedule::apns_budget`].
    ///
    /// [`DeliveryKind::Sync`]: crate::DeliveryKind::Sync
    async fn update_state(&self, update: StateUpdate) -> Result<Notification, StoreError>;

    /// Applies one patch to many notifications of a user, atomically: when it returns an error,
    /// none of them changed.
    ///
    /// Returns one entry per id, in request order: the notification as it is now, or `None` when
    /// it is not found (expired at `at`, or not the user's). Each notification the patch changes
    /// is changed as by [`Store::update_state`], the changed ones taking consecutive sequences in
    /// request order; one the patch does not change is returned as it is. Sync signals are
    /// enqueued (or coalesced) once, as for a single change carrying the last of those
    /// sequences: at most one new signal per endpoint.
    async fn update_states(
        &self,
        update: BulkStateUpdate,
    ) -> Result<Vec<Option<Notification>>, StoreError>;

    /// A page of a user's history, newest first by (created_at, id).
    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError>;

    /// A page of a user's change feed.
    async fn changes(&self, query: &ChangesQuery) -> Result<ChangePage, StoreError>;

    /// The user's current change sequence (0 when nothing happened yet).
    async fn current_sequence(&self, app: &AppId, user: &UserId) -> Result<u64, StoreError>;

    /// Leases up to `limit` deliveries that are pending, due, not expired, not leased (or whose
    /// lease lapsed) and whose endpoint is active, oldest due first. Each gets a fresh lease
    /// token and `attempt` is incremented. A delivery is held by one lease at a time.
    async fn lease_due(&self, request: LeaseRequest) -> Result<Vec<LeasedDelivery>, StoreError>;

    /// Applies outcomes of leased deliveries, skipping (and counting as stale) those whose lease
    /// is no longer the one presented.
    async fn record_outcomes(
        &self,
        outcomes: Vec<DeliveryOutcome>,
    ) -> Result<OutcomeReport, StoreError>;

    /// Removes up to `limit` notifications expired at `now` with their deliveries, and expired
    /// sync signals. Costs O(expired), not O(all).
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<PurgeReport, StoreError>;

    /// Deactivates active endpoints last seen before `seen_before` or whose address expired at
    /// `now`, dropping their pending deliveries. Returns how many.
    async fn deactivate_stale_endpoints(
        &self,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError>;

    /// Erases everything of a user, in every app: endpoints, notifications, deliveries, the
    /// change sequence.
    async fn delete_user(&self, user: &UserId) -> Result<(), StoreError>;

    /// Waits until new work may be due or `timeout` passes, whichever is first. Stores that can
    /// tell (an in-process signal, PostgreSQL's LISTEN/NOTIFY) return early; others just wait.
    async fn wait_for_work(&self, timeout: Duration);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let c = HistoryCursor {
            created_at: Timestamp::from_micros(1_767_225_600_000_001),
            id: NotificationId::new_random(),
        };
        assert_eq!(HistoryCursor::decode(&c.encode()), Some(c));
        assert_eq!(HistoryCursor::decode("nope"), None);
    }
}
