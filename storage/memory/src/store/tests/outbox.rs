//! Leasing, outcomes, expiry and erasure.

use std::collections::HashSet;
use std::time::Duration;

use tidings::{Outcome, Platform, PlatformSet, StatePatch, Store, UserId};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_dispatchers_lease_every_delivery_exactly_once() {
    let store = MemoryStore::new();
    for u in 0..50u8 {
        let user = format!("user-{u}");
        register(&store, &user, fcm(u)).await;
        register(&store, &user, apns(u)).await;
        for k in 0..4 {
            store
                .insert_notification(notification(&user, &format!("n{k}")))
                .await
                .unwrap();
        }
    }
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let batch = lease(&store, t0(), 7).await;
                if batch.is_empty() {
                    return seen;
                }
                seen.extend(batch.iter().map(|l| l.delivery.id));
                let outcomes = batch.iter().map(accepted).collect();
                let report = store.record_outcomes(outcomes).await.unwrap();
                assert_eq!(report.stale, 0);
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 400);
    assert_eq!(distinct.len(), 400, "no delivery was leased twice");
    assert_eq!(
        store.stats().deliveries,
        0,
        "accepted deliveries are removed"
    );
}

#[tokio::test]
async fn a_lapsed_lease_is_retaken_and_the_old_holders_outcome_is_stale() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap();
    let first = lease(&store, t0(), 10).await;
    assert!(lease(&store, t0().plus(secs(59)), 10).await.is_empty());
    let second = lease(&store, t0().plus(secs(60)), 10).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].delivery.attempt, 2);
    assert_ne!(second[0].lease, first[0].lease);
    let report = store
        .record_outcomes(vec![accepted(&first[0])])
        .await
        .unwrap();
    assert_eq!((report.applied, report.stale), (0, 1));
    let report = store
        .record_outcomes(vec![accepted(&second[0])])
        .await
        .unwrap();
    assert_eq!((report.applied, report.stale), (1, 0));
    let report = store
        .record_outcomes(vec![accepted(&second[0])])
        .await
        .unwrap();
    assert_eq!(report.stale, 1, "a finished delivery is stale");
}

#[tokio::test]
async fn gone_deactivates_only_the_address_that_was_pushed_to() {
    let store = MemoryStore::new();
    let mut e = endpoint("alice", fcm(1));
    e.installation_id = Some("install".into());
    store.upsert_endpoint(e.clone()).await.unwrap();
    store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap();
    store
        .insert_notification(notification("alice", "a2"))
        .await
        .unwrap();
    let leased = lease(&store, t0(), 1).await;
    let old_key = fcm(1).key();
    // Meanwhile the app re-registered with a fresh token.
    let mut fresh = endpoint("alice", fcm(9));
    fresh.installation_id = Some("install".into());
    store.upsert_endpoint(fresh).await.unwrap();
    let gone = Outcome::EndpointGone {
        reason: "Unregistered".into(),
        address_key: old_key,
    };
    let report = store
        .record_outcomes(vec![outcome(&leased[0], gone)])
        .await
        .unwrap();
    assert_eq!(report.deactivated, 0);
    let all = store
        .endpoints(&"app".into(), &"alice".into())
        .await
        .unwrap();
    assert!(all[0].active, "the fresh registration is not undone");

    store
        .insert_notification(notification("alice", "a3"))
        .await
        .unwrap();
    let leased = lease(&store, t0(), 10).await;
    let gone = Outcome::EndpointGone {
        reason: "Unregistered".into(),
        address_key: fcm(9).key(),
    };
    let report = store
        .record_outcomes(vec![outcome(&leased[0], gone)])
        .await
        .unwrap();
    assert_eq!(report.deactivated, 1);
    let all = store
        .endpoints(&"app".into(), &"alice".into())
        .await
        .unwrap();
    assert!(!all[0].active);
    assert_eq!(all[0].deactivation_reason.as_deref(), Some("Unregistered"));
    let inserted = store
        .insert_notification(notification("alice", "a4"))
        .await
        .unwrap();
    assert_eq!(inserted.deliveries, 0, "an inactive endpoint gets nothing");
}

