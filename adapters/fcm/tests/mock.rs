//! `FcmChannel` against the loopback FCM mock: sending, access tokens, errors, limits.

mod common;

use std::time::Duration;

use common::{builder, endpoint, visible_push};
use futures::future::join_all;
use tidings::{ManualClock, PushChannel, PushErrorKind, Retry, Timestamp};
use tidings_testkit::fcm::{FcmErrorCode, FcmMock, FcmReply};

#[tokio::test]
async fn accepted_push_carries_bearer_token_and_returns_the_message_name() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    let ep = endpoint("chat", "token-accepted");

    let accepted = channel
        .send(&visible_push(&ep, "Hello", "World"))
        .await
        .unwrap();

    let requests = mock.requests_for("token-accepted");
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.project, "proj-a");
    assert!(r
        .header("authorization")
        .unwrap()
        .starts_with("Bearer ya29."));
    assert_eq!(accepted.provider_message_id, r.message_name);
    let message = r.message().unwrap();
    assert_eq!(message["notification"]["title"], "Hello");
    assert_eq!(message["android"]["notification"]["channel_id"], "messages");
    assert_eq!(message["android"]["notification"]["tag"], "c1");
    assert_eq!(r.android_ttl(), Some("3600s"));
    assert_eq!(r.data()["kind"], "notification");
}

#[tokio::test]
async fn one_access_token_serves_many_sends_and_concurrent_first_sends() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    let pushes: Vec<_> = (0..40)
        .map(|i| visible_push(&endpoint("chat", &format!("tok-{i}")), "T", "B"))
        .collect();

    let results = join_all(pushes.iter().map(|p| channel.send(p))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    channel.send(&pushes[0]).await.unwrap();

    assert_eq!(
        mock.token_request_count(),
        1,
        "concurrent first sends share one token fetch, later sends reuse it"
    );
}

#[tokio::test]
async fn refused_access_token_is_refreshed_once_and_the_push_resent() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    let ep = endpoint("chat", "token-refresh");
    channel.send(&visible_push(&ep, "1", "x")).await.unwrap();

    mock.expire_access_tokens();
    let accepted = channel.send(&visible_push(&ep, "2", "x")).await.unwrap();

    assert!(accepted.provider_message_id.is_some());
    let statuses: Vec<_> = mock
        .requests_for("token-refresh")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![Some(200), Some(401), Some(200)]);
    assert_eq!(mock.token_request_count(), 2);
}

#[tokio::test]
async fn token_is_replaced_before_it_expires_without_a_refused_send() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let clock = ManualClock::new(Timestamp::from_secs(mock.now()));
    let channel = builder(&mock, "chat", &account)
        .clock(clock.clone())
        .build()
        .unwrap();
    let ep = endpoint("chat", "token-expiry");
    channel.send(&visible_push(&ep, "1", "x")).await.unwrap();

    // 4 min 59 s before the hour-long token expires: inside the refresh margin.
    let later = Duration::from_secs(3600 - 299);
    clock.advance(later);
    mock.advance_clock(later);
    channel.send(&visible_push(&ep, "2", "x")).await.unwrap();

    assert_eq!(mock.token_request_count(), 2, "the token was refreshed");
    assert!(
        mock.requests_for("token-expiry")
            .iter()
            .all(|r| r.accepted()),
        "no send was refused for an expired token"
    );
}

