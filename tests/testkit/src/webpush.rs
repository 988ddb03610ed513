//! A loopback fake of a Web Push service (RFC 8030) that verifies VAPID (RFC 8292) and decrypts
//! every body (RFC 8291), so tests can assert what a browser would receive.
//!
//! ```no_run
//! # async fn demo() {
//! use tidings_testkit::webpush::{VapidKey, WebPushMock, WebPushReply};
//!
//! let mock = WebPushMock::start().await;
//! let sub = mock.subscription(); // endpoint on the mock + p256dh + auth
//! let vapid = VapidKey::generate();
//! let body = sub.keys().encrypt(b"{\"title\":\"hi\"}").unwrap();
//! let resp = reqwest::Client::new()
//!     .post(sub.endpoint())
//!     .header("authorization", vapid.authorization_for(mock.origin()))
//!     .header("ttl", "60")
//!     .header("content-encoding", "aes128gcm")
//!     .body(body)
//!     .send()
//!     .await
//!     .unwrap();
//! assert_eq!(resp.status(), 201);
//! let seen = mock.requests_to(sub.endpoint());
//! assert_eq!(seen[0].plaintext_text(), Some("{\"title\":\"hi\"}"));
//! mock.script(sub.endpoint(), [WebPushReply::Gone]); // the next push gets 410
//! # }
//! ```
//!
//! What the mock checks, in order, and what it answers when a check fails (the statuses real
//! push services use, PROTOCOLS.md §4):
//!
//! | check | answer |
//! |---|---|
//! | method is `POST` | 405 |
//! | path is a subscription the mock handed out | 404 |
//! | subscription not unsubscribed ([`WebPushMock::unsubscribe`]) | 410 |
//! | body ≤ 4096 bytes | 413 |
//! | `Authorization: vapid t=…, k=…` present and parseable | 401 |
//! | ES256 signature verifies with `k`; `aud` = the mock's origin; `exp` in the future and ≤ 24 h ahead; `sub` is `mailto:`/`https:`; `k` matches a restricted subscription's key | 403 |
//! | `TTL` present, a non-negative integer | 400 |
//! | `Urgency` one of `very-low`, `low`, `normal`, `high`; `Topic` ≤ 32 base64url chars | 400 |
//! | `Content-Encoding: aes128gcm` (when there is a body) | 400 |
//! | body decrypts with the subscription's keys (mock-only check: real services cannot) | 400 |
//! | the VAPID key differs from the message's ephemeral key (RFC 8292 §3.2) | 400 |
//!
//! Accepted pushes get `201 Created` with `Location: <origin>/m/<n>` and the `TTL` echoed.
//! Error bodies are JSON `{"code":…, "error":…, "message":…}` in the style of Mozilla autopush.

mod crypto;
mod harness;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::Request;
use tidings::PushAddress;

pub use crypto::{
    check_vapid_claims, decrypt, encrypt, encrypt_with, verify_vapid, DecryptError, Decrypted,
    EncryptError, ReceiverKeys, VapidClaims, VapidError, VapidKey, VapidToken, HEADER_LEN,
    MAX_BODY, MAX_PLAINTEXT,
};
pub use harness::WebPushHarness;

use crate::loopback::{lock, response, Bound, Journal, Loopback, Planned, Reply, Scripts};

/// A scripted answer for one subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebPushReply {
    /// Normal behaviour: validate, then `201 Created` (or the error a bad request earns).
    Accept,
    /// `404 Not Found`: the subscription expired (RFC 8030 §7.3).
    NotFound,
    /// `410 Gone`: the user unsubscribed (what FCM, Mozilla and Apple answer).
    Gone,
    /// `400 Bad Request`: bad headers or VAPID.
    BadRequest,
    /// `401 Unauthorized`: VAPID missing or invalid.
    Unauthorized,
    /// `403 Forbidden`: VAPID key not allowed for this subscription.
    Forbidden,
    /// `413 Payload Too Large`.
    PayloadTooLarge,
    /// `429 Too Many Requests`, with `Retry-After` in seconds when given.
    TooManyRequests {
        /// The `Retry-After` value.
        retry_after: Option<Duration>,
    },
    /// A 5xx answer (500, 502, 503, …), with `Retry-After` when given.
    ServerError {
        /// The status code.
        status: u16,
        /// The `Retry-After` value.
        retry_after: Option<Duration>,
    },
    /// Wait `delay`, then answer as `then`.
    Slow {
        /// How long to wait before answering.
        delay: Duration,
        /// The answer after the wait.
        then: Box<WebPushReply>,
    },
    /// Answer nothing: close the connection (HTTP/1.1) or reset the stream (HTTP/2).
    DropConnection,
}

