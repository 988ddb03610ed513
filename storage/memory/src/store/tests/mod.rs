//! Behaviour specific to the memory store: its indexes, its concurrency, its wake-ups. The
//! cross-store contract is checked by `tidings-testkit`'s conformance suite.
//!
//! This file: endpoints, fan-out and state changes; `outbox.rs`: leasing, outcomes, expiry.

use std::time::Duration;

use tidings::{
    ApnsEnvironment, DeliveryKind, DeliveryOutcome, Endpoint, EndpointId, FallbackPolicy,
    LeaseRequest, LeasedDelivery, Notification, NotificationId, NotificationState, Outcome,
    PlatformSet, Priority, PushAddress, ReadState, StatePatch, StateUpdate, Status, Store,
    StoreErrorKind, SyncSchedule, Timestamp, UserAction, UserId, VisualContent,
};

use super::MemoryStore;

mod outbox;

pub(super) fn t0() -> Timestamp {
    Timestamp::from_secs(1_767_225_600)
}

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(super) fn apns(n: u8) -> PushAddress {
    PushAddress::Apns {
        token: format!("{n:02x}").repeat(32),
        environment: ApnsEnvironment::Production,
    }
}

pub(super) fn fcm(n: u8) -> PushAddress {
    PushAddress::Fcm {
        token: format!("fcm-token-{n}"),
    }
}

pub(super) fn webpush(n: u8) -> PushAddress {
    PushAddress::WebPush {
        endpoint: format!("https://fcm.googleapis.com/fcm/send/{n}"),
        p256dh: "key".into(),
        auth: "auth".into(),
    }
}

pub(super) fn endpoint(user: &str, address: PushAddress) -> Endpoint {
    Endpoint {
        id: EndpointId::new_random(),
        app: "app".into(),
        user: user.into(),
        installation_id: None,
        address,
        active: true,
        created_at: t0(),
        last_seen_at: t0(),
        address_expires_at: None,
        deactivation_reason: None,
    }
}

pub(super) fn notification(user: &str, app_id: &str) -> Notification {
    Notification {
        id: NotificationId::new_random(),
        app: "app".into(),
        user: user.into(),
        app_notification_id: app_id.into(),
        group: None,
        priority: Priority::Normal,
        created_at: t0(),
        expires_at: t0().plus(secs(3600)),
        display_ttl: None,
        visual: Some(VisualContent {
            title: "hello".into(),
            body: None,
        }),
        raw: Some("{}".into()),
        targets: PlatformSet::ALL,
        fallback: None,
        state: NotificationState {
            read: ReadState::Unread,
            action: UserAction::None,
            status: Status::Active,
            changed_at: t0(),
        },
        sequence: 0,
    }
}

pub(super) async fn register(store: &MemoryStore, user: &str, address: PushAddress) -> Endpoint {
    store
        .upsert_endpoint(endpoint(user, address))
        .await
        .unwrap()
}

pub(super) async fn lease(
    store: &MemoryStore,
    now: Timestamp,
    limit: usize,
) -> Vec<LeasedDelivery> {
    store
        .lease_due(LeaseRequest {
            now,
            limit,
            lease_until: now.plus(secs(60)),
        })
        .await
        .unwrap()
}

pub(super) fn outcome(l: &LeasedDelivery, outcome: Outcome) -> DeliveryOutcome {
    DeliveryOutcome {
        delivery: l.delivery.id,
        lease: l.lease,
        endpoint: l.endpoint.id,
        outcome,
        at: t0(),
    }
}

pub(super) fn accepted(l: &LeasedDelivery) -> DeliveryOutcome {
    outcome(
        l,
        Outcome::Accepted {
            provider_message_id: None,
        },
    )
}

pub(super) fn update(
    user: &str,
    id: NotificationId,
    patch: StatePatch,
    origin: Option<EndpointId>,
) -> StateUpdate {
    StateUpdate {
        app: "app".into(),
        user: user.into(),
        id,
        patch,
        at: t0().plus(secs(1)),
        origin,
        sync: Some(SyncSchedule {
            due_at: t0().plus(secs(3)),
            expires_at: t0().plus(secs(600)),
            apns_budget: None,
        }),
    }
}

