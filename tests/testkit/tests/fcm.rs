//! The FCM mock behaves like FCM HTTP v1 and Google's token endpoint towards a plain client.
#![cfg(feature = "mock-fcm")]
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns fail loudly, as assertions do

use std::time::Duration;

use serde_json::{json, Value};
use tidings_testkit::fcm::{
    FcmErrorCode, FcmMock, FcmReply, ServiceAccount, JWT_BEARER_GRANT, MESSAGING_SCOPE,
};

const PROJECT: &str = "demo-project";
const TOKEN: &str = "fcm-registration-token:APA91bExampleExampleExample";

async fn token_response(mock: &FcmMock, assertion: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(mock.token_uri())
        .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn access_token(mock: &FcmMock, account: &ServiceAccount) -> String {
    let (status, body) = token_response(mock, &account.assertion(mock.now())).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn send(
    mock: &FcmMock,
    bearer: &str,
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .post(mock.send_url(PROJECT))
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

fn message() -> Value {
    json!({"message": {
        "token": TOKEN,
        "data": {"seq": "42", "kind": "tap"},
        "android": {"priority": "high", "ttl": "3600s", "collapse_key": "inbox"},
    }})
}

async fn ready() -> (FcmMock, String) {
    let mock = FcmMock::start().await;
    let account = mock.service_account(PROJECT);
    let bearer = access_token(&mock, &account).await;
    (mock, bearer)
}

fn fcm_error_code(body: &Value) -> Option<&str> {
    body["error"]["details"]
        .as_array()?
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.firebase.fcm.v1.FcmError")?["errorCode"]
        .as_str()
}

#[tokio::test]
async fn the_token_endpoint_issues_an_expiring_bearer_token() {
    let mock = FcmMock::builder()
        .token_lifetime(Duration::from_secs(1800))
        .start()
        .await;
    let account = mock.service_account(PROJECT);
    let (status, body) = token_response(&mock, &account.assertion(mock.now())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 1800);
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
    let seen = mock.token_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].issuer.as_deref(), Some(account.client_email()));
    assert_eq!(seen[0].scope.as_deref(), Some(MESSAGING_SCOPE));
    assert_eq!(mock.live_access_tokens(), 1);
}

#[tokio::test]
async fn a_bad_assertion_is_refused_with_googles_oauth_error() {
    let mock = FcmMock::start().await;
    let account = mock.service_account(PROJECT);
    let now = mock.now();
    let claims = |extra: Value| {
        let mut c = json!({
            "iss": account.client_email(),
            "scope": MESSAGING_SCOPE,
            "aud": mock.token_uri(),
            "iat": now,
            "exp": now + 3600,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    // Signed by another key under this account's name.
    let other_key = ServiceAccount::generate_with_own_key(PROJECT, mock.token_uri());
    let forged = other_key.sign_claims(&claims(json!({})));
    let (status, body) = token_response(&mock, &forged).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(body["error_description"], "Invalid JWT Signature.");

    let cases = [
        (
            json!({"aud": "https://example.invalid/token"}),
            "invalid_grant",
        ),
        (json!({"exp": now + 7200}), "invalid_grant"),
        (
            json!({"iat": now - 7200, "exp": now - 3600}),
            "invalid_grant",
        ),
        (
            json!({"iss": "nobody@example.iam.gserviceaccount.com"}),
            "invalid_grant",
        ),
        (json!({"scope": ""}), "invalid_scope"),
    ];
    for (extra, error) in cases {
        let (status, body) =
            token_response(&mock, &account.sign_claims(&claims(extra.clone()))).await;
        assert_eq!(status, 400, "{extra}: {body}");
        assert_eq!(body["error"], error, "{extra}: {body}");
    }
    let (status, body) = token_response(&mock, "not-a-jwt").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let response = reqwest::Client::new()
        .post(mock.token_uri())
        .form(&[("grant_type", "client_credentials"), ("assertion", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
    assert_eq!(mock.live_access_tokens(), 0);
}

#[tokio::test]
async fn an_accepted_send_is_recorded_and_named() {
    let (mock, bearer) = ready().await;
    let (status, _, body) = send(&mock, &bearer, message()).await;
    assert_eq!(status, 200, "{body}");
    let name = body["name"].as_str().unwrap();
    assert!(
        name.starts_with(&format!("projects/{PROJECT}/messages/")),
        "{name}"
    );

    let requests = mock.requests_for(TOKEN);
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert!(request.accepted());
    assert_eq!(request.project, PROJECT);
    assert_eq!(request.data()["seq"], "42");
    assert_eq!(request.android_ttl(), Some("3600s"));
    assert_eq!(request.message_name.as_deref(), Some(name));
}

#[tokio::test]
async fn sends_over_h2c_are_served_too() {
    let (mock, bearer) = ready().await;
    let response = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .post(mock.send_url(PROJECT))
        .bearer_auth(&bearer)
        .json(&message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_bad_or_missing_bearer_token_is_unauthenticated() {
    let (mock, _) = ready().await;
    let (status, headers, body) = send(&mock, "ya29.made-up", message()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(body["error"]["code"], 401);
    assert!(headers.contains_key("www-authenticate"));

    let response = reqwest::Client::new()
        .post(mock.send_url(PROJECT))
        .json(&message())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(mock.requests().iter().all(|r| !r.accepted()));
}

#[tokio::test]
async fn an_expired_access_token_gets_401_and_a_fresh_one_works() {
    let mock = FcmMock::start().await;
    let account = mock.service_account(PROJECT);
    let bearer = access_token(&mock, &account).await;
    mock.advance_clock(Duration::from_secs(3601));
    let (status, _, body) = send(&mock, &bearer, message()).await;
    assert_eq!(status, 401, "{body}");

    let fresh = access_token(&mock, &account).await;
    assert_eq!(send(&mock, &fresh, message()).await.0, 200);

    mock.expire_access_tokens();
    assert_eq!(send(&mock, &fresh, message()).await.0, 401);
    let again = access_token(&mock, &account).await;
    assert_eq!(send(&mock, &again, message()).await.0, 200);
}

#[tokio::test]
async fn a_token_for_another_project_or_scope_is_permission_denied() {
    let mock = FcmMock::start().await;
    let other = mock.service_account("other-project");
    let bearer = access_token(&mock, &other).await;
    let (status, _, body) = send(&mock, &bearer, message()).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");

    let account = mock.service_account(PROJECT);
    let now = mock.now();
    let assertion = account.sign_claims(&json!({
        "iss": account.client_email(),
        "scope": "https://www.googleapis.com/auth/userinfo.email",
        "aud": mock.token_uri(),
        "iat": now,
        "exp": now + 3600,
    }));
    let (_, token) = token_response(&mock, &assertion).await;
    let (status, _, body) = send(&mock, token["access_token"].as_str().unwrap(), message()).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
}

#[tokio::test]
async fn malformed_messages_get_fcms_invalid_argument() {
    let (mock, bearer) = ready().await;
    let cases = [
        (
            "two targets",
            json!({"message": {"token": TOKEN, "topic": "news"}}),
        ),
        ("no target", json!({"message": {"data": {"a": "b"}}})),
        (
            "non-string data",
            json!({"message": {"token": TOKEN, "data": {"seq": 42}}}),
        ),
        (
            "reserved data key",
            json!({"message": {"token": TOKEN, "data": {"from": "x"}}}),
        ),
        (
            "oversize",
            json!({"message": {"token": TOKEN, "data": {"blob": "x".repeat(4100)}}}),
        ),
        (
            "ttl without unit",
            json!({"message": {"token": TOKEN, "android": {"ttl": "3600"}}}),
        ),
        (
            "ttl over 4 weeks",
            json!({"message": {"token": TOKEN, "android": {"ttl": "2419201s"}}}),
        ),
        (
            "bad android priority",
            json!({"message": {"token": TOKEN, "android": {"priority": "urgent"}}}),
        ),
        ("empty token", json!({"message": {"token": ""}})),
        (
            "topic with prefix",
            json!({"message": {"topic": "/topics/news"}}),
        ),
        ("no message", json!({"validate_only": false})),
    ];
    for (case, body) in cases {
        let (status, _, answer) = send(&mock, &bearer, body).await;
        assert_eq!(status, 400, "{case}: {answer}");
        assert_eq!(answer["error"]["status"], "INVALID_ARGUMENT", "{case}");
        assert_eq!(answer["error"]["code"], 400, "{case}");
        assert!(
            !answer["error"]["details"].as_array().unwrap().is_empty(),
            "{case}"
        );
    }
    let (_, _, answer) = send(
        &mock,
        &bearer,
        json!({"message": {"token": TOKEN, "data": {"seq": 42}}}),
    )
    .await;
    assert_eq!(
        answer["error"]["details"][0]["fieldViolations"][0]["field"],
        "message.data[0].value"
    );
    let (_, _, answer) = send(
        &mock,
        &bearer,
        json!({"message": {"token": TOKEN, "data": {"blob": "x".repeat(4100)}}}),
    )
    .await;
    assert_eq!(fcm_error_code(&answer), Some("INVALID_ARGUMENT"));
    // A fractional TTL and an exactly-4-weeks TTL are fine.
    for ttl in ["3.5s", "2419200s", "0s"] {
        let body = json!({"message": {"token": TOKEN, "android": {"ttl": ttl}}});
        assert_eq!(send(&mock, &bearer, body).await.0, 200, "{ttl}");
    }
    // A body that is not JSON.
    let response = reqwest::Client::new()
        .post(mock.send_url(PROJECT))
        .bearer_auth(&bearer)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn every_scripted_error_comes_back_fcm_shaped() {
    let (mock, bearer) = ready().await;
    for code in FcmErrorCode::ALL {
        mock.script_once(TOKEN, FcmReply::Error(code));
        let (status, _, body) = send(&mock, &bearer, message()).await;
        assert_eq!(status, code.http_status(), "{code}");
        assert_eq!(body["error"]["code"], code.http_status(), "{code}");
        assert_eq!(body["error"]["status"], code.canonical_status(), "{code}");
        assert!(body["error"]["message"].is_string());
        assert_eq!(fcm_error_code(&body), Some(code.as_str()), "{code}");
    }
    assert_eq!(send(&mock, &bearer, message()).await.0, 200);
    let recorded: Vec<_> = mock.requests().iter().map(|r| r.error_code).collect();
    assert_eq!(recorded[0], Some(FcmErrorCode::UnspecifiedError));
    assert_eq!(recorded.last(), Some(&None));
}

#[tokio::test]
async fn scripted_unregistered_sticks_and_retry_after_carries_the_header() {
    let (mock, bearer) = ready().await;
    mock.script(TOKEN, FcmReply::Error(FcmErrorCode::Unregistered));
    for _ in 0..2 {
        let (status, _, body) = send(&mock, &bearer, message()).await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["status"], "NOT_FOUND");
        assert_eq!(fcm_error_code(&body), Some("UNREGISTERED"));
    }
    mock.clear_script(TOKEN);
    mock.script_once(
        TOKEN,
        FcmReply::RetryAfter {
            code: FcmErrorCode::Unavailable,
            after: Duration::from_secs(30),
        },
    );
    let (status, headers, body) = send(&mock, &bearer, message()).await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "30");
    assert_eq!(fcm_error_code(&body), Some("UNAVAILABLE"));
    mock.script_once(TOKEN, FcmReply::Unauthenticated);
    assert_eq!(send(&mock, &bearer, message()).await.0, 401);
    assert_eq!(send(&mock, &bearer, message()).await.0, 200);
}

#[tokio::test]
async fn validate_only_answers_the_fake_message_id() {
    let (mock, bearer) = ready().await;
    let mut body = message();
    body["validate_only"] = json!(true);
    let (status, _, answer) = send(&mock, &bearer, body).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["name"],
        format!("projects/{PROJECT}/messages/fake_message_id")
    );
    assert!(mock.requests()[0].validate_only());
}

#[tokio::test]
async fn slow_and_dropped_replies_fail_the_client_without_a_status() {
    let (mock, bearer) = ready().await;
    let client = reqwest::Client::new();
    mock.script_once(TOKEN, FcmReply::slow(Duration::from_secs(60)));
    let error = client
        .post(mock.send_url(PROJECT))
        .bearer_auth(&bearer)
        .json(&message())
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");

    mock.script_once(TOKEN, FcmReply::DropConnection);
    let error = client
        .post(mock.send_url(PROJECT))
        .bearer_auth(&bearer)
        .json(&message())
        .send()
        .await
        .unwrap_err();
    assert!(error.status().is_none(), "{error}");
    assert_eq!(send(&mock, &bearer, message()).await.0, 200);
    assert_eq!(mock.wait_for_requests(3).await.len(), 3);
}

#[tokio::test]
async fn service_account_json_round_trips_and_hides_the_key_from_debug() {
    let mock = FcmMock::start().await;
    let account = mock.service_account(PROJECT);
    let text = account.to_json();
    let json: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["type"], "service_account");
    assert_eq!(json["project_id"], PROJECT);
    assert_eq!(json["token_uri"], mock.token_uri());
    assert!(json["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----"));
    let parsed = ServiceAccount::from_json(&text).unwrap();
    assert_eq!(parsed.client_email(), account.client_email());
    // The parsed account's assertions verify against the registered one.
    access_token(&mock, &parsed).await;

    let debug = format!("{account:?}");
    let key_line = account.private_key_pem().lines().nth(1).unwrap().to_owned();
    assert!(!debug.contains(&key_line));
    let bearer = access_token(&mock, &account).await;
    send(&mock, &bearer, message()).await;
    let debug = format!("{:?}", mock.requests());
    assert!(!debug.contains(&bearer));
    assert!(!debug.contains(TOKEN));
}
