//! `ApnsChannel` against the loopback APNs fake (TLS + HTTP/2): rendering on the wire,
//! provider tokens, environments, several apps, certificate auth and error classes.

mod common;

use std::time::Duration;

use common::{builder, endpoint, endpoint_in, key, push, token_mock, visual, TOPIC};
use futures::future::join_all;
use tidings::{
    ApnsEnvironment, DeliveryKind, ManualClock, Priority, PushChannel, PushContent, PushErrorKind,
    Timestamp, VisualContent,
};
use tidings_apns::ApnsChannel;
use tidings_testkit::apns::{ApnsMock, ApnsReason, ApnsReply, ApnsSigningKey};

const TOKEN: &str = "a1b2c3d4e5f60718";

#[tokio::test]
async fn visible_alert_reaches_apns_with_headers_and_returns_the_apns_id() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    let ep = endpoint("chat", TOKEN);
    let mut p = push(&ep, visual("Lunch?", "At noon"));
    p.group = Some("room-7".into());

    let accepted = channel.send(&p).await.unwrap();

    let r = &mock.requests_for(TOKEN)[0];
    assert!(r.accepted(), "{r:?}");
    assert_eq!(
        accepted.provider_message_id.as_deref(),
        Some(r.apns_id.as_str())
    );
    assert_eq!(
        r.header("apns-id"),
        Some(r.apns_id.as_str()),
        "our own apns-id"
    );
    assert_eq!(r.push_type(), Some("alert"));
    assert_eq!(r.topic(), Some(TOPIC));
    assert_eq!(r.priority(), Some(10));
    assert_eq!(r.collapse_id(), Some("c1"));
    assert_eq!(r.expiration(), Some(p.expires_at.as_secs()));
    assert_eq!(r.key_id.as_deref(), Some("KEY0000001"));
    assert_eq!(r.team_id.as_deref(), Some("TEAM123456"));
    let aps = r.aps().unwrap();
    assert_eq!(aps["alert"]["title"], "Lunch?");
    assert_eq!(aps["alert"]["body"], "At noon");
    assert_eq!(aps["sound"], "default");
    assert_eq!(aps["thread-id"], "room-7");
    let payload = r.payload.as_ref().unwrap();
    assert_eq!(
        payload["notification_id"],
        p.notification_id.unwrap().to_string()
    );
}

#[tokio::test]
async fn raw_content_goes_as_a_background_push_at_priority_5() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    let ep = endpoint("chat", TOKEN);
    let mut p = push(
        &ep,
        PushContent::Inline {
            visual: None,
            raw: Some("{\"room\":7}".into()),
        },
    );
    p.priority = Priority::High;

    channel.send(&p).await.unwrap();

    let r = &mock.requests_for(TOKEN)[0];
    assert!(r.accepted(), "the fake checks background rules: {r:?}");
    assert_eq!(r.push_type(), Some("background"));
    assert_eq!(r.priority(), Some(5));
    assert_eq!(
        r.aps().unwrap(),
        &serde_json::json!({"content-available": 1})
    );
    assert_eq!(r.payload.as_ref().unwrap()["raw"], "{\"room\":7}");
}

#[tokio::test]
async fn sync_signal_is_a_silent_background_push() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    let ep = endpoint("chat", TOKEN);
    let mut p = push(&ep, PushContent::Tap { alert: None });
    p.kind = DeliveryKind::Sync;
    p.priority = Priority::Low;
    p.notification_id = None;
    p.sequence = 42;

    channel.send(&p).await.unwrap();

    let r = &mock.requests_for(TOKEN)[0];
    assert!(r.accepted(), "{r:?}");
    assert_eq!(r.push_type(), Some("background"));
    assert_eq!(r.priority(), Some(5));
    let payload = r.payload.as_ref().unwrap();
    assert_eq!(payload["kind"], "sync");
    assert_eq!(payload["sequence"], 42);
    assert!(payload.get("notification_id").is_none());
}

