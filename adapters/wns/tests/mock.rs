//! `WnsChannel` against the loopback WNS mock: rendering on the wire, access tokens, answers,
//! the SSRF guard.

mod common;

use std::time::Duration;

use common::{builder, endpoint, push, visible_push};
use futures::future::join_all;
use tidings::{
    DeliveryKind, ManualClock, Priority, PushChannel, PushContent, PushErrorKind, Retry, Timestamp,
    VisualContent,
};
use tidings_testkit::wns::{DeviceConnectionStatus, WnsAuthFlow, WnsMock, WnsReply};
use tidings_wns::WnsChannel;

#[tokio::test]
async fn toast_is_accepted_with_its_texts_headers_and_message_id() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    let ep = endpoint("chat", &uri);
    let mut p = visible_push(&ep, "Order shipped", "Arrives <Friday> & soon");
    p.priority = Priority::High;

    let accepted = channel.send(&p).await.unwrap();

    let seen = wns.requests_to(&uri);
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert!(r.accepted(), "{r:?}");
    assert_eq!(accepted.provider_message_id, r.message_id);
    assert!(accepted.provider_message_id.is_some());
    assert_eq!(r.wns_type.as_deref(), Some("wns/toast"));
    assert_eq!(r.xml_root.as_deref(), Some("toast"));
    assert_eq!(r.texts, ["Order shipped", "Arrives <Friday> & soon"]);
    assert_eq!((r.ttl, r.priority), (Some(3600), Some(1)));
    assert_eq!(r.tag.as_deref(), Some("c1"));
    assert_eq!(r.header("x-wns-requestforstatus"), Some("true"));
    assert!(r
        .header("authorization")
        .unwrap()
        .starts_with("Bearer EgAcAQ"));
    let launch = r.body_text().unwrap();
    assert!(
        launch.contains(&format!("notification_id={}", p.notification_id.unwrap())),
        "{launch}"
    );
}

#[tokio::test]
async fn raw_content_and_silent_taps_go_as_raw_with_the_ids() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    let ep = endpoint("chat", &uri);
    let inline = push(
        &ep,
        PushContent::Inline {
            visual: None,
            raw: Some("{\"room\":7}".into()),
        },
    );
    let tap = push(&ep, PushContent::Tap { alert: None });

    channel.send(&inline).await.unwrap();
    channel.send(&tap).await.unwrap();

    let seen = wns.requests_to(&uri);
    assert!(seen.iter().all(|r| r.accepted()), "{seen:?}");
    for r in &seen {
        assert_eq!(r.wns_type.as_deref(), Some("wns/raw"));
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.tag, None);
    }
    let first: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(first["raw"], "{\"room\":7}");
    assert_eq!(
        first["notification_id"],
        inline.notification_id.unwrap().to_string()
    );
    let second: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert!(second.get("raw").is_none());
    assert_eq!(
        second["notification_id"],
        tap.notification_id.unwrap().to_string()
    );
}

#[tokio::test]
async fn sync_signal_is_a_low_priority_raw_push_with_the_sequence() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    let mut p = push(&endpoint("chat", &uri), PushContent::Tap { alert: None });
    p.kind = DeliveryKind::Sync;
    p.notification_id = None;
    p.priority = Priority::Low;
    p.sequence = 42;

    channel.send(&p).await.unwrap();

    let r = &wns.requests_to(&uri)[0];
    assert!(r.accepted());
    assert_eq!(r.priority, Some(3));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"kind": "sync", "app": "chat", "sequence": 42})
    );
}

#[tokio::test]
async fn visible_shoulder_tap_shows_the_placeholder() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    let p = push(
        &endpoint("chat", &uri),
        PushContent::Tap {
            alert: Some(VisualContent {
                title: "New message".into(),
                body: None,
            }),
        },
    );
    channel.send(&p).await.unwrap();
    let r = &wns.requests_to(&uri)[0];
    assert_eq!(r.texts, ["New message"]);
}

