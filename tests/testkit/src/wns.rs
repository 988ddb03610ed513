//! A loopback fake of Windows Push Notification Services: the OAuth token endpoint (legacy
//! `login.live.com` and Entra ID forms) and channel URIs that check requests the way WNS does
//! (PROTOCOLS.md §3).
//!
//! ```no_run
//! # async fn demo() {
//! use tidings_testkit::wns::{WnsMock, WnsReply};
//!
//! let wns = WnsMock::start().await;
//! let app = wns.register_app();          // client id + secret + token URL on the mock
//! let channel = wns.channel_uri(&app);   // http://127.0.0.1:<port>/w/?token=…
//! // … point the channel under test at `app.token_url` and send to `channel` …
//! wns.script(&channel, [WnsReply::Gone]); // the next push gets 410
//! let seen = wns.requests_to(&channel);
//! # }
//! ```
//!
//! What the channel endpoint checks, in order, and what it answers when a check fails:
//!
//! | check | answer |
//! |---|---|
//! | path `/w/?token=…` is a channel the mock handed out | 404 |
//! | method is `POST` | 405 |
//! | channel not expired ([`WnsMock::expire_channel`]) | 410 |
//! | `Authorization: Bearer <token>` issued by the mock, not expired or revoked | 401 (+ `WWW-Authenticate`) |
//! | the token's app owns the channel | 403 |
//! | no chunked transfer encoding; `X-WNS-Type` is `wns/toast`, `wns/tile`, `wns/badge` or `wns/raw`; `Content-Type` is `text/xml` (toast/tile/badge) or `application/octet-stream` (raw) | 400 |
//! | body ≤ 5000 bytes | 413 |
//! | `X-WNS-Tag`/`X-WNS-Group` 1–16 chars; `X-WNS-PRIORITY` 1–4; `X-WNS-TTL` an integer; `X-WNS-Cache-Policy` `cache`/`no-cache`; `X-WNS-RequestForStatus` `true`/`false`; no `X-WNS-SuppressPopup` (Windows Phone only) | 400 |
//! | toast/tile/badge bodies are well-formed XML whose root is `<toast>`/`<tile>`/`<badge>` | 400 |
//!
//! Accepted pushes get `200` with `X-WNS-Status: received`, `X-WNS-Msg-ID` (16 hex digits),
//! `X-WNS-Debug-Trace`, `MS-CV` echoed, and `X-WNS-DeviceConnectionStatus` when
//! `X-WNS-RequestForStatus: true` was sent. Errors carry `X-WNS-Error-Description` and
//! `X-WNS-Debug-Trace`.

mod harness;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Request;

pub use harness::WnsHarness;

use crate::loopback::{lock, response, Bound, Journal, Loopback, Planned, Reply, Scripts};

/// Largest payload WNS accepts (413 above it).
pub const MAX_PAYLOAD: usize = 5000;
/// Token lifetime the mock announces by default (`expires_in`, as login.live.com's example).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// Which OAuth flow an app's credentials use (PROTOCOLS.md §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WnsAuthFlow {
    /// `login.live.com/accesstoken.srf`, Package SID client id, scope `notify.windows.com`.
    Legacy,
    /// `login.microsoftonline.com/{tenant}/oauth2/v2.0/token`, Azure app id, scope
    /// `https://wns.windows.com/.default`.
    Entra,
}

impl WnsAuthFlow {
    /// The scope a token request of this flow must ask for.
    pub fn scope(self) -> &'static str {
        match self {
            WnsAuthFlow::Legacy => "notify.windows.com",
            WnsAuthFlow::Entra => "https://wns.windows.com/.default",
        }
    }
}

/// A WNS app's client credentials and where to exchange them for a token.
///
/// `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WnsAppCredentials {
    /// Which flow.
    pub flow: WnsAuthFlow,
    /// `ms-app://S-1-15-2-…` (legacy) or an Azure application id (Entra).
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
    /// The Entra tenant id (`None` for legacy).
    pub tenant: Option<String>,
    /// Token endpoint URL.
    pub token_url: String,
}

