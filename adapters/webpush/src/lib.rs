#![doc = include_str!("../README.md")]

pub mod client;
pub mod config;
pub mod crypto;
pub mod guard;
pub mod request;
pub mod response;
pub mod vapid;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tidings::{
    Accepted, AppId, ChannelCapabilities, Platform, Push, PushAddress, PushChannel, PushError,
    ValidationError,
};

pub use config::{VapidConfig, WebPushConfig};

use crate::crypto::{CryptoError, SubscriptionKeys};
use crate::vapid::{TokenCache, VapidSigner};

/// The Web Push channel: RFC 8030 delivery, RFC 8291 encryption, RFC 8292 VAPID.
///
/// Cheap to clone (clones share the connection pool and the VAPID token caches).
#[derive(Clone)]
pub struct WebPushChannel {
    inner: Arc<Inner>,
}

struct Inner {
    client: client::Client,
    vapid: HashMap<AppId, TokenCache>,
    allowed_hosts: Vec<String>,
    loopback_for_tests: bool,
    max_plaintext: usize,
    config: WebPushConfig,
}

impl fmt::Debug for WebPushChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut apps: Vec<_> = self.inner.vapid.iter().collect();
        apps.sort_by(|a, b| a.0.cmp(b.0));
        f.debug_struct("WebPushChannel")
            .field("vapid", &apps)
            .field("allowed_hosts", &self.inner.allowed_hosts)
            .field("loopback_for_tests", &self.inner.loopback_for_tests)
            .field("timeout", &self.inner.config.timeout)
            .field("max_plaintext_bytes", &self.inner.max_plaintext)
            .finish()
    }
}

impl WebPushChannel {
    /// A configuration to build a channel from (`WebPushChannel::builder().vapid(…).build()`).
    pub fn builder() -> WebPushConfig {
        WebPushConfig::default()
    }

    pub(crate) fn new(config: WebPushConfig) -> Result<Self, ValidationError> {
        let mut vapid = HashMap::new();
        for v in &config.vapid {
            let signer = VapidSigner::new(&v.private_key, &v.subject)?;
            let cache = TokenCache::new(signer, config.vapid_token_lifetime)?;
            vapid.insert(v.app.clone(), cache);
        }
        let client = client::Client::new(&config).map_err(|e| {
            ValidationError::new("webpush", format!("could not build the HTTP client: {e}"))
        })?;
        Ok(WebPushChannel {
            inner: Arc::new(Inner {
                client,
                vapid,
                allowed_hosts: config.allowed_hosts.clone(),
                loopback_for_tests: config.loopback_for_tests,
                max_plaintext: config.max_plaintext_bytes,
                config,
            }),
        })
    }

    /// The VAPID public key of `app` (the `applicationServerKey` a web page subscribes with),
    /// unpadded base64url.
    pub fn application_server_key(&self, app: &AppId) -> Option<&str> {
        self.inner
            .vapid
            .get(app)
            .map(|c| c.signer().public_key_base64url())
    }

    /// Everything [`send`](PushChannel::send) does before the network: the checked endpoint and
    /// the finished request. Public so tests and tools can see exactly what would be sent.
    pub fn prepare(&self, push: &Push) -> Result<http::Request<Vec<u8>>, PushError> {
        let PushAddress::WebPush {
            endpoint,
            p256dh,
            auth,
        } = &push.endpoint.address
        else {
            return Err(PushError::rejected("not a Web Push endpoint"));
        };
        let plaintext = request::render(push);
        request::check_size(&plaintext, self.inner.max_plaintext)?;
        let target = guard::check_endpoint(
            endpoint,
            &self.inner.allowed_hosts,
            self.inner.loopback_for_tests,
        )?;
        let keys = SubscriptionKeys::from_base64url(p256dh, auth).map_err(crypto_error)?;
        let tokens = self.inner.vapid.get(&push.app).ok_or_else(|| {
            PushError::misconfigured(format!(
                "no VAPID key is configured for app {:?}",
                push.app.as_str()
            ))
        })?;
        let authorization = tokens
            .authorization(&target.origin, unix_now())
            .map_err(|e| PushError::misconfigured(e.to_string()))?;
        let body = crypto::encrypt(&keys, &plaintext).map_err(crypto_error)?;
        request::build(push, &target.url, &authorization, body)
    }
}

fn crypto_error(e: CryptoError) -> PushError {
    match e {
        CryptoError::BadPublicKey | CryptoError::BadAuthSecret => {
            PushError::rejected(format!("the subscription's keys are invalid: {e}"))
                .with_reason("invalid_subscription_keys")
        }
        CryptoError::TooLarge(n) => PushError::payload_too_large(n, crypto::MAX_PLAINTEXT),
        CryptoError::Internal => PushError::unavailable(e.to_string()),
    }
}

/// Seconds since the UNIX epoch by the wall clock: VAPID expiry is checked by the push service
/// against real time, whatever clock the dispatcher uses.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[async_trait]
impl PushChannel for WebPushChannel {
    fn platform(&self) -> Platform {
        Platform::WebPush
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_payload_bytes: self.inner.max_plaintext,
            // Browsers require a visible notification for every push.
            silent_push: false,
            collapse: true,
        }
    }

    async fn send(&self, push: &Push) -> Result<Accepted, PushError> {
        let request = self.prepare(push)?;
        self.inner.client.send(request).await
    }
}
