//! Writing your own [`PushChannel`]: Android pushes through a company's internal push relay.
//!
//! Some companies do not let every service call FCM: Android pushes go through an internal
//! "push relay" HTTP service that holds the Firebase credentials. This example implements
//! `PushChannel` for [`Platform::Fcm`] on top of such a relay, the sans-IO way the channels in
//! this repository are written:
//!
//! - [`render`], pure: a [`Push`] becomes the relay's JSON body (ids only in shoulder-tap mode),
//!   measured against the payload limit *before* any I/O;
//! - [`classify`], pure: the relay's status, headers and body become [`Accepted`] or a
//!   [`PushError`] whose kind tells the dispatcher what to do (deactivate, retry, give up);
//! - [`RelayChannel::send`]: the only I/O, one `reqwest` POST.
//!
//! It then starts a scripted relay (axum, on 127.0.0.1 only), where one device's token is gone
//! and another device's first request gets a 503, and sends one notification through `Tidings`
//! on a [`ManualClock`]. Loopback only, done in well under a second:
//! `cargo run --example custom_channel`. Every outcome is asserted: a wrong one exits non-zero.
//!
//! In your own channel crate, check it against the contract with the channel conformance suite
//! of `tidings-testkit` (message id, gone, misconfigured, Retry-After, payload limit before any
//! request, timeouts, no secrets in `Debug`, TTL from expiry): implement
//! `tidings_testkit::channel::ChannelHarness` for a fake of your relay (like [`relay`] below)
//! and add `tidings_testkit::channel_conformance!(RelayHarness, |h, o| …)` to a test file,
//! building the channel with the suite's `ChannelOptions::timeout`.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::{Json, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tidings::{
    Accepted, App, ChannelCapabilities, EndpointRegistration, ManualClock, NewNotification,
    Platform, Push, PushAddress, PushChannel, PushContent, PushError, PushErrorKind, Retry,
    Tidings, VisualContent,
};
use tidings_memory::MemoryStore;
use tidings_testkit::channel::fixtures;

/// The largest body the relay takes (FCM's own limit).
const MAX_PAYLOAD_BYTES: usize = 4096;

/// Android pushes through the push relay.
struct RelayChannel {
    http: reqwest::Client,
    url: String,
    /// The relay's API key: a secret, so `Debug` below never shows it.
    key: String,
}

impl fmt::Debug for RelayChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayChannel")
            .field("url", &self.url)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl RelayChannel {
    /// A channel posting to `url`. No retry loop here: the dispatcher retries durably.
    fn new(url: String, key: String, timeout: Duration) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(RelayChannel { http, url, key })
    }
}

/// What the relay is sent: ids, and content only when the app sends it inline.
#[derive(Serialize)]
struct RelayMessage<'a> {
    token: &'a str,
    kind: &'static str,
    app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_id: Option<String>,
    sequence: u64,
    priority: &'static str,
    collapse_key: &'a str,
    /// `expires_at - sent_at`: a retry carries a shorter TTL.
    ttl_secs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<&'a VisualContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
}

/// Pure: the relay's JSON body for `push`, or why it cannot be sent (nothing is sent then).
fn render(push: &Push) -> Result<Vec<u8>, PushError> {
    let PushAddress::Fcm { token } = &push.endpoint.address else {
        return Err(PushError::rejected("the relay takes FCM tokens only"));
    };
    // A shoulder tap carries ids, plus the app's generic placeholder when it is visible.
    let (alert, raw) = match &push.content {
        PushContent::Tap { alert } => (alert.as_ref(), None),
        PushContent::Inline { visual, raw } => (visual.as_ref(), raw.as_deref()),
    };
    let message = RelayMessage {
        token,
        kind: push.kind.as_str(),
        app: push.app.as_str(),
        notification_id: push.notification_id.map(|id| id.to_string()),
        sequence: push.sequence,
        priority: push.priority.as_str(),
        collapse_key: &push.collapse_id,
        ttl_secs: push.ttl().as_secs(),
        alert,
        raw,
    };
    let bytes = serde_json::to_vec(&message)
        .map_err(|e| PushError::rejected("the message does not serialize").with_source(e))?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        // The dispatcher then resends an inline push as a shoulder tap.
        return Err(PushError::payload_too_large(bytes.len(), MAX_PAYLOAD_BYTES));
    }
    Ok(bytes)
}

/// The relay's answer body: a message id on success, an error code on failure.
#[derive(Deserialize, Default)]
struct RelayAnswer {
    message_id: Option<String>,
    error: Option<String>,
}

