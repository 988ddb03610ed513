//! End to end: `Tidings` with `MemoryStore` and `ApnsChannel`, against the APNs fake over TLS
//! and HTTP/2.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tidings::{
    ApnsEnvironment, App, ManualClock, NewNotification, PayloadMode, Priority, PushAddress,
    Tidings, Timestamp,
};
use tidings_memory::MemoryStore;
use tidings_testkit::apns::{ApnsMock, ApnsReason, ApnsReply};
use tidings_testkit::channel::fixtures::EndToEnd;

const APP: &str = "chat";

type World = EndToEnd<ApnsMock>;

async fn world(app: App) -> World {
    let key = common::key("KEYE2E0001");
    let mock = common::token_mock(&key).await;
    let clock = ManualClock::new(Timestamp::from_secs(mock.now()));
    let channel = common::builder(&mock, APP, &key)
        .clock(clock.clone())
        .build()
        .unwrap();
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(channel)
        .app(app);
    EndToEnd::new(mock, clock, tidings)
}

async fn register(w: &World, user: &str, token: &str) -> tidings::Endpoint {
    let address = PushAddress::Apns {
        token: token.to_owned(),
        environment: ApnsEnvironment::Production,
    };
    w.register(APP, user, address).await
}

#[tokio::test]
async fn inline_notification_arrives_as_an_alert_expiring_with_the_notification() {
    let w = world(App::new(APP).payload_mode(PayloadMode::Inline)).await;
    register(&w, "alice", "aa11").await;
    let n = w
        .tidings
        .send(
            NewNotification::new(APP, "alice", "m1")
                .title("Lunch?")
                .body("At noon")
                .group("room-7"),
        )
        .await
        .unwrap();

    let report = w.run().await;

    assert_eq!(report.accepted, 1, "{report:?}");
    let r = &w.mock.requests_for("aa11")[0];
    assert_eq!(r.push_type(), Some("alert"));
    assert_eq!(r.aps().unwrap()["alert"]["title"], "Lunch?");
    assert_eq!(r.aps().unwrap()["thread-id"], "room-7");
    assert_eq!(r.expiration(), Some(n.expires_at.as_secs()));
    assert_eq!(r.collapse_id(), Some(n.id.to_string().as_str()));
}

#[tokio::test]
async fn visible_shoulder_tap_shows_the_placeholder_for_the_extension_to_replace() {
    let w = world(App::new(APP).placeholder("New message", None)).await;
    register(&w, "alice", "aa12").await;
    let n = w.notify(APP, "alice", "m1", "Secret subject").await;

    w.run().await;

    let r = &w.mock.requests_for("aa12")[0];
    assert!(r.accepted(), "{r:?}");
    assert_eq!(r.aps().unwrap()["alert"]["title"], "New message");
    assert_eq!(r.aps().unwrap()["mutable-content"], 1);
    assert!(
        !r.body.windows(6).any(|b| b == b"Secret"),
        "the content stays out of the push"
    );
    assert_eq!(
        r.payload.as_ref().unwrap()["notification_id"],
        n.id.to_string()
    );
}

#[tokio::test]
async fn raw_notification_goes_as_background_then_the_fallback_alert_fires() {
    let w = world(App::new(APP).payload_mode(PayloadMode::Inline)).await;
    register(&w, "alice", "aa13").await;
    w.tidings
        .send(
            NewNotification::new(APP, "alice", "call-1")
                .raw(r#"{"call":"bob"}"#)
                .priority(Priority::High)
                .fallback(Duration::from_secs(60), "Incoming call", Some("Bob".into())),
        )
        .await
        .unwrap();
    w.run().await;

    w.clock.advance(Duration::from_secs(60));
    w.run().await;

    let requests = w.mock.requests_for("aa13");
    assert_eq!(requests.len(), 2, "{requests:?}");
    let (background, fallback) = (&requests[0], &requests[1]);
    assert!(background.accepted() && fallback.accepted());
    assert_eq!(background.push_type(), Some("background"));
    assert_eq!(
        background.priority(),
        Some(5),
        "never 10, even for high priority"
    );
    assert_eq!(
        background.payload.as_ref().unwrap()["raw"],
        r#"{"call":"bob"}"#
    );
    assert_eq!(fallback.push_type(), Some("alert"));
    assert_eq!(fallback.priority(), Some(10));
    assert_eq!(fallback.aps().unwrap()["alert"]["title"], "Incoming call");
    assert_eq!(fallback.payload.as_ref().unwrap()["kind"], "fallback_alert");
}

#[tokio::test]
async fn dismissing_on_one_device_sends_a_background_sync_signal_to_the_other() {
    let w = world(App::new(APP)).await;
    let phone = register(&w, "alice", "bb01").await;
    register(&w, "alice", "bb02").await;

    let changed = w.dismiss_from(&phone).await;

    let tablet = w.mock.requests_for("bb02");
    assert_eq!(tablet.len(), 2, "the notification, then the sync signal");
    let sync = &tablet[1];
    assert!(sync.accepted(), "{sync:?}");
    assert_eq!(sync.push_type(), Some("background"));
    assert_eq!(sync.priority(), Some(5));
    assert_eq!(
        sync.aps().unwrap(),
        &serde_json::json!({"content-available": 1})
    );
    let payload = sync.payload.as_ref().unwrap();
    assert_eq!(payload["kind"], "sync");
    assert_eq!(payload["sequence"], changed.sequence);
    assert_eq!(
        w.mock.requests_for("bb01").len(),
        1,
        "no signal back to the phone"
    );
}

#[tokio::test]
async fn expired_provider_token_is_re_signed_without_losing_the_notification() {
    let w = world(App::new(APP)).await;
    let endpoint = register(&w, "alice", "cc01").await;

    w.assert_credentials_renewed(&endpoint, |w| {
        // Apple's clock is an hour ahead of our 25 minutes: the cached token is expired there.
        w.mock.advance_clock(Duration::from_secs(61 * 60));
        w.clock.advance(Duration::from_secs(25 * 60));
    })
    .await;

    let reasons: Vec<_> = w
        .mock
        .requests_for("cc01")
        .iter()
        .map(|r| r.reason)
        .collect();
    assert_eq!(
        reasons,
        vec![None, Some(ApnsReason::ExpiredProviderToken), None]
    );
}

#[tokio::test]
async fn unregistered_token_deactivates_the_endpoint() {
    let w = world(App::new(APP)).await;
    let endpoint = register(&w, "alice", "dd01").await;
    w.mock.script(
        "dd01",
        ApnsReply::Unregistered {
            since_ms: 1_767_225_600_000,
        },
    );

    w.assert_gone_deactivates(&endpoint, "Unregistered").await;

    assert_eq!(
        w.mock.requests_for("dd01").len(),
        1,
        "nothing more is sent to a deactivated endpoint"
    );
}
