//! [`WebPushConfig`]: deserializable from the host's configuration file, or built in code.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tidings::{AddressPolicy, AppId, ValidationError};

use crate::crypto::MAX_PLAINTEXT;
use crate::WebPushChannel;

/// One app's VAPID identity.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VapidConfig {
    /// The app whose pushes it signs.
    pub app: AppId,
    /// The ECDSA P-256 private key: PEM (PKCS#8 or SEC 1) or the 32-byte scalar in base64url.
    pub private_key: String,
    /// Contact URI sent as `sub`: `mailto:` or `https:` (not localhost).
    pub subject: String,
}

impl fmt::Debug for VapidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidConfig")
            .field("app", &self.app)
            .field("private_key", &"<redacted>")
            .field("subject", &self.subject)
            .finish()
    }
}

/// How a [`WebPushChannel`] works. Every field but `vapid` has a default.
///
/// ```toml
/// [[webpush.vapid]]
/// app = "chat"
/// private_key = "…base64url scalar or PEM…"
/// subject = "mailto:ops@example.com"
/// # allowed_hosts = ["fcm.googleapis.com", "push.services.mozilla.com", "push.apple.com"]
/// # timeout_secs = 10
/// ```
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebPushConfig {
    /// VAPID keys, one per app (several apps per process).
    pub vapid: Vec<VapidConfig>,
    /// Push-service hosts endpoints may name (exact or parent domain). Default: FCM, Mozilla,
    /// Apple, Windows (PROTOCOLS.md §4.6), as in [`AddressPolicy::default`].
    pub allowed_hosts: Vec<String>,
    /// TEST ONLY: accept `http(s)://127.0.0.1`, `[::1]` and `localhost` endpoints (any port) and
    /// loopback DNS answers, to reach the loopback mock of `tidings-testkit`. Never set it in
    /// production.
    pub loopback_for_tests: bool,
    /// Per-request timeout, connect to last body byte (default 10 s).
    #[serde(rename = "timeout_secs", deserialize_with = "secs")]
    pub timeout: Duration,
    /// Connect timeout (default 5 s).
    #[serde(rename = "connect_timeout_secs", deserialize_with = "secs")]
    pub connect_timeout: Duration,
    /// How long idle connections are kept for reuse (default 90 s).
    #[serde(rename = "pool_idle_timeout_secs", deserialize_with = "secs")]
    pub pool_idle_timeout: Duration,
    /// Lifetime of VAPID tokens: more than 1 h, at most 24 h (default 12 h).
    #[serde(rename = "vapid_token_lifetime_secs", deserialize_with = "secs")]
    pub vapid_token_lifetime: Duration,
    /// Largest plaintext sent, at most 3993 bytes (the default: what fits the 4096-byte body
    /// every push service accepts). Lower it for conservative services.
    pub max_plaintext_bytes: usize,
    /// Most response-body bytes read (default 8 KiB); the rest is discarded.
    pub max_response_bytes: usize,
}

fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

impl Default for WebPushConfig {
    fn default() -> Self {
        WebPushConfig {
            vapid: Vec::new(),
            allowed_hosts: AddressPolicy::default().webpush_hosts,
            loopback_for_tests: false,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            vapid_token_lifetime: Duration::from_secs(12 * 3600),
            max_plaintext_bytes: MAX_PLAINTEXT,
            max_response_bytes: 8 * 1024,
        }
    }
}

impl fmt::Debug for WebPushConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebPushConfig")
            .field("vapid", &self.vapid)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("loopback_for_tests", &self.loopback_for_tests)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("vapid_token_lifetime", &self.vapid_token_lifetime)
            .field("max_plaintext_bytes", &self.max_plaintext_bytes)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
    }
}

impl WebPushConfig {
    /// Adds an app's VAPID key (PEM or base64url scalar) and contact URI.
    #[must_use]
    pub fn vapid(
        mut self,
        app: impl Into<AppId>,
        private_key: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        self.vapid.push(VapidConfig {
            app: app.into(),
            private_key: private_key.into(),
            subject: subject.into(),
        });
        self
    }

    /// Takes the Web Push hosts and the loopback test switch from the policy endpoints are
    /// registered under, so registration and sending agree.
    #[must_use]
    pub fn address_policy(mut self, policy: AddressPolicy) -> Self {
        self.allowed_hosts = policy.webpush_hosts;
        self.loopback_for_tests = policy.loopback_for_tests;
        self
    }

