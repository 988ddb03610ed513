//! A client API over in-memory adapters, and a small HTTP client for it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use tidings::{App, Identity, ManualClock, NewNotification, Notification, Platform, Tidings};
use tidings_http::{router, HttpConfig};
use tidings_memory::{MemoryStore, RecordingChannel, StaticIdentity};
use tower::ServiceExt;

/// The app most tests use, with a 2 s sync coalescing window.
pub const APP: &str = "chat";

/// What a call answered.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `Content-Type` header.
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the answer is a problem document with `status`, and returns its body.
    #[track_caller]
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "{:?}",
            self.body
        );
        assert_eq!(self.body["status"], status, "{:?}", self.body);
        assert_eq!(self.body["type"], "about:blank");
        assert!(self.body["title"].is_string() && self.body["detail"].is_string());
        &self.body
    }
}

/// A request in the making.
pub struct Call {
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Call {
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Call {
            method,
            uri: uri.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn token(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn installation(self, id: &str) -> Self {
        self.header("tidings-installation-id", id)
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(serde_json::to_vec(body).unwrap());
        self.header("content-type", "application/json")
    }

    pub fn raw_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    pub async fn send(self, router: &Router) -> Answer {
        let mut request = Request::builder().method(self.method).uri(self.uri);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(self.body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
        };
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// A Tidings handle over a [`MemoryStore`] with recording APNs, FCM and Web Push channels, a
/// manual clock, and the client API over it.
pub struct Harness {
    pub tidings: Tidings,
    pub store: MemoryStore,
    pub clock: ManualClock,
    pub apns: RecordingChannel,
    pub fcm: RecordingChannel,
    pub webpush: RecordingChannel,
    pub router: Router,
}

impl Harness {
    /// With [`StaticIdentity`] knowing `alice`, `bob` (both in `chat`) and `alice-news` (alice
    /// in `news`).
    pub fn new() -> Self {
        Harness::with_identity(
            StaticIdentity::new()
                .with_user("alice", APP, "alice")
                .with_user("bob", APP, "bob")
                .with_user("alice-news", "news", "alice"),
            HttpConfig::default(),
        )
    }

    pub fn with_identity(identity: impl Identity, config: HttpConfig) -> Self {
        let clock = ManualClock::starting_2026();
        Harness::build(identity, config, clock)
    }

    pub fn build(identity: impl Identity, config: HttpConfig, clock: ManualClock) -> Self {
        let store = MemoryStore::new();
        let apns = RecordingChannel::new(Platform::Apns);
        let fcm = RecordingChannel::new(Platform::Fcm);
        let webpush = RecordingChannel::new(Platform::WebPush);
        let tidings = Tidings::builder()
            .store(store.clone())
            .channel(apns.clone())
            .channel(fcm.clone())
            .channel(webpush.clone())
            .identity(identity)
            .clock(clock.clone())
            .app(App::new(APP).sync_coalesce_window(Duration::from_secs(2)))
            .app(App::new("news"))
            .build()
            .unwrap();
        let router = router(tidings.clone(), config);
        Harness {
            tidings,
            store,
            clock,
            apns,
            fcm,
            webpush,
            router,
        }
    }

    pub async fn call(&self, call: Call) -> Answer {
        call.send(&self.router).await
    }

    /// Registers an APNs installation for `token` through the API; returns the endpoint JSON.
    pub async fn register_apns(
        &self,
        token: &str,
        installation: &str,
        device_token: &str,
    ) -> Value {
        let answer = self
            .call(
                Call::new(Method::PUT, format!("/endpoints/{installation}"))
                    .token(token)
                    .json(&apns_address(device_token)),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body
    }

    /// Registers an FCM installation for `token` through the API.
    pub async fn register_fcm(&self, token: &str, installation: &str, registration: &str) -> Value {
        let answer = self
            .call(
                Call::new(Method::PUT, format!("/endpoints/{installation}"))
                    .token(token)
                    .json(
                        &serde_json::json!({"address": {"platform": "fcm", "token": registration}}),
                    ),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body
    }

    /// Sends a notification to `user` of `app` in-process, as the host would.
    pub async fn send(&self, app: &str, user: &str, key: &str, title: &str) -> Notification {
        self.tidings
            .send(
                NewNotification::new(app, user, key)
                    .title(title)
                    .body("body text"),
            )
            .await
            .unwrap()
    }
}

/// A registration body for an APNs device token.
pub fn apns_address(device_token: &str) -> Value {
    serde_json::json!({
        "address": {"platform": "apns", "token": device_token, "environment": "production"}
    })
}

pub fn get(uri: impl Into<String>) -> Call {
    Call::new(Method::GET, uri)
}

pub fn patch(uri: impl Into<String>) -> Call {
    Call::new(Method::PATCH, uri)
}

pub fn post(uri: impl Into<String>) -> Call {
    Call::new(Method::POST, uri)
}

pub fn put(uri: impl Into<String>) -> Call {
    Call::new(Method::PUT, uri)
}

pub fn delete(uri: impl Into<String>) -> Call {
    Call::new(Method::DELETE, uri)
}
