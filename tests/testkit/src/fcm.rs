//! A loopback fake of FCM HTTP v1 and Google's OAuth token endpoint, PROTOCOLS.md §2.
//!
//! [`FcmMock::start`] (or [`FcmMock::builder`]) binds 127.0.0.1 on an ephemeral port and serves,
//! over plain HTTP/1.1 and HTTP/2 (h2c):
//!
//! - `POST /token`: the OAuth 2 JWT-bearer grant. It verifies the RS256 assertion of a
//!   registered [`ServiceAccount`] (issuer, audience = [`FcmMock::token_uri`], scope, `iat` /
//!   `exp`) and issues bearer tokens that expire on the mock's clock.
//! - `POST /v1/projects/{project}/messages:send`: checks the bearer token and the message the
//!   way FCM does (one target, string data values, size, TTL format) and answers FCM-shaped
//!   error bodies; success is `{"name": "projects/{project}/messages/{id}"}`.
//!
//! Every request is recorded ([`FcmMock::requests`], [`FcmMock::token_requests`]); replies can
//! be scripted per registration token ([`FcmMock::script`]). Dropping the mock stops it.
//!
//! See `docs/mocks-apns-fcm.md` in the crate for a walk-through.

use crate::gateway;
mod keys;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};

pub use self::keys::{ServiceAccount, CLOUD_PLATFORM_SCOPE, MESSAGING_SCOPE};

use crate::gateway::{
    json_response, lock, read_body, Body, Clock, Conn, Handler, Jwt, Recorder, Scripts,
    ServerHandle, VerifyCache,
};

/// Largest message, in bytes (the mock measures the compact JSON of `message` without its
/// target field).
pub const MAX_MESSAGE: usize = 4096;
/// Longest Android TTL, in seconds (4 weeks).
pub const MAX_ANDROID_TTL_SECS: u64 = 2_419_200;
/// Default lifetime of issued access tokens.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The JWT-bearer grant type.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// An FCM `errorCode` (PROTOCOLS.md §2.5), with its HTTP status and canonical status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FcmErrorCode {
    /// No more information (FCM documents no status; the mock answers 500 `UNKNOWN`).
    UnspecifiedError,
    /// 400: bad parameter (malformed token, message too big, reserved key, bad TTL, ...).
    InvalidArgument,
    /// 404: the app instance is unregistered.
    Unregistered,
    /// 403: the token belongs to another sender.
    SenderIdMismatch,
    /// 429: a rate limit was exceeded.
    QuotaExceeded,
    /// 503: overloaded.
    Unavailable,
    /// 500: internal error.
    Internal,
    /// 401: the project's APNs / Web Push credentials are missing or invalid.
    ThirdPartyAuthError,
}

impl FcmErrorCode {
    /// Every code.
    pub const ALL: [FcmErrorCode; 8] = [
        FcmErrorCode::UnspecifiedError,
        FcmErrorCode::InvalidArgument,
        FcmErrorCode::Unregistered,
        FcmErrorCode::SenderIdMismatch,
        FcmErrorCode::QuotaExceeded,
        FcmErrorCode::Unavailable,
        FcmErrorCode::Internal,
        FcmErrorCode::ThirdPartyAuthError,
    ];

