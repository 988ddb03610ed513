use std::sync::Arc;
use std::time::Duration;

use tidings::{
    App, DeliveryId, DeliveryKind, Endpoint, EndpointRegistration, ManualClock, NewNotification,
    PayloadMode, Priority, PushAddress, PushContent, PushErrorKind, Retry, Tidings, Timestamp,
    VisualContent,
};

use super::*;
use crate::MemoryStore;

fn endpoint(token: &str) -> Arc<Endpoint> {
    let t0 = Timestamp::from_secs(1_767_225_600);
    Arc::new(Endpoint {
        id: EndpointId::new_random(),
        app: "app".into(),
        user: "alice".into(),
        installation_id: None,
        address: PushAddress::Fcm {
            token: token.into(),
        },
        active: true,
        created_at: t0,
        last_seen_at: t0,
        address_expires_at: None,
        deactivation_reason: None,
    })
}

fn push(to: &Arc<Endpoint>, content: PushContent) -> Push {
    let t0 = Timestamp::from_secs(1_767_225_600);
    Push {
        delivery_id: DeliveryId::new_random(),
        kind: DeliveryKind::Notification,
        app: "app".into(),
        endpoint: Arc::clone(to),
        notification_id: None,
        sequence: 1,
        priority: Priority::Normal,
        collapse_id: "c".into(),
        group: None,
        display_ttl: None,
        expires_at: t0.plus(Duration::from_secs(60)),
        sent_at: t0,
        attempt: 1,
        content,
    }
}

fn tap() -> PushContent {
    PushContent::Tap { alert: None }
}

fn inline(body: &str) -> PushContent {
    PushContent::Inline {
        visual: Some(VisualContent {
            title: "t".into(),
            body: Some(body.into()),
        }),
        raw: None,
    }
}

#[tokio::test]
async fn records_every_attempt_with_its_answer_and_filters_by_endpoint() {
    let channel = RecordingChannel::new(Platform::Fcm);
    let (a, b) = (endpoint("token-a"), endpoint("token-b"));
    channel.script(a.id, [Scripted::Unavailable]);
    assert!(channel.send(&push(&a, tap())).await.is_err());
    let ok = channel.send(&push(&a, tap())).await.unwrap();
    channel.send(&push(&b, tap())).await.unwrap();
    assert_eq!(channel.len(), 3);
    assert_eq!(channel.pushes_to(a.id).len(), 2);
    assert_eq!(channel.pushes_to(b.id).len(), 1);
    assert_eq!(channel.accepted().len(), 2);
    let first = &channel.pushes()[0];
    assert_eq!(first.error_kind(), Some(PushErrorKind::Unavailable));
    let Answer::Accepted {
        provider_message_id,
    } = &channel.pushes()[1].answer
    else {
        panic!("the second push was accepted");
    };
    assert_eq!(ok.provider_message_id.as_ref(), Some(provider_message_id));
    channel.clear();
    assert!(channel.is_empty() && channel.pushes().is_empty());
}

#[tokio::test]
async fn scripts_are_consumed_in_order_then_the_standing_answer_then_the_default() {
    let channel = RecordingChannel::new(Platform::Fcm);
    let (a, b) = (endpoint("token-a"), endpoint("token-b"));
    channel.script(a.id, [Scripted::Reject, Scripted::Misconfigured]);
    channel.script_always(a.id, Scripted::Gone);
    channel.script_default(Scripted::RetryAfter(Duration::from_secs(7)));
    let mut kinds = Vec::new();
    for _ in 0..4 {
        kinds.push(channel.send(&push(&a, tap())).await.unwrap_err().kind());
    }
    assert_eq!(
        kinds,
        [
            PushErrorKind::Rejected,
            PushErrorKind::Misconfigured,
            PushErrorKind::EndpointGone,
            PushErrorKind::EndpointGone
        ]
    );
    let other = channel.send(&push(&b, tap())).await.unwrap_err();
    assert_eq!(other.kind(), PushErrorKind::Throttled);
    assert_eq!(other.retry(), Retry::After(Duration::from_secs(7)));
    channel.clear_scripts();
    assert!(channel.send(&push(&a, tap())).await.is_ok());
}

#[tokio::test]
async fn scripted_errors_carry_what_the_dispatcher_acts_on() {
    let gone = Scripted::Gone.error().unwrap();
    assert!(gone.endpoint_gone());
    assert_eq!(gone.reason(), Some("Unregistered"));
    assert!(!Scripted::Reject.error().unwrap().is_retryable());
    assert!(Scripted::Misconfigured.error().unwrap().is_misconfigured());
    assert_eq!(
        Scripted::Unavailable.error().unwrap().retry(),
        Retry::Backoff
    );
    assert!(Scripted::Accept.error().is_none());
    assert!(Scripted::Delay(Duration::from_secs(1)).error().is_none());
}

