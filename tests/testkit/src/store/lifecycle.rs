//! Cases: expiry, erasing a user, waiting for work.

use std::time::Duration;

use tidings::{HistoryFilter, Platform, StatePatch, Store};

use super::fixtures::{self, at, T0};
use super::support::{
    assert_not_found, change_with, deliver_all, endpoints, ids, insert_new, lease_all, ok,
    read_history, register, sequence, sync_due,
};

/// `purge_expired` removes notifications expired at `now` with their pending deliveries: they
/// are gone even for a query at an earlier time, and their deliveries are never leased.
/// Notifications still alive stay.
pub async fn purge_removes_expired_notifications_and_their_pending_deliveries(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let mut short = fixtures::notification(&app, &alice, T0);
    short.expires_at = at(100);
    let short = insert_new(store, short, 2).await;
    let long = insert_new(store, fixtures::notification(&app, &alice, at(1)), 2).await;

    let report = ok(store.purge_expired(at(100), 100).await, "purge_expired");
    assert_eq!(report.notifications, 1);
    assert!(
        report.deliveries >= 2,
        "the expired notification's two pending deliveries were not removed: {report:?}"
    );
    assert_not_found(
        store.notification(&app, &alice, short.id, at(2)).await,
        "a purged notification",
    );
    let history = read_history(
        store,
        &app,
        &alice,
        &HistoryFilter::default(),
        10,
        at(2),
        Vec::new(),
    )
    .await;
    assert_eq!(ids(&history), vec![long.id]);
    let leased = lease_all(store, at(2)).await;
    assert_eq!(leased.len(), 2);
    assert!(
        leased
            .iter()
            .all(|l| l.delivery.notification_id == Some(long.id)),
        "a purged notification's delivery was leased"
    );
    let again = ok(store.purge_expired(at(100), 100).await, "purge_expired");
    assert_eq!(again.notifications, 0);
}

/// `purge_expired` removes at most `limit` notifications per call; calling again removes the
/// rest, and nothing alive.
pub async fn purge_removes_at_most_limit_notifications_per_call(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    for i in 0..3 {
        let mut n = fixtures::notification(&app, &alice, at(i));
        n.expires_at = at(10 + i);
        insert_new(store, n, 0).await;
    }
    let alive = insert_new(store, fixtures::notification(&app, &alice, at(5)), 0).await;
    let first = ok(store.purge_expired(at(20), 2).await, "purge_expired");
    assert!(
        first.notifications <= 2,
        "purge_expired removed {} notifications with limit 2",
        first.notifications
    );
    let mut total = first.notifications;
    for _ in 0..5 {
        let next = ok(store.purge_expired(at(20), 2).await, "purge_expired");
        assert!(next.notifications <= 2);
        total += next.notifications;
        if next.notifications == 0 {
            break;
        }
    }
    assert_eq!(total, 3);
    ok(
        store.notification(&app, &alice, alive.id, at(20)).await,
        "a live notification after purging",
    );
}

/// Deliveries of an expired notification — notifications and fallback alerts — are never
/// leased, even before the expired data is purged; the notification itself reads as "not
/// found" from its expiry on.
pub async fn expired_deliveries_are_never_leased_even_before_purge(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let mut n = fixtures::notification_with_fallback(&app, &alice, T0, Duration::from_secs(120));
    n.expires_at = at(100);
    let n = insert_new(store, n, 3).await;
    for t in [at(100), at(101), at(120), at(3600)] {
        assert!(
            lease_all(store, t).await.is_empty(),
            "a delivery of an expired notification was leased at {t}"
        );
    }
    assert_not_found(
        store.notification(&app, &alice, n.id, at(100)).await,
        "an expired notification",
    );
}

/// `delete_user` erases the user in every app — endpoints, notifications, history, change
/// feed, sequence (back to 0), pending deliveries and sync signals — and leaves other users as
/// they were. The user's old push address can then be registered afresh by someone else.
pub async fn delete_user_leaves_nothing_of_that_user(store: &dyn Store) {
    let (app, other_app, alice, bob, carol) = (
        fixtures::app(),
        fixtures::app(),
        fixtures::user(),
        fixtures::user(),
        fixtures::user(),
    );
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    register(store, fixtures::endpoint(&other_app, &alice, Platform::Wns)).await;
    let bobs_phone = register(store, fixtures::endpoint(&app, &bob, Platform::Fcm)).await;
    let first = insert_new(store, fixtures::notification(&app, &alice, T0), 2).await;
    deliver_all(store, T0).await;
    change_with(
        store,
        &first,
        StatePatch::read(),
        at(1),
        Some(phone.id),
        sync_due(5),
    )
    .await;
    let second = insert_new(store, fixtures::notification(&app, &alice, at(2)), 2).await;
    insert_new(store, fixtures::notification(&other_app, &alice, at(3)), 1).await;
    let bobs = insert_new(store, fixtures::notification(&app, &bob, at(4)), 1).await;

    ok(store.delete_user(&alice).await, "delete_user");

    for a in [&app, &other_app] {
        assert!(
            endpoints(store, a, &alice).await.is_empty(),
            "an erased user still has endpoints"
        );
        let history = read_history(
            store,
            a,
            &alice,
            &HistoryFilter {
                include_deleted: true,
                ..HistoryFilter::default()
            },
            10,
            at(10),
            Vec::new(),
        )
        .await;
        assert!(history.is_empty(), "an erased user still has history");
        let changes = ok(
            store
                .changes(&tidings::ChangesQuery {
                    app: a.clone(),
                    user: alice.clone(),
                    since: 0,
                    limit: 10,
                    now: at(10),
                })
                .await,
            "changes",
        );
        assert!(
            changes.changes.is_empty(),
            "an erased user still has a change feed"
        );
        assert_eq!(
            sequence(store, a, &alice).await,
            0,
            "an erased user's sequence is not back to 0"
        );
    }
    assert_not_found(
        store.notification(&app, &alice, second.id, at(10)).await,
        "an erased user's notification",
    );
    let leased = lease_all(store, at(10)).await;
    assert_eq!(
        leased.len(),
        1,
        "an erased user's deliveries or sync signals are still pending"
    );
    assert_eq!(leased[0].delivery.notification_id, Some(bobs.id));

    let bob_endpoints: Vec<_> = endpoints(store, &app, &bob)
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(bob_endpoints, vec![bobs_phone.id]);
    assert_eq!(sequence(store, &app, &bob).await, bobs.sequence);
    ok(
        store.notification(&app, &bob, bobs.id, at(10)).await,
        "another user's notification after delete_user",
    );

    let mut reused = fixtures::endpoint_with(&app, &carol, phone.address.clone(), at(20));
    reused.created_at = at(20);
    let reused_id = reused.id;
    let carols = register(store, reused).await;
    assert_eq!(
        carols.id, reused_id,
        "the erased user's endpoint survived and was moved"
    );
    assert_eq!(carols.created_at, at(20));
}

/// `wait_for_work` returns: by its timeout at the latest (a short one here; the case does not
/// measure how long it took).
pub async fn wait_for_work_returns_by_the_timeout(store: &dyn Store) {
    let wait = store.wait_for_work(Duration::from_millis(20));
    let returned = tokio::time::timeout(Duration::from_secs(60), wait).await;
    assert!(
        returned.is_ok(),
        "wait_for_work(20 ms) had not returned after 60 s"
    );
}
