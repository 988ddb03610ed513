//! End to end: `Tidings` with the in-memory store and `WebPushChannel`, against the loopback
//! Web Push fake, which verifies VAPID and decrypts every body like a browser would.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidings::{
    AddressPolicy, App, Endpoint, EndpointRegistration, NewNotification, PayloadMode,
    PushErrorKind, Tidings,
};
use tidings_memory::MemoryStore;
use tidings_testkit::webpush::{Subscription, VapidKey, WebPushMock, WebPushRequest};
use tidings_webpush::WebPushChannel;

const APP: &str = "chat";

struct Setup {
    tidings: Tidings,
    mock: WebPushMock,
    /// The browser's subscription to the fake, of `alice`.
    sub: Subscription,
    /// Its endpoint, registered.
    endpoint: Endpoint,
}

/// `Tidings` with `app` and `channel`, the fake, and one subscription of `alice` to it,
/// registered.
async fn setup(app: App, channel: WebPushChannel) -> Setup {
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(channel)
        .app(app)
        .address_policy(AddressPolicy::with_loopback_for_tests())
        .build()
        .unwrap();
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let endpoint = tidings
        .register_endpoint(EndpointRegistration::new(APP, "alice", sub.address()))
        .await
        .unwrap();
    Setup {
        tidings,
        mock,
        sub,
        endpoint,
    }
}

/// [`setup`] with a channel that signs for [`APP`] with a fresh key, which it returns too.
async fn signed_setup(app: App) -> (Setup, VapidKey) {
    let key = VapidKey::generate();
    let s = setup(app, channel_for(&[(APP, &key)])).await;
    (s, key)
}

fn channel_for(apps: &[(&str, &VapidKey)]) -> WebPushChannel {
    let mut config =
        WebPushChannel::builder().address_policy(AddressPolicy::with_loopback_for_tests());
    for (app, key) in apps {
        config = config.vapid(*app, key.pkcs8_pem(), "mailto:ops@example.com");
    }
    config.build().unwrap()
}

async fn only_request(mock: &WebPushMock) -> WebPushRequest {
    let mut seen = tokio::time::timeout(Duration::from_secs(10), mock.wait_for_requests(1))
        .await
        .expect("the mock received the push");
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen.remove(0)
}

#[tokio::test]
async fn a_shoulder_tap_reaches_the_browser_with_ids_but_no_content() {
    let (s, key) = signed_setup(App::new(APP).placeholder("You have a new message", None)).await;
    let sent = s
        .tidings
        .send(
            NewNotification::new(APP, "alice", "m-1")
                .title("Secret title")
                .body("Secret body")
                .raw("secret-data"),
        )
        .await
        .unwrap();

    let report = s.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");

    let request = only_request(&s.mock).await;
    assert!(request.accepted(), "{request:?}");
    let text = request.plaintext_text().expect("the body decrypted");
    assert!(
        !text.to_lowercase().contains("secret"),
        "content leaked: {text}"
    );
    let json = request.plaintext_json().unwrap();
    assert_eq!(json["mode"], "tap");
    assert_eq!(json["app"], APP);
    assert_eq!(json["kind"], "notification");
    assert_eq!(json["notification_id"], sent.id.to_string());
    assert_eq!(json["alert"]["title"], "You have a new message");
    assert!(json.get("data").is_none() && json.get("group").is_none());

    let vapid = request.vapid.clone().expect("the VAPID token verified");
    assert_eq!(vapid.aud, s.mock.origin());
    assert_eq!(
        request.vapid_public_key.as_deref(),
        Some(key.public_key_base64url().as_str())
    );
    assert_eq!(request.header("content-encoding"), Some("aes128gcm"));
    assert_eq!(request.urgency.as_deref(), Some("normal"));
    let topic = request.topic.clone().expect("a topic");
    assert!(topic.len() <= 32);
}

#[tokio::test]
async fn inline_mode_delivers_the_content_encrypted() {
    let (s, _) = signed_setup(App::new(APP).payload_mode(PayloadMode::Inline)).await;
    s.tidings
        .send(
            NewNotification::new(APP, "alice", "m-1")
                .title("Lunch?")
                .body("At noon"),
        )
        .await
        .unwrap();
    s.tidings.dispatcher().run_until_idle().await.unwrap();

    let request = only_request(&s.mock).await;
    assert!(
        !request.body.windows(6).any(|w| w == b"Lunch?"),
        "the body is encrypted"
    );
    let json = request.plaintext_json().unwrap();
    assert_eq!(json["mode"], "inline");
    assert_eq!(json["alert"]["title"], "Lunch?");
    assert_eq!(json["alert"]["body"], "At noon");
}

