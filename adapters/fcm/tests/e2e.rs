//! End to end: `Tidings` with `MemoryStore` and `FcmChannel`, against the FCM mock.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use tidings::{App, ManualClock, NewNotification, PayloadMode, PushAddress, Tidings, Timestamp};
use tidings_memory::MemoryStore;
use tidings_testkit::channel::fixtures::EndToEnd;
use tidings_testkit::fcm::{FcmErrorCode, FcmMock, FcmReply};

const APP: &str = "chat";

type World = EndToEnd<FcmMock>;

async fn world(app: App) -> World {
    let mock = FcmMock::start().await;
    let account = mock.service_account("e2e-project");
    let channel = common::builder(&mock, APP, &account).build().unwrap();
    let clock = ManualClock::new(Timestamp::now_utc());
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(channel)
        .app(app);
    EndToEnd::new(mock, clock, tidings)
}

async fn register(w: &World, user: &str, token: &str) -> tidings::Endpoint {
    let address = PushAddress::Fcm {
        token: token.to_owned(),
    };
    w.register(APP, user, address).await
}

#[tokio::test]
async fn visible_shoulder_tap_shows_the_placeholder_and_carries_the_ids() {
    let w = world(App::new(APP).placeholder("New message", None)).await;
    register(&w, "alice", "android-1").await;
    let n = w.notify(APP, "alice", "m1", "Secret subject").await;

    let report = w.run().await;

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

    w.run().await;

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

    let changed = w.dismiss_from(&phone).await;

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
    let endpoint = register(&w, "alice", "android-gone").await;
    w.mock
        .script("android-gone", FcmReply::Error(FcmErrorCode::Unregistered));

    w.assert_gone_deactivates(&endpoint, "UNREGISTERED").await;

    assert_eq!(
        w.mock.requests_for("android-gone").len(),
        1,
        "nothing more is sent to a deactivated endpoint"
    );
}

#[tokio::test]
async fn expired_access_token_is_refreshed_without_losing_the_notification() {
    let w = world(App::new(APP)).await;
    let endpoint = register(&w, "alice", "android-auth").await;

    w.assert_credentials_renewed(&endpoint, |w| w.mock.expire_access_tokens())
        .await;

    assert_eq!(w.mock.token_request_count(), 2);
}