impl WnsAppCredentials {
    /// Fresh random legacy credentials pointing at the real `login.live.com` endpoint, made
    /// in memory (for configuration tests; [`WnsMock::register_app`] gives credentials the mock
    /// accepts).
    pub fn generate_legacy() -> Self {
        let sid: Vec<String> = (0..7)
            .map(|_| (uuid::Uuid::new_v4().as_u128() % 4_294_967_296).to_string())
            .collect();
        WnsAppCredentials {
            flow: WnsAuthFlow::Legacy,
            client_id: format!("ms-app://S-1-15-2-{}", sid.join("-")),
            client_secret: random_secret(),
            tenant: None,
            token_url: "https://login.live.com/accesstoken.srf".into(),
        }
    }

    /// Fresh random Entra ID credentials pointing at the real Microsoft identity platform.
    pub fn generate_entra() -> Self {
        let tenant = uuid::Uuid::new_v4().to_string();
        WnsAppCredentials {
            flow: WnsAuthFlow::Entra,
            client_id: uuid::Uuid::new_v4().to_string(),
            client_secret: random_secret(),
            token_url: format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
            tenant: Some(tenant),
        }
    }

    /// The scope to request.
    pub fn scope(&self) -> &'static str {
        self.flow.scope()
    }

    /// The `application/x-www-form-urlencoded` body of a token request.
    pub fn token_request_form(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", &self.client_secret)
            .append_pair("scope", self.scope())
            .finish()
    }
}

impl fmt::Debug for WnsAppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WnsAppCredentials")
            .field("flow", &self.flow)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("tenant", &self.tenant)
            .field("token_url", &self.token_url)
            .finish()
    }
}

fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `X-WNS-DeviceConnectionStatus` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceConnectionStatus {
    /// `connected`.
    Connected,
    /// `disconnected`.
    Disconnected,
    /// `tempdisconnected`.
    TempDisconnected,
}

impl DeviceConnectionStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeviceConnectionStatus::Connected => "connected",
            DeviceConnectionStatus::Disconnected => "disconnected",
            DeviceConnectionStatus::TempDisconnected => "tempdisconnected",
        }
    }
}

/// A scripted answer for one channel URI (PROTOCOLS.md §3.4–3.5).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WnsReply {
    /// Normal behaviour: validate, then `200` + `X-WNS-Status: received`.
    Accept,
    /// `200` + `X-WNS-Status: dropped` (the user or client refused it).
    Dropped,
    /// `200` + `X-WNS-Status: channelthrottled`.
    ChannelThrottled,
    /// `406 Not Acceptable` + `X-WNS-Status: channelthrottled`, with `X-WNS-CONTINUE-AFTER` in
    /// seconds when given: the cloud service exceeded its throttle limit.
    Throttled {
        /// The `X-WNS-CONTINUE-AFTER` value.
        continue_after: Option<Duration>,
    },
    /// `400 Bad Request`: bad or conflicting headers.
    BadRequest,
    /// `401 Unauthorized`: token invalid or expired.
    Unauthorized,
    /// `403 Forbidden`: token not authorized for this channel.
    Forbidden,
    /// `404 Not Found`: channel URI invalid or unknown.
    NotFound,
    /// `405 Method Not Allowed`.
    MethodNotAllowed,
    /// `410 Gone`: channel expired.
    Gone,
    /// `413 Request Entity Too Large`.
    PayloadTooLarge,
    /// `500 Internal Server Error`.
    InternalServerError,
    /// `503 Service Unavailable`.
    ServiceUnavailable,
    /// Wait `delay`, then answer as `then`.
    Slow {
        /// How long to wait.
        delay: Duration,
        /// The answer after the wait.
        then: Box<WnsReply>,
    },
    /// Answer nothing: close the connection (HTTP/1.1) or reset the stream (HTTP/2).
    DropConnection,
}

impl WnsReply {
    /// Wait `delay`, then answer as `then`.
    pub fn slow(delay: Duration, then: WnsReply) -> Self {
        WnsReply::Slow {
            delay,
            then: Box::new(then),
        }
    }
}