/// Pure: what the relay's answer means for the delivery and the endpoint.
fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, PushError> {
    let answer: RelayAnswer = serde_json::from_slice(body).unwrap_or_default();
    if (200..300).contains(&status) {
        return Ok(Accepted {
            provider_message_id: answer.message_id,
        });
    }
    // `Retry-After` in whole seconds; an HTTP date counts as absent (backoff instead).
    let after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_secs);
    let text = format!("the push relay answered {status}");
    let error = match status {
        // A 404 *from the relay* (with its error body) means the token is unknown; a bare 404
        // means a wrong URL, which must not deactivate every endpoint.
        410 => PushError::gone(text),
        404 if answer.error.is_some() => PushError::gone(text),
        404 | 401 | 403 => PushError::misconfigured(text),
        408 => PushError::timeout(text),
        413 => PushError::new(PushErrorKind::PayloadTooLarge, text),
        429 => PushError::throttled(text, after),
        500..=599 => match after {
            Some(d) => PushError::unavailable(text).with_retry(Retry::After(d)),
            None => PushError::unavailable(text),
        },
        _ => PushError::rejected(text),
    };
    Err(match answer.error {
        Some(reason) => error.with_reason(reason),
        None => error,
    })
}

#[async_trait]
impl PushChannel for RelayChannel {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            silent_push: true,
            collapse: true,
        }
    }

    async fn send(&self, push: &Push) -> Result<Accepted, PushError> {
        let body = render(push)?;
        // Transport failures are retryable; neither deactivates the endpoint.
        let transport = |e: reqwest::Error| {
            let error = if e.is_timeout() {
                PushError::timeout("the push relay did not answer in time")
            } else {
                PushError::unavailable("the push relay is unreachable")
            };
            error.with_source(e.without_url())
        };
        let response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.key) // reqwest marks it sensitive
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        classify(status, &headers, &body)
    }
}

// ---- The scripted relay the example runs against ----------------------------------------

const RELAY_KEY: &str = "relay-key-0123456789";
const PIXEL: &str = "token-of-alices-pixel";
const OLD_TABLET: &str = "token-of-an-uninstalled-app";
const WORK_PHONE: &str = "token-of-alices-work-phone";

/// One request the relay received: its token, what it answered, the body.
type Seen = (String, u16, Value);

/// A push relay on loopback: `OLD_TABLET` is gone, `WORK_PHONE`'s first request gets a 503.
async fn relay(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let token = body["token"].as_str().unwrap_or_default().to_owned();
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let first = !seen.iter().any(|(t, ..)| *t == token);
    let authorized = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {RELAY_KEY}"));
    let id = format!("relay-{}", seen.len() + 1);
    let (status, answer) = match token.as_str() {
        _ if !authorized => (StatusCode::UNAUTHORIZED, json!({"error": "bad_key"})),
        OLD_TABLET => (StatusCode::GONE, json!({"error": "unregistered"})),
        WORK_PHONE if first => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "busy"})),
        _ => (StatusCode::OK, json!({ "message_id": id })),
    };
    seen.push((token, status.as_u16(), body));
    let mut response = (status, Json(answer)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("2"));
    }
    response
}

/// A row of the classification table: status, `Retry-After`, body, what it must become.
type Row = (u16, Option<&'static str>, &'static str, Want);
type Want = Result<&'static str, (PushErrorKind, Retry)>;