#[tokio::test]
async fn fallback_alert_and_shoulder_tap_alerts_are_visible() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    let ep = endpoint("chat", TOKEN);
    let mut fallback = push(
        &ep,
        PushContent::Tap {
            alert: Some(VisualContent {
                title: "New message".into(),
                body: None,
            }),
        },
    );
    fallback.kind = DeliveryKind::FallbackAlert;
    fallback.priority = Priority::High;

    channel.send(&fallback).await.unwrap();

    let r = &mock.requests_for(TOKEN)[0];
    assert!(r.accepted(), "{r:?}");
    assert_eq!(r.push_type(), Some("alert"));
    assert_eq!(r.priority(), Some(10));
    assert_eq!(r.aps().unwrap()["mutable-content"], 1);
    assert_eq!(r.aps().unwrap()["alert"]["title"], "New message");
    assert_eq!(r.payload.as_ref().unwrap()["kind"], "fallback_alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_provider_token_serves_concurrent_sends_on_one_connection() {
    let k = key("KEY0000001");
    // Strict fake: a connection switching tokens within 20 minutes gets
    // TooManyProviderTokenUpdates.
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    let pushes: Vec<_> = (0..40)
        .map(|i| push(&endpoint("chat", &format!("{i:04x}abcd")), visual("T", "B")))
        .collect();

    let results = join_all(pushes.iter().map(|p| channel.send(p))).await;

    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let requests = mock.requests();
    let auth = requests[0].header("authorization").unwrap();
    assert!(requests
        .iter()
        .all(|r| r.header("authorization") == Some(auth)));
}

#[tokio::test]
async fn expired_provider_token_is_re_signed_and_the_push_resent_once() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let clock = ManualClock::new(Timestamp::from_secs(mock.now()));
    let channel = builder(&mock, "chat", &k)
        .clock(clock.clone())
        .build()
        .unwrap();
    let ep = endpoint("chat", TOKEN);
    channel.send(&push(&ep, visual("1", "x"))).await.unwrap();

    // Apple's clock runs an hour ahead of ours: our 25-minute-old token is expired there.
    mock.advance_clock(Duration::from_secs(61 * 60));
    clock.advance(Duration::from_secs(25 * 60));
    let accepted = channel.send(&push(&ep, visual("2", "x"))).await.unwrap();

    let requests = mock.requests_for(TOKEN);
    let statuses: Vec<_> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(200), Some(403), Some(200)]);
    assert_eq!(requests[1].reason, Some(ApnsReason::ExpiredProviderToken));
    assert_ne!(
        requests[1].header("authorization"),
        requests[2].header("authorization")
    );
    assert_eq!(
        requests[1].apns_id, requests[2].apns_id,
        "the resend is the same message"
    );
    assert_eq!(
        accepted.provider_message_id.as_deref(),
        Some(requests[2].apns_id.as_str())
    );
}

#[tokio::test]
async fn token_is_replaced_after_the_configured_age_without_any_refusal() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let clock = ManualClock::new(Timestamp::from_secs(mock.now()));
    let channel = builder(&mock, "chat", &k)
        .token_refresh(Duration::from_secs(30 * 60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let ep = endpoint("chat", TOKEN);
    channel.send(&push(&ep, visual("1", "x"))).await.unwrap();
    mock.advance_clock(Duration::from_secs(31 * 60));
    clock.advance(Duration::from_secs(31 * 60));

    channel.send(&push(&ep, visual("2", "x"))).await.unwrap();

    let requests = mock.requests_for(TOKEN);
    assert!(requests.iter().all(|r| r.accepted()), "{requests:?}");
    assert_ne!(
        requests[0].header("authorization"),
        requests[1].header("authorization")
    );
}

#[tokio::test]
async fn unregistered_and_bad_device_tokens_are_gone_and_not_retried() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    for (token, reply, reason) in [
        (
            "0a0a",
            ApnsReply::Unregistered {
                since_ms: 1_767_225_600_000,
            },
            "Unregistered",
        ),
        (
            "0b0b",
            ApnsReply::Reject(ApnsReason::BadDeviceToken),
            "BadDeviceToken",
        ),
    ] {
        mock.script(token, reply);
        let err = channel
            .send(&push(&endpoint("chat", token), visual("a", "b")))
            .await
            .unwrap_err();
        assert!(err.endpoint_gone() && !err.is_retryable(), "{err:?}");
        assert_eq!(err.reason(), Some(reason));
    }
}

#[tokio::test]
async fn sandbox_tokens_go_to_the_sandbox_host() {
    let k = key("KEY0000001");
    let production = token_mock(&k).await;
    let sandbox = ApnsMock::builder().topic(TOPIC).key(&k).start().await;
    // Two fakes, two CAs: the trusted PEM may hold several certificates.
    let channel = ApnsChannel::builder()
        .token_auth("chat", TOPIC, k.team_id(), k.key_id(), k.p8_pem())
        .production_url(production.base_url())
        .sandbox_url(sandbox.base_url())
        .trusted_ca_pem(format!("{}{}", production.ca_pem(), sandbox.ca_pem()))
        .build()
        .unwrap();

    channel
        .send(&push(
            &endpoint_in("chat", "aa01", ApnsEnvironment::Sandbox),
            visual("s", "b"),
        ))
        .await
        .unwrap();
    channel
        .send(&push(
            &endpoint_in("chat", "bb02", ApnsEnvironment::Production),
            visual("p", "b"),
        ))
        .await
        .unwrap();

    assert_eq!(sandbox.requests_for("aa01").len(), 1);
    assert!(sandbox.requests_for("bb02").is_empty());
    assert_eq!(production.requests_for("bb02").len(), 1);
    assert!(production.requests_for("aa01").is_empty());
}