/// One request to a channel URI, decoded.
#[derive(Clone)]
pub struct WnsRequest {
    /// The channel's token (the `token` query parameter), or the path for unknown URLs.
    pub channel: String,
    /// HTTP method.
    pub method: String,
    /// Every header, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// `X-WNS-Type`.
    pub wns_type: Option<String>,
    /// `X-WNS-TTL`, when numeric.
    pub ttl: Option<u64>,
    /// `X-WNS-PRIORITY`, when numeric.
    pub priority: Option<u8>,
    /// `X-WNS-Tag`.
    pub tag: Option<String>,
    /// `X-WNS-Group`.
    pub group: Option<String>,
    /// The root element of an XML body that parsed.
    pub xml_root: Option<String>,
    /// The text of every `<text>` element of an XML body that parsed, in document order.
    pub texts: Vec<String>,
    /// The status answered (0 when the connection was dropped).
    pub status: u16,
    /// The `X-WNS-Status` answered.
    pub wns_status: Option<String>,
    /// The `X-WNS-Msg-ID` answered: the provider's message id.
    pub message_id: Option<String>,
    /// Why the mock's checks refused it, or which script answered.
    pub problem: Option<String>,
}

impl WnsRequest {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn body_text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Whether WNS accepted it (200 + `received`).
    pub fn accepted(&self) -> bool {
        self.status == 200 && self.wns_status.as_deref() == Some("received")
    }
}

impl fmt::Debug for WnsRequest {
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
        f.debug_struct("WnsRequest")
            .field("method", &self.method)
            .field("headers", &headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .field("status", &self.status)
            .field("wns_status", &self.wns_status)
            .field("problem", &self.problem)
            .finish()
    }
}

/// One request to the token endpoint.
#[derive(Clone)]
pub struct TokenRequest {
    /// The flow the URL belongs to.
    pub flow: WnsAuthFlow,
    /// The form's `client_id`.
    pub client_id: Option<String>,
    /// The form's `scope`.
    pub scope: Option<String>,
    /// The status answered.
    pub status: u16,
    /// The OAuth `error` answered, if any.
    pub error: Option<String>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("flow", &self.flow)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("status", &self.status)
            .field("error", &self.error)
            .finish()
    }
}

struct Token {
    client_id: String,
    expires: Instant,
    revoked: bool,
}

struct Channel {
    client_id: String,
    expired: bool,
    device: DeviceConnectionStatus,
}

struct Inner {
    base: String,
    apps: Mutex<HashMap<String, WnsAppCredentials>>,
    tokens: Mutex<HashMap<String, Token>>,
    channels: Mutex<HashMap<String, Channel>>,
    token_lifetime: Mutex<Duration>,
    scripts: Scripts<WnsReply>,
    journal: Journal<WnsRequest>,
    token_journal: Journal<TokenRequest>,
    messages: AtomicU64,
    total: AtomicU64,
    recording: std::sync::atomic::AtomicBool,
}

/// The WNS fake: token endpoint and channel URIs on `127.0.0.1`, stopped when dropped.
pub struct WnsMock {
    inner: Arc<Inner>,
    _server: Loopback,
}

impl fmt::Debug for WnsMock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WnsMock")
            .field("base_url", &self.inner.base)
            .field("requests", &self.inner.journal.len())
            .finish()
    }
}

impl WnsMock {
    /// Starts the mock on an ephemeral loopback port (plain HTTP). Channels under test need
    /// [`AddressPolicy::with_loopback_for_tests`](tidings::AddressPolicy::with_loopback_for_tests)
    /// to accept its channel URIs.
    pub async fn start() -> Self {
        let bound = Bound::new().await;
        let inner = Arc::new(Inner {
            base: format!("http://{}", bound.addr()),
            apps: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
            token_lifetime: Mutex::new(DEFAULT_TOKEN_LIFETIME),
            scripts: Scripts::new(),
            journal: Journal::new(),
            token_journal: Journal::new(),
            messages: AtomicU64::new(0),
            total: AtomicU64::new(0),
            recording: std::sync::atomic::AtomicBool::new(true),
        });
        let handler_inner = Arc::clone(&inner);
        let server = bound.serve(move |req| handle(&handler_inner, req));
        WnsMock {
            inner,
            _server: server,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// The legacy token endpoint (`/accesstoken.srf`).
    pub fn legacy_token_url(&self) -> String {
        format!("{}/accesstoken.srf", self.inner.base)
    }

    /// The Entra token endpoint of `tenant` (`/{tenant}/oauth2/v2.0/token`).
    pub fn entra_token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.inner.base)
    }

