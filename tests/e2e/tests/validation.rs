//! Bad input is rejected with an error naming the field, and nothing is stored.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidings::{
    ApnsEnvironment, EndpointRegistration, ErrorKind, HistoryFilter, NewNotification, Platform,
    PushAddress,
};
use tidings_e2e::{Harness, APP};

async fn assert_nothing_stored(h: &Harness) {
    let page = h
        .tidings
        .history(
            &APP.into(),
            &"alice".into(),
            HistoryFilter::default(),
            None,
            50,
        )
        .await
        .unwrap();
    assert!(
        page.items.is_empty(),
        "something was stored: {:?}",
        page.items
    );
    assert_eq!(h.dispatch().await.leased, 0);
    assert_eq!(h.total_pushes(), 0);
}

async fn rejected_send(h: &Harness, n: NewNotification, field: &str) {
    let err = h.tidings.send(n).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.field(), Some(field), "{err}");
    assert!(
        err.to_string().contains(field),
        "message should name {field}: {err}"
    );
    assert_nothing_stored(h).await;
}

#[tokio::test]
async fn an_expiry_of_31_days_is_rejected() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    let n = NewNotification::new(APP, "alice", "too-long")
        .title("Hi")
        .expires_in(Duration::from_secs(31 * 24 * 3600));
    rejected_send(&h, n, "expires_in").await;
    let at = h.clock_now().plus(Duration::from_secs(31 * 24 * 3600));
    let n = NewNotification::new(APP, "alice", "too-long")
        .title("Hi")
        .expires_at(at);
    rejected_send(&h, n, "expires_at").await;
}

#[tokio::test]
async fn empty_content_is_rejected() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    rejected_send(&h, NewNotification::new(APP, "alice", "empty"), "content").await;
    rejected_send(
        &h,
        NewNotification::new(APP, "alice", "blank").title("  "),
        "visual.title",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_platform_target_is_rejected() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    let err = "blackberry".parse::<Platform>().unwrap_err();
    assert_eq!(err.field(), "platform");
    let json = r#"{"app":"chat","user":"alice","app_notification_id":"x","visual":{"title":"Hi"},"targets":["android","blackberry"]}"#;
    let parsed: Result<NewNotification, _> = serde_json_from_str(json);
    assert!(parsed.unwrap_err().contains("blackberry"));
    assert_nothing_stored(&h).await;
}

#[tokio::test]
async fn a_target_without_a_channel_is_rejected() {
    let h = Harness::only_android();
    let n = NewNotification::new(APP, "alice", "x")
        .title("Hi")
        .targets(Platform::Wns);
    rejected_send(&h, n, "targets").await;
}

#[tokio::test]
async fn a_fallback_delay_outside_60_to_600_seconds_is_rejected() {
    let h = Harness::new();
    let n = NewNotification::new(APP, "alice", "x").raw("{}").fallback(
        Duration::from_secs(30),
        "Incoming call",
        None,
    );
    rejected_send(&h, n, "fallback.delay").await;
}

#[tokio::test]
async fn an_unknown_app_is_rejected() {
    let h = Harness::new();
    let err = h
        .tidings
        .send(NewNotification::new("other-app", "alice", "x").title("Hi"))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("app"));
}

/// PostgreSQL's text cannot hold NUL, and every store must keep what `send` accepts.
#[tokio::test]
async fn text_with_a_nul_character_is_rejected() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    let cases = [
        (
            NewNotification::new(APP, "alice", "n").title("a\0b"),
            "visual.title",
        ),
        (
            NewNotification::new(APP, "alice", "n")
                .title("t")
                .body("a\0b"),
            "visual.body",
        ),
        (
            NewNotification::new(APP, "alice", "n").raw("{\"k\":\"\0\"}"),
            "raw",
        ),
        (
            NewNotification::new(APP, "alice", "n\0").title("t"),
            "app_notification_id",
        ),
        (
            NewNotification::new(APP, "alice", "n")
                .title("t")
                .group("g\0"),
            "group",
        ),
    ];
    for (n, field) in cases {
        rejected_send(&h, n, field).await;
    }
    let err = h
        .tidings
        .register_endpoint(EndpointRegistration::new(
            APP,
            "bob\0",
            PushAddress::Fcm { token: "t".into() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("user"), "{err}");
    let err = h
        .tidings
        .register_endpoint(
            EndpointRegistration::new(APP, "bob", PushAddress::Fcm { token: "t".into() })
                .installation_id("phone\0"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("installation_id"), "{err}");
}

async fn rejected_registration(h: &Harness, address: PushAddress, field: &str) {
    let err = h
        .tidings
        .register_endpoint(EndpointRegistration::new(APP, "alice", address))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(err.field(), Some(field), "{err}");
    let endpoints = h
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    assert!(
        endpoints.is_empty(),
        "an endpoint was stored: {endpoints:?}"
    );
}

#[tokio::test]
async fn a_malformed_apns_token_is_rejected() {
    let h = Harness::new();
    let address = PushAddress::Apns {
        token: "not a token".into(),
        environment: ApnsEnvironment::Production,
    };
    rejected_registration(&h, address, "address.token").await;
}

#[tokio::test]
async fn a_wns_uri_on_another_host_is_rejected() {
    let h = Harness::new();
    for uri in [
        "https://notify.windows.com.attacker.example/?token=x",
        "https://attacker.example/?token=x",
        "http://db5p.notify.windows.com/?token=x",
    ] {
        let address = PushAddress::Wns {
            channel_uri: uri.into(),
        };
        rejected_registration(&h, address, "address.channel_uri").await;
    }
}

#[tokio::test]
async fn a_web_push_endpoint_on_a_private_ip_is_rejected() {
    let h = Harness::new();
    for endpoint in [
        "https://10.0.0.7/push/abc",
        "https://192.168.1.1/push/abc",
        "https://[fd00::1]/push/abc",
        "https://169.254.169.254/latest/meta-data",
    ] {
        let address = PushAddress::WebPush {
            endpoint: endpoint.into(),
            p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4".into(),
            auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
        };
        rejected_registration(&h, address, "address.endpoint").await;
    }
}

fn serde_json_from_str(json: &str) -> Result<NewNotification, String> {
    tidings_e2e::from_json(json)
}

#[test]
fn a_lease_shorter_than_a_batch_of_timeouts_is_refused() {
    let h = Harness::new();
    // 512 pushes to one channel, 256 at a time, each up to 30 s: a batch can take 60 s.
    let config = tidings::DispatcherConfig {
        lease_duration: Duration::from_secs(60),
        ..tidings::DispatcherConfig::default()
    };
    let e = h.tidings.dispatcher_with(config).unwrap_err();
    assert_eq!(e.field(), "lease_duration", "{e}");
    let config = tidings::DispatcherConfig {
        lease_duration: Duration::from_secs(61),
        ..tidings::DispatcherConfig::default()
    };
    assert!(h.tidings.dispatcher_with(config).is_ok());
    assert!(h
        .tidings
        .dispatcher_with(tidings::DispatcherConfig::default())
        .is_ok());
}