#[tokio::test]
async fn one_access_token_serves_many_sends_and_concurrent_first_sends() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let pushes: Vec<_> = (0..40)
        .map(|_| visible_push(&endpoint("chat", &wns.channel_uri(&app)), "T", "B"))
        .collect();

    let results = join_all(pushes.iter().map(|p| channel.send(p))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    channel.send(&pushes[0]).await.unwrap();

    assert_eq!(
        wns.token_requests().len(),
        1,
        "concurrent first sends share one token fetch, later sends reuse it"
    );
}

#[tokio::test]
async fn expired_token_is_refreshed_once_and_the_push_resent() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    let ep = endpoint("chat", &uri);
    channel.send(&visible_push(&ep, "1", "x")).await.unwrap();

    wns.expire_tokens();
    let accepted = channel.send(&visible_push(&ep, "2", "x")).await.unwrap();

    assert!(accepted.provider_message_id.is_some());
    let statuses: Vec<u16> = wns.requests_to(&uri).iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![200, 401, 200]);
    assert_eq!(wns.token_requests().len(), 2);
}

#[tokio::test]
async fn token_is_replaced_before_it_expires_without_a_refused_send() {
    let wns = WnsMock::start().await;
    wns.set_token_lifetime(Duration::from_secs(3600));
    let app = wns.register_app();
    let clock = ManualClock::new(Timestamp::now_utc());
    let channel = builder("chat", &app).clock(clock.clone()).build().unwrap();
    let uri = wns.channel_uri(&app);
    let ep = endpoint("chat", &uri);
    channel.send(&visible_push(&ep, "1", "x")).await.unwrap();

    // 4 min 59 s before the hour-long token expires: inside the refresh margin.
    clock.advance(Duration::from_secs(3600 - 299));
    channel.send(&visible_push(&ep, "2", "x")).await.unwrap();

    assert_eq!(wns.token_requests().len(), 2, "the token was refreshed");
    assert!(wns.requests_to(&uri).iter().all(|r| r.accepted()));
}

#[tokio::test]
async fn a_token_refused_twice_is_misconfiguration() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    wns.script_always(&uri, WnsReply::Unauthorized);

    let err = channel
        .send(&visible_push(&endpoint("chat", &uri), "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Misconfigured, "{err:?}");
    assert!(!err.endpoint_gone());
    assert_eq!(wns.requests_to(&uri).len(), 2, "resent exactly once");
}

#[tokio::test]
async fn the_entra_flow_asks_for_the_wns_scope_at_the_tenant_endpoint() {
    let wns = WnsMock::start().await;
    let app = wns.register_entra_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);

    channel
        .send(&visible_push(&endpoint("chat", &uri), "Hi", "there"))
        .await
        .unwrap();

    let token_requests = wns.token_requests();
    assert_eq!(token_requests.len(), 1);
    assert_eq!(token_requests[0].flow, WnsAuthFlow::Entra);
    assert_eq!(
        token_requests[0].scope.as_deref(),
        Some("https://wns.windows.com/.default")
    );
    assert!(wns.requests_to(&uri)[0].accepted());
}