    /// Registers credentials with the mock (their `token_url` is replaced by the mock's
    /// endpoint for their flow) and returns them as registered.
    pub fn register(&self, mut credentials: WnsAppCredentials) -> WnsAppCredentials {
        credentials.token_url = match (&credentials.flow, &credentials.tenant) {
            (WnsAuthFlow::Entra, Some(t)) => self.entra_token_url(t),
            (WnsAuthFlow::Entra, None) => {
                let t = uuid::Uuid::new_v4().to_string();
                let url = self.entra_token_url(&t);
                credentials.tenant = Some(t);
                url
            }
            (WnsAuthFlow::Legacy, _) => self.legacy_token_url(),
        };
        lock(&self.inner.apps).insert(credentials.client_id.clone(), credentials.clone());
        credentials
    }

    /// New legacy (Package SID) credentials the mock accepts.
    pub fn register_app(&self) -> WnsAppCredentials {
        self.register(WnsAppCredentials::generate_legacy())
    }

    /// New Entra ID credentials the mock accepts.
    pub fn register_entra_app(&self) -> WnsAppCredentials {
        self.register(WnsAppCredentials::generate_entra())
    }

    /// A new channel URI owned by `app`: `<base>/w/?token=<random>`.
    pub fn channel_uri(&self, app: &WnsAppCredentials) -> String {
        let token = format!("AwYAAAB{}", uuid::Uuid::new_v4().simple());
        lock(&self.inner.channels).insert(
            token.clone(),
            Channel {
                client_id: app.client_id.clone(),
                expired: false,
                device: DeviceConnectionStatus::Connected,
            },
        );
        format!("{}/w/?token={token}", self.inner.base)
    }

    /// Expires a channel URI: every later push to it gets `410 Gone`.
    pub fn expire_channel(&self, channel_uri: &str) {
        if let Some(c) = lock(&self.inner.channels).get_mut(&channel_key(channel_uri)) {
            c.expired = true;
        }
    }

    /// What `X-WNS-DeviceConnectionStatus` reports for a channel (default `connected`).
    pub fn set_device_status(&self, channel_uri: &str, status: DeviceConnectionStatus) {
        if let Some(c) = lock(&self.inner.channels).get_mut(&channel_key(channel_uri)) {
            c.device = status;
        }
    }

    /// Lifetime of tokens issued from now on (default 24 h).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.inner.token_lifetime) = lifetime;
    }

    /// Expires every token issued so far: pushes with them get 401 until a new one is fetched.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for t in lock(&self.inner.tokens).values_mut() {
            t.expires = now;
        }
    }

    /// Revokes one token.
    pub fn revoke_token(&self, access_token: &str) {
        if let Some(t) = lock(&self.inner.tokens).get_mut(access_token) {
            t.revoked = true;
        }
    }

    /// Every access token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.inner.tokens).keys().cloned().collect()
    }

    /// Every token request so far.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.inner.token_journal.all()
    }

    /// Queues answers for the next pushes to `channel_uri`, one per request.
    pub fn script(&self, channel_uri: &str, replies: impl IntoIterator<Item = WnsReply>) {
        self.inner.scripts.queue(&channel_key(channel_uri), replies);
    }

    /// Sets the answer every push to `channel_uri` gets once its queue is empty.
    pub fn script_always(&self, channel_uri: &str, reply: WnsReply) {
        self.inner
            .scripts
            .always(&channel_key(channel_uri), Some(reply));
    }

    /// Forgets every script.
    pub fn clear_scripts(&self) {
        self.inner.scripts.clear();
    }

    /// Every channel request so far.
    pub fn requests(&self) -> Vec<WnsRequest> {
        self.inner.journal.all()
    }

    /// The requests to one channel URI.
    pub fn requests_to(&self, channel_uri: &str) -> Vec<WnsRequest> {
        let key = channel_key(channel_uri);
        self.inner.journal.filter(|r| r.channel == key)
    }

    /// Waits until at least `n` channel requests were recorded, then returns them all.
    pub async fn wait_for_requests(&self, n: usize) -> Vec<WnsRequest> {
        self.inner.journal.wait_for(n).await
    }

    /// How many channel requests arrived (counted even when recording is off).
    pub fn request_count(&self) -> u64 {
        self.inner.total.load(Ordering::Relaxed)
    }

    /// Forgets recorded channel and token requests.
    pub fn clear_requests(&self) {
        self.inner.journal.clear();
        self.inner.token_journal.clear();
    }

    /// Turns recording on or off (on by default).
    pub fn set_recording(&self, on: bool) {
        self.inner.recording.store(on, Ordering::Relaxed);
    }
}

