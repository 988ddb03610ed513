//! End to end: `Tidings` with `MemoryStore` and `FcmChannel`, against the FCM mock.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tidings::{
    App, Dispatcher, DispatcherConfig, EndpointRegistration, ManualClock, NewNotification,
    PayloadMode, PushAddress, StatePatch, Tidings, Timestamp,
};
use tidings_memory::MemoryStore;
use tidings_testkit::fcm::{FcmErrorCode, FcmMock, FcmReply};

const APP: &str = "chat";

struct World {
    mock: FcmMock,
    tidings: Tidings,
    clock: ManualClock,
    dispatcher: Dispatcher,
}

async fn world(app: App) -> World {
    let mock = FcmMock::start().await;
    let account = mock.service_account("e2e-project");
    let channel = common::builder(&mock, APP, &account).build().unwrap();
    let clock = ManualClock::new(Timestamp::now_utc());
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(channel)
        .clock(clock.clone())
        .app(app)
        .build()
        .unwrap();
    let mut config = DispatcherConfig::default();
    config.backoff.jitter = false;
    let dispatcher = tidings.dispatcher_with(config).unwrap();
    World {
        mock,
        tidings,
        clock,
        dispatcher,
    }
}

async fn register(w: &World, user: &str, token: &str) -> tidings::Endpoint {
    w.tidings
        .register_endpoint(EndpointRegistration::new(
            APP,
            user,
            PushAddress::Fcm {
                token: token.to_owned(),
            },
        ))
        .await
        .unwrap()
}

#[tokio::test]
async fn visible_shoulder_tap_shows_the_placeholder_and_carries_the_ids() {
    let w = world(App::new(APP).placeholder("New message", None)).await;
    register(&w, "alice", "android-1").await;
    let n = w
        .tidings
        .send(NewNotification::new(APP, "alice", "m1").title("Secret subject"))
        .await
        .unwrap();

    let report = w.dispatcher.run_until_idle().await.unwrap();

    assert_eq!(report.accepted, 1, "{report:?}");
    let r = &w.mock.requests_for("android-1")[0];
    let message = r.message().unwrap();
    assert_eq!(message["notification"]["title"], "New message");
    assert!(
        !r.body.windows(6).any(|b| b == b"Secret"),
        "the content stays out of the push"
    );
    let data = r.data();
    assert_eq!(data["notification_id"], n.id.to_string());
    assert_eq!(data["app"], APP);
    assert_eq!(data["sequence"], n.sequence.to_string());
}

#[tokio::test]
async fn raw_inline_notification_is_a_data_only_message() {
    let w = world(App::new(APP).payload_mode(PayloadMode::Inline)).await;
    register(&w, "alice", "android-raw").await;
    w.tidings
        .send(NewNotification::new(APP, "alice", "m1").raw("{\"room\":7}"))
        .await
        .unwrap();

    w.dispatcher.run_until_idle().await.unwrap();

    let r = &w.mock.requests_for("android-raw")[0];
    assert!(r.accepted());
    let message = r.message().unwrap();
    assert!(message.get("notification").is_none(), "{message}");
    assert_eq!(r.data()["raw"], "{\"room\":7}");
    assert_eq!(message["android"]["priority"], "NORMAL");
}

#[tokio::test]
async fn dismissing_on_one_phone_sends_a_high_priority_sync_signal_to_the_other() {
    let w = world(App::new(APP)).await;
    let phone = register(&w, "alice", "android-phone").await;
    register(&w, "alice", "android-tablet").await;
    let n = w
        .tidings
        .send(NewNotification::new(APP, "alice", "m1").title("Hi"))
        .await
        .unwrap();
    w.dispatcher.run_until_idle().await.unwrap();

    let changed = w
        .tidings
        .update_state(
            &APP.into(),
            &"alice".into(),
            n.id,
            StatePatch::dismissed(),
            Some(phone.id),
        )
        .await
        .unwrap();
    w.clock.advance(Duration::from_secs(3));
    w.dispatcher.run_until_idle().await.unwrap();

    let tablet = w.mock.requests_for("android-tablet");
    assert_eq!(tablet.len(), 2, "the notification, then the sync signal");
    let sync = &tablet[1];
    assert!(sync.accepted());
    assert!(sync.message().unwrap().get("notification").is_none());
    assert_eq!(sync.message().unwrap()["android"]["priority"], "HIGH");
    assert_eq!(sync.data()["kind"], "sync");
    assert_eq!(sync.data()["sequence"], changed.sequence.to_string());
    assert_eq!(
        w.mock.requests_for("android-phone").len(),
        1,
        "no signal back to the phone that made the change"
    );
}

#[tokio::test]
async fn unregistered_token_deactivates_the_endpoint() {
    let w = world(App::new(APP)).await;
    register(&w, "alice", "android-gone").await;
    w.mock
        .script("android-gone", FcmReply::Error(FcmErrorCode::Unregistered));
    w.tidings
        .send(NewNotification::new(APP, "alice", "m1").title("Hi"))
        .await
        .unwrap();

    let report = w.dispatcher.run_until_idle().await.unwrap();

    assert_eq!(report.gone, 1, "{report:?}");
    let endpoints = w
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    assert!(!endpoints[0].active);
    assert_eq!(
        endpoints[0].deactivation_reason.as_deref(),
        Some("UNREGISTERED")
    );

    w.tidings
        .send(NewNotification::new(APP, "alice", "m2").title("Again"))
        .await
        .unwrap();
    w.dispatcher.run_until_idle().await.unwrap();
    assert_eq!(
        w.mock.requests_for("android-gone").len(),
        1,
        "nothing more is sent to a deactivated endpoint"
    );
}

#[tokio::test]
async fn expired_access_token_is_refreshed_without_losing_the_notification() {
    let w = world(App::new(APP)).await;
    register(&w, "alice", "android-auth").await;
    w.tidings
        .send(NewNotification::new(APP, "alice", "m1").title("One"))
        .await
        .unwrap();
    w.dispatcher.run_until_idle().await.unwrap();

    w.mock.expire_access_tokens();
    w.tidings
        .send(NewNotification::new(APP, "alice", "m2").title("Two"))
        .await
        .unwrap();
    let report = w.dispatcher.run_until_idle().await.unwrap();

    assert_eq!((report.accepted, report.retried), (1, 0), "{report:?}");
    assert_eq!(w.mock.token_request_count(), 2);
}
