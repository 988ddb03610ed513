//! A loopback fake of the APNs provider API (HTTP/2 over TLS), PROTOCOLS.md §1.
//!
//! [`ApnsMock::start`] (or [`ApnsMock::builder`]) binds 127.0.0.1 on an ephemeral port and
//! serves `POST /3/device/{token}` over HTTP/2 + TLS with a certificate from the mock's own CA
//! ([`ApnsMock::ca_pem`]). It validates every request the way APNs does and answers APNs'
//! status codes and `{"reason": ...}` bodies; it records every request
//! ([`ApnsMock::requests`]); and it answers what a test scripted per device token
//! ([`ApnsMock::script`], [`ApnsMock::script_once`]). Dropping the mock stops the server.
//!
//! See `docs/mocks-apns-fcm.md` in the crate for a walk-through.

mod keys;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::json;

pub use self::keys::ApnsSigningKey;
pub use self::tls::ApnsClientIdentity;

use crate::gateway::{
    json_response, lock, read_body, Body, Clock, Conn, Handler, Jwt, Recorder, Scripts,
    ServerHandle, VerifyCache,
};

/// Largest payload for every push type except VoIP, in bytes.
pub const MAX_PAYLOAD: usize = 4096;
/// Largest VoIP payload, in bytes.
pub const MAX_VOIP_PAYLOAD: usize = 5120;
/// Longest `apns-collapse-id`, in bytes.
pub const MAX_COLLAPSE_ID: usize = 64;
/// Age after which a provider token is refused with `ExpiredProviderToken`, in seconds.
pub const PROVIDER_TOKEN_MAX_AGE: i64 = 3600;
/// A connection may switch to a new provider token at most this often, in seconds.
pub const PROVIDER_TOKEN_MIN_REFRESH: i64 = 20 * 60;

/// An APNs error `reason` (PROTOCOLS.md §1.6), with its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApnsReason {
    /// 400: collapse id longer than 64 bytes.
    BadCollapseId,
    /// 400: malformed device token, or a token of the other environment.
    BadDeviceToken,
    /// 400: bad `apns-expiration`.
    BadExpirationDate,
    /// 400: bad `apns-id`.
    BadMessageId,
    /// 400: bad `apns-priority` (also: background push with a priority other than 5).
    BadPriority,
    /// 400: bad `apns-topic` (the mock: a topic whose suffix does not fit the push type).
    BadTopic,
    /// 400: the token belongs to another topic.
    DeviceTokenNotForTopic,
    /// 400: a header appeared twice.
    DuplicateHeaders,
    /// 400: idle timeout.
    IdleTimeout,
    /// 400: `apns-push-type` missing, unknown or inconsistent with the payload.
    InvalidPushType,
    /// 400: no device token in the path.
    MissingDeviceToken,
    /// 400: no `apns-topic`.
    MissingTopic,
    /// 400: empty body.
    PayloadEmpty,
    /// 400: pushing to this topic is not allowed.
    TopicDisallowed,
    /// 403: certificate problem.
    BadCertificate,
    /// 403: certificate of the other environment.
    BadCertificateEnvironment,
    /// 403: provider token `iat` older than one hour.
    ExpiredProviderToken,
    /// 403: action not allowed.
    Forbidden,
    /// 403: provider token malformed, unknown key, bad signature or wrong team.
    InvalidProviderToken,
    /// 403: no provider token.
    MissingProviderToken,
    /// 403: a key other than the one first used on this connection.
    UnrelatedKeyIdInToken,
    /// 403: key not valid for this environment.
    BadEnvironmentKeyIdInToken,
    /// 404: bad `:path`.
    BadPath,
    /// 405: not POST.
    MethodNotAllowed,
    /// 410: the token is no longer active for the topic (body carries `timestamp`).
    Unregistered,
    /// 410: the token expired (body carries `timestamp`).
    ExpiredToken,
    /// 413: payload over 4096 bytes (5120 for VoIP).
    PayloadTooLarge,
    /// 429: provider token changed more often than every 20 minutes on one connection.
    TooManyProviderTokenUpdates,
    /// 429: too many pushes to one device token.
    TooManyRequests,
    /// 500: internal error.
    InternalServerError,
    /// 503: service unavailable.
    ServiceUnavailable,
    /// 503: server shutting down.
    Shutdown,
    /// 400, mock only: the body is not a JSON object. Apple documents no reason for this case;
    /// the mock refuses it so that a channel sending broken JSON fails loudly in tests.
    PayloadNotJson,
}

