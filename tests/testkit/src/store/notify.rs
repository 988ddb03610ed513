//! Cases: storing notifications, fanout to endpoints, the iOS fallback.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use tidings::{
    ChangesQuery, DeliveryKind, HistoryFilter, HistoryQuery, Notification, Platform, PlatformSet,
    Priority, Store,
};

use super::fixtures::{self, at, T0};
use super::support::{
    accept_all, deliver_all, endpoint_ids, endpoints, insert, insert_new, lease_all, ok, register,
    register_inactive, sequence,
};

/// Inserting a notification whose (app, user, app notification id) is already stored returns
/// the stored one unchanged (`created` false, no deliveries, same id and sequence) and enqueues
/// nothing; the same app notification id for another user or app is a new notification.
pub async fn insert_is_idempotent_by_app_notification_id(store: &dyn Store) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let original = fixtures::notification(&app, &alice, at(1));
    let first = insert(store, original.clone()).await;
    assert!(first.created);
    assert_eq!(first.deliveries, 1);
    assert_eq!(first.notification.id, original.id);
    assert!(
        first.notification.sequence > 0,
        "the store assigns a sequence on creation"
    );

    let mut retry = fixtures::notification(&app, &alice, at(5));
    retry.app_notification_id = original.app_notification_id.clone();
    retry.visual = Some(tidings::VisualContent {
        title: "A different title".to_owned(),
        body: None,
    });
    let second = insert(store, retry).await;
    assert!(
        !second.created,
        "a second insert with the same app notification id created a notification"
    );
    assert_eq!(
        second.deliveries, 0,
        "a repeated insert enqueued deliveries"
    );
    assert_eq!(
        second.notification, first.notification,
        "a repeated insert must return the first notification unchanged"
    );
    assert_eq!(
        sequence(store, &app, &alice).await,
        first.notification.sequence
    );

    let leased = lease_all(store, at(10)).await;
    assert_eq!(
        leased.len(),
        1,
        "the device got the notification {} times",
        leased.len()
    );

    let mut for_bob = fixtures::notification(&app, &bob, at(6));
    for_bob.app_notification_id = original.app_notification_id.clone();
    assert!(
        insert(store, for_bob).await.created,
        "another user's notification with the same app id was not created"
    );
    let mut other_app = fixtures::notification(&fixtures::app(), &alice, at(7));
    other_app.app_notification_id = original.app_notification_id.clone();
    assert!(
        insert(store, other_app).await.created,
        "another app's notification with the same app id was not created"
    );
}

/// Concurrent inserts of one app notification id create exactly one notification, return it to
/// every caller, and enqueue its deliveries once.
pub async fn concurrent_inserts_of_one_app_notification_id_create_one(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let key = fixtures::notification(&app, &alice, T0).app_notification_id;
    let attempts = (0..6).map(|i| {
        let mut n = fixtures::notification(&app, &alice, at(i));
        n.app_notification_id = key.clone();
        store.insert_notification(n)
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(|r| ok(r, "concurrent insert_notification"))
        .collect();
    let created: Vec<_> = results.iter().filter(|r| r.created).collect();
    assert_eq!(
        created.len(),
        1,
        "{} concurrent inserts reported creating the notification",
        created.len()
    );
    let winner = &created[0].notification;
    for r in &results {
        assert_eq!(
            r.notification.id, winner.id,
            "a concurrent insert returned another notification"
        );
    }
    assert_eq!(results.iter().map(|r| r.deliveries).sum::<usize>(), 2);
    let leased = lease_all(store, at(10)).await;
    assert_eq!(
        leased.len(),
        2,
        "each of the two devices must get the notification once"
    );
}

/// A notification gets one delivery per active endpoint of its user in its app whose platform
/// it targets, due at its creation and expiring with it; endpoints on untargeted platforms,
/// inactive endpoints and other users' or apps' endpoints get none.
pub async fn insert_enqueues_one_delivery_per_active_targeted_endpoint(store: &dyn Store) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    let inactive = register_inactive(store, &app, &alice).await;
    let apns = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let fcm = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let wns = register(store, fixtures::endpoint(&app, &alice, Platform::Wns)).await;
    let web = register(store, fixtures::endpoint(&app, &alice, Platform::WebPush)).await;
    register(store, fixtures::endpoint(&app, &bob, Platform::Fcm)).await;
    register(
        store,
        fixtures::endpoint(&fixtures::app(), &alice, Platform::Fcm),
    )
    .await;

    let mut n = fixtures::notification(&app, &alice, at(1));
    n.targets = PlatformSet::from([Platform::Apns, Platform::Fcm, Platform::WebPush]);
    let n = insert_new(store, n, 3).await;

    assert!(
        lease_all(store, T0).await.is_empty(),
        "a delivery was leased before it was due"
    );
    let leased = lease_all(store, at(1)).await;
    assert_eq!(
        endpoint_ids(&leased),
        BTreeSet::from([apns.id, fcm.id, web.id])
    );
    assert!(
        !endpoint_ids(&leased).contains(&wns.id),
        "an untargeted platform got a delivery"
    );
    assert!(
        !endpoint_ids(&leased).contains(&inactive.id),
        "an inactive endpoint got a delivery"
    );
    for l in &leased {
        let d = &l.delivery;
        assert_eq!(d.kind, DeliveryKind::Notification);
        assert_eq!((&d.app, &d.user), (&app, &alice));
        assert_eq!(d.notification_id, Some(n.id));
        assert_eq!(
            d.next_attempt_at, n.created_at,
            "a notification delivery is due at creation"
        );
        assert_eq!(
            d.expires_at, n.expires_at,
            "a delivery expires with its notification"
        );
        assert_eq!(d.attempt, 1, "a first lease is attempt 1");
        assert_eq!(
            l.endpoint.id, d.endpoint_id,
            "the leased endpoint is the delivery's"
        );
        assert_eq!(
            l.notification.as_ref().map(|x| x.id),
            Some(n.id),
            "the leased delivery carries its notification"
        );
    }
}

/// With a fallback policy, each targeted APNs endpoint (and no other) also gets a fallback alert
/// due `delay` after creation: not leasable a second before, leasable at that time.
pub async fn fallback_alerts_go_only_to_apns_endpoints_after_the_delay(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let tablet = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::WebPush)).await;
    let n = fixtures::notification_with_fallback(&app, &alice, at(10), Duration::from_secs(120));
    let n = insert_new(store, n, 6).await;

    let first = deliver_all(store, at(10)).await;
    assert_eq!(first.len(), 4);
    assert!(
        first
            .iter()
            .all(|l| l.delivery.kind == DeliveryKind::Notification),
        "a fallback alert was due at creation"
    );
    assert!(
        lease_all(store, at(129)).await.is_empty(),
        "a fallback alert was leased before its delay"
    );
    let alerts = lease_all(store, at(130)).await;
    assert_eq!(endpoint_ids(&alerts), BTreeSet::from([phone.id, tablet.id]));
    for l in &alerts {
        assert_eq!(l.delivery.kind, DeliveryKind::FallbackAlert);
        assert_eq!(l.delivery.notification_id, Some(n.id));
        assert_eq!(l.delivery.expires_at, n.expires_at);
    }
}

