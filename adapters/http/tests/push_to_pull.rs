//! The stories the client API exists for, end to end over in-memory adapters.

// Helpers outside #[test] functions fail a test by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{get, patch, post, Harness, APP};
use serde_json::{json, Value};
use tidings::{
    DeliveryKind, NewNotification, NotificationId, Platform, PushContent, ReadState, UserAction,
};

const PHONE_TOKEN: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";

#[tokio::test]
async fn shoulder_tap_push_carries_no_content_and_the_device_pulls_it() {
    let h = Harness::new();
    h.register_apns("alice", "alice-phone", PHONE_TOKEN).await;
    let n = h
        .tidings
        .send(
            NewNotification::new(APP, "alice", "order-42")
                .title("Your order 42 shipped")
                .body("It arrives Tuesday"),
        )
        .await
        .unwrap();
    h.tidings.dispatcher().run_until_idle().await.unwrap();

    let pushes = h.apns.pushes();
    assert_eq!(pushes.len(), 1);
    let push = &pushes[0].push;
    assert_eq!(push.notification_id, Some(n.id));
    assert!(
        matches!(push.content, PushContent::Tap { .. }),
        "{:?}",
        push.content
    );
    let carried = serde_json::to_string(&push.content).unwrap();
    assert!(
        !carried.contains("order 42") && !carried.contains("Tuesday"),
        "{carried}"
    );

    let pulled = h
        .call(
            get(format!("/notifications/{}", n.id))
                .token("alice")
                .installation("alice-phone"),
        )
        .await;
    assert_eq!(pulled.status, 200, "{:?}", pulled.body);
    assert_eq!(pulled.body["visual"]["title"], "Your order 42 shipped");
    assert_eq!(pulled.body["visual"]["body"], "It arrives Tuesday");
    assert_eq!(pulled.body["id"], n.id.to_string());

    let by_bob = h
        .call(get(format!("/notifications/{}", n.id)).token("bob"))
        .await;
    let missing = h
        .call(get(format!("/notifications/{}", NotificationId::new_random())).token("bob"))
        .await;
    by_bob.problem(404);
    assert_eq!(
        by_bob.body, missing.body,
        "someone else's id must look like a missing one"
    );
}

#[tokio::test]
async fn dismissing_on_one_device_signals_the_users_other_devices() {
    let h = Harness::new();
    h.register_apns("alice", "phone", PHONE_TOKEN).await;
    let tablet = h.register_fcm("alice", "tablet", "fcm-tablet-token").await;
    let n = h.send(APP, "alice", "m1", "Lunch?").await;
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    h.apns.clear();
    h.fcm.clear();

    let dismissed = h
        .call(
            patch(format!("/notifications/{}", n.id))
                .token("alice")
                .installation("phone")
                .json(&json!({"read": "read", "action": "dismissed"})),
        )
        .await;
    assert_eq!(dismissed.status, 200, "{:?}", dismissed.body);
    assert_eq!(dismissed.body["state"]["action"], "dismissed");
    assert_eq!(dismissed.body["state"]["read"], "read");

    h.clock.advance(Duration::from_secs(3));
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    let signals = h.fcm.pushes();
    assert_eq!(signals.len(), 1, "one sync signal to the tablet");
    assert_eq!(signals[0].push.kind, DeliveryKind::Sync);
    assert_eq!(
        signals[0].endpoint_id().to_string(),
        tablet["id"].as_str().unwrap()
    );
    assert!(
        h.apns.is_empty(),
        "the phone the change came from gets no signal"
    );

    let stored = h
        .tidings
        .notification(&APP.into(), &"alice".into(), n.id)
        .await
        .unwrap();
    assert_eq!(stored.state.action, UserAction::Dismissed);
}