impl ApnsReason {
    /// Every reason, in table order.
    pub const ALL: [ApnsReason; 33] = [
        ApnsReason::BadCollapseId,
        ApnsReason::BadDeviceToken,
        ApnsReason::BadExpirationDate,
        ApnsReason::BadMessageId,
        ApnsReason::BadPriority,
        ApnsReason::BadTopic,
        ApnsReason::DeviceTokenNotForTopic,
        ApnsReason::DuplicateHeaders,
        ApnsReason::IdleTimeout,
        ApnsReason::InvalidPushType,
        ApnsReason::MissingDeviceToken,
        ApnsReason::MissingTopic,
        ApnsReason::PayloadEmpty,
        ApnsReason::TopicDisallowed,
        ApnsReason::BadCertificate,
        ApnsReason::BadCertificateEnvironment,
        ApnsReason::ExpiredProviderToken,
        ApnsReason::Forbidden,
        ApnsReason::InvalidProviderToken,
        ApnsReason::MissingProviderToken,
        ApnsReason::UnrelatedKeyIdInToken,
        ApnsReason::BadEnvironmentKeyIdInToken,
        ApnsReason::BadPath,
        ApnsReason::MethodNotAllowed,
        ApnsReason::Unregistered,
        ApnsReason::ExpiredToken,
        ApnsReason::PayloadTooLarge,
        ApnsReason::TooManyProviderTokenUpdates,
        ApnsReason::TooManyRequests,
        ApnsReason::InternalServerError,
        ApnsReason::ServiceUnavailable,
        ApnsReason::Shutdown,
        ApnsReason::PayloadNotJson,
    ];

    /// The `reason` string APNs sends.
    pub const fn as_str(self) -> &'static str {
        match self {
            ApnsReason::BadCollapseId => "BadCollapseId",
            ApnsReason::BadDeviceToken => "BadDeviceToken",
            ApnsReason::BadExpirationDate => "BadExpirationDate",
            ApnsReason::BadMessageId => "BadMessageId",
            ApnsReason::BadPriority => "BadPriority",
            ApnsReason::BadTopic => "BadTopic",
            ApnsReason::DeviceTokenNotForTopic => "DeviceTokenNotForTopic",
            ApnsReason::DuplicateHeaders => "DuplicateHeaders",
            ApnsReason::IdleTimeout => "IdleTimeout",
            ApnsReason::InvalidPushType => "InvalidPushType",
            ApnsReason::MissingDeviceToken => "MissingDeviceToken",
            ApnsReason::MissingTopic => "MissingTopic",
            ApnsReason::PayloadEmpty => "PayloadEmpty",
            ApnsReason::TopicDisallowed => "TopicDisallowed",
            ApnsReason::BadCertificate => "BadCertificate",
            ApnsReason::BadCertificateEnvironment => "BadCertificateEnvironment",
            ApnsReason::ExpiredProviderToken => "ExpiredProviderToken",
            ApnsReason::Forbidden => "Forbidden",
            ApnsReason::InvalidProviderToken => "InvalidProviderToken",
            ApnsReason::MissingProviderToken => "MissingProviderToken",
            ApnsReason::UnrelatedKeyIdInToken => "UnrelatedKeyIdInToken",
            ApnsReason::BadEnvironmentKeyIdInToken => "BadEnvironmentKeyIdInToken",
            ApnsReason::BadPath => "BadPath",
            ApnsReason::MethodNotAllowed => "MethodNotAllowed",
            ApnsReason::Unregistered => "Unregistered",
            ApnsReason::ExpiredToken => "ExpiredToken",
            ApnsReason::PayloadTooLarge => "PayloadTooLarge",
            ApnsReason::TooManyProviderTokenUpdates => "TooManyProviderTokenUpdates",
            ApnsReason::TooManyRequests => "TooManyRequests",
            ApnsReason::InternalServerError => "InternalServerError",
            ApnsReason::ServiceUnavailable => "ServiceUnavailable",
            ApnsReason::Shutdown => "Shutdown",
            ApnsReason::PayloadNotJson => "PayloadNotJson",
        }
    }

    /// The HTTP status APNs answers this reason with.
    pub const fn status(self) -> u16 {
        match self {
            ApnsReason::BadCollapseId
            | ApnsReason::BadDeviceToken
            | ApnsReason::BadExpirationDate
            | ApnsReason::BadMessageId
            | ApnsReason::BadPriority
            | ApnsReason::BadTopic
            | ApnsReason::DeviceTokenNotForTopic
            | ApnsReason::DuplicateHeaders
            | ApnsReason::IdleTimeout
            | ApnsReason::InvalidPushType
            | ApnsReason::MissingDeviceToken
            | ApnsReason::MissingTopic
            | ApnsReason::PayloadEmpty
            | ApnsReason::TopicDisallowed
            | ApnsReason::PayloadNotJson => 400,
            ApnsReason::BadCertificate
            | ApnsReason::BadCertificateEnvironment
            | ApnsReason::ExpiredProviderToken
            | ApnsReason::Forbidden
            | ApnsReason::InvalidProviderToken
            | ApnsReason::MissingProviderToken
            | ApnsReason::UnrelatedKeyIdInToken
            | ApnsReason::BadEnvironmentKeyIdInToken => 403,
            ApnsReason::BadPath => 404,
            ApnsReason::MethodNotAllowed => 405,
            ApnsReason::Unregistered | ApnsReason::ExpiredToken => 410,
            ApnsReason::PayloadTooLarge => 413,
            ApnsReason::TooManyProviderTokenUpdates | ApnsReason::TooManyRequests => 429,
            ApnsReason::InternalServerError => 500,
            ApnsReason::ServiceUnavailable | ApnsReason::Shutdown => 503,
        }
    }
}