#[tokio::test]
async fn inline_content_too_large_for_web_push_goes_out_as_a_shoulder_tap() {
    let (s, _) = signed_setup(App::new(APP).payload_mode(PayloadMode::Inline)).await;
    s.tidings
        .send(
            NewNotification::new(APP, "alice", "m-1")
                .title("Long")
                .body("y".repeat(3990)),
        )
        .await
        .unwrap();
    let report = s.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(report.accepted, 1, "{report:?}");
    let request = only_request(&s.mock).await;
    let json = request.plaintext_json().unwrap();
    assert_eq!(json["mode"], "tap", "only the shoulder tap went out");
}

#[tokio::test]
async fn an_unsubscribed_browser_gets_its_endpoint_deactivated() {
    let (s, _) = signed_setup(App::new(APP)).await;
    s.mock.unsubscribe(s.sub.endpoint());
    s.tidings
        .send(NewNotification::new(APP, "alice", "m-1").title("Hi"))
        .await
        .unwrap();
    let report = s.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(report.gone, 1, "{report:?}");

    let endpoints = s
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    let e = endpoints.iter().find(|e| e.id == s.endpoint.id).unwrap();
    assert!(!e.active, "a 410 deactivates the endpoint");

    s.tidings
        .send(NewNotification::new(APP, "alice", "m-2").title("Again"))
        .await
        .unwrap();
    s.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(
        s.mock.requests_to(s.sub.endpoint()).len(),
        1,
        "nothing more was sent"
    );
}

#[tokio::test]
async fn each_app_signs_with_its_own_vapid_key() {
    let chat = VapidKey::generate();
    let news = VapidKey::generate();
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(channel_for(&[("chat", &chat), ("news", &news)]))
        .app(App::new("chat"))
        .app(App::new("news"))
        .address_policy(AddressPolicy::with_loopback_for_tests())
        .build()
        .unwrap();
    let mock = WebPushMock::start().await;
    // Browsers that subscribed with each app's applicationServerKey accept only that key.
    let chat_sub = mock.subscription_restricted_to(&chat.public_key());
    let news_sub = mock.subscription_restricted_to(&news.public_key());
    for (app, sub) in [("chat", &chat_sub), ("news", &news_sub)] {
        tidings
            .register_endpoint(EndpointRegistration::new(app, "alice", sub.address()))
            .await
            .unwrap();
        tidings
            .send(NewNotification::new(app, "alice", "n-1").title("Hi"))
            .await
            .unwrap();
    }
    let report = tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(report.accepted, 2, "{report:?}");
    for (sub, key) in [(&chat_sub, &chat), (&news_sub, &news)] {
        let seen = mock.requests_to(sub.endpoint());
        assert_eq!(seen.len(), 1);
        assert!(seen[0].accepted(), "{:?}", seen[0]);
        assert_eq!(
            seen[0].vapid_public_key.as_deref(),
            Some(key.public_key_base64url().as_str())
        );
    }
}

#[tokio::test]
async fn without_the_test_override_loopback_endpoints_are_refused_at_send_time() {
    let key = VapidKey::generate();
    // Registration admits the loopback endpoint (the policy says so), but the channel is built
    // with the production defaults: it re-checks every endpoint before sending.
    let channel = WebPushChannel::builder()
        .vapid(APP, key.pkcs8_pem(), "mailto:ops@example.com")
        .build()
        .unwrap();
    let s = setup(App::new(APP), channel.clone()).await;
    s.tidings
        .send(NewNotification::new(APP, "alice", "m-1").title("Hi"))
        .await
        .unwrap();
    let report = s.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(report.failed, 1, "{report:?}");
    assert_eq!(report.gone, 0, "the endpoint is not deactivated for it");
    assert_eq!(
        s.mock.request_count(),
        0,
        "no request reached the loopback address"
    );
}

#[tokio::test]
async fn a_host_that_resolves_to_loopback_is_refused_after_dns() {
    let key = VapidKey::generate();
    // Even an allowlisted name is refused when DNS answers with a loopback address.
    let channel = WebPushChannel::builder()
        .vapid(APP, key.pkcs8_pem(), "mailto:ops@example.com")
        .allowed_hosts(["localhost"])
        .build()
        .unwrap();
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let endpoint = tidings_testkit::channel::endpoint_for(
        &APP.into(),
        tidings::PushAddress::WebPush {
            endpoint: "https://localhost/push/x".into(),
            p256dh: sub.p256dh(),
            auth: sub.auth(),
        },
    );
    let push =
        tidings_testkit::channel::push_to(&endpoint, tidings_testkit::channel::visible("a", "b"));
    let err = tidings::PushChannel::send(&channel, &push)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PushErrorKind::Rejected, "{err:?}");
    assert_eq!(err.reason(), Some(tidings_webpush::guard::REFUSED_REASON));
    assert!(!err.is_retryable());
}