    /// The `errorCode` string.
    pub const fn as_str(self) -> &'static str {
        match self {
            FcmErrorCode::UnspecifiedError => "UNSPECIFIED_ERROR",
            FcmErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            FcmErrorCode::Unregistered => "UNREGISTERED",
            FcmErrorCode::SenderIdMismatch => "SENDER_ID_MISMATCH",
            FcmErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            FcmErrorCode::Unavailable => "UNAVAILABLE",
            FcmErrorCode::Internal => "INTERNAL",
            FcmErrorCode::ThirdPartyAuthError => "THIRD_PARTY_AUTH_ERROR",
        }
    }

    /// The HTTP status.
    pub const fn http_status(self) -> u16 {
        match self {
            FcmErrorCode::UnspecifiedError | FcmErrorCode::Internal => 500,
            FcmErrorCode::InvalidArgument => 400,
            FcmErrorCode::Unregistered => 404,
            FcmErrorCode::SenderIdMismatch => 403,
            FcmErrorCode::QuotaExceeded => 429,
            FcmErrorCode::Unavailable => 503,
            FcmErrorCode::ThirdPartyAuthError => 401,
        }
    }

    /// The canonical (`google.rpc.Code`) status name in `error.status`.
    pub const fn canonical_status(self) -> &'static str {
        match self {
            FcmErrorCode::UnspecifiedError => "UNKNOWN",
            FcmErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            FcmErrorCode::Unregistered => "NOT_FOUND",
            FcmErrorCode::SenderIdMismatch => "PERMISSION_DENIED",
            FcmErrorCode::QuotaExceeded => "RESOURCE_EXHAUSTED",
            FcmErrorCode::Unavailable => "UNAVAILABLE",
            FcmErrorCode::Internal => "INTERNAL",
            FcmErrorCode::ThirdPartyAuthError => "UNAUTHENTICATED",
        }
    }

    fn default_message(self) -> &'static str {
        match self {
            FcmErrorCode::UnspecifiedError => "Unknown error.",
            FcmErrorCode::InvalidArgument => {
                "The registration token is not a valid FCM registration token"
            }
            FcmErrorCode::Unregistered => "Requested entity was not found.",
            FcmErrorCode::SenderIdMismatch => "SenderId mismatch",
            FcmErrorCode::QuotaExceeded => "Quota exceeded for this project or device.",
            FcmErrorCode::Unavailable => "The service is currently unavailable.",
            FcmErrorCode::Internal => "Internal error encountered.",
            FcmErrorCode::ThirdPartyAuthError => "Auth error from APNS or Web Push Service",
        }
    }
}

impl fmt::Display for FcmErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scripted answer for a registration token (or, for topic and condition messages, the
/// topic name or condition string). Scripts apply to requests that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FcmReply {
    /// 200 `{"name": "projects/{p}/messages/{id}"}` (the default).
    Accept,
    /// The code's status and FCM error body (with the `FcmError` detail).
    Error(FcmErrorCode),
    /// Like [`Error`](Self::Error) plus `Retry-After` in whole seconds (FCM sends it with
    /// `UNAVAILABLE` and may with `QUOTA_EXCEEDED`).
    RetryAfter {
        /// Usually [`FcmErrorCode::Unavailable`] or [`FcmErrorCode::QuotaExceeded`].
        code: FcmErrorCode,
        /// The hint.
        after: Duration,
    },
    /// 401 `UNAUTHENTICATED` as for an expired access token (no `FcmError` detail).
    Unauthenticated,
    /// Waits `delay` (real time), then answers `then`.
    Delay {
        /// How long to hold the response.
        delay: Duration,
        /// What to answer afterwards.
        then: Box<FcmReply>,
    },
    /// Closes the TCP connection without answering.
    DropConnection,
    /// HTTP/2: sends GOAWAY and resets this stream; HTTP/1.1: closes after this exchange
    /// without answering it.
    GoAway,
}

impl FcmReply {
    /// Accepts after `delay` (a slow provider; for timeout tests).
    pub fn slow(delay: Duration) -> FcmReply {
        FcmReply::Delay {
            delay,
            then: Box::new(FcmReply::Accept),
        }
    }
}

/// Headers as recorded: names lower-case.
fn collect_headers(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn redacted_headers(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| {
            let v = if n == "authorization" {
                "<redacted>"
            } else {
                v.as_str()
            };
            (n.as_str(), v)
        })
        .collect()
}

/// One `messages:send` request the mock received, with what it answered.
#[derive(Clone)]
pub struct FcmRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The project from the path (empty if the path did not match).
    pub project: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Bytes,
    /// The body as JSON (`{"message": ..., "validate_only": ...}`), if it is JSON.
    pub json: Option<Value>,
    /// Status answered; `None` if the connection was dropped or sent GOAWAY instead.
    pub status: Option<u16>,
    /// Canonical status of an error answer (`INVALID_ARGUMENT`, `UNAUTHENTICATED`, ...).
    pub error_status: Option<String>,
    /// `FcmError` code of an error answer, if it carried one.
    pub error_code: Option<FcmErrorCode>,
    /// The message name answered on success.
    pub message_name: Option<String>,
}

impl fmt::Debug for FcmRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut json = self.json.clone();
        if let Some(token) = json
            .as_mut()
            .and_then(|j| j.get_mut("message"))
            .and_then(|m| m.get_mut("token"))
        {
            *token = Value::String("<redacted>".into());
        }
        f.debug_struct("FcmRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &redacted_headers(&self.headers))
            .field("json", &json)
            .field("status", &self.status)
            .field("error_status", &self.error_status)
            .field("error_code", &self.error_code)
            .field("message_name", &self.message_name)
            .finish()
    }
}