impl fmt::Display for ApnsReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scripted answer for a device token. Scripts apply to requests that passed validation: a
/// malformed request gets APNs' error whatever is scripted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApnsReply {
    /// 200 with `apns-id` (the default).
    Accept,
    /// The reason's status and `{"reason": ...}` body (410 reasons carry `timestamp` = now).
    Reject(ApnsReason),
    /// 410 `Unregistered` with `timestamp` = `since_ms` (milliseconds since the UNIX epoch).
    Unregistered {
        /// When APNs learnt the token stopped being valid, ms since the UNIX epoch.
        since_ms: i64,
    },
    /// The reason's status and body plus a `retry-after` header in whole seconds (APNs does not
    /// document one; the mock sends it so a channel's parsing of the header can be tested).
    RetryAfter {
        /// Usually [`ApnsReason::TooManyRequests`] or [`ApnsReason::ServiceUnavailable`].
        reason: ApnsReason,
        /// The hint.
        after: Duration,
    },
    /// Waits `delay` (real time), then answers `then`.
    Delay {
        /// How long to hold the response.
        delay: Duration,
        /// What to answer afterwards.
        then: Box<ApnsReply>,
    },
    /// Closes the TCP connection without answering.
    DropConnection,
    /// Sends GOAWAY on the connection and resets this request's stream unanswered; the client
    /// must open a new connection.
    GoAway,
}

impl ApnsReply {
    /// Accepts after `delay` (a slow provider; for timeout tests).
    pub fn slow(delay: Duration) -> ApnsReply {
        ApnsReply::Delay {
            delay,
            then: Box::new(ApnsReply::Accept),
        }
    }
}

/// How the mock authenticates providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApnsAuth {
    /// Provider tokens (ES256 JWT in `authorization: bearer`), checked against registered keys.
    #[default]
    Token,
    /// TLS client certificates issued by the mock's CA
    /// ([`ApnsMock::issue_client_identity`]); `authorization` is ignored.
    Certificate,
}

/// One request the mock received, with what it answered.
#[derive(Clone)]
pub struct ApnsRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// The device token from the path (empty if the path had none).
    pub device_token: String,
    /// Headers, names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Bytes,
    /// The body parsed as JSON, if it is JSON.
    pub payload: Option<serde_json::Value>,
    /// Key id of a provider token that verified.
    pub key_id: Option<String>,
    /// Team id of a provider token that verified.
    pub team_id: Option<String>,
    /// `apns-id` of the response (echoed or generated).
    pub apns_id: String,
    /// Status answered; `None` if the mock dropped the connection or sent GOAWAY instead.
    pub status: Option<u16>,
    /// Reason answered, if not accepted.
    pub reason: Option<ApnsReason>,
}

