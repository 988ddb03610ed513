//! The APNs mock behaves like APNs towards a plain HTTP/2 client.
#![cfg(feature = "mock-apns")]
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns fail loudly, as assertions do

use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tidings_testkit::apns::{ApnsMock, ApnsReason, ApnsReply, ApnsSigningKey};

const TOPIC: &str = "com.example.app";
const DEVICE: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

fn client(mock: &ApnsMock) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(mock.ca_pem().as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

async fn mock_with_key() -> (ApnsMock, ApnsSigningKey) {
    let key = ApnsSigningKey::generate("TEAM123456", "KEY1234567");
    let mock = ApnsMock::builder().topic(TOPIC).key(&key).start().await;
    (mock, key)
}

/// A well-formed alert push to `device`, signed by `key` now. (reqwest appends headers, so
/// tests that need a different value of one of these headers build their own request.)
fn alert(
    client: &reqwest::Client,
    mock: &ApnsMock,
    key: &ApnsSigningKey,
    device: &str,
) -> reqwest::RequestBuilder {
    alert_with_token(client, mock, &cached_token(mock, key), device)
}

/// One provider token per key and mock, as a well-behaved provider does: APNs refuses a
/// connection that switches tokens more often than every 20 minutes.
fn cached_token(mock: &ApnsMock, key: &ApnsSigningKey) -> String {
    static TOKENS: Mutex<Vec<(u16, Vec<u8>, String)>> = Mutex::new(Vec::new());
    let port = mock.addr().port();
    let mut tokens = TOKENS.lock().unwrap();
    if let Some((_, _, token)) = tokens
        .iter()
        .find(|(p, k, _)| *p == port && k == key.public_key())
    {
        return token.clone();
    }
    let token = key.provider_token(mock.now());
    tokens.push((port, key.public_key().to_vec(), token.clone()));
    token
}

/// A well-formed alert push to `device` carrying provider token `token`.
fn alert_with_token(
    client: &reqwest::Client,
    mock: &ApnsMock,
    token: &str,
    device: &str,
) -> reqwest::RequestBuilder {
    client
        .post(mock.device_url(device))
        .header("authorization", format!("bearer {token}"))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
        .body(json!({"aps": {"alert": {"title": "Hi", "body": "there"}}}).to_string())
}

async fn reason_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body)
}

async fn expect_reason(request: reqwest::RequestBuilder, reason: ApnsReason) {
    let (status, body) = reason_of(request.send().await.unwrap()).await;
    assert_eq!(status, reason.status(), "status for {reason}: {body}");
    assert_eq!(body["reason"], reason.as_str());
}

#[tokio::test]
async fn an_accepted_push_is_recorded_with_headers_and_payload() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    let apns_id = "123e4567-e89b-12d3-a456-426614174000";
    let response = alert(&client, &mock, &key, DEVICE)
        .header("apns-id", apns_id)
        .header("apns-priority", "10")
        .header("apns-collapse-id", "thread-1")
        .header("apns-expiration", "1700000000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.headers()["apns-id"], apns_id);

    let requests = mock.requests_for(DEVICE);
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(request.accepted());
    assert_eq!(request.device_token, DEVICE);
    assert_eq!(request.topic(), Some(TOPIC));
    assert_eq!(request.push_type(), Some("alert"));
    assert_eq!(request.priority(), Some(10));
    assert_eq!(request.collapse_id(), Some("thread-1"));
    assert_eq!(request.expiration(), Some(1_700_000_000));
    assert_eq!(request.aps().unwrap()["alert"]["title"], "Hi");
    assert_eq!(request.key_id.as_deref(), Some("KEY1234567"));
    assert_eq!(request.team_id.as_deref(), Some("TEAM123456"));
    assert_eq!(request.apns_id, apns_id);
}