impl FcmRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `message` object.
    pub fn message(&self) -> Option<&Value> {
        self.json.as_ref().and_then(|j| j.get("message"))
    }

    fn message_str(&self, field: &str) -> Option<&str> {
        self.message()
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
    }

    /// `message.token`.
    pub fn token(&self) -> Option<&str> {
        self.message_str("token")
    }

    /// `message.topic`.
    pub fn topic(&self) -> Option<&str> {
        self.message_str("topic")
    }

    /// `message.condition`.
    pub fn condition(&self) -> Option<&str> {
        self.message_str("condition")
    }

    /// `message.data` as a map of strings (non-string values are left out).
    pub fn data(&self) -> HashMap<String, String> {
        self.message()
            .and_then(|m| m.get("data"))
            .and_then(Value::as_object)
            .map(|d| {
                d.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `message.android.ttl` as sent (e.g. `"3600s"`).
    pub fn android_ttl(&self) -> Option<&str> {
        self.message()
            .and_then(|m| m.get("android"))
            .and_then(|a| a.get("ttl"))
            .and_then(Value::as_str)
    }

    /// `validate_only`.
    pub fn validate_only(&self) -> bool {
        self.json
            .as_ref()
            .and_then(|j| j.get("validate_only").or_else(|| j.get("validateOnly")))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// Whether the mock answered 200.
    pub fn accepted(&self) -> bool {
        self.status == Some(200)
    }
}

/// One `POST /token` request, with what the mock answered.
#[derive(Clone, Debug)]
pub struct FcmTokenRequest {
    /// The `grant_type` form field.
    pub grant_type: Option<String>,
    /// The assertion's `iss`, if it decoded.
    pub issuer: Option<String>,
    /// The assertion's `scope`, if it decoded.
    pub scope: Option<String>,
    /// Status answered.
    pub status: u16,
    /// OAuth `error` of a refusal (`invalid_grant`, ...).
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
struct Account {
    project_id: String,
    public: Arc<[u8]>,
}

#[derive(Clone, Debug)]
struct AccessToken {
    project_id: String,
    expires_at: i64,
    messaging_scope: bool,
}

#[derive(Clone, Debug)]
struct VerifiedAssertion {
    project_id: String,
    scope: String,
    iat: i64,
    exp: i64,
}

/// An OAuth refusal: status, `error`, `error_description`.
#[derive(Clone, Debug)]
struct OAuthError(u16, &'static str, String);

struct FcmState {
    token_uri: String,
    accounts: Mutex<HashMap<String, Account>>,
    tokens: Mutex<HashMap<String, AccessToken>>,
    token_lifetime_secs: AtomicU64,
    assertion_cache: VerifyCache<Result<VerifiedAssertion, OAuthError>>,
    scripts: Scripts<FcmReply>,
    recorder: Recorder<FcmRequest>,
    token_recorder: Recorder<FcmTokenRequest>,
    clock: Clock,
    next_id: AtomicU64,
}

/// Builds an [`FcmMock`].
#[derive(Debug, Default)]
pub struct FcmMockBuilder {
    token_lifetime: Option<Duration>,
}

impl FcmMockBuilder {
    /// Lifetime of issued access tokens (`expires_in`); default one hour.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = Some(lifetime);
        self
    }

    /// Starts the server.
    pub async fn start(self) -> FcmMock {
        let listener = gateway::bind_loopback().await;
        let addr = listener
            .local_addr()
            .expect("local address of a bound listener");
        let state = Arc::new(FcmState {
            token_uri: format!("http://{addr}/token"),
            accounts: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_lifetime_secs: AtomicU64::new(
                self.token_lifetime
                    .unwrap_or(DEFAULT_TOKEN_LIFETIME)
                    .as_secs(),
            ),
            assertion_cache: VerifyCache::new(),
            scripts: Scripts::new(),
            recorder: Recorder::new(),
            token_recorder: Recorder::new(),
            clock: Clock::default(),
            next_id: AtomicU64::new(1),
        });
        let server = gateway::serve(
            listener,
            false,
            |stream| async move { Ok(stream) },
            Arc::clone(&state),
        );
        FcmMock { state, server }
    }
}

/// A running FCM fake. Stops when dropped.
pub struct FcmMock {
    state: Arc<FcmState>,
    server: ServerHandle,
}

impl fmt::Debug for FcmMock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmMock")
            .field("addr", &self.server.addr())
            .field("requests", &self.state.recorder.count())
            .finish()
    }
}

impl FcmMock {
    /// Starts a mock with no service account yet ([`service_account`](Self::service_account)).
    pub async fn start() -> FcmMock {
        Self::builder().start().await
    }

    /// A builder for the token lifetime.
    pub fn builder() -> FcmMockBuilder {
        FcmMockBuilder::default()
    }

    /// The bound address (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:{port}`, to use in place of `https://fcm.googleapis.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The token endpoint, to use in place of `https://oauth2.googleapis.com/token`.
    pub fn token_uri(&self) -> &str {
        &self.state.token_uri
    }

    /// The send URL of `project`.
    pub fn send_url(&self, project: &str) -> String {
        format!("{}/v1/projects/{project}/messages:send", self.base_url())
    }

    /// A new service account of `project` whose `token_uri` is this mock, registered with it.
    pub fn service_account(&self, project: &str) -> ServiceAccount {
        let account = ServiceAccount::generate(project, self.token_uri());
        self.register_service_account(&account);
        account
    }

    /// Registers a service account (its public key): its assertions then verify.
    pub fn register_service_account(&self, account: &ServiceAccount) {
        lock(&self.state.accounts).insert(
            account.client_email().to_owned(),
            Account {
                project_id: account.project_id().to_owned(),
                public: Arc::from(account.public_key_pkcs1()),
            },
        );
        self.state.assertion_cache.clear();
    }

    /// Forgets a service account (deleted or key revoked): its assertions are refused and the
    /// access tokens it obtained stop working.
    pub fn remove_service_account(&self, client_email: &str) {
        let removed = lock(&self.state.accounts).remove(client_email);
        if let Some(account) = removed {
            lock(&self.state.tokens).retain(|_, t| t.project_id != account.project_id);
        }
        self.state.assertion_cache.clear();
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state
            .token_lifetime_secs
            .store(lifetime.as_secs(), Ordering::Relaxed);
    }

    /// Makes every access token issued so far invalid (the next send gets 401
    /// `UNAUTHENTICATED`; a fresh token works).
    pub fn expire_access_tokens(&self) {
        lock(&self.state.tokens).clear();
    }

    /// Revokes one access token.
    pub fn revoke_access_token(&self, access_token: &str) {
        lock(&self.state.tokens).remove(access_token);
    }

    /// How many access tokens are currently valid.
    pub fn live_access_tokens(&self) -> usize {
        let now = self.state.clock.now_secs();
        lock(&self.state.tokens)
            .values()
            .filter(|t| t.expires_at > now)
            .count()
    }

    /// The mock's now, seconds since the UNIX epoch (use it as assertion `iat`).
    pub fn now(&self) -> i64 {
        self.state.clock.now_secs()
    }

    /// Moves the mock's clock forward (expires access tokens without sleeping).
    pub fn advance_clock(&self, by: Duration) {
        self.state.clock.advance(by);
    }

    /// Sets the mock's clock to `unix_secs`.
    pub fn set_now(&self, unix_secs: i64) {
        self.state.clock.set_now(unix_secs);
    }

    /// Every request to `address` (registration token, topic or condition) gets `reply` (after
    /// any one-shot replies).
    pub fn script(&self, address: &str, reply: FcmReply) {
        self.state.scripts.always(address, reply);
    }

    /// The next request to `address` gets `reply`; one-shot replies queue in order.
    pub fn script_once(&self, address: &str, reply: FcmReply) {
        self.state.scripts.once(address, reply);
    }

    /// Forgets the scripts of one address.
    pub fn clear_script(&self, address: &str) {
        self.state.scripts.clear(address);
    }

    /// Forgets every script.
    pub fn clear_scripts(&self) {
        self.state.scripts.clear_all();
    }

    /// Every `messages:send` request recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<FcmRequest> {
        self.state.recorder.snapshot()
    }

    /// The recorded sends to registration token `token`.
    pub fn requests_for(&self, token: &str) -> Vec<FcmRequest> {
        self.state.recorder.filtered(|r| r.token() == Some(token))
    }

    /// Waits until at least `n` sends are recorded and returns them all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<FcmRequest> {
        self.state.recorder.wait_for(n).await
    }

    /// How many sends arrived (also counted while recording is off).
    pub fn request_count(&self) -> u64 {
        self.state.recorder.count()
    }

    /// Every token-endpoint request recorded so far.
    pub fn token_requests(&self) -> Vec<FcmTokenRequest> {
        self.state.token_recorder.snapshot()
    }

    /// Waits until at least `n` token requests are recorded and returns them all.
    pub async fn wait_for_token_requests(&self, n: usize) -> Vec<FcmTokenRequest> {
        self.state.token_recorder.wait_for(n).await
    }

    /// How many token requests arrived.
    pub fn token_request_count(&self) -> u64 {
        self.state.token_recorder.count()
    }

    /// Forgets recorded sends and token requests.
    pub fn clear_requests(&self) {
        self.state.recorder.clear();
        self.state.token_recorder.clear();
    }

    /// Turns request recording on or off (off for benchmarks: memory stays flat).
    pub fn set_recording(&self, on: bool) {
        self.state.recorder.set_enabled(on);
        self.state.token_recorder.set_enabled(on);
    }
}