impl fmt::Debug for ApnsRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = if n == "authorization" {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (n.as_str(), v)
            })
            .collect();
        f.debug_struct("ApnsRequest")
            .field("method", &self.method)
            .field("device_token", &"<redacted>")
            .field("headers", &headers)
            .field("payload", &self.payload)
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("apns_id", &self.apns_id)
            .field("status", &self.status)
            .field("reason", &self.reason)
            .finish()
    }
}

impl ApnsRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `apns-topic`.
    pub fn topic(&self) -> Option<&str> {
        self.header("apns-topic")
    }

    /// `apns-push-type`.
    pub fn push_type(&self) -> Option<&str> {
        self.header("apns-push-type")
    }

    /// `apns-priority` as sent (APNs' default when absent is 10).
    pub fn priority(&self) -> Option<u8> {
        self.header("apns-priority").and_then(|p| p.parse().ok())
    }

    /// `apns-expiration` (UNIX seconds).
    pub fn expiration(&self) -> Option<i64> {
        self.header("apns-expiration").and_then(|p| p.parse().ok())
    }

    /// `apns-collapse-id`.
    pub fn collapse_id(&self) -> Option<&str> {
        self.header("apns-collapse-id")
    }

    /// The `aps` dictionary of the payload.
    pub fn aps(&self) -> Option<&serde_json::Value> {
        self.payload.as_ref().and_then(|p| p.get("aps"))
    }

    /// Whether the mock answered 200.
    pub fn accepted(&self) -> bool {
        self.status == Some(200)
    }
}

#[derive(Clone, Debug)]
struct RegisteredKey {
    team_id: String,
    public: Arc<[u8]>,
}

#[derive(Clone, Debug)]
struct VerifiedJwt {
    key_id: String,
    team_id: String,
    iat: i64,
}

struct ApnsState {
    auth: ApnsAuth,
    strict_token_updates: bool,
    topics: Mutex<Vec<String>>,
    keys: Mutex<HashMap<String, RegisteredKey>>,
    jwt_cache: VerifyCache<Result<VerifiedJwt, ApnsReason>>,
    scripts: Scripts<ApnsReply>,
    recorder: Recorder<ApnsRequest>,
    clock: Clock,
}

/// Builds an [`ApnsMock`].
#[derive(Debug, Default)]
pub struct ApnsMockBuilder {
    auth: ApnsAuth,
    topics: Vec<String>,
    keys: Vec<ApnsSigningKey>,
    lenient_token_updates: bool,
}

impl ApnsMockBuilder {
    /// Allows pushes to bundle id `topic` (and its push-type suffixes such as `.voip`). With no
    /// topic configured, every topic is allowed.
    pub fn topic(mut self, topic: &str) -> Self {
        self.topics.push(topic.to_owned());
        self
    }

    /// Registers a provider-token key (its public half).
    pub fn key(mut self, key: &ApnsSigningKey) -> Self {
        self.keys.push(key.clone());
        self
    }

    /// Certificate-based authentication instead of provider tokens.
    pub fn certificate_auth(mut self) -> Self {
        self.auth = ApnsAuth::Certificate;
        self
    }

    /// Turns off the `TooManyProviderTokenUpdates` rule (a connection switching provider
    /// tokens more often than every 20 minutes), e.g. for benchmarks with many tokens.
    pub fn lenient_token_updates(mut self) -> Self {
        self.lenient_token_updates = true;
        self
    }

    /// Starts the server.
    pub async fn start(self) -> ApnsMock {
        let ca = tls::TestCa::generate();
        let config = ca.server_config(self.auth == ApnsAuth::Certificate);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let keys = self
            .keys
            .iter()
            .map(|k| {
                (
                    k.key_id().to_owned(),
                    RegisteredKey {
                        team_id: k.team_id().to_owned(),
                        public: Arc::from(k.public_key()),
                    },
                )
            })
            .collect();
        let state = Arc::new(ApnsState {
            auth: self.auth,
            strict_token_updates: !self.lenient_token_updates,
            topics: Mutex::new(self.topics),
            keys: Mutex::new(keys),
            jwt_cache: VerifyCache::new(),
            scripts: Scripts::new(),
            recorder: Recorder::new(),
            clock: Clock::default(),
        });
        let listener = crate::gateway::bind_loopback().await;
        let server = crate::gateway::serve(
            listener,
            true,
            move |stream| {
                let acceptor = acceptor.clone();
                async move { acceptor.accept(stream).await }
            },
            Arc::clone(&state),
        );
        ApnsMock { state, server, ca }
    }
}