#[tokio::test]
async fn a_push_without_apns_id_gets_a_generated_uuid() {
    let (mock, key) = mock_with_key().await;
    let response = alert(&client(&mock), &mock, &key, DEVICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers()["apns-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(mock.requests()[0].apns_id, id);
}

#[tokio::test]
async fn a_background_push_with_priority_5_is_accepted() {
    let (mock, key) = mock_with_key().await;
    let response = client(&mock)
        .post(mock.device_url(DEVICE))
        .header(
            "authorization",
            format!("bearer {}", key.provider_token(mock.now())),
        )
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "background")
        .header("apns-priority", "5")
        .body(r#"{"aps":{"content-available":1},"seq":"42"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn provider_token_problems_get_403_with_the_apns_reason() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    let no_auth = client
        .post(mock.device_url(DEVICE))
        .header("apns-topic", TOPIC)
        .header("apns-push-type", "alert")
        .body(r#"{"aps":{"alert":"hi"}}"#);
    expect_reason(no_auth, ApnsReason::MissingProviderToken).await;

    let garbage = alert_with_token(&client, &mock, "not.a.jwt", DEVICE);
    expect_reason(garbage, ApnsReason::InvalidProviderToken).await;

    // Same key id and team, different private key: the signature does not verify.
    let impostor = ApnsSigningKey::generate("TEAM123456", "KEY1234567");
    let forged = alert(&client, &mock, &impostor, DEVICE);
    expect_reason(forged, ApnsReason::InvalidProviderToken).await;

    // A key the mock never saw.
    let stranger = ApnsSigningKey::generate_random();
    expect_reason(
        alert(&client, &mock, &stranger, DEVICE),
        ApnsReason::InvalidProviderToken,
    )
    .await;

    // Right key, wrong team in `iss`.
    let wrong_team = key.sign_token(
        &json!({"alg": "ES256", "kid": key.key_id()}),
        &json!({"iss": "OTHERTEAM1", "iat": mock.now()}),
    );
    let request = alert_with_token(&client, &mock, &wrong_team, DEVICE);
    expect_reason(request, ApnsReason::InvalidProviderToken).await;

    // Not ES256.
    let wrong_alg = key.sign_token(
        &json!({"alg": "HS256", "kid": key.key_id()}),
        &json!({"iss": key.team_id(), "iat": mock.now()}),
    );
    let request = alert_with_token(&client, &mock, &wrong_alg, DEVICE);
    expect_reason(request, ApnsReason::InvalidProviderToken).await;

    assert!(mock.requests().iter().all(|r| !r.accepted()));
}

#[tokio::test]
async fn a_provider_token_older_than_an_hour_is_expired() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    let token = cached_token(&mock, &key);
    let send = |token: &str| alert_with_token(&client, &mock, token, DEVICE);
    assert_eq!(send(&token).send().await.unwrap().status(), 200);

    mock.advance_clock(Duration::from_secs(3601));
    expect_reason(send(&token), ApnsReason::ExpiredProviderToken).await;

    // A fresh token (an hour after the first one) is accepted on the same connection.
    let fresh = key.provider_token(mock.now());
    assert_eq!(send(&fresh).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn switching_provider_tokens_within_20_minutes_is_too_many_updates() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    let first = cached_token(&mock, &key);
    let second = key.provider_token(mock.now() - 60);
    let send = |token: &str| alert_with_token(&client, &mock, token, DEVICE);
    assert_eq!(send(&first).send().await.unwrap().status(), 200);
    expect_reason(send(&second), ApnsReason::TooManyProviderTokenUpdates).await;
}

#[tokio::test]
async fn a_second_key_on_one_connection_is_an_unrelated_key() {
    let (mock, key) = mock_with_key().await;
    let other = ApnsSigningKey::generate("TEAM123456", "KEY7654321");
    mock.register_key(&other);
    let client = client(&mock);
    assert_eq!(
        alert(&client, &mock, &key, DEVICE)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    expect_reason(
        alert(&client, &mock, &other, DEVICE),
        ApnsReason::UnrelatedKeyIdInToken,
    )
    .await;
}

#[tokio::test]
async fn topic_problems_get_400_with_the_apns_reason() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    let token = cached_token(&mock, &key);
    let bare = || {
        client
            .post(mock.device_url(DEVICE))
            .header("authorization", format!("bearer {token}"))
            .body(r#"{"aps":{"alert":"hi"}}"#)
    };
    expect_reason(
        bare().header("apns-push-type", "alert"),
        ApnsReason::MissingTopic,
    )
    .await;
    expect_reason(
        bare()
            .header("apns-push-type", "alert")
            .header("apns-topic", "com.other.app"),
        ApnsReason::TopicDisallowed,
    )
    .await;
    expect_reason(
        bare()
            .header("apns-push-type", "voip")
            .header("apns-topic", TOPIC),
        ApnsReason::BadTopic,
    )
    .await;
    let voip = bare()
        .header("apns-push-type", "voip")
        .header("apns-topic", format!("{TOPIC}.voip"));
    assert_eq!(voip.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn header_problems_get_400_with_the_apns_reason() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    let token = cached_token(&mock, &key);
    let request = |push_type: &str| {
        client
            .post(mock.device_url(DEVICE))
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", TOPIC)
            .header("apns-push-type", push_type)
    };
    expect_reason(
        request("background")
            .header("apns-priority", "10")
            .body(r#"{"aps":{"content-available":1}}"#),
        ApnsReason::BadPriority,
    )
    .await;
    expect_reason(
        request("background").body(r#"{"aps":{"content-available":1}}"#),
        ApnsReason::BadPriority,
    )
    .await;
    expect_reason(
        request("background")
            .header("apns-priority", "5")
            .body(r#"{"aps":{"content-available":1,"alert":"hi"}}"#),
        ApnsReason::InvalidPushType,
    )
    .await;
    expect_reason(
        request("alert").body(r#"{"aps":{"content-available":1}}"#),
        ApnsReason::InvalidPushType,
    )
    .await;
    expect_reason(
        request("carrier-pigeon").body(r#"{"aps":{"alert":"hi"}}"#),
        ApnsReason::InvalidPushType,
    )
    .await;
    expect_reason(
        request("alert")
            .header("apns-priority", "7")
            .body(r#"{"aps":{"alert":"hi"}}"#),
        ApnsReason::BadPriority,
    )
    .await;
    expect_reason(
        request("alert")
            .header("apns-collapse-id", "x".repeat(65))
            .body(r#"{"aps":{"alert":"hi"}}"#),
        ApnsReason::BadCollapseId,
    )
    .await;
    expect_reason(
        request("alert")
            .header("apns-id", "not-a-uuid")
            .body(r#"{"aps":{"alert":"hi"}}"#),
        ApnsReason::BadMessageId,
    )
    .await;
    expect_reason(
        request("alert")
            .header("apns-expiration", "tomorrow")
            .body(r#"{"aps":{"alert":"hi"}}"#),
        ApnsReason::BadExpirationDate,
    )
    .await;
    expect_reason(
        request("alert")
            .header("apns-topic", TOPIC)
            .body(r#"{"aps":{"alert":"hi"}}"#),
        ApnsReason::DuplicateHeaders,
    )
    .await;
    // A collapse id of exactly 64 bytes is fine.
    let ok = request("alert")
        .header("apns-collapse-id", "x".repeat(64))
        .body(r#"{"aps":{"alert":"hi"}}"#);
    assert_eq!(ok.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn payload_and_path_problems_get_the_apns_reason() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    let big = json!({"aps": {"alert": "x".repeat(4100)}}).to_string();
    expect_reason(
        alert(&client, &mock, &key, DEVICE).body(big),
        ApnsReason::PayloadTooLarge,
    )
    .await;
    expect_reason(
        alert(&client, &mock, &key, DEVICE).body(""),
        ApnsReason::PayloadEmpty,
    )
    .await;
    expect_reason(
        alert(&client, &mock, &key, DEVICE).body("{not json"),
        ApnsReason::PayloadNotJson,
    )
    .await;
    expect_reason(
        alert(&client, &mock, &key, "not-hex"),
        ApnsReason::BadDeviceToken,
    )
    .await;
    expect_reason(
        alert(&client, &mock, &key, ""),
        ApnsReason::MissingDeviceToken,
    )
    .await;
    let token = cached_token(&mock, &key);
    expect_reason(
        client
            .get(mock.device_url(DEVICE))
            .header("authorization", format!("bearer {token}")),
        ApnsReason::MethodNotAllowed,
    )
    .await;
    expect_reason(
        client
            .post(format!("{}/2/device/{DEVICE}", mock.base_url()))
            .header("authorization", format!("bearer {token}")),
        ApnsReason::BadPath,
    )
    .await;
    // VoIP pushes may be up to 5120 bytes.
    let voip = client
        .post(mock.device_url(DEVICE))
        .header("authorization", format!("bearer {token}"))
        .header("apns-topic", format!("{TOPIC}.voip"))
        .header("apns-push-type", "voip")
        .body(json!({"call": "x".repeat(5000)}).to_string());
    assert_eq!(voip.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn every_scripted_reason_comes_back_with_its_real_status_and_body() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    for reason in ApnsReason::ALL {
        mock.script_once(DEVICE, ApnsReply::Reject(reason));
        let response = alert(&client, &mock, &key, DEVICE).send().await.unwrap();
        assert!(response.headers().contains_key("apns-id"));
        let (status, body) = reason_of(response).await;
        assert_eq!(status, reason.status(), "{reason}");
        assert_eq!(body["reason"], reason.as_str());
        assert_eq!(
            body.get("timestamp").is_some(),
            status == 410,
            "{reason}: {body}"
        );
    }
    // One-shot scripts are used up: the next push is accepted.
    let response = alert(&client, &mock, &key, DEVICE).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_unregistered_token_reports_when_it_stopped_being_valid() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    mock.script(
        DEVICE,
        ApnsReply::Unregistered {
            since_ms: 1_700_000_000_123,
        },
    );
    for _ in 0..2 {
        let (status, body) =
            reason_of(alert(&client, &mock, &key, DEVICE).send().await.unwrap()).await;
        assert_eq!(status, 410);
        assert_eq!(
            body,
            json!({"reason": "Unregistered", "timestamp": 1_700_000_000_123_i64})
        );
    }
    // Other tokens are unaffected.
    let other = "00ff00ff";
    let response = alert(&client, &mock, &key, other).send().await.unwrap();
    assert_eq!(response.status(), 200);
    mock.clear_script(DEVICE);
    let response = alert(&client, &mock, &key, DEVICE).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_scripted_retry_after_carries_the_header() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    mock.script_once(
        DEVICE,
        ApnsReply::RetryAfter {
            reason: ApnsReason::TooManyRequests,
            after: Duration::from_secs(120),
        },
    );
    let response = alert(&client, &mock, &key, DEVICE).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "120");
    let (_, body) = reason_of(response).await;
    assert_eq!(body["reason"], "TooManyRequests");
}

#[tokio::test]
async fn a_slow_reply_makes_the_client_time_out() {
    let (mock, key) = mock_with_key().await;
    mock.script(DEVICE, ApnsReply::slow(Duration::from_secs(60)));
    let result = alert(&client(&mock), &mock, &key, DEVICE)
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    let seen = mock.wait_for_requests(1).await;
    assert_eq!(seen[0].status, Some(200));
}

#[tokio::test]
async fn a_dropped_connection_answers_nothing_and_the_next_connection_works() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    mock.script_once(DEVICE, ApnsReply::DropConnection);
    let error = alert(&client, &mock, &key, DEVICE)
        .send()
        .await
        .unwrap_err();
    assert!(error.status().is_none(), "{error}");
    assert_eq!(mock.requests()[0].status, None);
    let response = alert(&client, &mock, &key, DEVICE).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn goaway_fails_the_request_and_the_client_reconnects() {
    let (mock, key) = mock_with_key().await;
    let client = client(&mock);
    mock.script_once(DEVICE, ApnsReply::GoAway);
    let error = alert(&client, &mock, &key, DEVICE)
        .send()
        .await
        .unwrap_err();
    assert!(error.status().is_none(), "{error}");
    let response = alert(&client, &mock, &key, DEVICE).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn with_recording_off_requests_are_counted_not_kept() {
    let (mock, key) = mock_with_key().await;
    mock.set_recording(false);
    let client = client(&mock);
    for _ in 0..3 {
        alert(&client, &mock, &key, DEVICE).send().await.unwrap();
    }
    assert_eq!(mock.request_count(), 3);
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn certificate_mode_rejects_a_client_without_certificate() {
    let mock = ApnsMock::builder()
        .topic(TOPIC)
        .certificate_auth()
        .start()
        .await;
    let push = |client: &reqwest::Client| {
        client
            .post(mock.device_url(DEVICE))
            .header("apns-push-type", "alert")
            .body(r#"{"aps":{"alert":"hi"}}"#)
    };
    let error = push(&client(&mock)).send().await.unwrap_err();
    assert!(error.status().is_none(), "{error}");
    assert_eq!(mock.request_count(), 0);

    let identity = mock.issue_client_identity(TOPIC);
    let ca = reqwest::Certificate::from_pem(mock.ca_pem().as_bytes()).unwrap();
    let with_cert = reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(reqwest::Identity::from_pem(identity.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    // No authorization header and, with a single-topic certificate, no apns-topic needed.
    let response = push(&with_cert).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(mock.requests()[0].key_id.is_none());
}

#[tokio::test]
async fn a_p8_key_round_trips_and_secrets_stay_out_of_debug() {
    let (mock, key) = mock_with_key().await;
    let pem = key.p8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let loaded = ApnsSigningKey::from_p8_pem(key.team_id(), key.key_id(), &pem).unwrap();
    let token = loaded.provider_token(mock.now());
    let response = alert_with_token(&client(&mock), &mock, &token, DEVICE)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let key_debug = format!("{key:?}");
    let body = pem.lines().nth(1).unwrap();
    assert!(!key_debug.contains(body));
    let request_debug = format!("{:?}", mock.requests());
    assert!(!request_debug.contains(&token));
    assert!(!request_debug.contains(DEVICE));
    let identity_debug = format!("{:?}", mock.issue_client_identity(TOPIC));
    assert!(!identity_debug.contains("PRIVATE KEY"));
}