impl WebPushReply {
    /// Wait `delay`, then answer as `then`.
    pub fn slow(delay: Duration, then: WebPushReply) -> Self {
        WebPushReply::Slow {
            delay,
            then: Box::new(then),
        }
    }
}

/// A browser-side Web Push subscription: the endpoint URL and the keys the browser keeps.
///
/// `Debug` shows only the endpoint's host: endpoints and keys are secrets.
#[derive(Clone)]
pub struct Subscription {
    endpoint: String,
    keys: ReceiverKeys,
}

impl Subscription {
    /// A subscription for `endpoint` with fresh keys, made entirely in memory (no mock needed),
    /// e.g. `Subscription::generate("https://fcm.googleapis.com/fcm/send/abc")` to register an
    /// endpoint that passes [`PushAddress::validate`].
    pub fn generate(endpoint: impl Into<String>) -> Self {
        Subscription {
            endpoint: endpoint.into(),
            keys: ReceiverKeys::generate(),
        }
    }

    /// A subscription for `endpoint` with the given keys.
    pub fn with_keys(endpoint: impl Into<String>, keys: ReceiverKeys) -> Self {
        Subscription {
            endpoint: endpoint.into(),
            keys,
        }
    }

    /// The push resource URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `p256dh`, unpadded base64url.
    pub fn p256dh(&self) -> String {
        self.keys.p256dh_base64url()
    }

    /// `auth`, unpadded base64url.
    pub fn auth(&self) -> String {
        self.keys.auth_base64url()
    }

    /// The browser's keys, private half included.
    pub fn keys(&self) -> &ReceiverKeys {
        &self.keys
    }

    /// The push address a device would register.
    pub fn address(&self) -> PushAddress {
        PushAddress::WebPush {
            endpoint: self.endpoint.clone(),
            p256dh: self.p256dh(),
            auth: self.auth(),
        }
    }

    /// What the browser's `PushSubscription.toJSON()` returns.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": { "p256dh": self.p256dh(), "auth": self.auth() },
        })
    }

    /// Decrypts a body sent to this subscription.
    pub fn decrypt(&self, body: &[u8]) -> Result<Decrypted, DecryptError> {
        self.keys.decrypt(body)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self
            .endpoint
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("");
        f.debug_struct("Subscription")
            .field("host", &host)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// One request the mock received, decoded.
#[derive(Clone)]
pub struct WebPushRequest {
    /// The subscription id (last path segment), or the whole path for unknown paths.
    pub subscription_id: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Every header, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw (encrypted) body.
    pub body: Vec<u8>,
    /// `TTL`, when present and numeric.
    pub ttl: Option<u64>,
    /// `Urgency`, when present.
    pub urgency: Option<String>,
    /// `Topic`, when present.
    pub topic: Option<String>,
    /// VAPID claims, when the header parsed and its signature verified.
    pub vapid: Option<VapidClaims>,
    /// VAPID public key (`k`, base64url), when the header parsed.
    pub vapid_public_key: Option<String>,
    /// The decrypted body, when it decrypted.
    pub decrypted: Option<Decrypted>,
    /// The status the mock answered (0 when it dropped the connection).
    pub status: u16,
    /// The `Location` the mock answered for an accepted push: the provider's message id.
    pub message_url: Option<String>,
    /// Why the mock's checks refused the request, if they did (also set when a scripted answer
    /// overrode the checks).
    pub problem: Option<String>,
}

impl WebPushRequest {
    /// A header's value (name case-insensitive), the first if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The decrypted message.
    pub fn plaintext(&self) -> Option<&[u8]> {
        self.decrypted.as_ref().map(|d| d.plaintext.as_slice())
    }

    /// The decrypted message as UTF-8 text.
    pub fn plaintext_text(&self) -> Option<&str> {
        self.plaintext().and_then(|p| std::str::from_utf8(p).ok())
    }

    /// The decrypted message parsed as JSON.
    pub fn plaintext_json(&self) -> Option<serde_json::Value> {
        self.plaintext()
            .and_then(|p| serde_json::from_slice(p).ok())
    }

    /// Whether the mock accepted it (201).
    pub fn accepted(&self) -> bool {
        self.status == 201
    }
}

impl fmt::Debug for WebPushRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                if n == "authorization" {
                    (n.as_str(), "<redacted>")
                } else {
                    (n.as_str(), v.as_str())
                }
            })
            .collect();
        f.debug_struct("WebPushRequest")
            .field("method", &self.method)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .field("ttl", &self.ttl)
            .field("vapid", &self.vapid)
            .field("plaintext", &self.plaintext().map(String::from_utf8_lossy))
            .field("status", &self.status)
            .field("problem", &self.problem)
            .finish()
    }
}