/// A running APNs fake. Stops when dropped.
pub struct ApnsMock {
    state: Arc<ApnsState>,
    server: ServerHandle,
    ca: tls::TestCa,
}

impl fmt::Debug for ApnsMock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsMock")
            .field("addr", &self.server.addr())
            .field("auth", &self.state.auth)
            .field("requests", &self.state.recorder.count())
            .finish()
    }
}

impl ApnsMock {
    /// Starts a token-auth mock that allows every topic and knows no key yet
    /// ([`register_key`](Self::register_key)).
    pub async fn start() -> ApnsMock {
        Self::builder().start().await
    }

    /// A builder for topics, keys and the auth mode.
    pub fn builder() -> ApnsMockBuilder {
        ApnsMockBuilder::default()
    }

    /// The bound address (127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `https://127.0.0.1:{port}`, to use in place of `https://api.push.apple.com`.
    pub fn base_url(&self) -> String {
        format!("https://{}", self.server.addr())
    }

    /// The URL a push to `device_token` goes to.
    pub fn device_url(&self, device_token: &str) -> String {
        format!("{}/3/device/{device_token}", self.base_url())
    }

    /// The mock CA certificate (PEM) the client must trust.
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// The mock CA certificate (DER) the client must trust.
    pub fn ca_der(&self) -> &[u8] {
        self.ca.cert_der()
    }

    /// A client certificate + key issued by the mock CA for `topic`, for certificate mode.
    pub fn issue_client_identity(&self, topic: &str) -> ApnsClientIdentity {
        self.ca.client_identity(topic)
    }

    /// Registers a provider-token key (its public half); tokens signed by it then verify.
    pub fn register_key(&self, key: &ApnsSigningKey) {
        lock(&self.state.keys).insert(
            key.key_id().to_owned(),
            RegisteredKey {
                team_id: key.team_id().to_owned(),
                public: Arc::from(key.public_key()),
            },
        );
        self.state.jwt_cache.clear();
    }

    /// Forgets a key (a revoked key): its tokens then get `InvalidProviderToken`.
    pub fn revoke_key(&self, key_id: &str) {
        lock(&self.state.keys).remove(key_id);
        self.state.jwt_cache.clear();
    }

    /// Allows one more bundle id.
    pub fn allow_topic(&self, topic: &str) {
        lock(&self.state.topics).push(topic.to_owned());
    }

    /// The mock's now, seconds since the UNIX epoch (use it as provider token `iat`).
    pub fn now(&self) -> i64 {
        self.state.clock.now_secs()
    }

    /// Moves the mock's clock forward (ages provider tokens without sleeping).
    pub fn advance_clock(&self, by: Duration) {
        self.state.clock.advance(by);
    }

    /// Sets the mock's clock to `unix_secs`.
    pub fn set_now(&self, unix_secs: i64) {
        self.state.clock.set_now(unix_secs);
    }

    /// Every request to `device_token` gets `reply` (after any one-shot replies).
    pub fn script(&self, device_token: &str, reply: ApnsReply) {
        self.state.scripts.always(device_token, reply);
    }

    /// The next request to `device_token` gets `reply`; one-shot replies queue in order.
    pub fn script_once(&self, device_token: &str, reply: ApnsReply) {
        self.state.scripts.once(device_token, reply);
    }

    /// Forgets the scripts of one device token.
    pub fn clear_script(&self, device_token: &str) {
        self.state.scripts.clear(device_token);
    }

    /// Forgets every script.
    pub fn clear_scripts(&self) {
        self.state.scripts.clear_all();
    }

    /// Every request recorded so far, in arrival order.
    pub fn requests(&self) -> Vec<ApnsRequest> {
        self.state.recorder.snapshot()
    }

    /// The recorded requests to `device_token`.
    pub fn requests_for(&self, device_token: &str) -> Vec<ApnsRequest> {
        self.state
            .recorder
            .filtered(|r| r.device_token == device_token)
    }

