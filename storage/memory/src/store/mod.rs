//! [`MemoryStore`]: the whole [`Store`] contract in process memory.

mod endpoints;
mod hash;
mod notifications;
mod outbox;
mod query;
mod slab;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use tidings::{
    AppId, BulkStateUpdate, ChangePage, ChangesQuery, DeliveryOutcome, Endpoint, EndpointId,
    HistoryPage, HistoryQuery, Inserted, LeaseRequest, LeasedDelivery, Notification,
    NotificationId, OutcomeReport, PurgeReport, StateUpdate, Store, StoreError, Timestamp, UserId,
};
use tokio::sync::Notify;

use state::State;

/// A [`Store`] that keeps everything in process memory: for tests, examples and single-process
/// setups that can afford to lose their data on restart.
///
/// It implements the whole contract, passes `tidings-testkit`'s conformance suite, and is safe to
/// share between tasks and threads: one mutex guards indexed state, every method is one short
/// critical section, and nothing is held across an `.await`. Dispatchers waiting in
/// [`Store::wait_for_work`] are woken as soon as deliveries are enqueued or rescheduled.
///
/// Work costs O(log n) per delivery (indexes, not scans): due deliveries, lease deadlines,
/// expiry, history and the change feed are ordered indexes; endpoints and notifications list
/// their own deliveries. Finished deliveries are removed, so memory grows with stored
/// notifications and pending deliveries only. Notifications and endpoints are kept behind
/// [`Arc`], so leasing does not copy them.
///
/// Clones share the same data, so a test can keep one handle and give another to the
/// [`Tidings`](tidings::Tidings) builder.
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    work: Notify,
    /// Tasks in [`Store::wait_for_work`], so a wake-up skips `notify_waiters` (a lock) when
    /// nobody waits.
    waiting: AtomicUsize,
}

/// How much a [`MemoryStore`] holds, from [`MemoryStore::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Endpoints, active or not.
    pub endpoints: usize,
    /// Notifications not purged yet (expired ones included until a sweep).
    pub notifications: usize,
    /// Deliveries not finished yet (pending, leased, or expired awaiting a sweep).
    pub deliveries: usize,
    /// Deliveries currently leased.
    pub leased: usize,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// How much the store holds right now.
    pub fn stats(&self) -> MemoryStats {
        self.lock().stats()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-done step behind that later calls
        // would misread more than an error would, so a poisoned lock is taken over.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes every dispatcher waiting for work, and the next one to wait.
    fn wake(&self) {
        if self.shared.waiting.load(Ordering::SeqCst) > 0 {
            self.shared.work.notify_waiters();
        }
        // Also leaves a permit, so a dispatcher about to wait returns at once: no lost wake-up.
        self.shared.work.notify_one();
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `try_lock`: formatting must never wait for (or deadlock on) a caller holding the lock.
        let state = match self.shared.state.try_lock() {
            Ok(state) => state,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return f.write_str("MemoryStore { <busy> }"),
        };
        let stats = state.stats();
        drop(state);
        f.debug_struct("MemoryStore")
            .field("endpoints", &stats.endpoints)
            .field("notifications", &stats.notifications)
            .field("deliveries", &stats.deliveries)
            .finish()
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn upsert_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, StoreError> {
        self.lock().upsert_endpoint(endpoint)
    }

    async fn endpoints(&self, app: &AppId, user: &UserId) -> Result<Vec<Endpoint>, StoreError> {
        Ok(self.lock().endpoints_of(app, user))
    }

    async fn delete_endpoint(
        &self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Result<(), StoreError> {
        self.lock().delete_endpoint(app, user, id)
    }

    async fn insert_notification(
        &self,
        notification: Notification,
    ) -> Result<Inserted, StoreError> {
        let stored = self.lock().insert_notification(notification)?;
        if stored.deliveries > 0 {
            self.wake();
        }
        Ok(Inserted {
            notification: Notification::clone(&stored.notification),
            created: stored.created,
            deliveries: stored.deliveries,
        })
    }

    async fn notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError> {
        let found = self.lock().notification(app, user, id, now)?;
        Ok(Notification::clone(&found))
    }

    async fn record_fetch(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        endpoint: EndpointId,
        at: Timestamp,
    ) -> Result<Notification, StoreError> {
        let found = self.lock().record_fetch(app, user, id, endpoint, at)?;
        Ok(Notification::clone(&found))
    }

    async fn update_state(&self, update: StateUpdate) -> Result<Notification, StoreError> {
        let (notification, enqueued) = self.lock().update_state(update)?;
        if enqueued > 0 {
            self.wake();
        }
        Ok(Notification::clone(&notification))
    }

    async fn update_states(
        &self,
        update: BulkStateUpdate,
    ) -> Result<Vec<Option<Notification>>, StoreError> {
        let (results, enqueued) = self.lock().update_states(update)?;
        if enqueued > 0 {
            self.wake();
        }
        Ok(results)
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let page = self.lock().history(query);
        Ok(page.into_page())
    }

    async fn changes(&self, query: &ChangesQuery) -> Result<ChangePage, StoreError> {
        let page = self.lock().changes(query);
        Ok(page.into_page())
    }

    async fn current_sequence(&self, app: &AppId, user: &UserId) -> Result<u64, StoreError> {
        Ok(self.lock().current_sequence(app, user))
    }

    async fn lease_due(&self, request: LeaseRequest) -> Result<Vec<LeasedDelivery>, StoreError> {
        Ok(self.lock().lease_due(request))
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<DeliveryOutcome>,
    ) -> Result<OutcomeReport, StoreError> {
        let (report, rescheduled) = self.lock().record_outcomes(outcomes);
        if rescheduled {
            self.wake();
        }
        Ok(report)
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<PurgeReport, StoreError> {
        Ok(self.lock().purge_expired(now, limit))
    }

    async fn deactivate_stale_endpoints(
        &self,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        Ok(self.lock().deactivate_stale_endpoints(seen_before, now))
    }

    async fn delete_user(&self, user: &UserId) -> Result<(), StoreError> {
        self.lock().delete_user(user);
        Ok(())
    }

    async fn wait_for_work(&self, timeout: Duration) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.shared.waiting);
        let _ = tokio::time::timeout(timeout, self.shared.work.notified()).await;
    }
}
