//! The indexed state behind [`MemoryStore`](super::MemoryStore)'s one lock, and the helpers that
//! keep its indexes consistent.
//!
//! Every delivery is in exactly one of three places: the due index (pending, not leased), the
//! lease index (leased until a deadline), or parked (found expired or undeliverable while
//! leasing; it stays until its notification or sync expiry purges it, so purge reports count
//! it). Endpoints and notifications each list their deliveries so dropping them costs
//! O(their deliveries). These lists are lazy: a finished delivery is removed from the slab and
//! its indexes only, and its id in the lists turns into a dangling id that is skipped, so
//! finishing a delivery touches neither its endpoint (sync signals aside) nor its notification.
//! An endpoint's list is
//! compacted whenever it is about to grow; a notification's list is bounded by its fan-out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tidings::{
    AppId, Delivery, DeliveryId, DeliveryKind, Endpoint, EndpointId, LeaseToken, Notification,
    NotificationId, StoreError, StoreErrorKind, Timestamp, UserId,
};

use super::hash::IdMap;
use super::slab::Slab;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Pending, in the due index under its `next_attempt_at`.
    Due,
    /// Leased, in the lease index under `until`.
    Leased { token: LeaseToken, until: Timestamp },
    /// Expired or undeliverable: in no index, waiting for a purge.
    Parked,
}

/// One delivery and where it stands.
#[derive(Debug)]
pub(crate) struct DeliveryEntry {
    pub(crate) delivery: Delivery,
    pub(crate) slot: Slot,
    /// The notification as currently stored (none for sync signals): kept up to date by state
    /// changes, so leasing needs no lookup.
    pub(crate) notification: Option<Arc<Notification>>,
    /// The endpoint as currently stored, likewise. It is active: deactivating an endpoint drops
    /// its deliveries.
    pub(crate) endpoint: Arc<Endpoint>,
}

/// One endpoint and its deliveries.
#[derive(Debug)]
pub(crate) struct EndpointEntry {
    pub(crate) endpoint: Arc<Endpoint>,
    /// Its deliveries, and ids of finished ones not compacted away yet.
    pub(crate) deliveries: Vec<DeliveryId>,
    /// Its pending, unleased sync signal, which later state changes coalesce into.
    pub(crate) pending_sync: Option<DeliveryId>,
    /// Its APNs background budget state ([`BackgroundBudget::admit`]'s `tat`).
    ///
    /// [`BackgroundBudget::admit`]: tidings::BackgroundBudget::admit
    pub(crate) sync_budget: Option<Timestamp>,
}

/// One notification and its deliveries.
#[derive(Debug)]
pub(crate) struct NotificationEntry {
    pub(crate) notification: Arc<Notification>,
    /// Its deliveries, and ids of finished ones.
    pub(crate) deliveries: Vec<DeliveryId>,
    /// Its place in the expiry index.
    pub(crate) serial: u64,
}

/// Everything of one user of one app.
#[derive(Debug, Default)]
pub(crate) struct UserData {
    /// The last change sequence handed out.
    pub(crate) sequence: u64,
    /// Endpoint ids, in the order they joined this user.
    pub(crate) endpoints: Vec<EndpointId>,
    /// Installation id → endpoint.
    pub(crate) installations: HashMap<String, EndpointId>,
    /// App notification id → notification (the idempotency index).
    pub(crate) by_app_id: HashMap<Box<str>, NotificationId>,
    /// History order.
    pub(crate) history: BTreeSet<(Timestamp, NotificationId)>,
    /// Change feed: sequence → notification (each notification under its latest sequence).
    pub(crate) changes: BTreeMap<u64, NotificationId>,
}

/// Everything of one app.
#[derive(Debug, Default)]
pub(crate) struct AppData {
    pub(crate) users: HashMap<UserId, UserData>,
    /// [`PushAddress::key`](tidings::PushAddress::key) → endpoint.
    pub(crate) by_address: HashMap<String, EndpointId>,
}

/// The whole store.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) apps: HashMap<AppId, AppData>,
    pub(crate) endpoints: IdMap<EndpointId, EndpointEntry>,
    pub(crate) notifications: IdMap<NotificationId, NotificationEntry>,
    /// Notifications by expiry, ties in insertion order.
    pub(crate) expiry: BTreeMap<(Timestamp, u64), NotificationId>,
    /// The last notification serial handed out.
    pub(crate) serial: u64,
    pub(crate) deliveries: Slab,
    /// Pending unleased deliveries by due time.
    pub(crate) due: BTreeSet<(Timestamp, DeliveryId)>,
    /// Leased deliveries by lease deadline.
    pub(crate) leases: BTreeSet<(Timestamp, DeliveryId)>,
    /// Sync signals by expiry (notification deliveries expire with their notification).
    pub(crate) sync_expiry: BTreeSet<(Timestamp, DeliveryId)>,
    /// Reusable buffers, so hot paths do not allocate.
    pub(crate) scratch_endpoints: Vec<EndpointId>,
    pub(crate) scratch_deliveries: Vec<DeliveryId>,
}