    /// Waits until at least `n` requests are recorded and returns them all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<ApnsRequest> {
        self.state.recorder.wait_for(n).await
    }

    /// How many requests arrived (also counted while recording is off).
    pub fn request_count(&self) -> u64 {
        self.state.recorder.count()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.state.recorder.clear();
    }

    /// Turns request recording on or off (off for benchmarks: memory stays flat).
    pub fn set_recording(&self, on: bool) {
        self.state.recorder.set_enabled(on);
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The topic suffix a push type requires (PROTOCOLS.md §1.3); `None` for `mdm`.
fn topic_suffix(push_type: &str) -> Option<&'static str> {
    Some(match push_type {
        "alert" | "background" => "",
        "location" => ".location-query",
        "voip" => ".voip",
        "complication" => ".complication",
        "fileprovider" => ".pushkit.fileprovider",
        "liveactivity" => ".push-type.liveactivity",
        "pushtotalk" => ".voip-ptt",
        "widgets" => ".push-type.widgets",
        "controls" => ".push-type.controls",
        _ => return None,
    })
}

const PUSH_TYPES: [&str; 11] = [
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
    "controls",
];

const SINGLE_HEADERS: [&str; 7] = [
    "authorization",
    "apns-topic",
    "apns-push-type",
    "apns-priority",
    "apns-expiration",
    "apns-collapse-id",
    "apns-id",
];