#[derive(Clone)]
struct SubState {
    keys: ReceiverKeys,
    /// Only this VAPID key may push (`applicationServerKey`).
    restricted_to: Option<Vec<u8>>,
    unsubscribed: bool,
}

struct Inner {
    origin: String,
    subs: Mutex<HashMap<String, SubState>>,
    scripts: Scripts<WebPushReply>,
    journal: Journal<WebPushRequest>,
    messages: AtomicU64,
    total: AtomicU64,
    recording: std::sync::atomic::AtomicBool,
    decrypting: std::sync::atomic::AtomicBool,
    /// Verified VAPID headers: clients reuse one token for hours, and an ES256 verification
    /// costs as much as a decryption.
    vapid_cache: Mutex<HashMap<String, Result<VapidToken, VapidError>>>,
}

/// Most VAPID headers remembered; the cache is emptied when it is full.
const VAPID_CACHE: usize = 4096;

/// The Web Push fake: an HTTP server on `127.0.0.1`, stopped when dropped.
pub struct WebPushMock {
    inner: Arc<Inner>,
    _server: Loopback,
}

impl fmt::Debug for WebPushMock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebPushMock")
            .field("origin", &self.inner.origin)
            .field("requests", &self.inner.journal.len())
            .finish()
    }
}

impl WebPushMock {
    /// Starts the mock on an ephemeral loopback port (plain HTTP; the origin is
    /// `http://127.0.0.1:<port>`). Channels under test need
    /// [`AddressPolicy::with_loopback_for_tests`](tidings::AddressPolicy::with_loopback_for_tests).
    pub async fn start() -> Self {
        let bound = Bound::new().await;
        let inner = Arc::new(Inner {
            origin: format!("http://{}", bound.addr()),
            subs: Mutex::new(HashMap::new()),
            scripts: Scripts::new(),
            journal: Journal::new(),
            messages: AtomicU64::new(0),
            total: AtomicU64::new(0),
            recording: std::sync::atomic::AtomicBool::new(true),
            decrypting: std::sync::atomic::AtomicBool::new(true),
            vapid_cache: Mutex::new(HashMap::new()),
        });
        let handler_inner = Arc::clone(&inner);
        let server = bound.serve(move |req| handle(&handler_inner, req));
        WebPushMock {
            inner,
            _server: server,
        }
    }