#[tokio::test]
async fn pushes_over_the_payload_limit_fail_before_any_script_is_used() {
    let channel = RecordingChannel::new(Platform::Fcm).with_payload_limit(100);
    assert_eq!(channel.capabilities().max_payload_bytes, 100);
    let a = endpoint("token-a");
    channel.script(a.id, [Scripted::Reject]);
    let e = channel
        .send(&push(&a, inline(&"x".repeat(200))))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), PushErrorKind::PayloadTooLarge);
    let e = channel.send(&push(&a, tap())).await.unwrap_err();
    assert_eq!(
        e.kind(),
        PushErrorKind::Rejected,
        "the script was still there"
    );
    channel.set_payload_limit(None);
    assert!(channel
        .send(&push(&a, inline(&"x".repeat(200))))
        .await
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_delayed_push_can_be_abandoned_mid_flight() {
    let channel = RecordingChannel::new(Platform::Fcm);
    let a = endpoint("token-a");
    channel.script(a.id, [Scripted::Delay(Duration::from_secs(3600))]);
    let in_flight = tokio::spawn({
        let channel = channel.clone();
        let p = push(&a, tap());
        async move { channel.send(&p).await }
    });
    channel.wait_for_started(1).await;
    in_flight.abort();
    assert!(in_flight.await.unwrap_err().is_cancelled());
    assert_eq!(channel.started(), 1);
    assert!(channel.is_empty(), "an abandoned push has no answer");

    channel.script(a.id, [Scripted::Delay(Duration::from_secs(5))]);
    let waiter = tokio::spawn({
        let channel = channel.clone();
        async move { channel.wait_for_pushes(1).await }
    });
    channel.send(&push(&a, tap())).await.unwrap();
    waiter.await.unwrap();
    assert_eq!(channel.accepted().len(), 1);
}

#[tokio::test]
async fn counting_mode_keeps_counts_and_no_pushes() {
    let channel = RecordingChannel::counting(Platform::Apns);
    let a = endpoint("token-a");
    channel.script(a.id, [Scripted::Unavailable]);
    for _ in 0..10 {
        let _ = channel.send(&push(&a, tap())).await;
    }
    assert_eq!(channel.len(), 10);
    assert_eq!(channel.accepted_count(), 9);
    assert!(channel.pushes().is_empty());
}

#[tokio::test]
async fn clones_share_pushes_and_scripts() {
    let channel = RecordingChannel::new(Platform::Wns);
    let given = channel.clone();
    let a = endpoint("token-a");
    channel.script(a.id, [Scripted::Gone]);
    assert!(given.send(&push(&a, tap())).await.is_err());
    assert_eq!(channel.len(), 1);
    assert_eq!(channel.platform(), Platform::Wns);
    assert!(channel.capabilities().silent_push);
    assert!(
        !RecordingChannel::new(Platform::WebPush)
            .capabilities()
            .silent_push
    );
}

#[tokio::test]
async fn debug_output_shows_counts_not_addresses() {
    let channel = RecordingChannel::new(Platform::Fcm);
    let a = endpoint("secret-registration-token-value");
    channel.send(&push(&a, tap())).await.unwrap();
    let shown = format!("{channel:?} {:?}", channel.pushes());
    assert!(!shown.contains("registration-token-value"), "{shown}");
}

#[tokio::test]
async fn provider_message_ids_are_distinct() {
    let channel = RecordingChannel::new(Platform::Fcm);
    let a = endpoint("token-a");
    let first = channel.send(&push(&a, tap())).await.unwrap();
    let second = channel.send(&push(&a, tap())).await.unwrap();
    assert!(first.provider_message_id.is_some());
    assert_ne!(first.provider_message_id, second.provider_message_id);
}

#[tokio::test]
async fn inline_content_over_the_limit_reaches_the_device_as_a_shoulder_tap() {
    let fcm = RecordingChannel::new(Platform::Fcm).with_payload_limit(256);
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(fcm.clone())
        .clock(ManualClock::starting_2026())
        .app(App::new("app").payload_mode(PayloadMode::Inline))
        .build()
        .unwrap();
    let phone = tidings
        .register_endpoint(EndpointRegistration::new(
            "app",
            "alice",
            PushAddress::Fcm {
                token: "token-a".into(),
            },
        ))
        .await
        .unwrap();
    tidings
        .send(NewNotification::new("app", "alice", "short").title("Hi"))
        .await
        .unwrap();
    tidings
        .send(
            NewNotification::new("app", "alice", "long")
                .title("Hi")
                .body("x".repeat(1000)),
        )
        .await
        .unwrap();
    tidings.dispatcher().run_until_idle().await.unwrap();
    let pushes = fcm.pushes_to(phone.id);
    let inline_ok = pushes
        .iter()
        .filter(|p| p.is_accepted() && matches!(p.push.content, PushContent::Inline { .. }))
        .count();
    let too_large = pushes
        .iter()
        .filter(|p| p.error_kind() == Some(PushErrorKind::PayloadTooLarge))
        .count();
    let taps = pushes
        .iter()
        .filter(|p| p.is_accepted() && matches!(p.push.content, PushContent::Tap { .. }))
        .count();
    assert_eq!((inline_ok, too_large, taps), (1, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_dispatcher_is_woken_by_a_send_instead_of_polling() {
    let fcm = RecordingChannel::new(Platform::Fcm);
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(fcm.clone())
        .clock(ManualClock::starting_2026())
        .app(App::new("app"))
        .build()
        .unwrap();
    // It would look for work again only after an hour: only the store's wake-up can make it push.
    let config = tidings::DispatcherConfig {
        idle_poll: Duration::from_secs(3600),
        sweep_interval: None,
        ..tidings::DispatcherConfig::default()
    };
    let dispatcher = tidings.dispatcher_with(config).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(dispatcher.run(async {
        let _ = stopped.await;
    }));
    let phone = tidings
        .register_endpoint(EndpointRegistration::new(
            "app",
            "alice",
            PushAddress::Fcm {
                token: "token-a".into(),
            },
        ))
        .await
        .unwrap();
    // The first push shows the dispatcher is running; after it, it idles until woken.
    for (k, id) in ["n1", "n2"].into_iter().enumerate() {
        tidings
            .send(NewNotification::new("app", "alice", id).title("Hi"))
            .await
            .unwrap();
        // The guard only keeps a broken wake-up from hanging the suite for an hour.
        let pushed =
            tokio::time::timeout(Duration::from_secs(60), fcm.wait_for_pushes(k + 1)).await;
        assert!(pushed.is_ok(), "the dispatcher was not woken for {id}");
    }
    assert_eq!(fcm.pushes_to(phone.id).len(), 2);
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