#[tokio::test]
async fn several_apps_each_send_with_their_own_key_and_topic() {
    let chat = key("KEYCHAT001");
    let mail = ApnsSigningKey::generate("TEAMMAIL01", "KEYMAIL001");
    let mock = ApnsMock::builder()
        .topic(TOPIC)
        .topic("com.example.mail")
        .key(&chat)
        .key(&mail)
        .start()
        .await;
    let channel = builder(&mock, "chat", &chat)
        .token_auth(
            "mail",
            "com.example.mail",
            mail.team_id(),
            mail.key_id(),
            mail.p8_pem(),
        )
        .build()
        .unwrap();

    channel
        .send(&push(&endpoint("chat", "c0c0"), visual("c", "b")))
        .await
        .unwrap();
    channel
        .send(&push(&endpoint("mail", "d0d0"), visual("m", "b")))
        .await
        .unwrap();

    let c = &mock.requests_for("c0c0")[0];
    let m = &mock.requests_for("d0d0")[0];
    assert_eq!(
        (c.topic(), c.key_id.as_deref()),
        (Some(TOPIC), Some("KEYCHAT001"))
    );
    assert_eq!(
        (m.topic(), m.key_id.as_deref(), m.team_id.as_deref()),
        (
            Some("com.example.mail"),
            Some("KEYMAIL001"),
            Some("TEAMMAIL01")
        )
    );
    assert_eq!(channel.topic_of(&"mail".into()), Some("com.example.mail"));
}

#[tokio::test]
async fn certificate_auth_sends_without_a_provider_token() {
    let mock = ApnsMock::builder()
        .topic(TOPIC)
        .certificate_auth()
        .start()
        .await;
    let identity = mock.issue_client_identity(TOPIC);
    let channel = ApnsChannel::builder()
        .certificate_auth("chat", TOPIC, identity.pem())
        .base_url(mock.base_url())
        .trusted_ca_pem(mock.ca_pem())
        .build()
        .unwrap();

    channel
        .send(&push(&endpoint("chat", TOKEN), visual("a", "b")))
        .await
        .unwrap();

    let r = &mock.requests_for(TOKEN)[0];
    assert!(r.accepted());
    assert!(r.header("authorization").is_none());
}

#[tokio::test]
async fn oversized_payload_is_refused_without_a_request() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();

    let err = channel
        .send(&push(
            &endpoint("chat", TOKEN),
            visual("big", &"x".repeat(4096)),
        ))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::PayloadTooLarge);
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn goaway_is_retryable_and_the_next_push_uses_a_new_connection() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    let ep = endpoint("chat", TOKEN);
    mock.script_once(TOKEN, ApnsReply::GoAway);

    let err = channel
        .send(&push(&ep, visual("1", "x")))
        .await
        .unwrap_err();
    assert!(err.is_retryable() && !err.endpoint_gone(), "{err:?}");

    channel.send(&push(&ep, visual("2", "x"))).await.unwrap();
    assert_eq!(mock.requests_for(TOKEN).last().unwrap().status, Some(200));
}

#[tokio::test]
async fn server_errors_wait_for_the_configured_floor() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k)
        .server_error_floor(Duration::from_secs(120))
        .build()
        .unwrap();
    mock.script(TOKEN, ApnsReply::Reject(ApnsReason::ServiceUnavailable));

    let err = channel
        .send(&push(&endpoint("chat", TOKEN), visual("a", "b")))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Unavailable);
    assert_eq!(err.retry(), tidings::Retry::After(Duration::from_secs(120)));
}

#[tokio::test]
async fn debug_output_shows_neither_keys_tokens_nor_device_tokens() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    channel
        .send(&push(&endpoint("chat", TOKEN), visual("a", "b")))
        .await
        .unwrap();

    let shown = format!("{channel:?} {channel:#?}");

    let jwt = mock.requests()[0]
        .header("authorization")
        .unwrap()
        .to_owned();
    assert!(!shown.contains(jwt.trim_start_matches("bearer ")));
    assert!(!shown.contains(TOKEN));
    for line in k.p8_pem().lines().filter(|l| !l.starts_with("-----")) {
        assert!(!shown.contains(line));
    }
    assert!(shown.contains(TOPIC));
}
