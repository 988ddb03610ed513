//! Four dispatchers, each with its own store instance (own pool, own LISTEN connection), on one
//! database: 20,000 deliveries are pushed exactly once; with one dispatcher killed mid-run,
//! nothing is lost and only what it held under lease is pushed twice.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use futures::stream::{self, StreamExt};
use tidings::{
    DeliveryId, EndpointRegistration, LeaseRequest, LeasedDelivery, ManualClock, NewNotification,
    PushAddress, Store, StoreError,
};
use tokio::sync::{watch, Notify};

use common::{another_instance, fresh_store, TestStore};
use support::{dispatcher_config, tidings, CountingChannel, PushLog};

const USERS: usize = 1_000;
const ENDPOINTS_PER_USER: usize = 4;
const NOTIFICATIONS_PER_USER: usize = 5;
const DELIVERIES: usize = USERS * ENDPOINTS_PER_USER * NOTIFICATIONS_PER_USER;

/// Registers the endpoints and sends the notifications: 20,000 due deliveries.
async fn enqueue(store: &TestStore, clock: &ManualClock) {
    let log: PushLog = Arc::default();
    let t = tidings(
        Arc::new(store.clone()),
        CountingChannel::new(99, log, Arc::new(Notify::new())),
        clock.clone(),
    );
    let t = &t;
    stream::iter(0..USERS * ENDPOINTS_PER_USER)
        .for_each_concurrent(16, |i| async move {
            let user = format!("user-{}", i / ENDPOINTS_PER_USER);
            let address = PushAddress::Fcm {
                token: format!("token-{i}"),
            };
            t.register_endpoint(EndpointRegistration::new("app", user, address))
                .await
                .expect("register");
        })
        .await;
    stream::iter(0..USERS * NOTIFICATIONS_PER_USER)
        .for_each_concurrent(16, |i| async move {
            let user = format!("user-{}", i / NOTIFICATIONS_PER_USER);
            let sent = t
                .send_detailed(NewNotification::new("app", user, format!("n-{i}")).raw("{}"))
                .await
                .expect("send");
            assert_eq!(sent.deliveries, ENDPOINTS_PER_USER);
        })
        .await;
}

/// Waits until no delivery is pending in the database.
async fn pending(store: &TestStore) -> i64 {
    let admin = store.admin().await;
    let row = admin
        .query_one("SELECT count(*) FROM deliveries", &[])
        .await
        .expect("count pending");
    row.get(0)
}