/// The classification table, row by row (an example's `#[test]`s do not run by default).
fn check_classify() -> usize {
    use PushErrorKind::*;
    use Retry::{Backoff, Never};
    let after = |s| Retry::After(Duration::from_secs(s));
    let rows: [Row; 13] = [
        (200, None, r#"{"message_id":"m-1"}"#, Ok("m-1")),
        (202, None, r#"{"message_id":"m-2"}"#, Ok("m-2")),
        (410, None, "", Err((EndpointGone, Never))),
        (404, None, r#"{"error":"gone"}"#, Err((EndpointGone, Never))),
        (404, None, "Not Found", Err((Misconfigured, Backoff))),
        (401, None, "", Err((Misconfigured, Backoff))),
        (429, Some("30"), "", Err((Throttled, after(30)))),
        (429, None, "", Err((Throttled, Backoff))),
        (503, Some("2"), "", Err((Unavailable, after(2)))),
        (500, None, "", Err((Unavailable, Backoff))),
        (408, None, "", Err((Timeout, Backoff))),
        (413, None, "", Err((PayloadTooLarge, Never))),
        (400, None, r#"{"error":"bad_ttl"}"#, Err((Rejected, Never))),
    ];
    for (status, retry_after, body, expected) in &rows {
        let mut headers = HeaderMap::new();
        if let Some(v) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(v));
        }
        match (classify(*status, &headers, body.as_bytes()), expected) {
            (Ok(a), Ok(id)) => assert_eq!(a.provider_message_id.as_deref(), Some(*id)),
            (Err(e), Err(want)) => assert_eq!((e.kind(), e.retry()), *want, "{status} {body}"),
            (got, _) => panic!("{status} {body}: expected {expected:?}, got {got:?}"),
        }
    }
    // And render: a silent tap carries ids only; oversized content fails before any request.
    let push = |content| {
        fixtures::push(
            PushAddress::Fcm {
                token: PIXEL.into(),
            },
            content,
        )
    };
    let tap = render(&push(PushContent::Tap { alert: None }));
    let tap: Value = serde_json::from_slice(&tap.expect("a tap renders")).expect("JSON");
    assert!(tap["notification_id"].is_string() && tap.get("alert").is_none());
    let visual = Some(fixtures::visual("Big", &"x".repeat(MAX_PAYLOAD_BYTES)));
    let big = render(&push(PushContent::Inline { visual, raw: None }));
    assert_eq!(big.map_err(|e| e.kind()).err(), Some(PayloadTooLarge));
    rows.len() + 2
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let checks = check_classify();
    println!("== classify() and render(): {checks} checks passed");

    // 1. Start the relay on an ephemeral loopback port.
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let router = axum::Router::new()
        .route("/v1/push", axum::routing::post(relay))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/push", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    println!("== push relay listening at {url}");

    // 2. Build Tidings with the custom channel (its `Debug` hides the key).
    let channel = RelayChannel::new(url, RELAY_KEY.into(), Duration::from_secs(5))?;
    println!("   {channel:?}");
    assert!(!format!("{channel:?}").contains(RELAY_KEY));
    let clock = ManualClock::starting_2026();
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .clock(clock.clone())
        .channel(channel)
        .app(App::new("chat")) // shoulder-tap mode: ids only go through the relay
        .build()?;
    let dispatcher = tidings.dispatcher();

    // 3. Alice has three Android devices; on one of them the app was uninstalled since.
    for token in [PIXEL, OLD_TABLET, WORK_PHONE] {
        let address = PushAddress::Fcm {
            token: token.into(),
        };
        let registration = EndpointRegistration::new("chat", "alice", address);
        tidings.register_endpoint(registration).await?;
    }

    // 4. Notify Alice and dispatch: one accepted, one retried (503), one gone (410).
    let new = NewNotification::new("chat", "alice", "msg-1").title("Bob: lunch?");
    let n = tidings.send(new).await?;
    let first = dispatcher.run_until_idle().await?;
    println!("== dispatch: {first:?}");
    assert_eq!((first.accepted, first.retried, first.gone), (1, 1, 1));

    // 5. The 503 said "Retry-After: 2": nothing is due a second later, the retry is at two.
    clock.advance(Duration::from_secs(1));
    assert_eq!(dispatcher.run_until_idle().await?.leased, 0);
    clock.advance(Duration::from_secs(1));
    let second = dispatcher.run_until_idle().await?;
    println!("== two seconds later: {second:?}");
    assert_eq!((second.accepted, second.retried, second.gone), (1, 0, 0));

    // 6. What the relay received: ids and the app's placeholder title, never "Bob: lunch?";
    //    the retry's TTL is two seconds shorter. Sorted by token (stable: retries stay last).
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let ttl = n.expires_at.since(n.created_at).as_secs();
    let expected = [
        (PIXEL, 200, ttl),
        (WORK_PHONE, 503, ttl),
        (WORK_PHONE, 200, ttl - 2),
        (OLD_TABLET, 410, ttl),
    ];
    println!("== the relay received");
    assert_eq!(seen.len(), expected.len());
    for ((token, status, body), (want_token, want_status, want_ttl)) in seen.iter().zip(expected) {
        println!("   {token:<28} -> {status}  ttl_secs {}", body["ttl_secs"]);
        assert_eq!((token.as_str(), *status), (want_token, want_status));
        assert_eq!(body["ttl_secs"].as_u64(), Some(want_ttl));
        assert_eq!(body["notification_id"], n.id.to_string());
        assert!(
            !body.to_string().contains("lunch"),
            "content leaked: {body}"
        );
    }
    if let Some((_, _, body)) = seen.first() {
        println!("   e.g. {body}");
    }

    // 7. The uninstalled app's endpoint is deactivated; the others stay active.
    println!("== Alice's endpoints");
    for e in tidings.endpoints(&"chat".into(), &"alice".into()).await? {
        let PushAddress::Fcm { token } = &e.address else {
            continue;
        };
        let reason = e.deactivation_reason.as_deref().unwrap_or("-");
        println!("   {token:<28} active: {:<5}  reason: {reason}", e.active);
        let gone = token == OLD_TABLET;
        assert_eq!((e.active, e.deactivation_reason.is_some()), (!gone, gone));
    }
    println!("== delivered, retried then delivered, endpoint deactivated: as expected");
    Ok(())
}
