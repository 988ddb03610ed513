//! Notifications: idempotent insert with fan-out, fetches, state changes with sync signals,
//! expiry and user erasure.

use std::sync::Arc;

use tidings::{
    AppId, BulkStateUpdate, Delivery, DeliveryId, DeliveryKind, EndpointId, Notification,
    NotificationId, Platform, PurgeReport, StateUpdate, Status, StoreError, StoreErrorKind,
    Timestamp, UserId,
};

use super::slab::UNASSIGNED;
use super::state::{corrupt, not_found, NotificationEntry, Slot, State};

/// What [`State::insert_notification`] did: [`Inserted`](tidings::Inserted) with the
/// notification shared.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) notification: Arc<Notification>,
    pub(crate) created: bool,
    pub(crate) deliveries: usize,
}

impl State {
    /// [`Store::insert_notification`](tidings::Store::insert_notification). Returns what the
    /// trait returns, with the notification shared (the caller copies it outside the lock).
    pub(crate) fn insert_notification(
        &mut self,
        mut n: Notification,
    ) -> Result<Stored, StoreError> {
        // Field-level borrows: `user` borrows `apps` only.
        let user = self
            .apps
            .entry(n.app.clone())
            .or_default()
            .users
            .entry(n.user.clone())
            .or_default();
        if let Some(existing) = user.by_app_id.get(n.app_notification_id.as_str()) {
            return match self.notifications.get(existing) {
                Some(e) => Ok(Stored {
                    notification: Arc::clone(&e.notification),
                    created: false,
                    deliveries: 0,
                }),
                None => Err(corrupt(
                    "the idempotency index names a missing notification",
                )),
            };
        }
        if self.notifications.contains_key(&n.id) {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                "a notification with this id already exists",
            ));
        }
        user.sequence += 1;
        n.sequence = user.sequence;
        user.by_app_id
            .insert(n.app_notification_id.as_str().into(), n.id);
        user.history.insert((n.created_at, n.id));
        user.changes.insert(n.sequence, n.id);
        let mut targets = std::mem::take(&mut self.scratch_endpoints);
        targets.clear();
        let endpoints = &self.endpoints;
        targets.extend(user.endpoints.iter().copied().filter(|id| {
            endpoints
                .get(id)
                .is_some_and(|e| e.endpoint.active && n.targets.contains(e.endpoint.platform()))
        }));
        self.serial += 1;
        let serial = self.serial;
        self.expiry.insert((n.expires_at, serial), n.id);

        let fallback_at = n.fallback.as_ref().map(|f| n.created_at.plus(f.delay));
        let notification = Arc::new(n);
        let n = &*notification;
        let per_endpoint = 1 + usize::from(fallback_at.is_some());
        let mut ids = Vec::with_capacity(targets.len() * per_endpoint);
        for endpoint_id in &targets {
            let endpoint_id = *endpoint_id;
            let shared = Some(Arc::clone(&notification));
            ids.extend(self.enqueue(
                delivery(n, endpoint_id, DeliveryKind::Notification, n.created_at),
                shared,
            ));
            let Some(at) = fallback_at else {
                continue;
            };
            let on_apns = self
                .endpoints
                .get(&endpoint_id)
                .is_some_and(|e| e.endpoint.platform() == Platform::Apns);
            if on_apns {
                let shared = Some(Arc::clone(&notification));
                ids.extend(self.enqueue(
                    delivery(n, endpoint_id, DeliveryKind::FallbackAlert, at),
                    shared,
                ));
            }
        }
        self.scratch_endpoints = targets;
        let deliveries = ids.len();
        self.notifications.insert(
            n.id,
            NotificationEntry {
                notification: Arc::clone(&notification),
                deliveries: ids,
                serial,
            },
        );
        Ok(Stored {
            notification,
            created: true,
            deliveries,
        })
    }

    /// [`Store::notification`](tidings::Store::notification).
    pub(crate) fn notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Arc<Notification>, StoreError> {
        self.owned_notification(app, user, id, now)
            .map(|e| Arc::clone(&e.notification))
            .ok_or_else(|| not_found("notification"))
    }

    /// [`Store::record_fetch`](tidings::Store::record_fetch).
    pub(crate) fn record_fetch(
        &mut self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        endpoint: EndpointId,
        at: Timestamp,
    ) -> Result<Arc<Notification>, StoreError> {
        let found = self.notification(app, user, id, at)?;
        if self.owned_endpoint(app, user, endpoint).is_none() {
            return Err(not_found("endpoint"));
        }
        self.drop_notification_deliveries(id, |d| {
            d.kind == DeliveryKind::FallbackAlert && d.endpoint_id == endpoint
        });
        Ok(found)
    }

    /// [`Store::update_state`](tidings::Store::update_state). Returns the notification and how
    /// many sync signals were enqueued.
    pub(crate) fn update_state(
        &mut self,
        u: StateUpdate,
    ) -> Result<(Arc<Notification>, usize), StoreError> {
        let Some(entry) = self.owned_notification(&u.app, &u.user, u.id, u.at) else {
            return Err(not_found("notification"));
        };
        let old = entry.notification.state;
        let new = u.patch.apply(old, u.at);
        if (new.read, new.action, new.status) == (old.read, old.action, old.status) {
            return Ok((Arc::clone(&entry.notification), 0));
        }
        let Some(user) = self.user_mut(&u.app, &u.user) else {
            return Err(corrupt("a notification's user is missing"));
        };
        user.sequence += 1;
        let sequence = user.sequence;
        let Some(entry) = self.notifications.get_mut(&u.id) else {
            return Err(corrupt("a notification vanished"));
        };
        let mut changed = Notification::clone(&entry.notification);
        let previous = changed.sequence;
        changed.state = new;
        changed.sequence = sequence;
        let updated = Arc::new(changed);
        entry.notification = Arc::clone(&updated);
        // Pending deliveries carry the notification as it is now.
        for d in &entry.deliveries {
            if let Some(e) = self.deliveries.get_mut(*d) {
                e.notification = Some(Arc::clone(&updated));
            }
        }
        if let Some(user) = self.user_mut(&u.app, &u.user) {
            if user.changes.get(&previous) == Some(&u.id) {
                user.changes.remove(&previous);
            }
            user.changes.insert(sequence, u.id);
        }

        let deleted = new.status == Status::Deleted && old.status != Status::Deleted;
        self.drop_notification_deliveries(u.id, |d| {
            d.kind == DeliveryKind::FallbackAlert
                || (deleted && d.kind == DeliveryKind::Notification)
        });

        let Some(sync) = u.sync else {
            return Ok((updated, 0));
        };
        let mut targets = std::mem::take(&mut self.scratch_endpoints);
        targets.clear();
        if let Some(user) = self.user(&u.app, &u.user) {
            targets.extend(user.endpoints.iter().copied().filter(|id| {
                Some(*id) != u.origin
                    && self.endpoints.get(id).is_some_and(|e| {
                        e.endpoint.active && e.endpoint.platform().supports_silent_push()
                    })
            }));
        }
        let mut enqueued = 0;
        for endpoint_id in &targets {
            let Some(entry) = self.endpoints.get(endpoint_id) else {
                continue;
            };
            let (pending, tat) = (entry.pending_sync, entry.sync_budget);
            let budget = sync
                .apns_budget
                .filter(|_| entry.endpoint.platform() == Platform::Apns);
            if pending.is_some_and(|d| self.coalesce(d, sequence, sync.expires_at)) {
                continue;
            }
            let (due_at, expires_at) = match budget {
                Some(budget) => {
                    let (allowed, tat) = budget.admit(tat, sync.due_at);
                    if let Some(e) = self.endpoints.get_mut(endpoint_id) {
                        e.sync_budget = Some(tat);
                    }
                    let held = allowed.since(sync.due_at);
                    (allowed, sync.expires_at.plus(held))
                }
                None => (sync.due_at, sync.expires_at),
            };
            let signal = self.enqueue(
                Delivery {
                    id: UNASSIGNED,
                    app: u.app.clone(),
                    user: u.user.clone(),
                    endpoint_id: *endpoint_id,
                    notification_id: None,
                    kind: DeliveryKind::Sync,
                    sequence,
                    attempt: 0,
                    next_attempt_at: due_at,
                    expires_at,
                },
                None,
            );
            enqueued += usize::from(signal.is_some());
        }
        self.scratch_endpoints = targets;
        Ok((updated, enqueued))
    }

    /// [`Store::update_states`](tidings::Store::update_states): each id as by
    /// [`State::update_state`], under the one lock the caller holds, so nobody sees a part of
    /// it; the first change enqueues the sync signals and the later ones fold into them. Returns
    /// the results and how many sync signals were enqueued.
    pub(crate) fn update_states(
        &mut self,
        u: BulkStateUpdate,
    ) -> Result<(Vec<Option<Notification>>, usize), StoreError> {
        let mut results = Vec::with_capacity(u.ids.len());
        let mut enqueued = 0;
        for id in u.ids {
            let one = StateUpdate {
                app: u.app.clone(),
                user: u.user.clone(),
                id,
                patch: u.patch,
                at: u.at,
                origin: u.origin,
                sync: u.sync,
            };
            match self.update_state(one) {
                Ok((n, added)) => {
                    enqueued += added;
                    results.push(Some(Notification::clone(&n)));
                }
                Err(e) if e.kind() == StoreErrorKind::NotFound => results.push(None),
                Err(e) => return Err(e),
            }
        }
        Ok((results, enqueued))
    }

    /// Folds a state change into the pending, unleased sync signal `id`: its sequence is raised
    /// to `sequence` and it lives at least until `expires_at`. Returns false when `id` is not
    /// such a signal (then a new one is needed).
    fn coalesce(&mut self, id: DeliveryId, sequence: u64, expires_at: Timestamp) -> bool {
        let Some(entry) = self.deliveries.get_mut(id) else {
            return false;
        };
        if entry.slot != Slot::Due || entry.delivery.kind != DeliveryKind::Sync {
            return false;
        }
        let d = &mut entry.delivery;
        d.sequence = d.sequence.max(sequence);
        if expires_at > d.expires_at {
            self.sync_expiry.remove(&(d.expires_at, id));
            d.expires_at = expires_at;
            self.sync_expiry.insert((expires_at, id));
        }
        true
    }

    /// [`Store::purge_expired`](tidings::Store::purge_expired): pops the expiry indexes, so it
    /// costs O(expired).
    pub(crate) fn purge_expired(&mut self, now: Timestamp, limit: usize) -> PurgeReport {
        let mut report = PurgeReport::default();
        while report.notifications < limit {
            let Some((&(at, _), &id)) = self.expiry.first_key_value() else {
                break;
            };
            if at > now {
                break;
            }
            self.expiry.pop_first();
            if let Some(removed) = self.remove_notification(id) {
                report.notifications += 1;
                report.deliveries += removed;
            }
        }
        let mut signals = 0;
        while signals < limit {
            let Some(&(at, id)) = self.sync_expiry.first() else {
                break;
            };
            if at > now {
                break;
            }
            signals += 1;
            if !self.remove_delivery(id) {
                // A stale index entry: drop it so the loop moves on.
                self.sync_expiry.pop_first();
            }
        }
        report.deliveries += signals;
        report
    }

    /// [`Store::delete_user`](tidings::Store::delete_user): every app.
    pub(crate) fn delete_user(&mut self, user: &UserId) {
        let apps: Vec<AppId> = self
            .apps
            .iter()
            .filter(|(_, a)| a.users.contains_key(user))
            .map(|(id, _)| id.clone())
            .collect();
        for app in apps {
            let Some(data) = self.user(&app, user) else {
                continue;
            };
            let endpoints = data.endpoints.clone();
            let notifications: Vec<NotificationId> =
                data.history.iter().map(|(_, id)| *id).collect();
            for id in endpoints {
                self.remove_endpoint(id);
            }
            for id in notifications {
                self.remove_notification(id);
            }
            if let Some(a) = self.apps.get_mut(&app) {
                a.users.remove(user);
                if a.users.is_empty() && a.by_address.is_empty() {
                    self.apps.remove(&app);
                }
            }
        }
    }
}

/// A pending delivery of `n` to `endpoint_id`.
fn delivery(
    n: &Notification,
    endpoint_id: EndpointId,
    kind: DeliveryKind,
    due: Timestamp,
) -> Delivery {
    Delivery {
        id: UNASSIGNED,
        app: n.app.clone(),
        user: n.user.clone(),
        endpoint_id,
        notification_id: Some(n.id),
        kind,
        sequence: n.sequence,
        attempt: 0,
        next_attempt_at: due,
        expires_at: n.expires_at,
    }
}