#[tokio::test]
async fn several_apps_send_with_their_own_tokens() {
    let wns = WnsMock::start().await;
    let legacy = wns.register_app();
    let entra = wns.register_entra_app();
    let channel = builder("chat", &legacy)
        .app(common::app_config("shop", &entra))
        .build()
        .unwrap();
    let chat_uri = wns.channel_uri(&legacy);
    let shop_uri = wns.channel_uri(&entra);

    channel
        .send(&visible_push(&endpoint("chat", &chat_uri), "1", "x"))
        .await
        .unwrap();
    channel
        .send(&visible_push(&endpoint("shop", &shop_uri), "1", "x"))
        .await
        .unwrap();
    // The chat app's token is not authorized for the shop app's channel.
    let err = channel
        .send(&visible_push(&endpoint("chat", &shop_uri), "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Misconfigured, "{err:?}");
    assert!(!err.endpoint_gone());
    let flows: Vec<_> = wns.token_requests().iter().map(|t| t.flow).collect();
    assert_eq!(flows, vec![WnsAuthFlow::Legacy, WnsAuthFlow::Entra]);
}

#[tokio::test]
async fn throttling_is_retried_after_continue_after() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let cases = [
        (
            WnsReply::Throttled {
                continue_after: Some(Duration::from_secs(30)),
            },
            Retry::After(Duration::from_secs(30)),
        ),
        (
            WnsReply::Throttled {
                continue_after: None,
            },
            Retry::Backoff,
        ),
        (WnsReply::ChannelThrottled, Retry::Backoff),
    ];
    for (reply, retry) in cases {
        let uri = wns.channel_uri(&app);
        wns.script_always(&uri, reply.clone());
        let err = channel
            .send(&visible_push(&endpoint("chat", &uri), "1", "x"))
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.retry()),
            (PushErrorKind::Throttled, retry),
            "{reply:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn expired_and_unknown_channels_are_gone() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let expired = wns.channel_uri(&app);
    wns.expire_channel(&expired);
    let unknown = format!("{}/w/?token=NeverIssued", wns.base_url());

    for (uri, reason) in [
        (&expired, "channel_expired"),
        (&unknown, "channel_not_found"),
    ] {
        let err = channel
            .send(&visible_push(&endpoint("chat", uri), "1", "x"))
            .await
            .unwrap_err();
        assert!(err.endpoint_gone() && !err.is_retryable(), "{err:?}");
        assert_eq!(err.reason(), Some(reason));
    }
}

#[tokio::test]
async fn dropped_pushes_are_never_accepted() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let online = wns.channel_uri(&app);
    let offline = wns.channel_uri(&app);
    wns.set_device_status(&offline, DeviceConnectionStatus::Disconnected);
    for uri in [&online, &offline] {
        wns.script_always(uri, WnsReply::Dropped);
    }

    let refused = channel
        .send(&visible_push(&endpoint("chat", &online), "1", "x"))
        .await
        .unwrap_err();
    let later = channel
        .send(&visible_push(&endpoint("chat", &offline), "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(
        (refused.kind(), refused.reason()),
        (PushErrorKind::Rejected, Some("dropped"))
    );
    assert_eq!(
        (later.kind(), later.retry(), later.reason()),
        (PushErrorKind::Unavailable, Retry::Backoff, Some("dropped")),
        "a toast dropped for an offline device is tried again"
    );
}

#[tokio::test]
async fn server_errors_are_retryable_and_bad_requests_are_not() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    for (reply, kind, retryable) in [
        (
            WnsReply::InternalServerError,
            PushErrorKind::Unavailable,
            true,
        ),
        (
            WnsReply::ServiceUnavailable,
            PushErrorKind::Unavailable,
            true,
        ),
        (WnsReply::BadRequest, PushErrorKind::Rejected, false),
        (WnsReply::PayloadTooLarge, PushErrorKind::Rejected, false),
        (WnsReply::Forbidden, PushErrorKind::Misconfigured, true),
    ] {
        let uri = wns.channel_uri(&app);
        wns.script_always(&uri, reply.clone());
        let err = channel
            .send(&visible_push(&endpoint("chat", &uri), "1", "x"))
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.is_retryable()),
            (kind, retryable),
            "{reply:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn oversized_payload_is_refused_and_nothing_reaches_wns() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    let p = visible_push(&endpoint("chat", &uri), "Big", &"x".repeat(5000));

    let err = channel.send(&p).await.unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::PayloadTooLarge);
    assert_eq!(wns.request_count(), 0, "no push request");
    assert!(wns.token_requests().is_empty(), "not even a token request");
}