async fn wait_until_pending_is(store: &TestStore, expected: i64) {
    let admin = store.admin().await;
    loop {
        let row = admin
            .query_one("SELECT count(*) FROM deliveries", &[])
            .await
            .expect("count pending");
        if row.get::<_, i64>(0) == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn four_dispatchers_push_each_of_20000_deliveries_exactly_once() {
    runtime().block_on(async {
        let base = fresh_store().await;
        let clock = ManualClock::starting_2026();
        enqueue(&base, &clock).await;
        assert_eq!(pending(&base).await, DELIVERIES as i64);

        let log: PushLog = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let mut dispatchers = Vec::new();
        for who in 0..4 {
            let instance = another_instance(&base).await;
            let channel = CountingChannel::new(who, log.clone(), Arc::new(Notify::new()));
            let t = tidings(Arc::new(instance), channel, clock.clone());
            let dispatcher = t.dispatcher_with(dispatcher_config()).expect("config");
            dispatchers.push(dispatcher.run(until(stopped.clone())));
        }
        // `Dispatcher::run`'s future is not `Send` (see the report), so the dispatchers run
        // concurrently on this task instead of being spawned.
        let (results, ()) = tokio::join!(join_all(dispatchers), async {
            wait_until_pending_is(&base, 0).await;
            stop.send_replace(true);
        });
        for result in results {
            result.expect("dispatcher");
        }

        let log = log.lock().expect("log");
        assert_eq!(log.len(), DELIVERIES, "every delivery was pushed");
        let twice: Vec<_> = log.iter().filter(|(_, who)| who.len() != 1).collect();
        assert!(twice.is_empty(), "pushed more than once: {twice:?}");
    });
}

/// Wraps a store and remembers the deliveries of its latest lease.
#[derive(Debug)]
struct Recording {
    inner: TestStore,
    last_lease: Mutex<Vec<DeliveryId>>,
}

#[async_trait::async_trait]
impl Store for Recording {
    async fn upsert_endpoint(&self, e: tidings::Endpoint) -> Result<tidings::Endpoint, StoreError> {
        self.inner.upsert_endpoint(e).await
    }
    async fn endpoints(
        &self,
        a: &tidings::AppId,
        u: &tidings::UserId,
    ) -> Result<Vec<tidings::Endpoint>, StoreError> {
        self.inner.endpoints(a, u).await
    }
    async fn delete_endpoint(
        &self,
        a: &tidings::AppId,
        u: &tidings::UserId,
        id: tidings::EndpointId,
    ) -> Result<(), StoreError> {
        self.inner.delete_endpoint(a, u, id).await
    }
    async fn insert_notification(
        &self,
        n: tidings::Notification,
    ) -> Result<tidings::Inserted, StoreError> {
        self.inner.insert_notification(n).await
    }
    async fn notification(
        &self,
        a: &tidings::AppId,
        u: &tidings::UserId,
        id: tidings::NotificationId,
        now: tidings::Timestamp,
    ) -> Result<tidings::Notification, StoreError> {
        self.inner.notification(a, u, id, now).await
    }
    async fn record_fetch(
        &self,
        a: &tidings::AppId,
        u: &tidings::UserId,
        id: tidings::NotificationId,
        e: tidings::EndpointId,
        at: tidings::Timestamp,
    ) -> Result<tidings::Notification, StoreError> {
        self.inner.record_fetch(a, u, id, e, at).await
    }
    async fn update_state(
        &self,
        s: tidings::StateUpdate,
    ) -> Result<tidings::Notification, StoreError> {
        self.inner.update_state(s).await
    }
    async fn update_states(
        &self,
        s: tidings::BulkStateUpdate,
    ) -> Result<Vec<Option<tidings::Notification>>, StoreError> {
        self.inner.update_states(s).await
    }
    async fn history(&self, q: &tidings::HistoryQuery) -> Result<tidings::HistoryPage, StoreError> {
        self.inner.history(q).await
    }
    async fn changes(&self, q: &tidings::ChangesQuery) -> Result<tidings::ChangePage, StoreError> {
        self.inner.changes(q).await
    }
    async fn current_sequence(
        &self,
        a: &tidings::AppId,
        u: &tidings::UserId,
    ) -> Result<u64, StoreError> {
        self.inner.current_sequence(a, u).await
    }
    async fn lease_due(&self, r: LeaseRequest) -> Result<Vec<LeasedDelivery>, StoreError> {
        let leased = self.inner.lease_due(r).await?;
        *self.last_lease.lock().expect("lease lock") =
            leased.iter().map(|l| l.delivery.id).collect();
        Ok(leased)
    }
    async fn record_outcomes(
        &self,
        o: Vec<tidings::DeliveryOutcome>,
    ) -> Result<tidings::OutcomeReport, StoreError> {
        self.inner.record_outcomes(o).await
    }
    async fn purge_expired(
        &self,
        now: tidings::Timestamp,
        limit: usize,
    ) -> Result<tidings::PurgeReport, StoreError> {
        self.inner.purge_expired(now, limit).await
    }
    async fn deactivate_stale_endpoints(
        &self,
        s: tidings::Timestamp,
        now: tidings::Timestamp,
    ) -> Result<usize, StoreError> {
        self.inner.deactivate_stale_endpoints(s, now).await
    }
    async fn delete_user(&self, u: &tidings::UserId) -> Result<(), StoreError> {
        self.inner.delete_user(u).await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await
    }
}

#[test]
fn killed_dispatcher_loses_nothing_and_duplicates_only_its_leased_batch() {
    runtime().block_on(async {
        let base = fresh_store().await;
        let clock = ManualClock::starting_2026();
        enqueue(&base, &clock).await;

        let log: PushLog = Arc::default();
        let (stop, stopped) = watch::channel(false);
        let crashed = Arc::new(Notify::new());

        // Dispatcher 0 hangs inside its 250th push, holding the lease of its whole batch.
        let victim_store = Arc::new(Recording {
            inner: another_instance(&base).await,
            last_lease: Mutex::default(),
        });
        let mut channel = CountingChannel::new(0, log.clone(), Arc::new(Notify::new()));
        channel.hang_after = Some((250, crashed.clone()));
        let victim = tidings(victim_store.clone(), channel, clock.clone())
            .dispatcher_with(dispatcher_config())
            .expect("config");
        // Killing = dropping its future mid-push, with its pool: what a crashed process leaves.
        let victim = async move {
            tokio::select! {
                result = victim.run(std::future::pending()) => result.expect("victim"),
                () = crashed.notified() => {}
            }
        };

        let mut dispatchers = Vec::new();
        for who in 1..4 {
            let instance = another_instance(&base).await;
            let channel = CountingChannel::new(who, log.clone(), Arc::new(Notify::new()));
            let t = tidings(Arc::new(instance), channel, clock.clone());
            let dispatcher = t.dispatcher_with(dispatcher_config()).expect("config");
            dispatchers.push(dispatcher.run(until(stopped.clone())));
        }

        let held = Mutex::new(HashSet::new());
        let control = async {
            victim.await;
            let leased: HashSet<DeliveryId> = victim_store
                .last_lease
                .lock()
                .expect("lease lock")
                .iter()
                .copied()
                .collect();
            assert!(!leased.is_empty());
            // The others finish everything but the dead dispatcher's batch, whose lease is live.
            wait_until_pending_is(&base, leased.len() as i64).await;
            // Its lease lapses; the others retake and push the batch.
            clock.advance(dispatcher_config().lease_duration + Duration::from_secs(1));
            wait_until_pending_is(&base, 0).await;
            stop.send_replace(true);
            *held.lock().expect("held") = leased;
        };
        let (results, ()) = tokio::join!(join_all(dispatchers), control);
        for result in results {
            result.expect("dispatcher");
        }
        let held = held.into_inner().expect("held");

        let log = log.lock().expect("log");
        assert_eq!(log.len(), DELIVERIES, "nothing was lost");
        for (id, who) in log.iter() {
            if who.len() > 1 {
                assert!(
                    held.contains(id),
                    "{id} was pushed twice but was not under the dead lease"
                );
                assert_eq!(who.len(), 2, "{id} pushed by {who:?}");
                assert_eq!(
                    who[0], 0,
                    "{id}: the first push was not the dead dispatcher's"
                );
            }
        }
        // Everything the dead dispatcher held was pushed again by a live one.
        for id in &held {
            let who = &log[id];
            assert!(
                who.iter().any(|w| *w != 0),
                "{id} was only pushed by the dead dispatcher"
            );
        }
    });
}

/// Completes once `stopped` turns true.
async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