#[tokio::test]
async fn bulk_update_changes_own_notifications_and_reports_others_as_not_found() {
    let h = Harness::new();
    h.register_apns("alice", "phone", PHONE_TOKEN).await;
    h.register_fcm("alice", "tablet", "fcm-tablet-token").await;
    let a1 = h.send(APP, "alice", "a1", "one").await;
    let a2 = h.send(APP, "alice", "a2", "two").await;
    let b1 = h.send(APP, "bob", "b1", "bob's").await;
    let unknown = NotificationId::new_random();
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    h.fcm.clear();

    let answer = h
        .call(
            post("/notifications/state")
                .token("alice")
                .installation("phone")
                .json(&json!({
                    "ids": [a1.id, b1.id, a2.id, unknown, a1.id],
                    "patch": {"read": "read"}
                })),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let updated: Vec<&str> = answer.body["updated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(updated, [a1.id.to_string(), a2.id.to_string()]);
    assert!(answer.body["updated"]
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["state"]["read"] == "read"));
    assert_eq!(answer.body["not_found"], json!([b1.id, unknown]));

    let bobs = h
        .tidings
        .notification(&APP.into(), &"bob".into(), b1.id)
        .await
        .unwrap();
    assert_eq!(
        bobs.state.read,
        ReadState::Unread,
        "bob's notification is untouched"
    );

    h.clock.advance(Duration::from_secs(3));
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(
        h.fcm.pushes().len(),
        1,
        "two changes coalesce into one signal per device"
    );
}

#[tokio::test]
async fn a_device_that_missed_100_changes_catches_up_through_the_change_feed() {
    let h = Harness::new();
    let start = h.call(get("/changes").token("alice")).await;
    assert_eq!(start.status, 200);
    assert_eq!(start.body["changes"], json!([]));
    let mut since = start.body["next_since"].as_u64().unwrap();

    // While the device is offline: 70 new notifications, 30 state changes from elsewhere.
    let mut sent = Vec::new();
    for i in 0..70 {
        sent.push(
            h.send(APP, "alice", &format!("n{i}"), &format!("title {i}"))
                .await,
        );
    }
    for n in sent.iter().take(30) {
        h.tidings
            .update_state(
                &APP.into(),
                &"alice".into(),
                n.id,
                tidings::StatePatch::dismissed(),
                None,
            )
            .await
            .unwrap();
    }
    h.send(APP, "bob", "not-alices", "bob only").await;

    let mut latest: HashMap<String, Value> = HashMap::new();
    let mut pages = 0;
    let mut last_sequence = since;
    loop {
        let page = h
            .call(get(format!("/changes?since={since}&limit=30")).token("alice"))
            .await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        pages += 1;
        for change in page.body["changes"].as_array().unwrap() {
            let seq = change["sequence"].as_u64().unwrap();
            assert!(
                seq > last_sequence,
                "changes come in ascending sequence order"
            );
            last_sequence = seq;
            latest.insert(change["id"].as_str().unwrap().to_owned(), change.clone());
        }
        since = page.body["next_since"].as_u64().unwrap();
        if !page.body["more"].as_bool().unwrap() {
            break;
        }
        assert!(pages < 20, "the feed must end");
    }
    assert_eq!(
        latest.len(),
        70,
        "every notification of alice, once, and none of bob's"
    );
    assert_eq!(
        since, 100,
        "the device is now at the user's current sequence"
    );
    let dismissed = latest
        .values()
        .filter(|n| n["state"]["action"] == "dismissed")
        .count();
    assert_eq!(dismissed, 30, "state changes arrive in their latest state");

    let after = h
        .call(get(format!("/changes?since={since}")).token("alice"))
        .await;
    assert_eq!(after.body["changes"], json!([]));
    assert_eq!(after.body["more"], false);
}

#[tokio::test]
async fn fetching_through_the_api_cancels_the_ios_fallback_alert() {
    let h = Harness::new();
    h.register_apns("alice", "phone", PHONE_TOKEN).await;
    let send = |key: &'static str| {
        NewNotification::new(APP, "alice", key)
            .raw(r#"{"conversation": 7}"#)
            .targets([Platform::Apns])
            .fallback(Duration::from_secs(60), "New message", None)
    };
    let fetched = h.tidings.send(send("fetched")).await.unwrap();
    let ignored = h.tidings.send(send("ignored")).await.unwrap();
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(h.apns.pushes().len(), 2, "two silent pushes");
    h.apns.clear();

    let pulled = h
        .call(
            get(format!("/notifications/{}", fetched.id))
                .token("alice")
                .installation("phone"),
        )
        .await;
    assert_eq!(pulled.status, 200, "{:?}", pulled.body);
    assert_eq!(pulled.body["raw"], r#"{"conversation": 7}"#);

    h.clock.advance(Duration::from_secs(61));
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    let alerts: Vec<_> = h
        .apns
        .pushes()
        .into_iter()
        .filter(|p| p.push.kind == DeliveryKind::FallbackAlert)
        .collect();
    assert_eq!(
        alerts.len(),
        1,
        "only the notification nobody fetched falls back"
    );
    assert_eq!(alerts[0].push.notification_id, Some(ignored.id));
}

#[tokio::test]
async fn a_fetch_without_installation_id_does_not_cancel_the_fallback() {
    let h = Harness::new();
    h.register_apns("alice", "phone", PHONE_TOKEN).await;
    let n = h
        .tidings
        .send(
            NewNotification::new(APP, "alice", "k")
                .raw("data")
                .targets([Platform::Apns])
                .fallback(Duration::from_secs(60), "New message", None),
        )
        .await
        .unwrap();
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    let pulled = h
        .call(get(format!("/notifications/{}", n.id)).token("alice"))
        .await;
    assert_eq!(pulled.status, 200);
    h.clock.advance(Duration::from_secs(61));
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    assert!(h
        .apns
        .pushes()
        .iter()
        .any(|p| p.push.kind == DeliveryKind::FallbackAlert));
}