#[tokio::test]
async fn without_the_test_override_the_loopback_mock_is_never_contacted() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = WnsChannel::builder()
        .app(common::app_config("chat", &app))
        .address_policy(&tidings::AddressPolicy::default())
        .build()
        .unwrap();
    let uri = wns.channel_uri(&app);

    let err = channel
        .send(&visible_push(&endpoint("chat", &uri), "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Rejected, "{err:?}");
    assert_eq!(err.reason(), Some("ssrf_guard"));
    assert!(!err.endpoint_gone());
    assert_eq!(wns.request_count(), 0);
    assert!(wns.token_requests().is_empty());
}

#[tokio::test]
async fn the_test_override_still_refuses_foreign_hosts() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    for uri in [
        "https://attacker.example/w/?token=x",
        "http://10.0.0.1/w/?token=x",
        "https://evilnotify.windows.com/?token=x",
    ] {
        let err = channel
            .send(&visible_push(&endpoint("chat", uri), "1", "x"))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), Some("ssrf_guard"), "{uri}: {err:?}");
    }
    assert!(wns.token_requests().is_empty());
}

#[tokio::test]
async fn wrong_client_secret_is_misconfiguration_and_nothing_is_pushed() {
    let wns = WnsMock::start().await;
    let mut app = wns.register_app();
    let uri = wns.channel_uri(&app);
    app.client_secret = "not-the-secret".into();
    let channel = builder("chat", &app).build().unwrap();

    let err = channel
        .send(&visible_push(&endpoint("chat", &uri), "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Misconfigured, "{err:?}");
    assert_eq!(err.reason(), Some("invalid_client"));
    assert_eq!(wns.request_count(), 0);
}

#[tokio::test]
async fn an_app_without_credentials_is_misconfiguration() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let err = channel
        .send(&visible_push(
            &endpoint("other", &wns.channel_uri(&app)),
            "1",
            "x",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PushErrorKind::Misconfigured);
}

#[tokio::test]
async fn debug_output_hides_the_secret_the_token_and_channel_uris() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let uri = wns.channel_uri(&app);
    channel
        .send(&visible_push(&endpoint("chat", &uri), "1", "x"))
        .await
        .unwrap();

    let shown = format!("{channel:?} {channel:#?}");
    assert!(!shown.contains(&app.client_secret), "{shown}");
    for token in wns.issued_tokens() {
        assert!(!shown.contains(&token), "{shown}");
    }
    assert!(!shown.contains("AwYAAAB"), "{shown}");
}

/// A one-shot HTTP/1.1 server on loopback that answers every request with `answer`; returns its
/// base URL and a counter of the connections it accepted.
async fn raw_server(answer: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("a bound address"));
    let connections = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&connections);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                // Read until the end of the headers and the (small) body.
                while let Ok(n) = socket.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (base, connections)
}

#[tokio::test]
async fn redirects_are_never_followed() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    let (target, target_connections) =
        raw_server("HTTP/1.1 200 OK\r\nX-WNS-Status: received\r\nContent-Length: 0\r\n\r\n".into())
            .await;
    let (redirector, redirector_connections) = raw_server(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}/w/?token=elsewhere\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    ))
    .await;

    let err = channel
        .send(&visible_push(
            &endpoint("chat", &format!("{redirector}/w/?token=x")),
            "1",
            "x",
        ))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Rejected, "{err:?}");
    assert_eq!(err.reason(), Some("http_307"));
    assert_eq!(
        redirector_connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        target_connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect target was never contacted"
    );
}

#[tokio::test]
async fn an_endless_response_body_is_not_read_to_the_end() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = builder("chat", &app).build().unwrap();
    // Announces 10 MiB, sends 64 KiB, then hangs up: reading it all would fail.
    let (server, _) = raw_server(format!(
        "HTTP/1.1 200 OK\r\nX-WNS-Status: received\r\nX-WNS-Msg-ID: 00000000000000AB\r\n\
         Content-Length: 10485760\r\n\r\n{}",
        "z".repeat(64 * 1024)
    ))
    .await;

    let accepted = channel
        .send(&visible_push(
            &endpoint("chat", &format!("{server}/w/?token=x")),
            "1",
            "x",
        ))
        .await
        .unwrap();

    assert_eq!(
        accepted.provider_message_id.as_deref(),
        Some("00000000000000AB")
    );
}
