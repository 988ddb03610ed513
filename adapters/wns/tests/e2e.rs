//! End to end: `Tidings` with `MemoryStore` and `WnsChannel`, against the WNS mock.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use tidings::{
    AddressPolicy, App, ManualClock, NewNotification, PayloadMode, PushAddress, Tidings, Timestamp,
};
use tidings_memory::MemoryStore;
use tidings_testkit::channel::fixtures::EndToEnd;
use tidings_testkit::wns::{WnsAppCredentials, WnsMock, WnsReply};

const APP: &str = "chat";

/// The WNS mock and the credentials it issued to [`APP`].
struct Gateway {
    wns: WnsMock,
    creds: WnsAppCredentials,
}

type World = EndToEnd<Gateway>;

async fn world(app: App) -> World {
    let wns = WnsMock::start().await;
    let creds = wns.register_app();
    let policy = AddressPolicy::with_loopback_for_tests();
    let channel = tidings_wns::WnsChannel::builder()
        .app(common::app_config(APP, &creds))
        .address_policy(&policy)
        .build()
        .unwrap();
    let clock = ManualClock::new(Timestamp::now_utc());
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(channel)
        .address_policy(policy)
        .app(app);
    EndToEnd::new(Gateway { wns, creds }, clock, tidings)
}

/// Registers a new channel URI of the mock for `user`; returns the endpoint and its URI.
async fn register(w: &World, user: &str) -> (tidings::Endpoint, String) {
    let uri = w.mock.wns.channel_uri(&w.mock.creds);
    let address = PushAddress::Wns {
        channel_uri: uri.clone(),
    };
    (w.register(APP, user, address).await, uri)
}

#[tokio::test]
async fn visible_shoulder_tap_is_a_toast_with_the_placeholder_and_the_ids() {
    let w = world(App::new(APP).placeholder("New message", None)).await;
    let (_, uri) = register(&w, "alice").await;
    let n = w.notify(APP, "alice", "m1", "Secret subject").await;

    let report = w.run().await;

    assert_eq!(report.accepted, 1, "{report:?}");
    let r = &w.mock.wns.requests_to(&uri)[0];
    assert!(r.accepted());
    assert_eq!(r.wns_type.as_deref(), Some("wns/toast"));
    assert_eq!(r.texts, ["New message"]);
    let xml = r.body_text().unwrap();
    assert!(!xml.contains("Secret"), "the content stays out of the push");
    assert!(xml.contains(&format!("notification_id={}", n.id)), "{xml}");
}

#[tokio::test]
async fn inline_notification_shows_its_title_and_body() {
    let w = world(App::new(APP).payload_mode(PayloadMode::Inline)).await;
    let (_, uri) = register(&w, "alice").await;
    w.tidings
        .send(
            NewNotification::new(APP, "alice", "m1")
                .title("Order shipped")
                .body("Arrives Friday"),
        )
        .await
        .unwrap();

    w.run().await;

    let r = &w.mock.wns.requests_to(&uri)[0];
    assert!(r.accepted());
    assert_eq!(r.texts, ["Order shipped", "Arrives Friday"]);
}

#[tokio::test]
async fn raw_inline_notification_is_a_raw_push() {
    let w = world(App::new(APP).payload_mode(PayloadMode::Inline)).await;
    let (_, uri) = register(&w, "alice").await;
    w.tidings
        .send(NewNotification::new(APP, "alice", "m1").raw("{\"room\":7}"))
        .await
        .unwrap();

    w.run().await;

    let r = &w.mock.wns.requests_to(&uri)[0];
    assert!(r.accepted());
    assert_eq!(r.wns_type.as_deref(), Some("wns/raw"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["raw"], "{\"room\":7}");
}

#[tokio::test]
async fn dismissing_on_one_pc_sends_a_raw_sync_signal_to_the_other() {
    let w = world(App::new(APP)).await;
    let (laptop, laptop_uri) = register(&w, "alice").await;
    let (_, desktop_uri) = register(&w, "alice").await;

    let changed = w.dismiss_from(&laptop).await;

    let desktop = w.mock.wns.requests_to(&desktop_uri);
    assert_eq!(desktop.len(), 2, "the notification, then the sync signal");
    let sync = &desktop[1];
    assert!(sync.accepted());
    assert_eq!(sync.wns_type.as_deref(), Some("wns/raw"));
    let body: serde_json::Value = serde_json::from_slice(&sync.body).unwrap();
    assert_eq!(body["kind"], "sync");
    assert_eq!(body["sequence"], changed.sequence);
    assert_eq!(
        w.mock.wns.requests_to(&laptop_uri).len(),
        1,
        "no signal back to the PC that made the change"
    );
}

#[tokio::test]
async fn expired_access_token_is_refreshed_without_losing_the_notification() {
    let w = world(App::new(APP)).await;
    let (endpoint, _) = register(&w, "alice").await;

    w.assert_credentials_renewed(&endpoint, |w| w.mock.wns.expire_tokens())
        .await;

    assert_eq!(w.mock.wns.token_requests().len(), 2);
}

#[tokio::test]
async fn throttled_push_is_retried_after_continue_after() {
    let w = world(App::new(APP)).await;
    let (_, uri) = register(&w, "alice").await;
    w.mock.wns.script(
        &uri,
        [WnsReply::Throttled {
            continue_after: Some(Duration::from_secs(120)),
        }],
    );
    w.notify(APP, "alice", "m1", "Hi").await;

    let first = w.run().await;
    assert_eq!((first.accepted, first.retried), (0, 1), "{first:?}");

    w.clock.advance(Duration::from_secs(119));
    let early = w.run().await;
    assert_eq!(
        early.leased, 0,
        "not before X-WNS-CONTINUE-AFTER: {early:?}"
    );

    w.clock.advance(Duration::from_secs(2));
    let second = w.run().await;
    assert_eq!(second.accepted, 1, "{second:?}");
    let statuses: Vec<u16> = w
        .mock
        .wns
        .requests_to(&uri)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![406, 200]);
}

#[tokio::test]
async fn expired_channel_deactivates_the_endpoint() {
    let w = world(App::new(APP)).await;
    let (endpoint, uri) = register(&w, "alice").await;
    w.mock.wns.expire_channel(&uri);

    w.assert_gone_deactivates(&endpoint, "channel_expired")
        .await;

    assert_eq!(
        w.mock.wns.requests_to(&uri).len(),
        1,
        "nothing more is sent to a deactivated endpoint"
    );
}

#[tokio::test]
async fn a_dropped_toast_is_not_counted_as_accepted() {
    let w = world(App::new(APP)).await;
    let (_, uri) = register(&w, "alice").await;
    w.mock.wns.script_always(&uri, WnsReply::Dropped);
    w.notify(APP, "alice", "m1", "Hi").await;

    let report = w.run().await;

    assert_eq!((report.accepted, report.failed), (0, 1), "{report:?}");
    let endpoints = w
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    assert!(endpoints[0].active, "a dropped push does not deactivate");
}