impl ApnsState {
    fn verify_jwt(&self, token: &str) -> Result<VerifiedJwt, ApnsReason> {
        let jwt = Jwt::parse(token).ok_or(ApnsReason::InvalidProviderToken)?;
        if jwt.header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
            return Err(ApnsReason::InvalidProviderToken);
        }
        let kid = jwt
            .header
            .get("kid")
            .and_then(|k| k.as_str())
            .ok_or(ApnsReason::InvalidProviderToken)?;
        let key = lock(&self.keys)
            .get(kid)
            .cloned()
            .ok_or(ApnsReason::InvalidProviderToken)?;
        if jwt.claims.get("iss").and_then(|i| i.as_str()) != Some(key.team_id.as_str()) {
            return Err(ApnsReason::InvalidProviderToken);
        }
        let iat = jwt
            .claims
            .get("iat")
            .and_then(|i| i.as_i64())
            .ok_or(ApnsReason::InvalidProviderToken)?;
        if !keys::verify_es256(&key.public, jwt.signing_input.as_bytes(), &jwt.signature) {
            return Err(ApnsReason::InvalidProviderToken);
        }
        Ok(VerifiedJwt {
            key_id: kid.to_owned(),
            team_id: key.team_id,
            iat,
        })
    }

    fn check_token_auth(
        &self,
        headers: &hyper::HeaderMap,
        conn: &Conn,
        rec: &mut ApnsRequest,
    ) -> Result<(), ApnsReason> {
        let value = headers
            .get("authorization")
            .ok_or(ApnsReason::MissingProviderToken)?;
        let value = value
            .to_str()
            .map_err(|_| ApnsReason::InvalidProviderToken)?;
        let token = value
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .map(|_| value[7..].trim())
            .ok_or(ApnsReason::InvalidProviderToken)?;
        if token.is_empty() {
            return Err(ApnsReason::MissingProviderToken);
        }
        let verified = self.jwt_cache.get_or(token, || self.verify_jwt(token))?;
        rec.key_id = Some(verified.key_id.clone());
        rec.team_id = Some(verified.team_id.clone());
        let now = self.clock.now_secs();
        if now - verified.iat > PROVIDER_TOKEN_MAX_AGE {
            return Err(ApnsReason::ExpiredProviderToken);
        }
        if verified.iat > now + 300 {
            return Err(ApnsReason::InvalidProviderToken);
        }
        let mut state = lock(&conn.state);
        match &state.first_identity {
            Some(first) if *first != verified.key_id => {
                return Err(ApnsReason::UnrelatedKeyIdInToken)
            }
            Some(_) => {}
            None => state.first_identity = Some(verified.key_id.clone()),
        }
        match &state.current_credential {
            Some((current, _)) if current == token => {}
            Some((_, since))
                if self.strict_token_updates && now - since < PROVIDER_TOKEN_MIN_REFRESH =>
            {
                return Err(ApnsReason::TooManyProviderTokenUpdates)
            }
            _ => state.current_credential = Some((token.to_owned(), now)),
        }
        Ok(())
    }

    fn topic_allowed(&self, base: &str) -> bool {
        let topics = lock(&self.topics);
        topics.is_empty() || topics.iter().any(|t| t == base)
    }

    /// Validates everything but the path; fills `rec` as it goes.
    fn check(
        &self,
        headers: &hyper::HeaderMap,
        conn: &Conn,
        rec: &mut ApnsRequest,
    ) -> Result<(), ApnsReason> {
        if self.auth == ApnsAuth::Token {
            self.check_token_auth(headers, conn, rec)?;
        }
        if rec.device_token.is_empty() {
            return Err(ApnsReason::MissingDeviceToken);
        }
        if rec.device_token.len() & 1 == 1
            || !rec.device_token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(ApnsReason::BadDeviceToken);
        }
        if SINGLE_HEADERS
            .iter()
            .any(|h| headers.get_all(*h).iter().count() > 1)
        {
            return Err(ApnsReason::DuplicateHeaders);
        }
        if let Some(id) = rec.header("apns-id") {
            if !is_uuid(id) {
                return Err(ApnsReason::BadMessageId);
            }
        }
        let push_type = rec
            .push_type()
            .filter(|t| PUSH_TYPES.contains(t))
            .ok_or(ApnsReason::InvalidPushType)?
            .to_owned();
        self.check_topic(rec, &push_type)?;
        let priority = match rec.header("apns-priority") {
            None => 10,
            Some(p) => match p.parse::<u8>() {
                Ok(p @ (1 | 5 | 10)) => p,
                _ => return Err(ApnsReason::BadPriority),
            },
        };
        if push_type == "background" && priority != 5 {
            return Err(ApnsReason::BadPriority);
        }
        if let Some(exp) = rec.header("apns-expiration") {
            if exp.parse::<u64>().is_err() {
                return Err(ApnsReason::BadExpirationDate);
            }
        }
        if rec.collapse_id().is_some_and(|c| c.len() > MAX_COLLAPSE_ID) {
            return Err(ApnsReason::BadCollapseId);
        }
        if rec.body.is_empty() {
            return Err(ApnsReason::PayloadEmpty);
        }
        let limit = if push_type == "voip" {
            MAX_VOIP_PAYLOAD
        } else {
            MAX_PAYLOAD
        };
        if rec.body.len() > limit {
            return Err(ApnsReason::PayloadTooLarge);
        }
        let payload = rec
            .payload
            .as_ref()
            .filter(|p| p.is_object())
            .ok_or(ApnsReason::PayloadNotJson)?;
        check_payload_fits_type(&push_type, payload)
    }

    fn check_topic(&self, rec: &ApnsRequest, push_type: &str) -> Result<(), ApnsReason> {
        let topic = match rec.topic() {
            Some(t) if !t.is_empty() => t,
            _ => {
                // Certificate auth with a single-topic certificate needs no apns-topic.
                let single = self.auth == ApnsAuth::Certificate && lock(&self.topics).len() == 1;
                return if single {
                    Ok(())
                } else {
                    Err(ApnsReason::MissingTopic)
                };
            }
        };
        let Some(expected) = topic_suffix(push_type) else {
            // mdm: the topic is the certificate's UID; only the allow-list applies.
            return if self.topic_allowed(topic) {
                Ok(())
            } else {
                Err(ApnsReason::TopicDisallowed)
            };
        };
        let (base, found) = split_topic_suffix(topic);
        if !self.topic_allowed(base) {
            return Err(ApnsReason::TopicDisallowed);
        }
        if found != expected {
            // e.g. a voip push to `com.example.app`, or an alert to `com.example.app.voip`.
            return Err(ApnsReason::BadTopic);
        }
        Ok(())
    }
}

/// Splits a topic into bundle id and the push-type suffix it ends with ("" if none).
fn split_topic_suffix(topic: &str) -> (&str, &'static str) {
    PUSH_TYPES
        .iter()
        .filter_map(|t| topic_suffix(t))
        .filter(|s| !s.is_empty() && topic.len() > s.len() && topic.ends_with(s))
        .max_by_key(|s| s.len())
        .map(|s| (&topic[..topic.len() - s.len()], s))
        .unwrap_or((topic, ""))
}