/// The channel token of a channel URI (its `token` query parameter), or its path.
fn channel_key(uri: &str) -> String {
    let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    let path_and_query = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    key_of(path_and_query)
}

fn key_of(path_and_query: &str) -> String {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| path.to_owned())
}

fn handle(inner: &Inner, req: Request<Bytes>) -> Planned {
    let path = req.uri().path();
    if path == "/accesstoken.srf" {
        return token_endpoint(inner, &req, WnsAuthFlow::Legacy, None);
    }
    if let Some(tenant) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
    {
        let tenant = tenant.to_owned();
        return token_endpoint(inner, &req, WnsAuthFlow::Entra, Some(&tenant));
    }
    channel_endpoint(inner, req)
}

// --- token endpoint ----------------------------------------------------------------------------

fn oauth_error(
    status: u16,
    error: &str,
    description: &str,
) -> hyper::Response<http_body_util::Full<Bytes>> {
    let body = serde_json::json!({ "error": error, "error_description": description }).to_string();
    response(status, &[], Some("application/json"), body)
}

fn token_endpoint(
    inner: &Inner,
    req: &Request<Bytes>,
    flow: WnsAuthFlow,
    tenant: Option<&str>,
) -> Planned {
    let form: HashMap<String, String> = form_urlencoded::parse(req.body())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut record = TokenRequest {
        flow,
        client_id: form.get("client_id").cloned(),
        scope: form.get("scope").cloned(),
        status: 200,
        error: None,
    };
    let verdict = token_verdict(inner, req, flow, tenant, &form);
    let resp = match verdict {
        Ok(client_id) => {
            let access_token = format!("EgAcAQMAAAAA{}", random_secret());
            let lifetime = *lock(&inner.token_lifetime);
            lock(&inner.tokens).insert(
                access_token.clone(),
                Token {
                    client_id,
                    expires: Instant::now() + lifetime,
                    revoked: false,
                },
            );
            let mut body = serde_json::json!({
                "token_type": "bearer",
                "access_token": access_token,
                "expires_in": lifetime.as_secs(),
            });
            if flow == WnsAuthFlow::Entra {
                body["ext_expires_in"] = body["expires_in"].clone();
            }
            response(200, &[], Some("application/json"), body.to_string())
        }
        Err((status, error, description)) => {
            record.status = status;
            record.error = Some(error.to_owned());
            oauth_error(status, error, &description)
        }
    };
    inner.token_journal.push(record);
    Planned {
        delay: None,
        reply: Reply::Respond(resp),
    }
}