    /// The origin (`http://127.0.0.1:<port>`): the `aud` a VAPID token must carry.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    fn register(&self, keys: ReceiverKeys, restricted_to: Option<Vec<u8>>) -> Subscription {
        let id = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.inner.subs).insert(
            id.clone(),
            SubState {
                keys: keys.clone(),
                restricted_to,
                unsubscribed: false,
            },
        );
        Subscription::with_keys(format!("{}/push/{id}", self.inner.origin), keys)
    }

    /// A new subscription on this mock: endpoint `<origin>/push/<id>`, fresh browser keys.
    pub fn subscription(&self) -> Subscription {
        self.register(ReceiverKeys::generate(), None)
    }

    /// A new subscription with the given browser keys (e.g. RFC 8291 Appendix A's).
    pub fn subscription_with_keys(&self, keys: ReceiverKeys) -> Subscription {
        self.register(keys, None)
    }

    /// A new subscription that only accepts pushes signed with this VAPID public key (65-byte
    /// uncompressed point), as when the browser subscribed with an `applicationServerKey`;
    /// other keys get 403.
    pub fn subscription_restricted_to(&self, vapid_public_key: &[u8]) -> Subscription {
        self.register(ReceiverKeys::generate(), Some(vapid_public_key.to_vec()))
    }

    /// Marks the subscription unsubscribed: every later push to it gets `410 Gone`.
    pub fn unsubscribe(&self, endpoint: &str) {
        if let Some(s) = lock(&self.inner.subs).get_mut(&subscription_id(endpoint)) {
            s.unsubscribed = true;
        }
    }

    /// Queues answers for the next pushes to `endpoint` (one per request, in order); after
    /// them the standing answer ([`script_always`](Self::script_always)) or normal behaviour
    /// applies.
    pub fn script(&self, endpoint: &str, replies: impl IntoIterator<Item = WebPushReply>) {
        self.inner
            .scripts
            .queue(&subscription_id(endpoint), replies);
    }

    /// Sets the answer every push to `endpoint` gets once its queue is empty.
    pub fn script_always(&self, endpoint: &str, reply: WebPushReply) {
        self.inner
            .scripts
            .always(&subscription_id(endpoint), Some(reply));
    }

    /// Forgets every script.
    pub fn clear_scripts(&self) {
        self.inner.scripts.clear();
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<WebPushRequest> {
        self.inner.journal.all()
    }

    /// The requests to one endpoint.
    pub fn requests_to(&self, endpoint: &str) -> Vec<WebPushRequest> {
        let id = subscription_id(endpoint);
        self.inner.journal.filter(|r| r.subscription_id == id)
    }

    /// Waits until at least `n` requests were recorded, then returns them all. Wrap it in
    /// `tokio::time::timeout` if the test should fail rather than hang.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<WebPushRequest> {
        self.inner.journal.wait_for(n).await
    }

    /// How many requests arrived (counted even when recording is off).
    pub fn request_count(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// Forgets recorded requests.
    pub fn clear_requests(&self) {
        self.inner.journal.clear();
    }

    /// Turns recording of requests on or off (on by default); benchmarks turn it off so the
    /// journal does not grow. Checks and decryption still run.
    pub fn set_recording(&self, on: bool) {
        self.inner.recording.store(on, Ordering::Relaxed);
    }

    /// Turns decryption of bodies on or off (on by default). With it off, bodies are not
    /// checked beyond their size and `Content-Encoding`, and recorded requests carry no
    /// plaintext: for benchmarks that share the machine's cores with the mock, where one
    /// ECDH agreement per push (about as costly as the sender's encryption) would measure the
    /// mock rather than the channel.
    pub fn set_decrypting(&self, on: bool) {
        self.inner.decrypting.store(on, Ordering::Relaxed);
    }
}

/// The subscription id of an endpoint URL (its last path segment).
fn subscription_id(endpoint: &str) -> String {
    let path = endpoint.split(['?', '#']).next().unwrap_or("");
    path.rsplit('/').next().unwrap_or("").to_owned()
}