/// A Google API error body.
fn api_error(status: u16, canonical: &str, message: &str, details: Vec<Value>) -> Value {
    json!({"error": {"code": status, "message": message, "status": canonical, "details": details}})
}

fn fcm_error_detail(code: FcmErrorCode) -> Value {
    json!({"@type": FCM_ERROR_TYPE, "errorCode": code.as_str()})
}

/// What a send is refused with.
#[derive(Debug)]
struct Refusal {
    status: u16,
    canonical: &'static str,
    message: String,
    code: Option<FcmErrorCode>,
    details: Vec<Value>,
    headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn fcm(code: FcmErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status: code.http_status(),
            canonical: code.canonical_status(),
            message: message.into(),
            code: Some(code),
            details: vec![fcm_error_detail(code)],
            headers: Vec::new(),
        }
    }

    fn bad_request(field: &str, message: impl Into<String>) -> Refusal {
        let message = message.into();
        Refusal {
            status: 400,
            canonical: "INVALID_ARGUMENT",
            details: vec![json!({
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [{"field": field, "description": message}],
            })],
            message,
            code: None,
            headers: Vec::new(),
        }
    }

    fn unauthenticated() -> Refusal {
        Refusal {
            status: 401,
            canonical: "UNAUTHENTICATED",
            message: "Request had invalid authentication credentials. Expected OAuth 2 access \
                      token, login cookie or other valid authentication credential."
                .into(),
            code: None,
            details: Vec::new(),
            headers: vec![(
                "www-authenticate",
                "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"".into(),
            )],
        }
    }

    fn permission_denied(message: String) -> Refusal {
        Refusal {
            status: 403,
            canonical: "PERMISSION_DENIED",
            message,
            code: None,
            details: Vec::new(),
            headers: Vec::new(),
        }
    }

    fn response(&self) -> Response<Body> {
        json_response(
            self.status,
            &api_error(
                self.status,
                self.canonical,
                &self.message,
                self.details.clone(),
            ),
            &self.headers,
        )
    }
}

const TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                         reasonable timeframe. Check your iat and exp values in the JWT claim.";

fn is_reserved_data_key(key: &str) -> bool {
    key == "from" || key == "message_type" || key.starts_with("google.") || key.starts_with("gcm.")
}

/// Parses a protobuf Duration JSON string: digits, optional fraction of up to 9 digits, `s`.
fn parse_duration_secs(text: &str) -> Option<f64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f) || f.len() > 9) {
        return None;
    }
    number.parse().ok()
}

fn check_string_map(map: &Value, field: &str) -> Result<(), Refusal> {
    let Some(map) = map.as_object() else {
        return Err(Refusal::bad_request(
            field,
            format!("Invalid value at '{field}' (type.googleapis.com/google.protobuf.Map), not an object"),
        ));
    };
    for (index, (key, value)) in map.iter().enumerate() {
        if !value.is_string() {
            let field = format!("{field}[{index}].value");
            return Err(Refusal::bad_request(
                &field,
                format!("Invalid value at '{field}' (TYPE_STRING), {value}"),
            ));
        }
        if is_reserved_data_key(key) {
            return Err(Refusal::fcm(
                FcmErrorCode::InvalidArgument,
                format!("Invalid data payload key: {key}"),
            ));
        }
    }
    Ok(())
}