type OAuthRefusal = (u16, &'static str, String);

fn token_verdict(
    inner: &Inner,
    req: &Request<Bytes>,
    flow: WnsAuthFlow,
    tenant: Option<&str>,
    form: &HashMap<String, String>,
) -> Result<String, OAuthRefusal> {
    if req.method() != hyper::Method::POST {
        return Err((
            405,
            "invalid_request",
            "the token endpoint takes POST".into(),
        ));
    }
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if media_type(ct) != "application/x-www-form-urlencoded" {
        return Err((
            400,
            "invalid_request",
            format!("Content-Type {ct:?} is not application/x-www-form-urlencoded"),
        ));
    }
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return Err((
            400,
            "unsupported_grant_type",
            "grant_type must be client_credentials".into(),
        ));
    }
    let (Some(id), Some(secret)) = (form.get("client_id"), form.get("client_secret")) else {
        return Err((
            400,
            "invalid_request",
            "client_id and client_secret are required".into(),
        ));
    };
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    let scope_ok = match flow {
        WnsAuthFlow::Legacy => scope == "notify.windows.com" || scope == "s.notify.live.net",
        WnsAuthFlow::Entra => scope == WnsAuthFlow::Entra.scope(),
    };
    if !scope_ok {
        return Err((
            400,
            "invalid_scope",
            format!("scope {scope:?} is not {:?}", flow.scope()),
        ));
    }
    let apps = lock(&inner.apps);
    let app = apps
        .get(id)
        .filter(|a| a.flow == flow && a.tenant.as_deref() == tenant);
    match app {
        Some(a) if a.client_secret == *secret => Ok(id.clone()),
        // Entra answers 401 for a bad client secret; login.live.com answers 400.
        _ => Err((
            if flow == WnsAuthFlow::Entra { 401 } else { 400 },
            "invalid_client",
            "client authentication failed".into(),
        )),
    }
}

fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

// --- channel endpoint --------------------------------------------------------------------------

struct Refusal {
    status: u16,
    description: String,
    wns_status: Option<&'static str>,
    continue_after: Option<Duration>,
}

impl Refusal {
    fn new(status: u16, description: impl Into<String>) -> Self {
        Refusal {
            status,
            description: description.into(),
            wns_status: None,
            continue_after: None,
        }
    }
}

fn debug_trace() -> String {
    format!("MOCK-{}", uuid::Uuid::new_v4().simple())
}

fn refusal_response(
    r: &Refusal,
    ms_cv: Option<&str>,
) -> hyper::Response<http_body_util::Full<Bytes>> {
    let mut headers = vec![
        ("x-wns-error-description", r.description.clone()),
        ("x-wns-debug-trace", debug_trace()),
    ];
    if let Some(s) = r.wns_status {
        headers.push(("x-wns-status", s.to_owned()));
    }
    if let Some(after) = r.continue_after {
        headers.push(("x-wns-continue-after", after.as_secs().to_string()));
    }
    if r.status == 401 {
        headers.push((
            "www-authenticate",
            "Bearer error=\"invalid_token\",error_description=\"Invalid token\"".to_owned(),
        ));
    }
    if let Some(cv) = ms_cv {
        headers.push(("ms-cv", cv.to_owned()));
    }
    response(r.status, &headers, None, Bytes::new())
}

fn scripted_refusal(reply: &WnsReply) -> Option<Refusal> {
    let r = match reply {
        WnsReply::Accept
        | WnsReply::Dropped
        | WnsReply::ChannelThrottled
        | WnsReply::Slow { .. }
        | WnsReply::DropConnection => return None,
        WnsReply::Throttled { continue_after } => Refusal {
            wns_status: Some("channelthrottled"),
            continue_after: *continue_after,
            ..Refusal::new(406, "the cloud service exceeded its throttle limit")
        },
        WnsReply::BadRequest => Refusal::new(400, "one or more headers were specified incorrectly"),
        WnsReply::Unauthorized => Refusal::new(401, "the access token is invalid or expired"),
        WnsReply::Forbidden => {
            Refusal::new(403, "the token is not authorized to send to this channel")
        }
        WnsReply::NotFound => Refusal::new(404, "the channel URI is not valid"),
        WnsReply::MethodNotAllowed => Refusal::new(405, "invalid method"),
        WnsReply::Gone => Refusal::new(410, "the channel expired"),
        WnsReply::PayloadTooLarge => Refusal::new(413, "the payload exceeds 5000 bytes"),
        WnsReply::InternalServerError => Refusal::new(500, "internal failure"),
        WnsReply::ServiceUnavailable => Refusal::new(503, "service unavailable"),
    };
    Some(r)
}

/// What a valid request decoded to.
#[derive(Default)]
struct Decoded {
    xml_root: Option<String>,
    texts: Vec<String>,
}

