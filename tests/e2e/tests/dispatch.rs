//! The dispatcher: retries, gone endpoints, crashes, the iOS fallback.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidings::{DeliveryKind, NewNotification, Priority, PushContent};
use tidings_e2e::{Harness, APP};
use tidings_memory::Scripted;

#[tokio::test]
async fn gone_deactivates_the_endpoint_and_it_gets_nothing_afterwards() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    h.fcm.script(devices.android.id, [Scripted::Gone]);
    h.tidings
        .send(NewNotification::new(APP, "alice", "1").title("One"))
        .await
        .unwrap();

    let report = h.dispatch().await;
    assert_eq!(report.gone, 1);

    let endpoints = h
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    let android = endpoints
        .iter()
        .find(|e| e.id == devices.android.id)
        .unwrap();
    assert!(!android.active);
    assert!(android.deactivation_reason.is_some());

    h.fcm.clear();
    h.tidings
        .send(NewNotification::new(APP, "alice", "2").title("Two"))
        .await
        .unwrap();
    h.dispatch().await;
    assert!(h.fcm.pushes_to(devices.android.id).is_empty());
    assert_eq!(h.apns.pushes_to(devices.iphone.id).len(), 2);
}

#[tokio::test]
async fn a_reregistered_gone_endpoint_is_reached_again() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    h.fcm.script(devices.android.id, [Scripted::Gone]);
    h.tidings
        .send(NewNotification::new(APP, "alice", "1").title("One"))
        .await
        .unwrap();
    h.dispatch().await;

    let again = h.register_devices("alice", 1).await;
    assert_eq!(again.android.id, devices.android.id);
    assert!(again.android.active);
    h.fcm.clear();
    h.tidings
        .send(NewNotification::new(APP, "alice", "2").title("Two"))
        .await
        .unwrap();
    h.dispatch().await;
    assert_eq!(h.fcm.pushes_to(devices.android.id).len(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    h.wns.script(
        devices.windows.id,
        [Scripted::RetryAfter(Duration::from_secs(120))],
    );
    h.tidings
        .send(NewNotification::new(APP, "alice", "1").title("One"))
        .await
        .unwrap();

    let first = h.dispatch().await;
    assert_eq!(first.retried, 1);
    assert!(h.wns.accepted().is_empty());

    h.advance(Duration::from_secs(119));
    assert_eq!(
        h.dispatch().await.leased,
        0,
        "nothing before the provider's time"
    );
    assert!(h.wns.accepted().is_empty());

    h.advance(Duration::from_secs(1));
    let second = h.dispatch().await;
    assert_eq!(second.accepted, 1);
    let pushes = h.wns.pushes_to(devices.windows.id);
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[1].push.attempt, 2);
    assert!(
        pushes[1].push.ttl() < pushes[0].push.ttl(),
        "the TTL shrinks on retry"
    );
}

#[tokio::test]
async fn a_retry_is_never_scheduled_past_expiry() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    h.wns.script(
        devices.windows.id,
        [Scripted::RetryAfter(Duration::from_secs(600))],
    );
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "1")
                .title("One")
                .expires_in(Duration::from_secs(300)),
        )
        .await
        .unwrap();

    let report = h.dispatch().await;
    assert_eq!(report.failed, 1);
    h.advance(Duration::from_secs(3600));
    assert_eq!(h.dispatch().await.leased, 0);
}

#[tokio::test]
async fn a_dispatcher_dropped_mid_batch_loses_nothing() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    h.apns.script(
        devices.iphone.id,
        [Scripted::Delay(Duration::from_secs(3600))],
    );
    let n = h
        .tidings
        .send(NewNotification::new(APP, "alice", "1").title("One"))
        .await
        .unwrap();

    // The first dispatcher leases all four deliveries, then hangs on the iPhone push.
    let first = h.dispatcher.clone();
    let task = tokio::spawn(async move { first.run_once().await });
    while h.apns.started() == 0 {
        tokio::task::yield_now().await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());

    // Nothing is due while the dead dispatcher's lease holds.
    assert_eq!(h.dispatch().await.leased, 0);
    // After the lease lapses another dispatcher delivers everything. Pushes the dead dispatcher
    // had already handed over are sent again (at least once; devices drop duplicates by
    // notification id).
    h.advance(Duration::from_secs(61));
    let report = h.dispatch().await;
    assert_eq!(report.accepted, 4);
    for endpoint in devices.all() {
        let accepted: Vec<_> = h
            .channel(endpoint.platform())
            .accepted()
            .into_iter()
            .filter(|p| p.endpoint_id() == endpoint.id)
            .collect();
        assert!(
            !accepted.is_empty(),
            "{:?} got nothing",
            endpoint.platform()
        );
        assert!(accepted
            .iter()
            .all(|p| p.push.notification_id == Some(n.id)));
    }
}

fn incoming_call() -> NewNotification {
    NewNotification::new(APP, "alice", "call-1")
        .raw(r#"{"call":"bob"}"#)
        .priority(Priority::High)
        .fallback(
            Duration::from_secs(60),
            "Incoming call",
            Some("Bob is calling".into()),
        )
}

#[tokio::test]
async fn the_ios_fallback_fires_after_its_delay() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    h.tidings.send(incoming_call()).await.unwrap();
    h.dispatch().await;
    let first = h.apns.pushes_to(devices.iphone.id);
    assert_eq!(first.len(), 1);
    assert!(
        first[0].push.is_silent(),
        "raw content goes as a background push"
    );

    h.advance(Duration::from_secs(59));
    h.dispatch().await;
    assert_eq!(h.apns.pushes_to(devices.iphone.id).len(), 1);

    h.advance(Duration::from_secs(1));
    h.dispatch().await;
    let pushes = h.apns.pushes_to(devices.iphone.id);
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[1].push.kind, DeliveryKind::FallbackAlert);
    assert!(matches!(
        pushes[1].push.content,
        PushContent::Tap { alert: Some(_) }
    ));
    assert_eq!(pushes[1].push.priority, Priority::High);
    // Only APNs endpoints get fallback alerts.
    assert_eq!(h.fcm.pushes_to(devices.android.id).len(), 1);
}

#[tokio::test]
async fn the_ios_fallback_does_not_fire_when_the_endpoint_fetched_first() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    let n = h.tidings.send(incoming_call()).await.unwrap();
    h.dispatch().await;

    let fetched = h
        .tidings
        .fetch(&APP.into(), &"alice".into(), n.id, Some(devices.iphone.id))
        .await
        .unwrap();
    assert_eq!(fetched.raw.as_deref(), Some(r#"{"call":"bob"}"#));

    h.advance(Duration::from_secs(600));
    h.dispatch().await;
    let pushes = h.apns.pushes_to(devices.iphone.id);
    assert_eq!(pushes.len(), 1, "no fallback alert after the fetch");
}

#[tokio::test]
async fn a_running_dispatcher_delivers_new_work_and_stops_on_shutdown() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(h.dispatcher.clone().run(async {
        let _ = stopped.await;
    }));

    h.tidings
        .send(NewNotification::new(APP, "alice", "1").title("One"))
        .await
        .unwrap();
    // The store's work signal wakes the idle dispatcher; no polling interval to wait out.
    tokio::time::timeout(Duration::from_secs(30), h.fcm.wait_for_pushes(1))
        .await
        .expect("the running dispatcher pushed");
    assert_eq!(h.fcm.pushes_to(devices.android.id).len(), 1);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the dispatcher stopped")
        .unwrap()
        .unwrap();
}