/// Validates a `message`; returns the script address (token, topic or condition).
fn check_message(message: &Value) -> Result<String, Refusal> {
    let Some(object) = message.as_object() else {
        return Err(Refusal::bad_request(
            "message",
            "Invalid value at 'message', expected an object",
        ));
    };
    let targets: Vec<&str> = ["token", "topic", "condition"]
        .into_iter()
        .filter(|t| object.contains_key(*t))
        .collect();
    match targets.as_slice() {
        [] => {
            return Err(Refusal::fcm(
                FcmErrorCode::InvalidArgument,
                "Recipient of the message is not set.",
            ))
        }
        [_] => {}
        [_, second, ..] => {
            return Err(Refusal::bad_request(
                &format!("message.{second}"),
                format!(
                    "Invalid JSON payload received. Oneof field 'target' is already set. \
                     Cannot set '{second}'"
                ),
            ))
        }
    }
    let target = targets[0];
    let Some(address) = object.get(target).and_then(Value::as_str) else {
        let field = format!("message.{target}");
        return Err(Refusal::bad_request(
            &field,
            format!("Invalid value at '{field}' (TYPE_STRING)"),
        ));
    };
    if target == "token" && (address.is_empty() || !address.bytes().all(|b| b.is_ascii_graphic())) {
        return Err(Refusal::fcm(
            FcmErrorCode::InvalidArgument,
            FcmErrorCode::InvalidArgument.default_message(),
        ));
    }
    if target == "topic" && (address.is_empty() || address.starts_with("/topics/")) {
        return Err(Refusal::fcm(
            FcmErrorCode::InvalidArgument,
            "Invalid topic name: a topic is a bare name without the /topics/ prefix",
        ));
    }
    if let Some(data) = object.get("data") {
        check_string_map(data, "message.data")?;
    }
    if let Some(android) = object.get("android") {
        if let Some(data) = android.get("data") {
            check_string_map(data, "message.android.data")?;
        }
        if let Some(ttl) = android.get("ttl") {
            let text = ttl.as_str().unwrap_or_default();
            let Some(secs) = parse_duration_secs(text) else {
                return Err(Refusal::bad_request(
                    "message.android.ttl",
                    format!(
                        "Invalid value at 'message.android.ttl' \
                         (type.googleapis.com/google.protobuf.Duration), {ttl}"
                    ),
                ));
            };
            if secs > MAX_ANDROID_TTL_SECS as f64 {
                return Err(Refusal::fcm(
                    FcmErrorCode::InvalidArgument,
                    "The message TTL must be between 0 and 2419200 seconds (4 weeks)",
                ));
            }
        }
        if let Some(priority) = android.get("priority") {
            let ok = priority
                .as_str()
                .is_some_and(|p| ["normal", "high", "NORMAL", "HIGH"].contains(&p));
            if !ok {
                return Err(Refusal::bad_request(
                    "message.android.priority",
                    format!(
                        "Invalid value at 'message.android.priority' \
                         (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), \
                         {priority}"
                    ),
                ));
            }
        }
    }
    if let Some(data) = object.get("webpush").and_then(|w| w.get("data")) {
        check_string_map(data, "message.webpush.data")?;
    }
    let mut sized = object.clone();
    for t in ["token", "topic", "condition", "name"] {
        sized.remove(t);
    }
    let size = serde_json::to_vec(&sized).map(|v| v.len()).unwrap_or(0);
    if size > MAX_MESSAGE {
        return Err(Refusal::fcm(
            FcmErrorCode::InvalidArgument,
            format!("Message is too big: {size} bytes, the limit is {MAX_MESSAGE}"),
        ));
    }
    Ok(address.to_owned())
}

fn oauth_response(error: &OAuthError) -> Response<Body> {
    json_response(
        error.0,
        &json!({"error": error.1, "error_description": error.2}),
        &[],
    )
}