#[tokio::test]
async fn address_registered_by_another_user_moves_and_loses_its_pending_deliveries() {
    let store = MemoryStore::new();
    let phone = register(&store, "alice", apns(1)).await;
    store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap();
    let moved = register(&store, "bob", apns(1)).await;
    assert_eq!(moved.id, phone.id, "the endpoint keeps its id");
    assert_eq!(moved.user, UserId::from("bob"));
    assert!(store
        .endpoints(&"app".into(), &"alice".into())
        .await
        .unwrap()
        .is_empty());
    assert!(
        lease(&store, t0(), 10).await.is_empty(),
        "alice's push must not reach bob's device"
    );
    let inserted = store
        .insert_notification(notification("alice", "a2"))
        .await
        .unwrap();
    assert_eq!(inserted.deliveries, 0);
}

#[tokio::test]
async fn installation_id_refresh_replaces_the_address_instead_of_adding_an_endpoint() {
    let store = MemoryStore::new();
    let mut first = endpoint("alice", fcm(1));
    first.installation_id = Some("install-1".into());
    let first = store.upsert_endpoint(first).await.unwrap();
    store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap();
    let mut again = endpoint("alice", fcm(2));
    again.installation_id = Some("install-1".into());
    let again = store.upsert_endpoint(again).await.unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(again.address, fcm(2));
    let all = store
        .endpoints(&"app".into(), &"alice".into())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(
        lease(&store, t0(), 10).await.is_empty(),
        "pending deliveries went with the old address"
    );
    // The old address is free again: registering it makes a new endpoint.
    let other = register(&store, "alice", fcm(1)).await;
    assert_ne!(other.id, first.id);
}

#[tokio::test]
async fn fallback_alerts_go_to_apns_endpoints_only_and_a_fetch_cancels_its_own() {
    let store = MemoryStore::new();
    let iphone = register(&store, "alice", apns(1)).await;
    let ipad = register(&store, "alice", apns(2)).await;
    register(&store, "alice", fcm(1)).await;
    let mut n = notification("alice", "a1");
    n.fallback = Some(FallbackPolicy {
        delay: secs(60),
        visual: VisualContent {
            title: "New message".into(),
            body: None,
        },
    });
    let inserted = store.insert_notification(n).await.unwrap();
    assert_eq!(
        inserted.deliveries, 5,
        "three notifications and two fallback alerts"
    );
    let now = lease(&store, t0(), 10).await;
    assert!(now
        .iter()
        .all(|l| l.delivery.kind == DeliveryKind::Notification));
    store
        .record_fetch(
            &"app".into(),
            &"alice".into(),
            inserted.notification.id,
            iphone.id,
            t0(),
        )
        .await
        .unwrap();
    let later = lease(&store, t0().plus(secs(61)), 10).await;
    let alerts: Vec<_> = later
        .iter()
        .filter(|l| l.delivery.kind == DeliveryKind::FallbackAlert)
        .map(|l| l.endpoint.id)
        .collect();
    assert_eq!(alerts, vec![ipad.id]);
}

#[tokio::test]
async fn state_changes_coalesce_into_one_sync_signal_per_other_silent_endpoint() {
    let store = MemoryStore::new();
    let phone = register(&store, "alice", fcm(1)).await;
    let mac = register(&store, "alice", apns(1)).await;
    register(&store, "alice", webpush(1)).await;
    let n = store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap()
        .notification;
    for l in lease(&store, t0(), 10).await {
        store.record_outcomes(vec![accepted(&l)]).await.unwrap();
    }
    let read = store
        .update_state(update("alice", n.id, StatePatch::read(), Some(phone.id)))
        .await
        .unwrap();
    let dismissed = store
        .update_state(update(
            "alice",
            n.id,
            StatePatch::dismissed(),
            Some(phone.id),
        ))
        .await
        .unwrap();
    assert!(dismissed.sequence > read.sequence);
    let signals = lease(&store, t0().plus(secs(3)), 10).await;
    assert_eq!(
        signals.len(),
        1,
        "not the origin, not Web Push, and coalesced"
    );
    assert_eq!(signals[0].endpoint.id, mac.id);
    assert_eq!(signals[0].delivery.kind, DeliveryKind::Sync);
    assert_eq!(signals[0].delivery.sequence, dismissed.sequence);
    assert!(signals[0].notification.is_none());
    // A no-op patch changes nothing: same sequence, no signal.
    let same = store
        .update_state(update("alice", n.id, StatePatch::dismissed(), None))
        .await
        .unwrap();
    assert_eq!(same.sequence, dismissed.sequence);
    assert!(lease(&store, t0().plus(secs(600)), 10).await.is_empty());
}