    /// Sets the allowed push-service hosts.
    #[must_use]
    pub fn allowed_hosts(mut self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_hosts = hosts.into_iter().map(Into::into).collect();
        self
    }

    /// TEST ONLY: lets the channel reach loopback endpoints (the `tidings-testkit` mock).
    #[must_use]
    pub fn allow_loopback_for_tests(mut self) -> Self {
        self.loopback_for_tests = true;
        self
    }

    /// Sets the per-request timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the VAPID token lifetime.
    #[must_use]
    pub fn vapid_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.vapid_token_lifetime = lifetime;
        self
    }

    /// Sets the plaintext limit.
    #[must_use]
    pub fn max_plaintext_bytes(mut self, limit: usize) -> Self {
        self.max_plaintext_bytes = limit;
        self
    }

    /// Checks the configuration (keys parse, subjects are contact URIs, limits are in range, no
    /// app twice) and builds the channel.
    pub fn build(self) -> Result<WebPushChannel, ValidationError> {
        self.validate()?;
        WebPushChannel::new(self)
    }

    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        if self.vapid.is_empty() {
            return Err(ValidationError::new(
                "vapid",
                "configure a VAPID key for at least one app",
            ));
        }
        for (i, v) in self.vapid.iter().enumerate() {
            if self.vapid[..i].iter().any(|o| o.app == v.app) {
                return Err(ValidationError::new(
                    "vapid",
                    format!("app {:?} has two VAPID keys", v.app.as_str()),
                ));
            }
        }
        if self.allowed_hosts.is_empty() && !self.loopback_for_tests {
            return Err(ValidationError::new(
                "allowed_hosts",
                "list at least one push-service host",
            ));
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ValidationError::new("timeout", "must be positive"));
        }
        if self.max_plaintext_bytes == 0 || self.max_plaintext_bytes > MAX_PLAINTEXT {
            return Err(ValidationError::new(
                "max_plaintext_bytes",
                format!("must be 1 to {MAX_PLAINTEXT}"),
            ));
        }
        if self.max_response_bytes == 0 {
            return Err(ValidationError::new(
                "max_response_bytes",
                "must be positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidings_testkit::webpush::VapidKey;

    #[test]
    fn deserializes_with_defaults_and_redacts_keys() {
        let key = VapidKey::generate();
        let text = serde_json::json!({
            "vapid": [{"app": "chat", "private_key": key.private_key_base64url(), "subject": "mailto:ops@example.com"}],
            "timeout_secs": 3,
        });
        let config: WebPushConfig = serde_json::from_value(text).unwrap();
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.max_plaintext_bytes, 3993);
        assert!(!config.loopback_for_tests);
        assert!(config.allowed_hosts.iter().any(|h| h == "push.apple.com"));
        let shown = format!("{config:?}");
        assert!(!shown.contains(&key.private_key_base64url()), "{shown}");
        assert!(config.build().is_ok());
    }

    #[test]
    fn build_refuses_bad_settings_naming_the_field() {
        let key = VapidKey::generate().pkcs8_pem();
        let ok = || WebPushConfig::default().vapid("chat", key.clone(), "mailto:a@example.com");
        let cases: Vec<(WebPushConfig, &str)> = vec![
            (WebPushConfig::default(), "vapid"),
            (
                ok().vapid("chat", key.clone(), "mailto:b@example.com"),
                "vapid",
            ),
            (
                WebPushConfig::default().vapid("chat", key.clone(), "https://localhost"),
                "vapid.subject",
            ),
            (
                WebPushConfig::default().vapid("chat", "garbage", "mailto:a@example.com"),
                "vapid.private_key",
            ),
            (ok().max_plaintext_bytes(4000), "max_plaintext_bytes"),
            (ok().timeout(Duration::ZERO), "timeout"),
            (
                ok().vapid_token_lifetime(Duration::from_secs(48 * 3600)),
                "vapid_token_lifetime",
            ),
            (ok().allowed_hosts(Vec::<String>::new()), "allowed_hosts"),
        ];
        for (config, field) in cases {
            let e = config.build().unwrap_err();
            assert_eq!(e.field(), field, "{e}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = serde_json::json!({"vapid": [], "loopback": true});
        assert!(serde_json::from_value::<WebPushConfig>(text).is_err());
    }
}