impl FcmState {
    fn verify_assertion(&self, assertion: &str) -> Result<VerifiedAssertion, OAuthError> {
        let invalid = |d: &str| OAuthError(400, "invalid_grant", d.to_owned());
        let jwt = Jwt::parse(assertion).ok_or_else(|| invalid("Invalid JWT: malformed token."))?;
        if jwt.header.get("alg").and_then(Value::as_str) != Some("RS256") {
            return Err(invalid("Invalid JWT Signature."));
        }
        let claim = |name: &str| jwt.claims.get(name).and_then(Value::as_str);
        let issuer = claim("iss").ok_or_else(|| invalid("Invalid JWT: no issuer."))?;
        let account = lock(&self.accounts)
            .get(issuer)
            .cloned()
            .ok_or_else(|| invalid("Invalid grant: account not found"))?;
        if !keys::verify_rs256(
            &account.public,
            jwt.signing_input.as_bytes(),
            &jwt.signature,
        ) {
            return Err(invalid("Invalid JWT Signature."));
        }
        let aud = claim("aud").unwrap_or_default();
        if aud != self.token_uri {
            return Err(invalid(&format!(
                "Invalid JWT: Failed audience check. The expected value was {} but the actual \
                 value was {aud}",
                self.token_uri
            )));
        }
        let scope = claim("scope").unwrap_or_default().to_owned();
        if scope.trim().is_empty() {
            return Err(OAuthError(
                400,
                "invalid_scope",
                "Empty or missing scope not allowed.".into(),
            ));
        }
        let time = |name: &str| jwt.claims.get(name).and_then(Value::as_i64);
        let (Some(iat), Some(exp)) = (time("iat"), time("exp")) else {
            return Err(invalid(TIMEFRAME));
        };
        if exp <= iat || exp - iat > 3600 {
            return Err(invalid(TIMEFRAME));
        }
        Ok(VerifiedAssertion {
            project_id: account.project_id,
            scope,
            iat,
            exp,
        })
    }

    fn token_grant(&self, body: &[u8], rec: &mut FcmTokenRequest) -> Result<Value, OAuthError> {
        let form: HashMap<String, String> =
            url::form_urlencoded::parse(body).into_owned().collect();
        rec.grant_type = form.get("grant_type").cloned();
        let grant_type = form.get("grant_type").map(String::as_str).unwrap_or("");
        if grant_type != JWT_BEARER_GRANT {
            return Err(OAuthError(
                400,
                "unsupported_grant_type",
                format!("Invalid grant_type: {grant_type}"),
            ));
        }
        let assertion = form.get("assertion").ok_or_else(|| {
            OAuthError(
                400,
                "invalid_request",
                "Missing required parameter: assertion".into(),
            )
        })?;
        if let Some(jwt) = Jwt::parse(assertion) {
            let claim = |n: &str| jwt.claims.get(n).and_then(Value::as_str).map(str::to_owned);
            rec.issuer = claim("iss");
            rec.scope = claim("scope");
        }
        let verified = self
            .assertion_cache
            .get_or(assertion, || self.verify_assertion(assertion))?;
        let now = self.clock.now_secs();
        // Google allows a few minutes of clock skew.
        if verified.iat > now + 300 || verified.exp < now - 300 {
            return Err(OAuthError(400, "invalid_grant", TIMEFRAME.into()));
        }
        let messaging_scope = verified
            .scope
            .split_whitespace()
            .any(|s| s == MESSAGING_SCOPE || s == CLOUD_PLATFORM_SCOPE);
        let lifetime = self.token_lifetime_secs.load(Ordering::Relaxed);
        let access_token = format!("ya29.mock-{}", uuid::Uuid::new_v4().simple());
        lock(&self.tokens).insert(
            access_token.clone(),
            AccessToken {
                project_id: verified.project_id,
                expires_at: now + lifetime as i64,
                messaging_scope,
            },
        );
        Ok(json!({
            "access_token": access_token,
            "expires_in": lifetime,
            "token_type": "Bearer",
        }))
    }