#[tokio::test]
async fn retry_reschedules_at_the_given_time_and_keeps_the_attempt_count() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap();
    let leased = lease(&store, t0(), 10).await;
    let retry = Outcome::Retry {
        at: t0().plus(secs(30)),
        error: "throttled".into(),
    };
    store
        .record_outcomes(vec![outcome(&leased[0], retry)])
        .await
        .unwrap();
    assert!(lease(&store, t0().plus(secs(29)), 10).await.is_empty());
    let again = lease(&store, t0().plus(secs(30)), 10).await;
    assert_eq!(again[0].delivery.attempt, 2);
    assert_eq!(again[0].delivery.id, leased[0].delivery.id);
}

#[tokio::test]
async fn purge_removes_expired_notifications_with_their_deliveries_and_old_sync_signals() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    register(&store, "alice", apns(1)).await;
    let mut short = notification("alice", "short");
    short.expires_at = t0().plus(secs(10));
    store.insert_notification(short).await.unwrap();
    let long = store
        .insert_notification(notification("alice", "long"))
        .await
        .unwrap()
        .notification;
    for l in lease(&store, t0(), 10).await {
        if l.notification.as_ref().is_some_and(|n| n.id == long.id) {
            store.record_outcomes(vec![accepted(&l)]).await.unwrap();
        }
    }
    // The short one's leases lapse after it expired: it is never leased again.
    assert!(
        lease(&store, t0().plus(secs(60)), 10).await.is_empty(),
        "expired is never leased"
    );
    store
        .update_state(update("alice", long.id, StatePatch::read(), None))
        .await
        .unwrap();
    let report = store.purge_expired(t0().plus(secs(60)), 100).await.unwrap();
    assert_eq!((report.notifications, report.deliveries), (1, 2));
    let report = store
        .purge_expired(t0().plus(secs(600)), 100)
        .await
        .unwrap();
    assert_eq!(
        (report.notifications, report.deliveries),
        (0, 2),
        "two sync signals"
    );
    assert_eq!(store.stats().deliveries, 0);
    assert_eq!(store.stats().notifications, 1);
}

#[tokio::test]
async fn delete_user_erases_every_app() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    let mut other_app = endpoint("alice", fcm(2));
    other_app.app = "other".into();
    store.upsert_endpoint(other_app).await.unwrap();
    store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap();
    let mut n = notification("alice", "a1");
    n.app = "other".into();
    store.insert_notification(n).await.unwrap();
    register(&store, "bob", fcm(3)).await;
    store.delete_user(&"alice".into()).await.unwrap();
    let stats = store.stats();
    assert_eq!(
        (stats.endpoints, stats.notifications, stats.deliveries),
        (1, 0, 0)
    );
    assert_eq!(
        store
            .current_sequence(&"other".into(), &"alice".into())
            .await
            .unwrap(),
        0
    );
    // Its addresses are free: registering one again makes a fresh endpoint for whoever.
    let again = register(&store, "carol", fcm(1)).await;
    assert_eq!(again.user, UserId::from("carol"));
}

#[tokio::test]
async fn finished_deliveries_leave_nothing_behind() {
    let store = MemoryStore::new();
    let phone = register(&store, "alice", fcm(1)).await;
    for k in 0..1000 {
        store
            .insert_notification(notification("alice", &format!("n{k}")))
            .await
            .unwrap();
        for l in lease(&store, t0(), 10).await {
            store.record_outcomes(vec![accepted(&l)]).await.unwrap();
        }
    }
    assert_eq!(store.stats().deliveries, 0);
    let state = store.lock();
    let listed = state
        .endpoints
        .get(&phone.id)
        .map_or(0, |e| e.deliveries.len());
    assert!(
        listed <= 8,
        "finished ids are compacted away, {listed} remain"
    );
}

#[tokio::test]
async fn a_waiting_dispatcher_wakes_when_work_is_enqueued() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.wait_for_work(Duration::from_secs(3600)).await }
    });
    tokio::task::yield_now().await;
    store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap();
    // The guard only keeps a broken wake-up from hanging the suite for an hour.
    let woke = tokio::time::timeout(Duration::from_secs(60), waiting).await;
    assert!(woke.is_ok(), "wait_for_work was not woken by the insert");
}

#[tokio::test]
async fn web_push_targets_and_platform_filters_pick_endpoints() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    register(&store, "alice", webpush(1)).await;
    let mut n = notification("alice", "a1");
    n.targets = PlatformSet::only(Platform::WebPush);
    let inserted = store.insert_notification(n).await.unwrap();
    assert_eq!(inserted.deliveries, 1);
    let leased = lease(&store, t0(), 10).await;
    assert_eq!(leased[0].endpoint.platform(), Platform::WebPush);
}