/// A refusal: status, reason, and headers.
struct Refusal {
    status: u16,
    message: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

fn refusal_response(r: &Refusal) -> hyper::Response<http_body_util::Full<Bytes>> {
    let body = serde_json::json!({
        "code": r.status,
        "error": reason_phrase(r.status),
        "message": r.message,
    })
    .to_string();
    let mut headers = Vec::new();
    if let Some(after) = r.retry_after {
        headers.push(("retry-after", after.as_secs().to_string()));
    }
    response(r.status, &headers, Some("application/json"), body)
}

fn scripted_refusal(reply: &WebPushReply) -> Option<Refusal> {
    let r = match reply {
        WebPushReply::Accept | WebPushReply::Slow { .. } | WebPushReply::DropConnection => {
            return None
        }
        WebPushReply::NotFound => Refusal::new(404, "subscription expired"),
        WebPushReply::Gone => Refusal::new(410, "subscription no longer valid"),
        WebPushReply::BadRequest => Refusal::new(400, "bad request"),
        WebPushReply::Unauthorized => Refusal::new(401, "VAPID authorization required"),
        WebPushReply::Forbidden => Refusal::new(403, "VAPID key not allowed"),
        WebPushReply::PayloadTooLarge => Refusal::new(413, "payload too large"),
        WebPushReply::TooManyRequests { retry_after } => Refusal {
            retry_after: *retry_after,
            ..Refusal::new(429, "too many requests")
        },
        WebPushReply::ServerError {
            status,
            retry_after,
        } => Refusal {
            retry_after: *retry_after,
            ..Refusal::new(*status, "push service error")
        },
    };
    Some(r)
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 32
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn verify_cached(inner: &Inner, authorization: &str) -> Result<VapidToken, VapidError> {
    if let Some(hit) = lock(&inner.vapid_cache).get(authorization) {
        return hit.clone();
    }
    let verdict = verify_vapid(authorization);
    let mut cache = lock(&inner.vapid_cache);
    if cache.len() >= VAPID_CACHE {
        cache.clear();
    }
    cache.insert(authorization.to_owned(), verdict.clone());
    verdict
}

fn handle(inner: &Inner, req: Request<Bytes>) -> Planned {
    inner.total.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    let id = path
        .strip_prefix("/push/")
        .map(str::to_owned)
        .unwrap_or_else(|| path.clone());
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let body = req.body();
    let sub = lock(&inner.subs).get(&id).cloned();

    let vapid = header("authorization").map(|h| verify_cached(inner, h));
    let ttl_header = header("ttl");
    let ttl = ttl_header.and_then(|t| t.trim().parse::<u64>().ok());
    let decrypted = match &sub {
        Some(s) if !body.is_empty() && inner.decrypting.load(Ordering::Relaxed) => {
            Some(s.keys.decrypt(body))
        }
        _ => None,
    };

    let verdict = check(
        inner,
        &req,
        sub.as_ref(),
        vapid.as_ref(),
        ttl_header,
        ttl,
        decrypted.as_ref(),
    );
    let scripted = if sub.is_some() {
        inner.scripts.next(&id)
    } else {
        None
    };
    let (delay, effective) = match scripted {
        Some(WebPushReply::Slow { delay, then }) => (Some(delay), *then),
        Some(other) => (None, other),
        None => (None, WebPushReply::Accept),
    };

    let mut record = WebPushRequest {
        subscription_id: id,
        method: req.method().as_str().to_owned(),
        path,
        headers,
        body: body.to_vec(),
        ttl,
        urgency: header("urgency").map(str::to_owned),
        topic: header("topic").map(str::to_owned),
        vapid: vapid
            .as_ref()
            .and_then(|v| v.as_ref().ok())
            .map(|t| t.claims.clone()),
        vapid_public_key: vapid
            .as_ref()
            .and_then(|v| v.as_ref().ok())
            .map(|t| crypto::b64url(&t.public_key)),
        decrypted: decrypted.and_then(Result::ok),
        status: 0,
        message_url: None,
        problem: verdict.as_ref().err().map(|r| r.message.clone()),
    };

    let reply = if effective == WebPushReply::DropConnection {
        record.problem = Some("connection dropped (scripted)".into());
        Reply::Drop
    } else if let Some(refusal) = scripted_refusal(&effective) {
        record.status = refusal.status;
        record.problem = Some(format!("scripted: {}", refusal.message));
        Reply::Respond(refusal_response(&refusal))
    } else {
        match verdict {
            Err(refusal) => {
                record.status = refusal.status;
                Reply::Respond(refusal_response(&refusal))
            }
            Ok(()) => {
                let n = inner.messages.fetch_add(1, Ordering::Relaxed) + 1;
                let location = format!("{}/m/{n}", inner.origin);
                record.status = 201;
                record.message_url = Some(location.clone());
                let echo_ttl = ttl.unwrap_or(0).to_string();
                Reply::Respond(response(
                    201,
                    &[("location", location), ("ttl", echo_ttl)],
                    None,
                    Bytes::new(),
                ))
            }
        }
    };
    if inner.recording.load(Ordering::Relaxed) {
        inner.journal.push(record);
    }
    Planned { delay, reply }
}

fn check(
    inner: &Inner,
    req: &Request<Bytes>,
    sub: Option<&SubState>,
    vapid: Option<&Result<VapidToken, VapidError>>,
    ttl_header: Option<&str>,
    ttl: Option<u64>,
    decrypted: Option<&Result<Decrypted, DecryptError>>,
) -> Result<(), Refusal> {
    if req.method() != hyper::Method::POST {
        return Err(Refusal::new(405, "only POST is allowed on a push resource"));
    }
    let Some(sub) = sub else {
        return Err(Refusal::new(404, "no such subscription"));
    };
    if sub.unsubscribed {
        return Err(Refusal::new(410, "subscription no longer valid"));
    }
    let body = req.body();
    if body.len() > MAX_BODY {
        return Err(Refusal::new(
            413,
            format!("body is {} bytes; the limit is {MAX_BODY}", body.len()),
        ));
    }
    let token = match vapid {
        None => return Err(Refusal::new(401, "missing VAPID Authorization header")),
        Some(Err(e @ VapidError::Malformed(_))) => return Err(Refusal::new(401, e.to_string())),
        Some(Err(e)) => return Err(Refusal::new(403, e.to_string())),
        Some(Ok(t)) => t,
    };
    check_vapid_claims(&token.claims, &inner.origin, crypto::unix_now())
        .map_err(|e| Refusal::new(403, e.to_string()))?;
    if let Some(allowed) = &sub.restricted_to {
        if *allowed != token.public_key {
            return Err(Refusal::new(
                403,
                "VAPID key does not match the subscription's applicationServerKey",
            ));
        }
    }
    match (ttl_header, ttl) {
        (None, _) => return Err(Refusal::new(400, "missing TTL header")),
        (Some(raw), None) => {
            return Err(Refusal::new(
                400,
                format!("TTL {raw:?} is not a non-negative integer"),
            ))
        }
        _ => {}
    }
    let urgency: Vec<_> = req.headers().get_all("urgency").iter().collect();
    if urgency.len() > 1 {
        return Err(Refusal::new(400, "more than one Urgency header"));
    }
    if let Some(u) = urgency.first() {
        let ok = matches!(
            u.to_str().unwrap_or(""),
            "very-low" | "low" | "normal" | "high"
        );
        if !ok {
            return Err(Refusal::new(
                400,
                "Urgency must be very-low, low, normal or high",
            ));
        }
    }
    if let Some(topic) = req.headers().get("topic") {
        if !valid_topic(topic.to_str().unwrap_or("")) {
            return Err(Refusal::new(
                400,
                "Topic must be 1 to 32 characters of the base64url alphabet",
            ));
        }
    }
    if body.is_empty() {
        return Ok(());
    }
    let encoding = req
        .headers()
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !encoding.eq_ignore_ascii_case("aes128gcm") {
        return Err(Refusal::new(
            400,
            format!("Content-Encoding {encoding:?} is not aes128gcm"),
        ));
    }
    match decrypted {
        Some(Ok(d)) => {
            if d.sender_public_key == token.public_key {
                return Err(Refusal::new(
                    400,
                    "the VAPID key must differ from the message's ECDH key",
                ));
            }
            Ok(())
        }
        Some(Err(e)) => Err(Refusal::new(
            400,
            format!("body does not decrypt with the subscription's keys: {e}"),
        )),
        None => Ok(()),
    }
}