/// Background pushes carry only `content-available: 1` in `aps`; alert pushes show something.
fn check_payload_fits_type(push_type: &str, payload: &serde_json::Value) -> Result<(), ApnsReason> {
    let aps = payload.get("aps").and_then(|a| a.as_object());
    match push_type {
        "background" => {
            let aps = aps.ok_or(ApnsReason::InvalidPushType)?;
            let only_content_available =
                aps.len() == 1 && aps.get("content-available").and_then(|v| v.as_i64()) == Some(1);
            if only_content_available {
                Ok(())
            } else {
                Err(ApnsReason::InvalidPushType)
            }
        }
        "alert" => {
            let aps = aps.ok_or(ApnsReason::InvalidPushType)?;
            if ["alert", "badge", "sound"]
                .iter()
                .any(|k| aps.contains_key(*k))
            {
                Ok(())
            } else {
                Err(ApnsReason::InvalidPushType)
            }
        }
        _ => Ok(()),
    }
}

fn error_body(reason: ApnsReason, timestamp_ms: i64) -> serde_json::Value {
    if reason.status() == 410 {
        json!({"reason": reason.as_str(), "timestamp": timestamp_ms})
    } else {
        json!({"reason": reason.as_str()})
    }
}

impl Handler for ApnsState {
    async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<Conn>,
    ) -> Result<Response<Body>, io::Error> {
        let (parts, body) = req.into_parts();
        let body = read_body(body).await?;
        let path = parts.uri.path().to_owned();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let apns_id = parts
            .headers
            .get("apns-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| is_uuid(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut rec = ApnsRequest {
            method: parts.method.as_str().to_owned(),
            device_token: path.strip_prefix("/3/device/").unwrap_or("").to_owned(),
            path,
            headers,
            payload: serde_json::from_slice(&body).ok(),
            body,
            key_id: None,
            team_id: None,
            apns_id: apns_id.clone(),
            status: None,
            reason: None,
        };
        let id_header = [("apns-id", apns_id.clone())];
        let verdict = if !rec.path.starts_with("/3/device/") || rec.device_token.contains('/') {
            Err(ApnsReason::BadPath)
        } else if parts.method != hyper::Method::POST {
            Err(ApnsReason::MethodNotAllowed)
        } else {
            self.check(&parts.headers, &conn, &mut rec)
        };
        if let Err(reason) = verdict {
            rec.status = Some(reason.status());
            rec.reason = Some(reason);
            self.recorder.record(rec);
            let body = error_body(reason, self.clock.now_ms());
            return Ok(json_response(reason.status(), &body, &id_header));
        }
        let mut reply = self
            .scripts
            .next(&rec.device_token)
            .unwrap_or(ApnsReply::Accept);
        let mut wait = Duration::ZERO;
        while let ApnsReply::Delay { delay, then } = reply {
            wait += delay;
            reply = *then;
        }
        let (status, reason) = match &reply {
            ApnsReply::Accept => (Some(200), None),
            ApnsReply::Reject(r) | ApnsReply::RetryAfter { reason: r, .. } => {
                (Some(r.status()), Some(*r))
            }
            ApnsReply::Unregistered { .. } => (Some(410), Some(ApnsReason::Unregistered)),
            ApnsReply::DropConnection | ApnsReply::GoAway | ApnsReply::Delay { .. } => (None, None),
        };
        rec.status = status;
        rec.reason = reason;
        self.recorder.record(rec);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(match reply {
            ApnsReply::Accept | ApnsReply::Delay { .. } => {
                crate::gateway::empty_response(200, &id_header)
            }
            ApnsReply::Reject(reason) => json_response(
                reason.status(),
                &error_body(reason, self.clock.now_ms()),
                &id_header,
            ),
            ApnsReply::Unregistered { since_ms } => json_response(
                410,
                &error_body(ApnsReason::Unregistered, since_ms),
                &id_header,
            ),
            ApnsReply::RetryAfter { reason, after } => json_response(
                reason.status(),
                &error_body(reason, self.clock.now_ms()),
                &[
                    ("apns-id", apns_id),
                    ("retry-after", after.as_secs().to_string()),
                ],
            ),
            ApnsReply::DropConnection => return Err(conn.drop_connection().await),
            ApnsReply::GoAway => return Err(conn.go_away()),
        })
    }
}