#[tokio::test]
async fn a_leased_sync_signal_is_not_coalesced_into() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    let n = store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap()
        .notification;
    lease(&store, t0(), 10).await;
    store
        .update_state(update("alice", n.id, StatePatch::read(), None))
        .await
        .unwrap();
    let first = lease(&store, t0().plus(secs(3)), 10).await;
    assert_eq!(first.len(), 1);
    let later = store
        .update_state(update("alice", n.id, StatePatch::dismissed(), None))
        .await
        .unwrap();
    let second = lease(&store, t0().plus(secs(3)), 10).await;
    assert_eq!(
        second.len(),
        1,
        "the change after the lease needs its own signal"
    );
    assert_eq!(second[0].delivery.sequence, later.sequence);
}

#[tokio::test]
async fn deleting_drops_pending_pushes_and_leases_carry_the_current_state() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    register(&store, "alice", apns(1)).await;
    let a = store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap()
        .notification;
    let b = store
        .insert_notification(notification("alice", "b1"))
        .await
        .unwrap()
        .notification;
    store
        .update_state(update("alice", a.id, StatePatch::deleted(), None))
        .await
        .unwrap();
    store
        .update_state(update("alice", b.id, StatePatch::read(), None))
        .await
        .unwrap();
    let leased = lease(&store, t0(), 10).await;
    assert_eq!(leased.len(), 2);
    for l in &leased {
        let n = l.notification.as_ref().unwrap();
        assert_eq!(n.id, b.id, "nothing of the deleted notification is pushed");
        assert_eq!(
            n.state.read,
            ReadState::Read,
            "the lease sees the state as changed"
        );
    }
}

#[tokio::test]
async fn another_users_items_are_not_found() {
    let store = MemoryStore::new();
    let bobs_phone = register(&store, "bob", fcm(2)).await;
    let alices_phone = register(&store, "alice", fcm(1)).await;
    let n = store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap()
        .notification;
    let (app, other_app): (tidings::AppId, tidings::AppId) = ("app".into(), "alice".into());
    let (bob, alice): (UserId, UserId) = ("bob".into(), "alice".into());
    let e = store
        .notification(&app, &bob, n.id, t0())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound);
    let e = store
        .update_state(update("bob", n.id, StatePatch::read(), None))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound);
    let e = store
        .record_fetch(&other_app, &alice, n.id, alices_phone.id, t0())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound, "another app");
    let e = store
        .record_fetch(&app, &alice, n.id, bobs_phone.id, t0())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound, "bob's endpoint");
    let e = store
        .delete_endpoint(&app, &alice, bobs_phone.id)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::NotFound);
    assert_eq!(store.current_sequence(&app, &bob).await.unwrap(), 0);
}

#[tokio::test]
async fn a_sync_signal_that_expired_unsent_does_not_swallow_later_changes() {
    let store = MemoryStore::new();
    register(&store, "alice", fcm(1)).await;
    let n = store
        .insert_notification(notification("alice", "a1"))
        .await
        .unwrap()
        .notification;
    lease(&store, t0(), 10).await;
    let at = |s: u64| t0().plus(secs(s));
    let change = |patch: StatePatch, now: u64, expires: u64| StateUpdate {
        at: at(now),
        sync: Some(SyncSchedule {
            due_at: at(now + 2),
            expires_at: at(expires),
            apns_budget: None,
        }),
        ..update("alice", n.id, patch, None)
    };
    store
        .update_state(change(StatePatch::read(), 1, 5))
        .await
        .unwrap();
    assert!(
        lease(&store, at(10), 10).await.is_empty(),
        "the first signal expired unsent"
    );
    store
        .update_state(change(StatePatch::dismissed(), 11, 600))
        .await
        .unwrap();
    let last = store
        .update_state(change(StatePatch::deleted(), 12, 600))
        .await
        .unwrap();
    let signals = lease(&store, at(14), 10).await;
    assert_eq!(signals.len(), 1, "the two later changes coalesce");
    assert_eq!(signals[0].delivery.sequence, last.sequence);
}
