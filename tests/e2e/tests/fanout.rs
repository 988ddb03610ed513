//! Fanout: one push per matching endpoint, idempotency, targeting, expiry, payload modes.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidings::{App, NewNotification, PayloadMode, Platform, PushContent};
use tidings_e2e::{Harness, APP};

#[tokio::test]
async fn four_endpoints_on_four_platforms_get_four_pushes() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    let n = h
        .tidings
        .send(
            NewNotification::new(APP, "alice", "msg-1")
                .title("Lunch?")
                .body("12:30 at the usual place"),
        )
        .await
        .unwrap();

    let report = h.dispatch().await;

    assert_eq!(report.accepted, 4);
    for endpoint in devices.all() {
        let pushes = h.channel(endpoint.platform()).pushes_to(endpoint.id);
        assert_eq!(pushes.len(), 1, "{:?}", endpoint.platform());
        assert_eq!(pushes[0].push.notification_id, Some(n.id));
    }
}

#[tokio::test]
async fn the_same_app_notification_id_twice_fans_out_once() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    let first = h
        .tidings
        .send(NewNotification::new(APP, "alice", "order-42-shipped").title("Shipped"))
        .await
        .unwrap();
    let second = h
        .tidings
        .send(NewNotification::new(APP, "alice", "order-42-shipped").title("Shipped"))
        .await
        .unwrap();

    h.dispatch().await;

    assert_eq!(first.id, second.id);
    assert_eq!(h.total_pushes(), 4);
}

#[tokio::test]
async fn a_notification_targeted_at_android_reaches_only_android() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "android-only")
                .title("Update the app")
                .targets(Platform::Fcm),
        )
        .await
        .unwrap();

    h.dispatch().await;

    assert_eq!(h.fcm.pushes_to(devices.android.id).len(), 1);
    assert_eq!(h.total_pushes(), 1);
}

#[tokio::test]
async fn another_users_devices_get_nothing() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    let bob = h.register_devices("bob", 2).await;
    h.tidings
        .send(NewNotification::new(APP, "alice", "for-alice").title("Hi Alice"))
        .await
        .unwrap();

    h.dispatch().await;

    for endpoint in bob.all() {
        assert!(h
            .channel(endpoint.platform())
            .pushes_to(endpoint.id)
            .is_empty());
    }
}

#[tokio::test]
async fn an_expired_notification_is_never_delivered() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "flash-sale")
                .title("Sale ends in a minute")
                .expires_in(Duration::from_secs(60)),
        )
        .await
        .unwrap();

    h.advance(Duration::from_secs(61));
    let report = h.dispatch().await;

    assert_eq!(report.leased, 0);
    assert_eq!(h.total_pushes(), 0);
}

#[tokio::test]
async fn shoulder_tap_pushes_carry_no_title_body_or_raw_content() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "secret")
                .title("Your test results")
                .body("Everything is fine")
                .raw(r#"{"lab":"results"}"#),
        )
        .await
        .unwrap();

    h.dispatch().await;

    for platform in Platform::ALL {
        for push in h.channel(platform).pushes() {
            let PushContent::Tap { alert } = &push.push.content else {
                panic!(
                    "{platform}: content travelled in the push: {:?}",
                    push.push.content
                );
            };
            let text = format!("{alert:?}");
            assert!(
                !text.contains("test results") && !text.contains("fine"),
                "{text}"
            );
            let all = format!("{:?}", push.push);
            assert!(
                !all.contains("lab") && !all.contains("Your test results"),
                "{all}"
            );
        }
    }
    assert_eq!(h.total_pushes(), 4);
}

#[tokio::test]
async fn inline_mode_carries_the_content() {
    let h = Harness::with_app(App::new(APP).payload_mode(PayloadMode::Inline));
    let devices = h.register_devices("alice", 1).await;
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "hello")
                .title("Hello")
                .body("World"),
        )
        .await
        .unwrap();

    h.dispatch().await;

    let push = &h.apns.pushes_to(devices.iphone.id)[0];
    let PushContent::Inline { visual, .. } = &push.push.content else {
        panic!("expected inline content, got {:?}", push.push.content);
    };
    assert_eq!(visual.as_ref().unwrap().body.as_deref(), Some("World"));
}

#[tokio::test]
async fn inline_content_too_large_for_the_platform_falls_back_to_a_shoulder_tap() {
    let h = Harness::with_app(App::new(APP).payload_mode(PayloadMode::Inline));
    h.fcm.set_payload_limit(Some(200));
    let devices = h.register_devices("alice", 1).await;
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "long")
                .title("Long")
                .body("x".repeat(1000)),
        )
        .await
        .unwrap();

    let report = h.dispatch().await;

    assert_eq!(report.accepted, 4);
    let accepted = h.fcm.accepted();
    let to_android: Vec<_> = accepted
        .iter()
        .filter(|p| p.endpoint_id() == devices.android.id)
        .collect();
    assert_eq!(to_android.len(), 1);
    assert!(matches!(
        to_android[0].push.content,
        PushContent::Tap { alert: Some(_) }
    ));
}

#[tokio::test]
async fn a_device_registered_by_another_user_no_longer_gets_the_first_users_notifications() {
    let h = Harness::new();
    let alice = h.register_devices("alice", 1).await;
    // Alice signs out of the shared tablet's browser; Bob signs in: same push subscription.
    h.tidings
        .send(NewNotification::new(APP, "alice", "pending").title("For Alice"))
        .await
        .unwrap();
    let bob = h.register_devices("bob", 1).await;
    assert_eq!(bob.browser.id, alice.browser.id, "the same device moved");

    h.tidings
        .send(NewNotification::new(APP, "alice", "later").title("For Alice"))
        .await
        .unwrap();
    h.dispatch().await;

    assert_eq!(
        h.total_pushes(),
        0,
        "nothing of Alice's reaches devices that now belong to Bob"
    );
    let endpoints = h
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    assert!(endpoints.is_empty());
}