fn channel_endpoint(inner: &Inner, req: Request<Bytes>) -> Planned {
    inner.total.fetch_add(1, Ordering::Relaxed);
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let key = key_of(&path_and_query);
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
    let ms_cv = header("ms-cv").map(str::to_owned);
    let known = req.uri().path() == "/w/" && lock(&inner.channels).contains_key(&key);

    let verdict = check(inner, &req, &key, known);
    let scripted = if known {
        inner.scripts.next(&key)
    } else {
        None
    };
    let (delay, effective) = match scripted {
        Some(WnsReply::Slow { delay, then }) => (Some(delay), *then),
        Some(other) => (None, other),
        None => (None, WnsReply::Accept),
    };

    let decoded = verdict.as_ref().ok();
    let mut record = WnsRequest {
        channel: key.clone(),
        method: req.method().as_str().to_owned(),
        headers,
        body: req.body().to_vec(),
        wns_type: header("x-wns-type").map(str::to_owned),
        ttl: header("x-wns-ttl").and_then(|t| t.trim().parse().ok()),
        priority: header("x-wns-priority").and_then(|t| t.trim().parse().ok()),
        tag: header("x-wns-tag").map(str::to_owned),
        group: header("x-wns-group").map(str::to_owned),
        xml_root: decoded.and_then(|d| d.xml_root.clone()),
        texts: decoded.map(|d| d.texts.clone()).unwrap_or_default(),
        status: 0,
        wns_status: None,
        message_id: None,
        problem: verdict.as_ref().err().map(|r| r.description.clone()),
    };

    let accept = |record: &mut WnsRequest, wns_status: &str| {
        let n = inner.messages.fetch_add(1, Ordering::Relaxed) + 1;
        let msg_id = format!("{:016X}", n ^ 0x5A5A_0000_0000_0000);
        record.status = 200;
        record.wns_status = Some(wns_status.to_owned());
        record.message_id = Some(msg_id.clone());
        let mut headers = vec![
            ("x-wns-status", wns_status.to_owned()),
            ("x-wns-msg-id", msg_id),
            ("x-wns-debug-trace", debug_trace()),
        ];
        let wants_status =
            header("x-wns-requestforstatus").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if wants_status {
            let device = lock(&inner.channels)
                .get(&key)
                .map_or(DeviceConnectionStatus::Connected, |c| c.device);
            headers.push(("x-wns-deviceconnectionstatus", device.as_str().to_owned()));
        }
        if let Some(cv) = &ms_cv {
            headers.push(("ms-cv", cv.clone()));
        }
        Reply::Respond(response(200, &headers, None, Bytes::new()))
    };

    let reply = match (&effective, verdict) {
        (WnsReply::DropConnection, _) => {
            record.problem = Some("connection dropped (scripted)".into());
            Reply::Drop
        }
        (WnsReply::Dropped, _) => {
            record.problem = Some("scripted: dropped".into());
            accept(&mut record, "dropped")
        }
        (WnsReply::ChannelThrottled, _) => {
            record.problem = Some("scripted: channelthrottled".into());
            accept(&mut record, "channelthrottled")
        }
        (other, verdict) => match (scripted_refusal(other), verdict) {
            (Some(refusal), _) => {
                record.status = refusal.status;
                record.wns_status = refusal.wns_status.map(str::to_owned);
                record.problem = Some(format!("scripted: {}", refusal.description));
                Reply::Respond(refusal_response(&refusal, ms_cv.as_deref()))
            }
            (None, Err(refusal)) => {
                record.status = refusal.status;
                Reply::Respond(refusal_response(&refusal, ms_cv.as_deref()))
            }
            (None, Ok(_)) => accept(&mut record, "received"),
        },
    };
    if inner.recording.load(Ordering::Relaxed) {
        inner.journal.push(record);
    }
    Planned { delay, reply }
}