    fn check_send(
        &self,
        headers: &hyper::HeaderMap,
        project: &str,
        json: Option<&Value>,
    ) -> Result<String, Refusal> {
        let token = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.get(..7)
                    .filter(|p| p.eq_ignore_ascii_case("bearer "))
                    .map(|_| v[7..].trim())
            })
            .ok_or_else(Refusal::unauthenticated)?;
        let access = lock(&self.tokens)
            .get(token)
            .cloned()
            .ok_or_else(Refusal::unauthenticated)?;
        if access.expires_at <= self.clock.now_secs() {
            return Err(Refusal::unauthenticated());
        }
        if !access.messaging_scope {
            return Err(Refusal::permission_denied(
                "Request had insufficient authentication scopes.".into(),
            ));
        }
        if access.project_id != project {
            return Err(Refusal::permission_denied(format!(
                "Permission 'cloudmessaging.messages.create' denied on resource \
                 '//cloudresourcemanager.googleapis.com/projects/{project}' (or it may not exist)."
            )));
        }
        let json = json.ok_or_else(|| {
            Refusal::bad_request("", "Invalid JSON payload received. Unexpected token.")
        })?;
        let message = json
            .get("message")
            .ok_or_else(|| Refusal::bad_request("message", "Missing required field: message"))?;
        check_message(message)
    }

    async fn handle_token(&self, method: &hyper::Method, body: Bytes) -> Response<Body> {
        let mut rec = FcmTokenRequest {
            grant_type: None,
            issuer: None,
            scope: None,
            status: 200,
            error: None,
        };
        let result = if method == hyper::Method::POST {
            self.token_grant(&body, &mut rec)
        } else {
            Err(OAuthError(
                405,
                "invalid_request",
                "The token endpoint takes POST".into(),
            ))
        };
        let response = match result {
            Ok(body) => json_response(200, &body, &[("cache-control", "no-store".into())]),
            Err(error) => {
                rec.status = error.0;
                rec.error = Some(error.1.to_owned());
                oauth_response(&error)
            }
        };
        self.token_recorder.record(rec);
        response
    }
}

impl Handler for FcmState {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<Conn>,
    ) -> Result<Response<Body>, io::Error> {
        let (parts, body) = req.into_parts();
        let body = read_body(body).await?;
        let path = parts.uri.path().to_owned();
        if path == "/token" {
            return Ok(self.handle_token(&parts.method, body).await);
        }
        let project = path
            .strip_prefix("/v1/projects/")
            .and_then(|p| p.strip_suffix("/messages:send"))
            .filter(|p| !p.is_empty() && !p.contains('/'))
            .map(str::to_owned);
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let mut rec = FcmRequest {
            method: parts.method.as_str().to_owned(),
            path,
            project: project.clone().unwrap_or_default(),
            headers: collect_headers(&parts.headers),
            body,
            json,
            status: None,
            error_status: None,
            error_code: None,
            message_name: None,
        };
        let verdict = match project {
            None => Err(Refusal {
                status: 404,
                canonical: "NOT_FOUND",
                message: format!("The requested URL {} was not found.", rec.path),
                code: None,
                details: Vec::new(),
                headers: Vec::new(),
            }),
            Some(_) if parts.method != hyper::Method::POST => {
                rec.status = Some(405);
                self.recorder.record(rec);
                return Ok(gateway::empty_response(405, &[("allow", "POST".into())]));
            }
            Some(ref project) => self.check_send(&parts.headers, project, rec.json.as_ref()),
        };
        let address = match verdict {
            Ok(address) => address,
            Err(refusal) => {
                rec.status = Some(refusal.status);
                rec.error_status = Some(refusal.canonical.to_owned());
                rec.error_code = refusal.code;
                self.recorder.record(rec);
                return Ok(refusal.response());
            }
        };
        let mut reply = self.scripts.next(&address).unwrap_or(FcmReply::Accept);
        let mut wait = Duration::ZERO;
        while let FcmReply::Delay { delay, then } = reply {
            wait += delay;
            reply = *then;
        }
        let refusal = match &reply {
            FcmReply::Accept | FcmReply::Delay { .. } => None,
            FcmReply::Error(code) => Some(Refusal::fcm(*code, code.default_message())),
            FcmReply::RetryAfter { code, after } => {
                let mut refusal = Refusal::fcm(*code, code.default_message());
                refusal
                    .headers
                    .push(("retry-after", after.as_secs().to_string()));
                Some(refusal)
            }
            FcmReply::Unauthenticated => Some(Refusal::unauthenticated()),
            FcmReply::DropConnection | FcmReply::GoAway => {
                self.recorder.record(rec);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                return Err(match reply {
                    FcmReply::GoAway => conn.go_away(),
                    _ => conn.drop_connection().await,
                });
            }
        };
        let response = match refusal {
            Some(refusal) => {
                rec.status = Some(refusal.status);
                rec.error_status = Some(refusal.canonical.to_owned());
                rec.error_code = refusal.code;
                refusal.response()
            }
            None => {
                let name = if rec.validate_only() {
                    format!("projects/{}/messages/fake_message_id", rec.project)
                } else {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    format!("projects/{}/messages/0:{id:016}%mock", rec.project)
                };
                rec.status = Some(200);
                rec.message_name = Some(name.clone());
                json_response(200, &json!({"name": name}), &[])
            }
        };
        self.recorder.record(rec);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(response)
    }
}