#[tokio::test]
async fn a_token_refused_twice_is_misconfiguration() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    let ep = endpoint("chat", "token-401");
    mock.script("token-401", FcmReply::Unauthenticated);

    let err = channel
        .send(&visible_push(&ep, "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Misconfigured, "{err:?}");
    assert!(!err.endpoint_gone());
    assert_eq!(
        mock.requests_for("token-401").len(),
        2,
        "resent exactly once"
    );
}

#[tokio::test]
async fn a_deleted_service_account_is_misconfiguration() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    mock.remove_service_account(account.client_email());

    let err = channel
        .send(&visible_push(&endpoint("chat", "t"), "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::Misconfigured, "{err:?}");
    assert_eq!(err.reason(), Some("invalid_grant"));
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn provider_answers_are_classified() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    let cases = [
        (
            FcmReply::Error(FcmErrorCode::Unregistered),
            PushErrorKind::EndpointGone,
            Retry::Never,
        ),
        (
            FcmReply::Error(FcmErrorCode::InvalidArgument),
            PushErrorKind::EndpointGone,
            Retry::Never,
        ),
        (
            FcmReply::Error(FcmErrorCode::SenderIdMismatch),
            PushErrorKind::Misconfigured,
            Retry::Backoff,
        ),
        (
            FcmReply::Error(FcmErrorCode::ThirdPartyAuthError),
            PushErrorKind::Misconfigured,
            Retry::Backoff,
        ),
        (
            FcmReply::RetryAfter {
                code: FcmErrorCode::QuotaExceeded,
                after: Duration::from_secs(5),
            },
            PushErrorKind::Throttled,
            Retry::After(Duration::from_secs(60)),
        ),
        (
            FcmReply::RetryAfter {
                code: FcmErrorCode::Unavailable,
                after: Duration::from_secs(5),
            },
            PushErrorKind::Unavailable,
            Retry::After(Duration::from_secs(5)),
        ),
        (
            FcmReply::Error(FcmErrorCode::Internal),
            PushErrorKind::Unavailable,
            Retry::Backoff,
        ),
    ];
    for (i, (reply, kind, retry)) in cases.into_iter().enumerate() {
        let token = format!("scripted-{i}");
        mock.script(&token, reply.clone());
        let err = channel
            .send(&visible_push(&endpoint("chat", &token), "1", "x"))
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.retry()),
            (kind, retry),
            "{reply:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn oversized_payload_is_refused_and_nothing_reaches_fcm() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    let push = visible_push(&endpoint("chat", "t"), "Big", &"x".repeat(4096));

    let err = channel.send(&push).await.unwrap_err();

    assert_eq!(err.kind(), PushErrorKind::PayloadTooLarge);
    assert_eq!(mock.request_count(), 0, "no send request");
    assert_eq!(mock.token_request_count(), 0, "not even a token request");
}

#[tokio::test]
async fn apps_of_different_projects_send_with_their_own_credentials() {
    let mock = FcmMock::start().await;
    let a = mock.service_account("proj-a");
    let b = mock.service_account("proj-b");
    let channel = builder(&mock, "chat", &a)
        .app(tidings_fcm::FcmAppConfig::new("shop", common::key_of(&b)))
        .build()
        .unwrap();
    assert_eq!(channel.project_of(&"shop".into()), Some("proj-b"));

    channel
        .send(&visible_push(&endpoint("chat", "t-chat"), "1", "x"))
        .await
        .unwrap();
    channel
        .send(&visible_push(&endpoint("shop", "t-shop"), "1", "x"))
        .await
        .unwrap();
    let err = channel
        .send(&visible_push(&endpoint("other", "t-other"), "1", "x"))
        .await
        .unwrap_err();

    assert_eq!(mock.requests_for("t-chat")[0].project, "proj-a");
    assert_eq!(mock.requests_for("t-shop")[0].project, "proj-b");
    assert!(mock.requests().iter().all(|r| r.accepted()));
    assert_eq!(err.kind(), PushErrorKind::Misconfigured, "unknown app");
}

#[tokio::test]
async fn debug_output_shows_no_key_nor_access_token() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account).build().unwrap();
    channel
        .send(&visible_push(&endpoint("chat", "t"), "1", "x"))
        .await
        .unwrap();
    let bearer = mock.requests()[0]
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    let shown = format!("{channel:?} {channel:#?}");
    let pem_line = account.private_key_pem().lines().nth(1).unwrap().to_owned();
    assert!(!shown.contains(&bearer), "{shown}");
    assert!(!shown.contains(&pem_line), "{shown}");
}

#[tokio::test]
async fn rate_limited_channel_still_delivers() {
    let mock = FcmMock::start().await;
    let account = mock.service_account("proj-a");
    let channel = builder(&mock, "chat", &account)
        .rate_limit_per_minute(600_000)
        .max_concurrent_per_project(2)
        .build()
        .unwrap();
    let pushes: Vec<_> = (0..20)
        .map(|i| visible_push(&endpoint("chat", &format!("r-{i}")), "T", "B"))
        .collect();
    let results = join_all(pushes.iter().map(|p| channel.send(p))).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(mock.request_count(), 20);
}