fn check(inner: &Inner, req: &Request<Bytes>, key: &str, known: bool) -> Result<Decoded, Refusal> {
    if !known {
        return Err(Refusal::new(404, "the channel URI is not valid"));
    }
    if req.method() != hyper::Method::POST {
        return Err(Refusal::new(405, "only POST is allowed on a channel URI"));
    }
    let owner = {
        let channels = lock(&inner.channels);
        let Some(c) = channels.get(key) else {
            return Err(Refusal::new(404, "the channel URI is not valid"));
        };
        if c.expired {
            return Err(Refusal::new(410, "the channel expired"));
        }
        c.client_id.clone()
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let token = header("authorization")
        .and_then(|a| {
            let (scheme, token) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| Refusal::new(401, "missing bearer token"))?;
    {
        let tokens = lock(&inner.tokens);
        let t = tokens
            .get(token)
            .ok_or_else(|| Refusal::new(401, "the access token is invalid"))?;
        if t.revoked {
            return Err(Refusal::new(401, "the access token was revoked"));
        }
        if Instant::now() >= t.expires {
            return Err(Refusal::new(401, "the access token expired"));
        }
        if t.client_id != owner {
            return Err(Refusal::new(
                403,
                "the token is not authorized to send to this channel",
            ));
        }
    }
    if req.headers().contains_key("transfer-encoding") {
        return Err(Refusal::new(
            400,
            "chunked transfer encoding is not supported",
        ));
    }
    let wns_type = header("x-wns-type").ok_or_else(|| Refusal::new(400, "missing X-WNS-Type"))?;
    let expected = match wns_type {
        "wns/toast" | "wns/tile" | "wns/badge" => "text/xml",
        "wns/raw" => "application/octet-stream",
        other => {
            return Err(Refusal::new(
                400,
                format!("X-WNS-Type {other:?} is not valid"),
            ))
        }
    };
    let ct = media_type(header("content-type").unwrap_or(""));
    if ct != expected {
        return Err(Refusal::new(
            400,
            format!("Content-Type {ct:?} does not match X-WNS-Type {wns_type} (needs {expected})"),
        ));
    }
    let body = req.body();
    if body.len() > MAX_PAYLOAD {
        return Err(Refusal::new(
            413,
            format!(
                "the payload is {} bytes; the limit is {MAX_PAYLOAD}",
                body.len()
            ),
        ));
    }
    for name in ["x-wns-tag", "x-wns-group"] {
        if let Some(v) = header(name) {
            if v.is_empty() || v.chars().count() > 16 {
                return Err(Refusal::new(
                    400,
                    format!("{name} must be 1 to 16 characters"),
                ));
            }
        }
    }
    if let Some(p) = header("x-wns-priority") {
        if !matches!(p.trim(), "1" | "2" | "3" | "4") {
            return Err(Refusal::new(
                400,
                format!("X-WNS-PRIORITY {p:?} is not 1 to 4"),
            ));
        }
    }
    if let Some(t) = header("x-wns-ttl") {
        if t.trim().parse::<u64>().is_err() {
            return Err(Refusal::new(
                400,
                format!("X-WNS-TTL {t:?} is not an integer"),
            ));
        }
    }
    if let Some(c) = header("x-wns-cache-policy") {
        if !matches!(c, "cache" | "no-cache") {
            return Err(Refusal::new(
                400,
                "X-WNS-Cache-Policy must be cache or no-cache",
            ));
        }
    }
    if let Some(r) = header("x-wns-requestforstatus") {
        if !r.eq_ignore_ascii_case("true") && !r.eq_ignore_ascii_case("false") {
            return Err(Refusal::new(
                400,
                "X-WNS-RequestForStatus must be true or false",
            ));
        }
    }
    if req.headers().contains_key("x-wns-suppresspopup") {
        return Err(Refusal::new(
            400,
            "X-WNS-SuppressPopup is for Windows Phone channels only",
        ));
    }
    if wns_type == "wns/raw" {
        return Ok(Decoded::default());
    }
    let text =
        std::str::from_utf8(body).map_err(|_| Refusal::new(400, "the XML payload is not UTF-8"))?;
    let doc = roxmltree::Document::parse(text)
        .map_err(|e| Refusal::new(400, format!("the XML payload is not well-formed: {e}")))?;
    let root = doc.root_element().tag_name().name().to_owned();
    let want = &wns_type["wns/".len()..];
    if root != want {
        return Err(Refusal::new(
            400,
            format!("the XML root <{root}> does not match X-WNS-Type {wns_type}"),
        ));
    }
    let texts = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| n.text().unwrap_or("").to_owned())
        .collect();
    Ok(Decoded {
        xml_root: Some(root),
        texts,
    })
}