/// `record_fetch` by one APNs endpoint cancels that endpoint's fallback alert and no other's,
/// and returns the notification.
pub async fn fetch_cancels_the_fallback_for_that_endpoint_only(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let tablet = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let n = fixtures::notification_with_fallback(&app, &alice, T0, Duration::from_secs(60));
    let n = insert_new(store, n, 4).await;
    let pushed = lease_all(store, T0).await;
    assert_eq!(pushed.len(), 2);
    accept_all(store, &pushed, T0).await;

    let fetched = ok(
        store
            .record_fetch(&app, &alice, n.id, phone.id, at(30))
            .await,
        "record_fetch",
    );
    assert_eq!(fetched.id, n.id);
    assert_eq!(fetched.raw, n.raw);
    let alerts = lease_all(store, at(60)).await;
    assert_eq!(
        endpoint_ids(&alerts),
        BTreeSet::from([tablet.id]),
        "only the device that did not fetch gets the fallback"
    );
    assert_eq!(alerts[0].delivery.kind, DeliveryKind::FallbackAlert);
}

/// What is stored comes back unchanged, to the microsecond: an endpoint with every field set
/// (as `upsert_endpoint` returns it and `endpoints` lists it), and a notification with every
/// field set (as `insert_notification` returns it and `notification`, `history` and `changes`
/// read it), apart from the sequence the store assigns.
pub async fn stored_items_round_trip_unchanged(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let t = T0.plus(Duration::from_micros(123_457));
    let mut registered = Vec::new();
    for (i, platform) in Platform::ALL.into_iter().enumerate() {
        let seen = t.plus(Duration::from_micros(i as u64));
        let mut e = fixtures::endpoint_with(&app, &alice, fixtures::address(platform), seen);
        e.installation_id = Some(format!("install-{platform}"));
        e.address_expires_at = Some(seen.plus(Duration::from_secs(30 * 86_400)));
        let stored = register(store, e.clone()).await;
        assert_eq!(
            stored, e,
            "upsert_endpoint changed a new {platform} endpoint"
        );
        registered.push(stored);
    }
    assert_eq!(
        endpoints(store, &app, &alice).await,
        registered,
        "endpoints() does not return what was stored"
    );

    let mut n = fixtures::notification_with_fallback(&app, &alice, t, Duration::from_secs(90));
    n.group = Some("chat-42".to_owned());
    n.priority = Priority::High;
    n.expires_at = t.plus(Duration::from_secs(3 * 86_400 + 1));
    n.display_ttl = Some(Duration::from_secs(3600));
    n.visual = Some(tidings::VisualContent {
        title: "Ünïcødé ✓ \"quoted\" 'and' \\ backslash".to_owned(),
        body: Some("Line one\nline two — 日本語".to_owned()),
    });
    n.targets = PlatformSet::from([Platform::Apns, Platform::WebPush]);
    let stored = insert_new(store, n.clone(), 3).await;
    assert_eq!(
        stored,
        Notification {
            sequence: stored.sequence,
            ..n
        },
        "insert_notification changed the notification"
    );
    let read = ok(
        store.notification(&app, &alice, stored.id, t).await,
        "notification",
    );
    assert_eq!(
        read, stored,
        "notification() does not return what was stored"
    );
    let page = ok(
        store
            .history(&HistoryQuery {
                app: app.clone(),
                user: alice.clone(),
                filter: HistoryFilter::default(),
                after: None,
                limit: 10,
                now: t,
            })
            .await,
        "history",
    );
    assert_eq!(
        page.items,
        vec![stored.clone()],
        "history does not return what was stored"
    );
    let changes = ok(
        store
            .changes(&ChangesQuery {
                app: app.clone(),
                user: alice.clone(),
                since: 0,
                limit: 10,
                now: t,
            })
            .await,
        "changes",
    );
    assert_eq!(
        changes.changes,
        vec![stored],
        "the change feed does not return what was stored"
    );
}