/// "Not found", the same for a missing id and for an item of another user or app.
pub(crate) fn not_found(what: &str) -> StoreError {
    StoreError::not_found(what)
}

/// An index disagrees with the data: a bug in this store.
pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::new(StoreErrorKind::Corrupt, what)
}

impl State {
    /// The data of (app, user), if any.
    pub(crate) fn user(&self, app: &AppId, user: &UserId) -> Option<&UserData> {
        self.apps.get(app).and_then(|a| a.users.get(user))
    }

    /// The data of (app, user), if any, for changing.
    pub(crate) fn user_mut(&mut self, app: &AppId, user: &UserId) -> Option<&mut UserData> {
        self.apps.get_mut(app).and_then(|a| a.users.get_mut(user))
    }

    /// The data of (app, user), created when missing.
    pub(crate) fn user_entry(&mut self, app: &AppId, user: &UserId) -> &mut UserData {
        self.apps
            .entry(app.clone())
            .or_default()
            .users
            .entry(user.clone())
            .or_default()
    }

    /// The endpoint `id` when it belongs to (app, user).
    pub(crate) fn owned_endpoint(
        &self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Option<&EndpointEntry> {
        self.endpoints
            .get(&id)
            .filter(|e| e.endpoint.app == *app && e.endpoint.user == *user)
    }

    /// The notification `id` when it belongs to (app, user) and has not expired at `now`.
    pub(crate) fn owned_notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Option<&NotificationEntry> {
        self.notifications.get(&id).filter(|e| {
            let n = &e.notification;
            n.app == *app && n.user == *user && !n.is_expired(now)
        })
    }

    /// Adds a pending delivery (its `id` is assigned here) to the outbox and its endpoint's list
    /// (not to its notification's list, which the caller keeps). Returns its id, or `None` when
    /// its endpoint does not exist.
    pub(crate) fn enqueue(
        &mut self,
        delivery: Delivery,
        notification: Option<Arc<Notification>>,
    ) -> Option<DeliveryId> {
        let ep = self.endpoints.get_mut(&delivery.endpoint_id)?;
        let (due_at, expires_at) = (delivery.next_attempt_at, delivery.expires_at);
        let sync = delivery.kind == DeliveryKind::Sync;
        let id = self.deliveries.insert(DeliveryEntry {
            delivery,
            slot: Slot::Due,
            notification,
            endpoint: Arc::clone(&ep.endpoint),
        });
        if ep.deliveries.len() == ep.deliveries.capacity() {
            // About to grow: drop finished ids first (amortized O(1) per delivery).
            let live = &self.deliveries;
            ep.deliveries.retain(|d| live.contains(*d));
        }
        ep.deliveries.push(id);
        if sync {
            // Callers enqueue a signal only when no pending one could take the change.
            ep.pending_sync = Some(id);
        }
        self.due.insert((due_at, id));
        if sync {
            self.sync_expiry.insert((expires_at, id));
        }
        Some(id)
    }

    /// Gives every pending delivery of endpoint `id` the endpoint as it is now stored.
    pub(crate) fn refresh_endpoint_deliveries(&mut self, id: EndpointId) {
        let Some(ep) = self.endpoints.get(&id) else {
            return;
        };
        for d in &ep.deliveries {
            if let Some(entry) = self.deliveries.get_mut(*d) {
                entry.endpoint = Arc::clone(&ep.endpoint);
            }
        }
    }

    /// Puts a leased delivery back into the due index, due at `next_attempt_at` (a retry).
    pub(crate) fn release(&mut self, id: DeliveryId, next_attempt_at: Timestamp) {
        let Some(entry) = self.deliveries.get_mut(id) else {
            return;
        };
        if let Slot::Leased { until, .. } = entry.slot {
            self.leases.remove(&(until, id));
        }
        if entry.slot == Slot::Due {
            self.due.remove(&(entry.delivery.next_attempt_at, id));
        }
        entry.delivery.next_attempt_at = next_attempt_at;
        entry.slot = Slot::Due;
        self.due.insert((next_attempt_at, id));
        if entry.delivery.kind == DeliveryKind::Sync {
            if let Some(ep) = self.endpoints.get_mut(&entry.delivery.endpoint_id) {
                ep.pending_sync.get_or_insert(id);
            }
        }
    }

    /// Removes a delivery from the slab and the outbox indexes (the lists of its endpoint and
    /// notification keep a dangling id). Returns whether it existed.
    pub(crate) fn remove_delivery(&mut self, id: DeliveryId) -> bool {
        let Some(d) = self.deliveries.remove(id) else {
            return false;
        };
        match d.slot {
            Slot::Due => {
                self.due.remove(&(d.next_attempt_at, id));
            }
            Slot::Leased { until, .. } => {
                self.leases.remove(&(until, id));
            }
            Slot::Parked => {}
        }
        if d.kind == DeliveryKind::Sync {
            self.sync_expiry.remove(&(d.expires_at, id));
            if let Some(ep) = self.endpoints.get_mut(&d.endpoint_id) {
                if ep.pending_sync == Some(id) {
                    ep.pending_sync = None;
                }
            }
        }
        true
    }

    /// Drops every pending delivery of an endpoint (leased ones too: their outcomes turn stale).
    /// Returns how many.
    pub(crate) fn drop_endpoint_deliveries(&mut self, id: EndpointId) -> usize {
        let Some(ep) = self.endpoints.get_mut(&id) else {
            return 0;
        };
        let ids = std::mem::take(&mut ep.deliveries);
        ep.pending_sync = None;
        let mut n = 0;
        for d in ids {
            n += usize::from(self.remove_delivery(d));
        }
        n
    }

    /// Removes an endpoint, its deliveries and its index entries.
    pub(crate) fn remove_endpoint(&mut self, id: EndpointId) {
        self.drop_endpoint_deliveries(id);
        let Some(entry) = self.endpoints.remove(&id) else {
            return;
        };
        let ep = &entry.endpoint;
        if let Some(app) = self.apps.get_mut(&ep.app) {
            let key = ep.address.key();
            if app.by_address.get(&key) == Some(&id) {
                app.by_address.remove(&key);
            }
            if let Some(user) = app.users.get_mut(&ep.user) {
                user.endpoints.retain(|e| *e != id);
                if let Some(inst) = &ep.installation_id {
                    if user.installations.get(inst) == Some(&id) {
                        user.installations.remove(inst);
                    }
                }
            }
        }
    }

    /// Removes a notification, its deliveries and its index entries. Returns how many
    /// deliveries went with it, or `None` when it did not exist.
    pub(crate) fn remove_notification(&mut self, id: NotificationId) -> Option<usize> {
        let entry = self.notifications.remove(&id)?;
        let n = &entry.notification;
        self.expiry.remove(&(n.expires_at, entry.serial));
        if let Some(user) = self.user_mut(&n.app, &n.user) {
            user.history.remove(&(n.created_at, id));
            if user.changes.get(&n.sequence) == Some(&id) {
                user.changes.remove(&n.sequence);
            }
            if user.by_app_id.get(n.app_notification_id.as_str()) == Some(&id) {
                user.by_app_id.remove(n.app_notification_id.as_str());
            }
        }
        let mut removed = 0;
        for d in &entry.deliveries {
            removed += usize::from(self.remove_delivery(*d));
        }
        Some(removed)
    }

    /// Removes every delivery of notification `id` whose kind `pick` selects. Returns how many.
    pub(crate) fn drop_notification_deliveries(
        &mut self,
        id: NotificationId,
        pick: impl Fn(&Delivery) -> bool,
    ) -> usize {
        let mut doomed = std::mem::take(&mut self.scratch_deliveries);
        doomed.clear();
        if let Some(entry) = self.notifications.get(&id) {
            let live = &self.deliveries;
            doomed.extend(
                entry
                    .deliveries
                    .iter()
                    .copied()
                    .filter(|d| live.get(*d).is_some_and(|e| pick(&e.delivery))),
            );
        }
        let mut n = 0;
        for d in &doomed {
            n += usize::from(self.remove_delivery(*d));
        }
        self.scratch_deliveries = doomed;
        n
    }

    /// Sizes, for [`MemoryStore::stats`](super::MemoryStore::stats).
    pub(crate) fn stats(&self) -> super::MemoryStats {
        super::MemoryStats {
            endpoints: self.endpoints.len(),
            notifications: self.notifications.len(),
            deliveries: self.deliveries.len(),
            leased: self.leases.len(),
        }
    }
}
